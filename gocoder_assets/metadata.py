"""Asset metadata the Dagster UI renders: totals plus a per-partition table for ranged runs."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

import dagster as dg

MAX_TABLE_ROWS = 200


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def counts_metadata(per_partition: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    """Totals of every counter (one number per key) and, over several partitions, a table.

    A ranged run records the same metadata on every partition it materializes, so the table
    is how each partition's own numbers stay visible.
    """
    totals: collections.Counter[str] = collections.Counter()
    for counts in per_partition.values():
        totals.update(counts)
    meta: dict[str, Any] = {k: dg.MetadataValue.int(int(v)) for k, v in sorted(totals.items())}
    meta["partitions"] = dg.MetadataValue.int(len(per_partition))
    if len(per_partition) > 1:
        columns = sorted(totals)
        rows = [[key, *(counts.get(c, 0) for c in columns)] for key, counts in per_partition.items()]
        note = "" if len(rows) <= MAX_TABLE_ROWS else f"\n\n(first {MAX_TABLE_ROWS} of {len(rows)} partitions)"
        table = markdown_table(["partition", *columns], rows[:MAX_TABLE_ROWS])
        meta["per_partition"] = dg.MetadataValue.md(table + note)
    return meta
