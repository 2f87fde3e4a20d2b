"""Dedup index at scale: peak memory and wall time of memory vs Redis LSH storage as the corpus grows.

    .venv/bin/python benchmarks/dedup_scale.py [--partitions 200 800] [--records 2000]
        [--workdir /tmp/dedup_scale_bench] [--tracemalloc]

Writes a synthetic corpus as categorized_records leaves it (records.parquet + signatures.npy per partition;
random 256-value signatures, so the LSH sees realistic band values), where 10% of each partition's records
are exact copies (same content sha) and 10% near copies (85% of the values of a record in an earlier
partition: Jaccard estimate 0.85) of records elsewhere. For every size N (the first N partitions) and
mode it runs `index.build_index` in a fresh child process and reports its wall seconds, its peak RSS
(ru_maxrss: the whole process, imports included) and, with --tracemalloc, Python's traced peak (slower);
for Redis also the server's peak memory (INFO used_memory_peak, a fresh redis-server per build). It
checks that both modes wrote the same file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def generate(workdir: Path, partitions: int, records: int) -> None:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    from gocoder_assets.dedup_index.dedup import NUM_PERM, content_sha  # noqa: PLC0415
    from gocoder_assets.storage import Layout  # noqa: PLC0415

    marker = workdir / f"corpus-{partitions}x{records}.v2.json"
    if marker.exists():
        return
    shutil.rmtree(workdir / "data", ignore_errors=True)
    layout, rng, stars = Layout(workdir / "data"), np.random.default_rng(1), {}
    for p in range(partitions):
        key = f"org{p % 97}/repo{p:05d}"
        sigs = rng.integers(0, 2**32, (records, NUM_PERM), dtype=np.uint32)
        shas = [content_sha(f"{key}/{i}") for i in range(records)]
        for i in range(6, records, 10):  # originals that later partitions copy with changes
            sigs[i] = np.random.default_rng(p * 1_000_003 + i).integers(0, 2**32, NUM_PERM, dtype=np.uint32)
        for i in range(0, records, 10) if p else ():  # exact copy of an original of an earlier partition
            shas[i] = content_sha(f"{_key(int(rng.integers(p)))}/{i + 1}")
        for i in range(5, records, 10) if p else ():  # near copy: 85% of an earlier partition's original
            q = int(rng.integers(p))
            sigs[i] = np.random.default_rng(q * 1_000_003 + i + 1).integers(0, 2**32, NUM_PERM, dtype=np.uint32)
            noise = rng.random(NUM_PERM) < 0.15
            sigs[i, noise] = rng.integers(0, 2**32, int(noise.sum()), dtype=np.uint32)
        table = {"record_id": [hashlib.sha1(f"{key}|{i}".encode()).hexdigest()[:16] for i in range(records)],
                 "path": [f"pkg/f{i:05d}.go" for i in range(records)], "content_sha": shas,
                 "sig_row": list(range(records))}  # fmt: skip
        pq.write_table(pa.table(table), layout.categorized_file(key))
        np.save(layout.signatures_file(key), sigs)
        stars[key] = int(rng.integers(0, 10_000))
    marker.write_text(json.dumps(stars))


def _key(p: int) -> str:
    return f"org{p % 97}/repo{p:05d}"


def child(args: argparse.Namespace) -> None:
    """One build in this process; prints a JSON line of what it measured."""
    import tracemalloc  # noqa: PLC0415

    from gocoder_assets.dedup_index import index  # noqa: PLC0415
    from gocoder_assets.dedup_index.options import DedupOptions  # noqa: PLC0415
    from gocoder_assets.sources.base import RepoInfo  # noqa: PLC0415
    from gocoder_assets.storage import Layout, file_sha256  # noqa: PLC0415

    stars = json.loads(Path(args.corpus).read_text())
    keys = list(stars)[: args.n]
    repos = {k: RepoInfo(k, k, "", stars[k], None, "main", "", "", "bench") for k in keys}
    layout = Layout(Path(args.workdir) / "data")
    options = DedupOptions(lsh_storage=args.mode, redis_url=args.redis_url or "")
    index.lsh_params(options.threshold, 256)
    if args.tracemalloc:
        tracemalloc.start()
    start = time.perf_counter()
    counts = index.build_index(layout, repos, options)
    wall = time.perf_counter() - start
    traced = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
    out = {
        "wall_s": wall,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "traced_mb": traced / 2**20 if traced else None,
        "records": sum(c["dedup_in"] for c in counts.values()),
        "dropped": sum(c["exact_dups"] + c["near_dups"] for c in counts.values()),
        "sha": file_sha256(layout.dedup_file),
    }
    print(json.dumps(out))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: argparse.Namespace, n: int, mode: str, corpus: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", "--n", str(n), "--mode", mode, "--workdir", str(args.workdir),
           "--corpus", str(corpus)] + (["--tracemalloc"] if args.tracemalloc else [])  # fmt: skip
    server = None
    if mode == "redis":
        port = _free_port()
        server = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        import redis  # noqa: PLC0415

        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        cmd += ["--redis-url", f"redis://127.0.0.1:{port}/0"]
    try:
        result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        if server is not None:
            result["redis_peak_mb"] = client.info("memory")["used_memory_peak"] / 2**20
            result["redis_keys_left"] = client.dbsize()
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", type=int, nargs="+", default=[200, 800])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dedup_scale_bench"))
    parser.add_argument("--modes", nargs="+", default=["memory", "redis"])
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    biggest = max(args.partitions)
    start = time.perf_counter()
    generate(args.workdir, biggest, args.records)
    corpus = args.workdir / f"corpus-{biggest}x{args.records}.v2.json"
    cpu = next((ln.split(":", 1)[1].strip() for ln in subprocess.run(["lscpu"], capture_output=True, text=True)
                .stdout.splitlines() if ln.startswith("Model name")), "?")  # fmt: skip
    print(f"corpus: {biggest} partitions x {args.records} records ({time.perf_counter() - start:.0f} s to write)")
    print(f"cpu: {cpu}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores")
    results = {}
    for n in sorted(args.partitions):
        for mode in args.modes:
            results[n, mode] = r = run(args, n, mode, corpus)
            print(f"  done: {n} partitions, {mode}: {r['wall_s']:.1f} s", flush=True)
    header = f"{'partitions':>10} {'records':>9} {'mode':>7} {'wall s':>8} {'peak RSS MB':>12}"
    header += f" {'traced MB':>10}" if args.tracemalloc else ""
    print("\n" + header + f" {'redis peak MB':>14} {'dropped':>8}")
    for (n, mode), r in results.items():
        line = f"{n:>10} {r['records']:>9} {mode:>7} {r['wall_s']:>8.1f} {r['rss_mb']:>12.0f}"
        line += f" {r['traced_mb']:>10.1f}" if args.tracemalloc else ""
        line += f" {r.get('redis_peak_mb', 0):>14.0f} {r['dropped']:>8}"
        print(line)
    small, large = min(args.partitions), max(args.partitions)
    if small != large:
        print(f"\ngrowth {small} -> {large} partitions ({large / small:.0f}x the corpus):")
        for mode in args.modes:
            a, b = results[small, mode], results[large, mode]
            traced = f", traced {b['traced_mb'] / a['traced_mb']:.2f}x" if args.tracemalloc else ""
            print(f"  {mode:>7}: RSS {b['rss_mb'] / a['rss_mb']:.2f}x{traced}, wall {b['wall_s'] / a['wall_s']:.2f}x")
    if set(args.modes) == {"memory", "redis"}:
        for n in sorted(args.partitions):
            m, r = results[n, "memory"], results[n, "redis"]
            same = "identical files" if m["sha"] == r["sha"] else "FILES DIFFER"
            print(f"  {n} partitions: redis/memory RSS {r['rss_mb'] / m['rss_mb']:.2f}x, "
                  f"wall {r['wall_s'] / m['wall_s']:.2f}x, {same}, redis keys left {r['redis_keys_left']}")  # fmt: skip


if __name__ == "__main__":
    main()
