"""The main job: materialize the whole graph, every partition, through Dagster itself.

Six runs, in dependency order; each per-repo stage is ONE run over the full partition
range (the assets' single-run backfill policy), not one run per repository. Runs and
materializations are recorded in the instance at $DAGSTER_HOME, so `dagster dev` shows
them afterwards. Equivalent CLI:

    dagster asset materialize -m gocoder_assets.definitions --select repo_list
    dagster asset materialize -m gocoder_assets.definitions --select raw_prs,categorized_records \\
        --partition-range 'FIRST...LAST'
    …
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from gocoder_assets.definitions import ASSETS, CHECKS, resources_from_env
from gocoder_assets.gguf_model.assets import GGUF_NAME
from gocoder_assets.partitions import REPOS
from gocoder_assets.storage import Layout

# (assets, partitioned over all repos?)
STAGES: tuple[tuple[tuple[str, ...], bool], ...] = (
    (("repo_list",), False),
    (("raw_prs", "categorized_records"), True),
    (("dedup_index", "tokenizer_model"), False),
    (("packed_shards",), True),
    (("checkpoint", "gguf_model"), False),
    # After the model: license_manifest only needs the shards, but the card needs both, and one run for the
    # two keeps the release artifacts (licenses.csv, MODEL_CARD.md) describing the same corpus.
    (("license_manifest", "model_card"), False),
)


def stage_run_config(run_config: Mapping[str, Any], assets: tuple[str, ...]) -> dict[str, Any]:
    """The slice of ``{"ops": {...}}`` that belongs to this stage (Dagster rejects the rest)."""
    ops = run_config.get("ops", {})
    return {"ops": {name: ops[name] for name in assets if name in ops}}


def materialize_all(
    instance: dg.DagsterInstance,
    resources: Mapping[str, Any],
    run_config: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
    until: str | None = None,
) -> list[dg.ExecuteInProcessResult]:
    """Run the stages in order (stopping after the stage holding ``until``, if given).

    A failing blocking check fails its run, and `dg.materialize` raises: later stages never start.
    """
    results = []
    for assets, partitioned in STAGES:
        tags = {}
        if partitioned:
            keys = instance.get_dynamic_partitions(REPOS)
            tags = {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
        started = time.monotonic()
        result = dg.materialize(
            [*ASSETS, *CHECKS],
            selection=list(assets),
            instance=instance,
            resources=resources,
            run_config=stage_run_config(run_config or {}, assets),
            tags=tags,
        )
        scope = f" over {len(keys)} partitions" if partitioned else ""
        log(f"materialized {', '.join(assets)}{scope} in {time.monotonic() - started:.1f}s")
        results.append(result)
        if until in assets:
            break
    return results


def contiguous_ranges(keys: list[str], wanted: set[str]) -> list[tuple[str, str]]:
    """Maximal runs of ``wanted`` keys in partition order, as (first, last) ranges."""
    ranges, start, prev = [], None, None
    for key in [*keys, None]:
        if key in wanted:
            start, prev = start or key, key
        elif start is not None:
            ranges.append((start, prev))
            start = None
    return ranges


def stale_partitions(instance: dg.DagsterInstance, asset: str) -> set[str]:
    """Partitions of ``asset`` that are missing or stale (e.g. after a tokenizer change)."""
    # Dagster's own resolver, the one the UI uses; internal API, pinned by dagster==1.13.27.
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView  # noqa: PLC0415
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph  # noqa: PLC0415
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus  # noqa: PLC0415
    from dagster._core.definitions.temporal_context import TemporalContext  # noqa: PLC0415
    from dagster._time import get_current_datetime  # noqa: PLC0415

    graph = AssetGraph.from_assets([*ASSETS, *CHECKS])
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)
    keys = instance.get_dynamic_partitions(REPOS)
    return {k for k in keys if resolver.get_status(dg.AssetKey(asset), k) != StaleStatus.FRESH}


def refresh_stale(
    instance: dg.DagsterInstance,
    resources: Mapping[str, Any],
    assets: tuple[str, ...] = ("raw_prs", "categorized_records", "packed_shards"),
    log: Callable[[str], None] = print,
) -> dict[str, int]:
    """Re-materialize only the stale or missing partitions of the per-repo assets, in ranges.

    What the UI's "Materialize stale" cannot do for partitions in bulk (dagster#22553).
    """
    refreshed = {}
    for asset in assets:
        keys = instance.get_dynamic_partitions(REPOS)
        stale = stale_partitions(instance, asset)
        for first, last in contiguous_ranges(keys, stale):
            tags = {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
            dg.materialize([*ASSETS, *CHECKS], selection=[asset], instance=instance, resources=resources, tags=tags)
        log(f"{asset}: re-materialized {len(stale)} stale or missing partitions")
        refreshed[asset] = len(stale)
    return refreshed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=None, help="model preset (tiny, 125m, 350m)")
    parser.add_argument("--max-steps", type=int, default=None, help="training steps")
    parser.add_argument("--vocab-size", type=int, default=None, help="tokenizer vocabulary size")
    parser.add_argument(
        "--refresh-stale", action="store_true", help="only re-materialize stale/missing per-repo partitions"
    )
    args = parser.parse_args(argv)
    if args.refresh_stale:
        with dg.DagsterInstance.get() as instance:
            refresh_stale(instance, resources_from_env())
        return 0
    ops: dict[str, Any] = {}
    train = {k: v for k, v in {"preset": args.preset, "max_steps": args.max_steps}.items() if v is not None}
    if train:
        ops["checkpoint"] = {"config": train}
    if args.vocab_size:
        ops["tokenizer_model"] = {"config": {"vocab_size": args.vocab_size}}
    resources = resources_from_env()
    started = time.monotonic()
    with dg.DagsterInstance.get() as instance:
        materialize_all(instance, resources, {"ops": ops})
    gguf = Path(resources["storage"].root).resolve() / "gguf_model" / GGUF_NAME
    card = Layout(resources["storage"].root).model_card_file
    print(f"done in {time.monotonic() - started:.0f}s; GGUF model: {gguf}; model card: {card}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
