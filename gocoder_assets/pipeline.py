"""The main job: materialize the whole graph, every partition, through Dagster itself.

Nine stages in dependency order. A per-repo stage runs as ranges of at most ``partitions_per_run``
partitions (the assets' ``BackfillPolicy.multi_run``, GOCODER_PARTITIONS_PER_RUN), one Dagster run per
range, so the job can say how far it is after each: stage, partitions done of total, rate, ETA. Runs and
materializations are recorded in the instance at $DAGSTER_HOME, so `dagster dev -h 127.0.0.1` shows them
afterwards. Dagster's own DEBUG event stream stays available with ``--verbose``; without it only
warnings and errors reach the console, plus the training's own INFO lines (settings, step, loss).

By hand, the same work is a UI backfill per stage (Materialize… → All → Launch backfill), cut into the same
runs by the backfill policy; `dagster asset materialize --partition KEY` does one partition at a time (its
``--partition-range`` needs a single-run backfill policy, which the per-repo assets no longer have).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from gocoder_assets.dagster_internal import range_tags
from gocoder_assets.definitions import ASSETS, CHECKS, resources_from_env
from gocoder_assets.partitions import REPOS, SCALE
from gocoder_assets.refresh import refresh_stale
from gocoder_assets.storage import Layout


def no_sft_train_pairs(layout: Layout, keys: list[str]) -> str | None:
    """Why the fine-tuning stage has nothing to learn from (None when it has): sft_pairs holds no train pair."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    files = [layout.sft_pairs_file(k) for k in keys]
    pairs = sum(
        pq.read_table(f, columns=["split"]).column("split").to_pylist().count("train") for f in files if f.exists()
    )
    if pairs:
        return None
    return (
        "sft_pairs holds no train pair (the Go distribution has no pull requests: collect from git clones with "
        "GOCODER_CLONES_DIR, or from GitHub, to fine-tune)"
    )


def no_held_out_repo(layout: Layout, keys: list[str]) -> str | None:
    """Why there is nothing to evaluate on: one repository is all train (two or more always give a val one)."""
    return None if len(keys) >= 2 else "one repository is all train: evaluation needs a held-out one"


@dataclasses.dataclass(frozen=True)
class Stage:
    """Assets run together; ``partitioned``: over every repository, in ranges; ``skip``: why not to run, or None."""

    assets: tuple[str, ...]
    partitioned: bool = False
    skip: Callable[[Layout, list[str]], str | None] | None = None


STAGES: tuple[Stage, ...] = (
    Stage(("repo_list",)),
    Stage(("raw_prs", "categorized_records"), partitioned=True),
    Stage(("dedup_index", "tokenizer_model")),
    Stage(("packed_shards",), partitioned=True),
    Stage(("checkpoint", "gguf_model")),
    # After the model: license_manifest only needs the shards, but the card needs both, and one run for the
    # two keeps the release artifacts (licenses.csv, MODEL_CARD.md) describing the same corpus.
    Stage(("license_manifest", "model_card")),
    # Fine-tuning: products of their own (the base model does not read them), after the release artifacts so a
    # failure there never holds back the model and its card.
    Stage(("sft_pairs",), partitioned=True),
    Stage(("sft_checkpoint", "sft_gguf_model"), skip=no_sft_train_pairs),
    # Last: it reads every model there is, so the report compares base and fine-tuned when both exist.
    Stage(("eval_report",), skip=no_held_out_repo),
)
# Console level of Dagster's own logger without --verbose: a failing step's error and stack trace (and
# warnings) still print, the per-event DEBUG stream does not.
QUIET_LOG_LEVEL = "WARNING"
# Stages whose INFO lines are their own progress, shown at INFO in quiet mode too: training reports its
# settings, then step, loss and tokens/s every few steps; it is the stage that can take hours.
CHATTY_STAGES = frozenset({"checkpoint", "sft_checkpoint"})


class StageFailed(dg.DagsterError):
    """A stage's run failed; says which stage, which partition range and which run."""


