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


def table_metadata(schema: Any, rows: int) -> dict[str, Any]:
    """Dagster's standard table metadata for a Parquet asset: its row count and column schema.

    The UI shows ``dagster/row_count`` in the catalog and plots it over materializations, and
    ``dagster/column_schema`` as the asset's columns, so a reader sees the table without opening a file.
    ``schema`` is a ``pyarrow.Schema``.
    """
    columns = [dg.TableColumn(name=field.name, type=str(field.type)) for field in schema]
    return {
        "dagster/row_count": dg.MetadataValue.int(int(rows)),
        "dagster/column_schema": dg.MetadataValue.table_schema(dg.TableSchema(columns=columns)),
    }


def workers_metadata(mode: str, pids: list[int]) -> dict[str, Any]:
    """How a run's partitions were spread: the workers mode and the distinct process ids that ran them
    (on a Celery cluster of several machines two processes may share a pid; the list is a lower bound)."""
    return {
        "workers:mode": dg.MetadataValue.text(mode),
        "workers:pids": dg.MetadataValue.json(sorted(set(pids))),
    }
