"""Shared plumbing for asset checks: which partitions a run covered, and the report table.

Checks on per-repo assets look at the partitions materialized in the same run (one, or a
range), so a ranged run over thousands of repos is checked once, not per partition.
"""

from __future__ import annotations

from collections.abc import Sequence
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
