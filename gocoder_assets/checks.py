"""Shared plumbing for asset checks: which partitions a run covered, and the report table.

Checks on per-repo assets look at the partitions materialized in the same run (one, or a
range), so a ranged run over thousands of repos is checked once, not per partition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from gocoder_assets.metadata import markdown_table
from gocoder_assets.partitions import REPOS

MAX_ROWS = 50


def run_partition_keys(context: dg.AssetCheckExecutionContext) -> list[str]:
    """The repo partitions this run materialized; all of them when the check runs on its own."""
    tags = context.run.tags
    keys = context.instance.get_dynamic_partitions(REPOS)
    if PARTITION_NAME_TAG in tags:
        return [tags[PARTITION_NAME_TAG]]
    if ASSET_PARTITION_RANGE_START_TAG in tags:
        start, end = keys.index(tags[ASSET_PARTITION_RANGE_START_TAG]), keys.index(tags[ASSET_PARTITION_RANGE_END_TAG])
        return keys[start : end + 1]
    return keys


def result(
    passed: bool,
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    blocking_failure: bool = True,
    **numbers: Any,
) -> dg.AssetCheckResult:
    """A check result whose metadata is a markdown table the UI renders, plus headline numbers.

    Failures are ERROR (stops downstream steps when the check is blocking) unless
    ``blocking_failure`` is False, which reports them as WARN.
    """
    note = f"\n\n({len(rows) - MAX_ROWS} more rows)" if len(rows) > MAX_ROWS else ""
    table = markdown_table(list(header), [list(r) for r in rows[:MAX_ROWS]]) if rows else "(nothing to report)"
    severity = dg.AssetCheckSeverity.ERROR if blocking_failure else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        passed=passed,
        severity=severity,
        metadata={"report": dg.MetadataValue.md(table + note), **numbers},
    )


# Blocking checks by the asset they guard, filled as check modules define them (``asset_check`` below).
# A run's own job graph has every asset but only the checks it selected, and reading the project's full
# graph here would mean importing definitions, which imports every asset module: an import cycle.
_BLOCKING: dict[dg.AssetKey, set[dg.AssetCheckKey]] = {}


def asset_check(**kwargs: Any) -> Callable[[Callable[..., Any]], dg.AssetChecksDefinition]:
    """``dg.asset_check`` that also records a blocking check, for ``require_upstream_checks_passed``."""

    def decorate(fn: Callable[..., Any]) -> dg.AssetChecksDefinition:
        check = dg.asset_check(**kwargs)(fn)
        for spec in check.check_specs:
            if spec.blocking:
                _BLOCKING.setdefault(spec.asset_key, set()).add(spec.key)
        return check

    return decorate


def require_upstream_checks_passed(context: dg.AssetExecutionContext) -> None:
    """Refuse to run while a blocking check on any ancestor asset is failing.

    Blocking checks stop downstream steps of their own run only; this carries the block across
    runs (a UI or CLI launch of just this asset). The latest execution of each check counts, so
    fixing the data and re-materializing the upstream asset lifts the block.
    """
    from dagster._core.storage.asset_check_execution_record import (  # noqa: PLC0415
        AssetCheckExecutionRecordStatus,
    )

    ancestors = context.job_def.asset_layer.asset_graph.get_ancestor_asset_keys(context.asset_key)
    keys = sorted((k for a in ancestors for k in _BLOCKING.get(a, ())), key=lambda k: k.to_user_string())
    latest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(keys) if keys else {}
    failed = sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k, record in latest.items()
                    if record.status == AssetCheckExecutionRecordStatus.FAILED)  # fmt: skip
    if failed:
        raise dg.Failure(
            description=f"blocking checks failed upstream: {', '.join(failed)}; fix the data and re-materialize "
            "those assets (their checks run with them) before materializing this one"
        )
