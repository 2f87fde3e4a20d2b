"""Scaling out: what one run per partition, one single run and multi-run backfills cost, projected to 5,000 repos.

    .venv/bin/python benchmarks/scale.py [--partitions 500] [--per-run 50] [--concurrent 2]
        [--sample-runs 50] [--skip-real] [--real-home .dagster_home] [--workdir /tmp/scale_bench]

A cheap per-repo asset (benchmarks/scale_defs.py: a 64 KiB file per partition, the real assets' partition
and backfill-policy mechanics) is materialized over P synthetic partitions three ways, each on a fresh
DAGSTER_HOME (SQLite; the repo's dagster.yaml plus ``concurrency: runs: max_concurrent_runs: C``; the
default run coordinator is the QueuedRunCoordinator):

(a) one run per partition: a backfill of ``multi_run(1)`` launched as the UI does (GraphQL
    ``launchPartitionBackfill`` on a real webserver + daemon). P separate runs are slow on a small machine,
    so by default a sample of ``--sample-runs`` partitions is backfilled and the time per run scaled to P
    (labelled "projected"); ``--sample-runs 0`` runs all P.
(b) one single run over all P partitions: ``dg.materialize`` with partition-range tags, in process, as the
    main job (`bash .ci/main`) runs each per-repo stage.
(c) multi-run in parallel: a backfill of P partitions with ``multi_run(--per-run)``, through the daemon and
    the run queue with C concurrent runs, timed from the launch to the backfill's completion.

For the daemon ways two times are taken: launch → the backfill reports completion (what a user waits; the
backfill daemon looks every 30 s, so up to 30 s of it is its polling) and the execution span, first run
queued → last run finished (run records), which the model below uses.

Model (measured: T_a, T_b, T_c, the real stages' step times, import times; the rest derived or projected):
    w = T_b / P                           per-partition work inside a run (the asset's own work plus
                                          Dagster's two event-log writes per partition: planned, materialized)
    o = T_a_span · C / R_a − w            per-run overhead: queue wait, process start-ups, code loads, run events
    wall(N, W) = (N · w + R · o) / min(W, R)
where R is the number of runs (N, 1, or ceil(N / per-run)) and W the workers, i.e. run slots
(max_concurrent_runs = W). With R ≥ W this is N·w / W + R·o / min(W, max_concurrent_runs); a run is one
process, so a single run's work cannot spread over workers and its wall is N·w + o whatever W is. The
model's prediction of (c) on this machine is printed next to the measured (c). For the real stages w is
their step time per partition (assets and their checks) in the latest successful ranged runs of a
materialized instance (`bash .ci/main` writes .dagster_home; without one, run it or pass --skip-real), on
the Go distribution; their o is the cheap o plus the extra code loading: each run worker and each step
process (default multiprocess executor) imports the definitions, gocoder_assets.definitions instead of
this benchmark's (both import times measured in a fresh interpreter).

Servers (webserver, daemon) are stopped on exit, Ctrl-C and SIGTERM (runs in flight finish on their own).
Instances and files go to --workdir.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parent.parent
MODULE = "benchmarks.scale_defs"
REPOS_AT_SCALE = 5000
WORKERS = (1, 4, 16)
REAL_GROUPS = (("raw_prs", "categorized_records"), ("packed_shards",))  # one run per group, as the main job

LAUNCH = """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message stack } } }"""
STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  __typename ... on PartitionBackfill { status } ... on PythonError { message } } }"""
RUNNING = {"REQUESTED", "CANCELING", "FAILING"}


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def keys_for(n: int) -> list[str]:
    return [f"synthetic/repo{i:05d}" for i in range(n)]


def fresh_home(workdir: Path, name: str, concurrent: int) -> Path:
    """A new instance folder holding the repo's dagster.yaml with the run queue's limit set to ``concurrent``."""
    import yaml  # noqa: PLC0415

    home = workdir / name
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text()) or {}
    if "run_queue" in config:  # older spelling; Dagster rejects it next to concurrency.runs
        config["run_queue"]["max_concurrent_runs"] = concurrent
    elif "max_concurrent_runs" in (config.get("run_coordinator", {}).get("config") or {}):
        config["run_coordinator"]["config"]["max_concurrent_runs"] = concurrent
    else:
        config.setdefault("concurrency", {}).setdefault("runs", {})["max_concurrent_runs"] = concurrent
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


