"""The no-daemon twin of the automation sensor: re-materialize the per-repo partitions whose inputs changed.

``python -m gocoder_assets.pipeline --refresh-stale`` calls ``refresh_stale``. It applies the rules of
``automation.SHARDS`` to the instance's records, through public APIs only (``fetch_materializations``,
``dg.materialize``), so it needs no cursor and no earlier run of itself: a partition is refreshed when it is
missing or a dependency was materialized after it, and never while a dependency it reads is missing. The
requested partitions run in ranges of at most ``partitions_per_run`` (``partitions.SCALE``), the same cut the
backfill policy makes when the daemon does it.

Per asset (in graph order, so refreshed records count as updates for the shards below them):

- ``raw_prs``: missing partitions only. Re-collecting a repository is a deliberate act (`dagster asset
  materialize`; collection is incremental), not a consequence of `repo_list` being refreshed.
- ``categorized_records``: missing, or its ``raw_prs`` partition is newer.
- ``packed_shards``: missing, or any dependency other than ``repo_list`` is newer (a tokenizer change makes
  all of them stale); repo_list only adds partitions, as in ``automation.SHARDS``.

``checkpoint`` is not retrained here (training takes its own config and hardware): the main job, or the
daemon's ``automation.CHECKPOINT`` condition, trains once the shards are fresh.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dagster as dg

from gocoder_assets.partitions import REPOS, SCALE

PER_REPO = ("raw_prs", "categorized_records", "packed_shards")
# Dependencies whose updates do not make a partition stale (see the module docstring).
NOT_TRIGGERS: dict[str, frozenset[str]] = {
    "raw_prs": frozenset({"repo_list"}),
    "categorized_records": frozenset(),
    "packed_shards": frozenset({"repo_list"}),
}
PAGE = 1000


def latest_storage_ids(instance: dg.DagsterInstance, asset: str) -> dict[str | None, int]:
    """Each partition's latest materialization (storage id; key None for an unpartitioned asset)."""
    latest: dict[str | None, int] = {}
    cursor = None
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset)), limit=PAGE, cursor=cursor, ascending=True
        )
        for record in result.records:
            latest[record.partition_key] = record.storage_id
        if not result.has_more:
            return latest
        cursor = result.cursor


def chunked_ranges(keys: Sequence[str], wanted: set[str], size: int) -> list[tuple[str, str]]:
    """Runs of ``wanted`` keys in partition order, cut at gaps and after ``size`` keys, as (first, last)."""
    if size < 1:
        raise ValueError(f"partitions per run must be at least 1, got {size}")
    ranges: list[tuple[str, str]] = []
    run: list[str] = []
    for key in [*keys, None]:
        if key is not None and key in wanted and len(run) < size:
            run.append(key)
            continue
        if run:
            ranges.append((run[0], run[-1]))
        run = [key] if key is not None and key in wanted else []
    return ranges


def _deps(definition: dg.AssetsDefinition) -> tuple[list[str], list[str]]:
    """(per-repo deps, unpartitioned deps) of a single-asset definition, by name."""
    (spec,) = definition.specs
    names = [dep.asset_key.to_user_string() for dep in spec.deps]
    return [n for n in names if n in PER_REPO], [n for n in names if n not in PER_REPO]


def stale_partitions(instance: dg.DagsterInstance, definition: dg.AssetsDefinition, keys: Sequence[str]) -> set[str]:
    """Partitions to refresh: missing or older than a triggering dependency, with no dependency missing."""
    name = definition.key.to_user_string()
    partitioned, unpartitioned = _deps(definition)
    own = latest_storage_ids(instance, name)
    per_repo = {dep: latest_storage_ids(instance, dep) for dep in partitioned}
    whole = {dep: latest_storage_ids(instance, dep).get(None) for dep in unpartitioned}
    if any(v is None for v in whole.values()):
        return set()  # an unpartitioned dependency was never materialized: nothing can run yet
    triggers = set(partitioned + unpartitioned) - NOT_TRIGGERS.get(name, frozenset())
    stale = set()
    for key in keys:
        dep_ids = {**{d: ids.get(key) for d, ids in per_repo.items()}, **whole}
        if any(v is None for v in dep_ids.values()):
            continue  # never a partition whose upstream records are missing
        mine = own.get(key)
        if mine is None or any(dep_ids[d] > mine for d in triggers):
            stale.add(key)
    return stale


def refresh_stale(
    instance: dg.DagsterInstance,
    resources: Mapping[str, Any],
    graph: Sequence[Any],
    assets: Sequence[str] = PER_REPO,
    log: Callable[[str], None] = print,
    partitions_per_run: int = SCALE.partitions_per_run,
    run_config: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Re-materialize the stale or missing partitions of ``assets`` (in graph order); {asset: partitions}.

    ``graph`` is the project's assets and checks (``[*definitions.ASSETS, *definitions.CHECKS]``), passed in
    so this module does not import the definitions; ``run_config`` goes to every run (e.g. its loggers).
    """
    from gocoder_assets.dagster_internal import range_tags  # noqa: PLC0415

    unknown = set(assets) - set(PER_REPO)
    if unknown:
        raise ValueError(f"refresh_stale handles the per-repo assets {PER_REPO}, not {sorted(unknown)}")
    by_name = {a.key.to_user_string(): a for a in graph if isinstance(a, dg.AssetsDefinition) and len(a.keys) == 1}
    refreshed = {}
    for name in [a for a in PER_REPO if a in assets]:
        keys = instance.get_dynamic_partitions(REPOS)
        stale = stale_partitions(instance, by_name[name], keys)
        ranges = chunked_ranges(keys, stale, partitions_per_run)
        for first, last in ranges:
            dg.materialize(
                list(graph),
                selection=[name],
                instance=instance,
                resources=resources,
                tags=range_tags(first, last),
                run_config=dict(run_config or {}),
            )
        log(f"{name}: re-materialized {len(stale)} stale or missing partitions in {len(ranges)} runs")
        refreshed[name] = len(stale)
    return refreshed
