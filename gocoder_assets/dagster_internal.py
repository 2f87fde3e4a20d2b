"""Everything gocoder takes from Dagster's internals, in one place, and why (pinned: dagster==1.13.27).

Dagster's public API covers how assets, checks and automation are declared; four things gocoder needs
have no public form yet:

- **Partition-range tags.** ``dg.materialize`` takes one ``partition_key``; a ranged run (what a
  ``BackfillPolicy`` run and ``dagster asset materialize --partition-range`` execute) is asked for with
  these tags. The tag names are part of Dagster's run format; only the constants are internal.
- **Per-partition check state.** The cross-run block (``checks.require_upstream_checks_passed``) needs the
  latest result of a partitioned check for each partition a run reads. Automated runs get the same
  guarantee from the public ``AutomationCondition.all_deps_blocking_checks_passed()``; runs launched by
  hand (UI, CLI) are only covered by asking the event log directly.
- **Check evaluation targets.** A partitioned check result yielded per partition from a ranged run names
  the materialization it judged; that target type has no public constructor.
- **Stale partitions.** The resolver the UI uses for its "stale" badges. gocoder's own rules (the automation
  conditions, and ``refresh.py`` for users without the daemon) are public; the tests hold them against
  what the UI would show.

If an upgrade breaks one of these, this module is the only place to fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)


def range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags asking for the partition range ``first...last`` (in the partitions definition's order)."""
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


def run_partition_range(tags: Mapping[str, str]) -> tuple[str, str] | None:
    """The (first, last) partitions a run's tags ask for, or None for an unpartitioned run."""
    if PARTITION_NAME_TAG in tags:
        return tags[PARTITION_NAME_TAG], tags[PARTITION_NAME_TAG]
    if ASSET_PARTITION_RANGE_START_TAG in tags:
        return tags[ASSET_PARTITION_RANGE_START_TAG], tags[ASSET_PARTITION_RANGE_END_TAG]
    return None


def failed_check_partitions(
    instance: dg.DagsterInstance,
    checks: Iterable[dg.AssetCheckKey],
    partitions: Sequence[str] | None,
) -> dict[dg.AssetCheckKey, list[str | None]]:
    """For each check, the partitions (None: the unpartitioned check) whose latest execution failed or never
    finished (a crashed check step).

    ``partitions`` limits the lookup of partitioned checks to those partitions (None: all of them).
    """
    from dagster._core.storage.asset_check_execution_record import (  # noqa: PLC0415
        AssetCheckExecutionRecordStatus,
    )

    keys = list(checks)
    if not keys:
        return {}
    failed: dict[dg.AssetCheckKey, list[str | None]] = {}
    storage = instance.event_log_storage
    finished: dict[str, bool] = {}

    def run_finished(run_id: str) -> bool:
        if run_id not in finished:
            run = instance.get_run_by_id(run_id)
            finished[run_id] = run is None or run.is_finished
        return finished[run_id]

    def failing(status: AssetCheckExecutionRecordStatus, run_id: str) -> bool:
        # A check whose step crashed stays PLANNED forever: once its run is over, that is a failure too.
        planned = status == AssetCheckExecutionRecordStatus.PLANNED
        return status == AssetCheckExecutionRecordStatus.FAILED or (planned and run_finished(run_id))

    for info in storage.get_asset_check_partition_info(keys, partition_keys=partitions):
        if failing(info.latest_execution_status, info.latest_planned_run_id):
            failed.setdefault(info.check_key, []).append(info.partition_key)
    # Unpartitioned checks have no partition rows when a partition filter is given; ask for them alone.
    if partitions is not None:
        for key, record in storage.get_latest_asset_check_execution_by_key(keys).items():
            if record.partition is None and failing(record.status, record.run_id):
                failed.setdefault(key, []).append(None)
    return {k: sorted(set(v), key=lambda p: p or "") for k, v in failed.items()}


def latest_materializations(instance: dg.DagsterInstance, asset_key: dg.AssetKey, keys: Sequence[str]) -> dict:
    """Each partition's latest materialization, as the target a partitioned check evaluation judged (so the UI
    shows the result against that materialization). The target type has no public constructor."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (  # noqa: PLC0415
        AssetCheckEvaluationTargetMaterializationData,
    )

    found: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}

    def note(records: Iterable) -> None:
        for record in records:  # newest first
            if record.partition_key and record.partition_key not in found:
                found[record.partition_key] = AssetCheckEvaluationTargetMaterializationData(
                    run_id=record.run_id, storage_id=record.storage_id, timestamp=record.timestamp
                )

    # One query finds the latest of each partition a run just materialized; a partition it misses
    # (materialized long ago, others many times since) gets its own.
    note(instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=list(keys)), limit=max(4 * len(keys), 1)
    ).records)  # fmt: skip
    for key in keys:
        if key not in found:
            note(instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[key]), limit=1
            ).records)  # fmt: skip
    return found


def stale_partitions(
    instance: dg.DagsterInstance, graph_defs: Sequence[object], asset: str, partitions: Sequence[str]
) -> set[str]:
    """Partitions of ``asset`` that are missing or stale (e.g. after a tokenizer change), as the UI sees them."""
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView  # noqa: PLC0415
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph  # noqa: PLC0415
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus  # noqa: PLC0415
    from dagster._core.definitions.temporal_context import TemporalContext  # noqa: PLC0415
    from dagster._time import get_current_datetime  # noqa: PLC0415

    graph = AssetGraph.from_assets(list(graph_defs))
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)
    return {k for k in partitions if resolver.get_status(dg.AssetKey(asset), k) != StaleStatus.FRESH}
