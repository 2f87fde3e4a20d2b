"""categorized_records over a slice of the Go distribution: inline vs a local process pool, wall seconds.

    .venv/bin/python benchmarks/workers_throughput.py [--packages net,crypto,...] [--workers 2]

repo_list and raw_prs are materialized once; then categorized_records is materialized over the same
partition range once per mode (Dagster's own run, ``dg.materialize`` with range tags), into the same data
folder, and the Parquet files of the two runs are checked byte for byte. Each mode runs ``--repeats``
times, alternating, and the fastest run counts; the load average is printed beside it, since a busy
machine (other jobs on the same cores) flattens the ratio towards 1. The ratio is the figure: on N
cores it approaches N when the partitions are many and of similar size, and is held back by the largest
partition (one partition is one task) and by the pool's start-up.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import dagster as dg

from gocoder_assets.categorized_records.assets import categorized_records
from gocoder_assets.dagster_internal import range_tags
from gocoder_assets.partitions import REPOS
from gocoder_assets.raw_prs.assets import raw_prs
from gocoder_assets.repo_list.assets import repo_list
from gocoder_assets.resources import LocalSourceResource, StorageResource
from gocoder_assets.storage import Layout
from gocoder_assets.workers.resource import WorkersResource
from gocoder_assets.workers.settings import available_cores

PACKAGES = "net,crypto,encoding,go,strings,bytes,fmt,sort,errors,container,unicode,bufio,time,os,image,math"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def snapshot(layout: Layout) -> dict[str, bytes]:
    root = layout.asset_dir("categorized_records")
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packages", default=PACKAGES, help="top-level directories of GOROOT/src")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="runs per mode; the fastest counts")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="workers-bench-"))
    base = {
        "storage": StorageResource(root=str(tmp / "data")),
        "source": LocalSourceResource(packages=args.packages.split(","), include_go=True),
        "workers": WorkersResource(mode="inline"),
    }
    assets = [repo_list, raw_prs, categorized_records]
    with dg.instance_for_test() as instance:
        dg.materialize(assets, selection=[repo_list], instance=instance, resources=base)
        keys = instance.get_dynamic_partitions(REPOS)
        tags = range_tags(keys[0], keys[-1])
        inline = base["workers"]
        dg.materialize(assets, selection=[raw_prs], instance=instance, resources=base, tags=tags)
        modes = {"inline": inline, "processes": WorkersResource(mode="processes", max_workers=args.workers)}
        seconds: dict[str, list[float]] = {name: [] for name in modes}
        files, load = {}, []
        for _ in range(args.repeats):  # alternating, so a burst of load elsewhere hits both modes
            for name, workers in modes.items():
                load.append(os.getloadavg()[0])
                started = time.perf_counter()
                dg.materialize(
                    assets, selection=[categorized_records], instance=instance, resources={**base, "workers": workers},
                    tags=tags,
                )  # fmt: skip
                seconds[name].append(time.perf_counter() - started)
                files[name] = snapshot(Layout(tmp / "data"))
    if files["inline"] != files["processes"]:
        raise SystemExit("the two modes wrote different files")
    raw_mb = sum(Layout(tmp / "data").raw_records_file(k).stat().st_size for k in keys) / 1e6
    print(
        f"CPU: {cpu_model()}, {available_cores()} cores available; {len(keys)} partitions, {raw_mb:.1f} MB gzipped raw"
    )
    best = {name: min(v) for name, v in seconds.items()}
    print(f"| partitions | inline s | processes({args.workers}) s | ratio | 1-min load average during runs |")
    print("|---|---|---|---|---|")
    print(f"| {len(keys)} | {best['inline']:.1f} | {best['processes']:.1f} | "
          f"{best['inline'] / best['processes']:.2f}x | {min(load):.1f}–{max(load):.1f} |")  # fmt: skip
    print("outputs byte-identical: yes")


if __name__ == "__main__":
    main()