@dataclass
class Way:
    """One execution way's measurement; ``span`` is the execution span used by the model."""

    label: str
    runs: int  # runs actually executed
    partitions: int  # partitions actually materialized
    wall: float  # launch → completion as a user sees it
    span: float  # first run queued → last run finished (daemon ways); = wall in process
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after (other work on the machine)
    run_median: float = 0.0  # median run, start → end (daemon ways)
    step_median: float = 0.0  # median of a run's step time, the asset's own work


@contextlib.contextmanager
def instance_at(home: Path) -> Iterator[dg.DagsterInstance]:
    """The instance at ``home`` (its dagster.yaml's defaults read DAGSTER_HOME, so it is set meanwhile)."""
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            yield instance
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous


def add_partitions(home: Path, keys: list[str]) -> None:
    from benchmarks.scale_defs import SCALE_PARTITIONS  # noqa: PLC0415

    with instance_at(home) as instance:
        instance.add_dynamic_partitions(SCALE_PARTITIONS, keys)


def backfill(home: Path, workdir: Path, asset: str, keys: list[str], per_run: int, timeout: float) -> Way:
    """Launch a backfill of ``asset`` over ``keys`` through GraphQL on a real webserver + daemon; wait for it."""
    from gocoder_assets_tests.servers import dagster_deployment  # noqa: PLC0415

    add_partitions(home, keys)
    env = {"GOCODER_SCALE_DIR": str(workdir / f"files_{asset}"), "GOCODER_SCALE_PER_RUN": str(per_run),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    with dagster_deployment(home, env, module=MODULE) as deployment:
        params = {"partitionNames": keys, "assetSelection": [{"path": [asset]}], "title": f"scale {asset}"}
        started = time.time()
        launched = deployment.graphql(LAUNCH, {"p": params})["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"launchPartitionBackfill: {launched}")
        backfill_id, status = launched["backfillId"], "REQUESTED"
        while status in RUNNING:
            if time.time() - started > timeout:
                raise TimeoutError(f"backfill {backfill_id} of {asset} still {status} after {timeout:.0f}s")
            time.sleep(2)
            answer = deployment.graphql(STATUS, {"id": backfill_id})["partitionBackfillOrError"]
            status = answer.get("status") or f"{answer['__typename']}: {answer.get('message')}"
        wall = time.time() - started
    if status != "COMPLETED_SUCCESS":
        raise RuntimeError(f"backfill {backfill_id} of {asset} ended {status}; logs in {home}")
    with instance_at(home) as instance:
        records = instance.get_run_records(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        done = instance.get_materialized_partitions(dg.AssetKey(asset))
        step_s = [sum(t.end_time - t.start_time for t in instance.get_run_step_stats(r.dagster_run.run_id))
                  for r in records]  # fmt: skip
    failed = [r.dagster_run.run_id for r in records if r.dagster_run.status != dg.DagsterRunStatus.SUCCESS]
    if failed or not set(keys) <= done:
        raise RuntimeError(f"{asset}: runs not successful {failed}, {len(set(keys) - done)} partitions missing")
    span = max(r.end_time for r in records) - min(r.create_timestamp.timestamp() for r in records)
    run_s = statistics.median(r.end_time - r.start_time for r in records)
    return Way(asset, len(records), len(keys), wall, span, run_median=run_s, step_median=statistics.median(step_s))


def single_run(home: Path, workdir: Path, keys: list[str]) -> Way:
    """(b): one run over the whole range, in process (what the main job does per stage)."""
    from benchmarks.scale_defs import ScaleStorage, scale_single  # noqa: PLC0415
    from gocoder_assets.dagster_internal import range_tags  # noqa: PLC0415

    add_partitions(home, keys)
    storage = ScaleStorage(root=str(workdir / "files_scale_single"))
    with instance_at(home) as instance:
        started = time.time()
        result = dg.materialize([scale_single], instance=instance, resources={"scale_storage": storage},
                                tags=range_tags(keys[0], keys[-1]))  # fmt: skip
        wall = time.time() - started
        if not result.success or not set(keys) <= instance.get_materialized_partitions(scale_single.key):
            raise RuntimeError("single run did not materialize every partition")
    return Way("scale_single", 1, len(keys), wall, wall)


def loaded(measure: Callable[[], Way]) -> Way:
    """``measure()`` with the machine's 1-minute load average before and after noted on the result."""
    before = os.getloadavg()[0]
    way = measure()
    way.load = (before, os.getloadavg()[0])
    return way


def import_seconds(module: str, repeats: int = 3) -> float:
    """Median wall of a fresh interpreter importing ``module`` (what each run worker pays to load the code)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True, cwd=ROOT)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@dataclass
class Stage:
    assets: tuple[str, ...]
    partitions: int
    asset_s: float  # the assets' own steps
    checks_s: float  # their checks' steps, same run
    run_s: float  # the run's wall, start to end
    run_id: str
    steps: int  # steps in the run: each is a process of its own under the default multiprocess executor


def real_stages(home: Path) -> tuple[list[Stage], str]:
    """The latest successful run of each per-repo stage in the instance at ``home``, with its step times."""
    from gocoder_assets.dagster_internal import run_partition_range  # noqa: PLC0415
    from gocoder_assets.partitions import REPOS  # noqa: PLC0415

    if not (home / "dagster.yaml").exists():
        raise FileNotFoundError(f"no materialized instance at {home} (run `bash .ci/main`)")
    stages, when = [], ""
    with instance_at(home) as instance:
        keys = instance.get_dynamic_partitions(REPOS)
        records = instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))
        for group in REAL_GROUPS:
            for record in records:  # newest first
                steps = {s.step_key: s for s in instance.get_run_step_stats(record.dagster_run.run_id)}
                if not set(group) <= set(steps):
                    continue
                span = run_partition_range(record.dagster_run.tags)
                if span is None:
                    continue
                count = keys.index(span[1]) - keys.index(span[0]) + 1
                checks = [s for k, s in steps.items() if k not in group and k.startswith(group)]
                own = sum(steps[a].end_time - steps[a].start_time for a in group)
                run_s = record.end_time - record.start_time
                checks_s = sum(s.end_time - s.start_time for s in checks)
                stages.append(Stage(group, count, own, checks_s, run_s, record.dagster_run.run_id, len(steps)))
                when = max(when, datetime.datetime.fromtimestamp(record.end_time, datetime.UTC).strftime("%Y-%m-%d"))
                break
            else:
                raise LookupError(f"no successful ranged run of {group} in {home}")
    return stages, when


def wall_at_scale(w: float, o: float, runs: int, workers: int, n: int = REPOS_AT_SCALE) -> float:
    return (n * w + runs * o) / min(workers, runs)


def hms(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt, so the deployments' finally blocks stop webserver and daemon.

    Both are set, even where the shell started this process with SIGINT ignored (a background job): Dagster's
    in-process execution restores SIGINT's handler afterwards and points SIGTERM at it too.
    """
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, signal.default_int_handler)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=500)
    parser.add_argument("--per-run", type=int, default=50, help="multi_run(N) for way (c)")
    parser.add_argument("--concurrent", type=int, default=2, help="max_concurrent_runs for the daemon ways")
    parser.add_argument("--sample-runs", type=int, default=50, help="way (a) on this many partitions; 0 = all")
    parser.add_argument("--skip-real", action="store_true", help="skip the real stages' per-partition cost")
    parser.add_argument("--real-home", type=Path, default=ROOT / ".dagster_home")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/scale_bench"))
    parser.add_argument("--timeout", type=float, default=3600, help="per backfill, seconds")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=dg.BetaWarning)  # backfill_policy is beta in Dagster 1.13
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    command = shlex.join(["python", "benchmarks/scale.py", *sys.argv[1:]])
    p, c = args.partitions, args.concurrent
    keys = keys_for(p)
    sample = keys[: args.sample_runs] if 0 < args.sample_runs < p else keys
    log = lambda text: print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)  # noqa: E731
    args.workdir.mkdir(parents=True, exist_ok=True)
    with interrupts_raise():
        log(f"(b) single run over {p} partitions, in process")
        b = loaded(lambda: single_run(fresh_home(args.workdir, "home_b", c), args.workdir, keys))
        log(f"(b) {b.wall:.1f}s; (c) multi_run({args.per_run}) backfill of {p}, {c} concurrent")
        cw = loaded(lambda: backfill(fresh_home(args.workdir, "home_c", c), args.workdir, "scale_multi", keys,
                                     args.per_run, args.timeout))  # fmt: skip
        log(f"(c) {cw.wall:.1f}s ({cw.runs} runs); (a) one run per partition, {len(sample)} runs")
        a = loaded(lambda: backfill(fresh_home(args.workdir, "home_a", c), args.workdir, "scale_per_partition",
                                    sample, args.per_run, args.timeout))  # fmt: skip
        log(f"(a) {a.wall:.1f}s ({a.runs} runs)")
        real = None
        if not args.skip_real:
            real = real_stages(args.real_home.resolve())
            log("import times: benchmark definitions vs gocoder_assets.definitions")
            imports = (import_seconds("gocoder_assets.definitions"), import_seconds(MODULE))
    w = b.span / p
    o = a.span * c / a.runs - w
    print(report(args, command, keys, sample, a, b, cw, w, o, real, imports if real else (0.0, 0.0)))