def stage_run_config(
    run_config: Mapping[str, Any], assets: tuple[str, ...], log_level: str | None = None
) -> dict[str, Any]:
    """The slice of ``{"ops": {...}}`` that belongs to this stage (Dagster rejects the rest), plus the
    console logger's level when one is given (None: Dagster's default, DEBUG)."""
    ops = run_config.get("ops", {})
    config: dict[str, Any] = {"ops": {name: ops[name] for name in assets if name in ops}}
    if log_level:
        config["loggers"] = {"console": {"config": {"log_level": log_level}}}
    return config


def chunks(keys: list[str], size: int) -> list[list[str]]:
    """``keys`` in order, cut into consecutive ranges of at most ``size``."""
    if size < 1:
        raise ValueError(f"partitions per run must be at least 1, not {size}")
    return [keys[i : i + size] for i in range(0, len(keys), size)]


def duration(seconds: float) -> str:
    """``45s``, ``26m04s``, ``3h07m``: short enough for a progress line."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def progress_line(label: str, done: int, total: int, elapsed: float) -> str:
    """``[2/6] raw_prs, categorized_records: 150/5000 partitions (3.1/s), ETA 26m04s``."""
    rate = done / elapsed if elapsed > 0 else 0.0
    tail = f"done in {duration(elapsed)}" if done >= total else (
        f"ETA {duration((total - done) / rate)}" if rate > 0 else "ETA unknown"
    )  # fmt: skip
    return f"{label}: {done}/{total} partitions ({rate:.1f}/s), {tail}"


def _latest_run_id(instance: dg.DagsterInstance) -> str | None:
    runs = instance.get_runs(limit=1)
    return runs[0].run_id if runs else None


def _failure(instance: dg.DagsterInstance, where: str, error: Exception, before: str | None) -> StageFailed:
    """What failed, in one line a person can act on: the stage, the range, the run (when the failure got as far
    as creating one: ``before`` is the latest run id before it), the error's message."""
    cause: BaseException = error
    for _ in range(10):  # Dagster wraps the user's exception (user_exception, __cause__); unwrap it
        inner = getattr(cause, "user_exception", None) or cause.__cause__
        if inner is None:
            break
        cause = inner
    message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    latest = _latest_run_id(instance)
    run = f" (run {latest})" if latest and latest != before else ""
    return StageFailed(f"{where} failed{run}: {type(cause).__name__}: {message}")


def materialize_all(
    instance: dg.DagsterInstance,
    resources: Mapping[str, Any],
    run_config: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
    until: str | None = None,
    *,
    partitions_per_run: int | None = None,
    log_level: str | None = None,
) -> list[dg.ExecuteInProcessResult]:
    """Run the stages in order (stopping after the stage holding ``until``, if given); one result per run.

    Per-repo stages run as ranges of ``partitions_per_run`` (default: ``SCALE.partitions_per_run``), each
    logged as it finishes. A failing run (a step error, a failing blocking check) raises ``StageFailed``
    naming the stage and range, after ``log`` got the same line: later stages never start.
    """
    size = partitions_per_run or SCALE.partitions_per_run
    results = []
    layout = resources["storage"].layout()
    for number, stage in enumerate(STAGES, start=1):
        assets, partitioned = stage.assets, stage.partitioned
        label = f"[{number}/{len(STAGES)}] {', '.join(assets)}"
        why_not = stage.skip(layout, list(instance.get_dynamic_partitions(REPOS))) if stage.skip else None
        if why_not:
            log(f"{label}: skipped: {why_not}")
            if until in assets:
                break
            continue
        level = log_level
        if level and CHATTY_STAGES & set(assets) and logging.getLevelName(level.upper()) > logging.INFO:
            level = "INFO"
        config = stage_run_config(run_config or {}, assets, level)
        started = time.monotonic()
        if partitioned:
            keys = list(instance.get_dynamic_partitions(REPOS))
            ranges = chunks(keys, size)
            log(f"{label}: {len(keys)} partitions in {len(ranges)} run(s) of at most {size}")
        else:
            keys, ranges = [], [[]]
            log(f"{label}: running")
        done = 0
        for part in ranges:
            where = f"{label}, partitions {part[0]}...{part[-1]}" if part else label
            before = _latest_run_id(instance)
            try:
                result = dg.materialize(
                    [*ASSETS, *CHECKS],
                    selection=list(assets),
                    instance=instance,
                    resources=resources,
                    run_config=config,
                    tags=range_tags(part[0], part[-1]) if part else {},
                )
            except Exception as error:
                failure = _failure(instance, where, error, before)
                log(str(failure))
                raise failure from error
            results.append(result)
            done += len(part)
            elapsed = time.monotonic() - started
            log(progress_line(label, done, len(keys), elapsed) if part else f"{label}: done in {duration(elapsed)}")
        if until in assets:
            break
    return results