def report(
    args: argparse.Namespace,
    command: str,
    keys: list[str],
    sample: list[str],
    a: Way,
    b: Way,
    cw: Way,
    w: float,
    o: float,
    real: tuple[list[Stage], str] | None,
    imports: tuple[float, float],
) -> str:
    p, c, per_run = len(keys), args.concurrent, args.per_run
    home = args.real_home.resolve()
    shown_home = home.relative_to(ROOT) if home.is_relative_to(ROOT) else home
    sampled = len(sample) < p
    a_per = a.span / a.runs  # wall seconds per partition with C runs at a time
    a_label = f"(a) one run per partition, {c} concurrent" + (f" ({len(sample)}-run sample, projected)" if sampled
                                                             else "")  # fmt: skip
    rows = [  # label, runs, wall, span, s/partition, load
        # The span scales with the runs; the backfill daemon's pick-up and completion polling do not.
        (a_label, p, a.wall - a.span + a_per * p, a_per * p, a_per, a.load),
        ("(b) single run, in process", 1, b.wall, b.span, b.span / p, b.load),
        (f"(c) multi-run({per_run}) backfill, {c} concurrent", cw.runs, cw.wall, cw.span, cw.span / p, cw.load),
    ]
    out = [f"Scale benchmark, {datetime.datetime.now(datetime.UTC):%Y-%m-%d}: {cpu_model()}, "
           f"{os.cpu_count()} cores, SQLite instance, QueuedRunCoordinator (max_concurrent_runs = {c})",
           f"`{command}`", "",
           f"Cheap per-repo asset (64 KiB file per partition), {p} synthetic partitions:", "",
           "| way | runs | wall, launch → done (s) | execution span (s) | s / partition | vs (b) | load avg |",
           "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    base = b.span / p
    for label, runs, wall, span, per, load in rows:
        out.append(f"| {label} | {runs} | {wall:.1f} | {span:.1f} | {per:.4f} | {per / base:.1f}× "
                   f"| {load[0]:.1f} → {load[1]:.1f} |")  # fmt: skip
    predicted = wall_at_scale(w, o, cw.runs, c, p)
    o_c = (cw.span * min(c, cw.runs) - p * w) / cw.runs
    out += ["", f"Derived: per-partition work w = T_b / P = {w * 1000:.1f} ms; per-run overhead "
            f"o = T_a · C / R_a − w = {o:.2f} s (R_a = {a.runs} runs measured). Model check: (c) predicted "
            f"(P·w + R·o) / min(C, R) = {predicted:.1f} s, measured span {cw.span:.1f} s; the per-run overhead (c) "
            f"implies, (span_c · min(C, R_c) − P·w) / R_c, is {o_c:.2f} s. A one-partition run in (a) took "
            f"{a.run_median:.1f} s start → end (median), of which {a.step_median:.2f} s in its step; the rest is "
            "process start-ups (run worker, step process), code loads and run events, and o adds the queue's wait "
            "for a free slot."]  # fmt: skip
    ways = [("one run per partition", lambda n: n), ("single run", lambda n: 1),
            (f"multi-run({per_run})", lambda n: math.ceil(n / per_run))]  # fmt: skip
    n = REPOS_AT_SCALE
    # (label, [(w, o, runs) per stage group]); groups run one after another, as the stages depend on each other.
    projected = [(f"cheap asset, {name}", [(w, o, runs(n))]) for name, runs in ways]
    if real:
        stages, when = real
        out += ["", f"Real per-repo stages on the Go distribution (instance `{shown_home}`, runs of {when}; "
                "step times, assets + their checks, one run per group as `bash .ci/main` runs them):", "",
                "| stage | partitions | asset steps (s) | check steps (s) | run wall (s) | s / partition |",
                "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        per_stage = [(s.asset_s + s.checks_s) / s.partitions for s in stages]
        for s, per in zip(stages, per_stage, strict=True):
            out.append(f"| {' + '.join(s.assets)} | {s.partitions} | {s.asset_s:.1f} | {s.checks_s:.1f} "
                       f"| {s.run_s:.1f} | {per:.3f} |")  # fmt: skip
        real_import, cheap_import = imports
        # The cheap runs' o holds 2 code loads (run worker + its one step); a real run loads 1 + steps times.
        o_real = [o + (1 + s.steps) * real_import - 2 * cheap_import for s in stages]
        pairs = list(zip(stages, o_real, strict=True))
        out += ["", f"Real w = {sum(per_stage):.3f} s per repository over the {len(stages)} stage groups. Real o "
                "per run = o + (1 + steps) · t_real − 2 · t_cheap, with t_real = "
                f"{real_import:.2f} s and t_cheap = {cheap_import:.2f} s a fresh interpreter importing "
                "gocoder_assets.definitions and the benchmark's definitions (measured; each run worker and "
                "each step process loads the code): "
                + ", ".join(f"{' + '.join(s.assets)} ({s.steps} steps) {o_g:.1f} s" for s, o_g in pairs)
                + " — an upper bound, as steps without dependencies start side by side."]  # fmt: skip
        costs = list(zip(per_stage, o_real, strict=True))
        projected += [(f"real stages, {name}", [(w_g, o_g, runs(n)) for w_g, o_g in costs]) for name, runs in ways]
    out += ["", f"Projected wall for N = {n:,} repositories: Σ over stage groups of (N · w + R · o) / min(W, R), "
            "W workers = run slots (max_concurrent_runs = W), R runs; a run is one process, so a single run "
            "does not spread over workers:", "",
            "| way | runs R | " + " | ".join(f"{k} worker{'s' * (k > 1)}" for k in WORKERS) + " |",
            "|---|---:|" + "---:|" * len(WORKERS)]  # fmt: skip
    for label, groups in projected:
        cells = [hms(sum(wall_at_scale(w_, o_, runs, k, n) for w_, o_, runs in groups)) for k in WORKERS]
        out.append(f"| {label} | {sum(g[2] for g in groups):,} | " + " | ".join(cells) + " |")
    out += ["", "Measured: the (a), (b), (c) walls and spans, the real stages' step times, the import times. "
            + ("(a) ran on a sample and is scaled to P. " if sampled else "")
            + "Derived: w, o. Projected: every 5,000-repository figure."]  # fmt: skip
    return "\n".join(out)


if __name__ == "__main__":
    main()