def artifacts_summary(root: Path | str, instance: dg.DagsterInstance) -> list[str]:
    """Where everything the job made lies, and how to look at the runs."""
    layout = Layout(root)
    ggufs = sorted(layout.gguf_dir.glob("*.gguf"))
    sft_ggufs = sorted(layout.sft_gguf_dir.glob("*.gguf"))
    home = instance.root_directory
    lines = [
        f"  data folder       {Path(root).resolve()}",
        *(f"  GGUF model        {p.resolve()}" for p in ggufs),
        *(f"  fine-tuned GGUF   {p.resolve()}" for p in sft_ggufs),
        f"  model card        {layout.model_card_file.resolve()}",
        f"  eval report       {(layout.eval_report_dir / 'report.md').resolve()}",
        f"  licenses.csv      {layout.license_manifest_file.resolve()}",
        f"  Dagster instance  {home or '(temporary: set DAGSTER_HOME to keep runs)'}",
    ]
    if home:
        lines.append(f"Look at the runs, partitions and checks:  DAGSTER_HOME={home} dagster dev -h 127.0.0.1")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=None, help="model preset (tiny, 125m, 350m)")
    parser.add_argument("--max-steps", type=int, default=None, help="training steps")
    parser.add_argument("--vocab-size", type=int, default=None, help="tokenizer vocabulary size")
    parser.add_argument(
        "--refresh-stale", action="store_true", help="only re-materialize stale/missing per-repo partitions"
    )
    parser.add_argument("--verbose", action="store_true", help="print Dagster's full (DEBUG) event stream")
    args = parser.parse_args(argv)
    level = None if args.verbose else QUIET_LOG_LEVEL
    if args.refresh_stale:
        quiet = {"loggers": {"console": {"config": {"log_level": level}}}} if level else {}
        with dg.DagsterInstance.get() as instance:
            refresh_stale(instance, resources_from_env(), [*ASSETS, *CHECKS], log=_print, run_config=quiet)
        return 0
    ops: dict[str, Any] = {}
    train = {k: v for k, v in {"preset": args.preset, "max_steps": args.max_steps}.items() if v is not None}
    if train:
        ops["checkpoint"] = {"config": train}
    if args.vocab_size:
        ops["tokenizer_model"] = {"config": {"vocab_size": args.vocab_size}}
    resources = resources_from_env()
    started = time.monotonic()
    if not args.verbose:  # transformers' per-file progress bars (save/load) would break up the progress lines
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    with dg.DagsterInstance.get() as instance:
        try:
            materialize_all(instance, resources, {"ops": ops}, log=_print, log_level=level)
        except StageFailed:  # already printed, with the stage, range and run
            stopped = duration(time.monotonic() - started)
            _print(f"stopped after {stopped}; the run's logs: `dagster dev -h 127.0.0.1` → Runs → the run id")
            return 1
        _print(f"done in {duration(time.monotonic() - started)}. Artifacts:")
        for line in artifacts_summary(resources["storage"].root, instance):
            _print(line)
    return 0


def _print(line: str) -> None:
    print(line, flush=True)  # progress must show as it happens, also through a pipe (CI logs)


if __name__ == "__main__":
    sys.exit(main())
