"""Checks on categorized_records: nothing secret, mangled, vendored or unattributed gets through.

The integrity check judges excluded paths with the filter settings the partition was categorized with,
as its Parquet file records them (schema metadata ``gocoder:settings``), never with today's defaults.
"""

import collections
import json
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from gocoder_assets.categorized_records import filters
from gocoder_assets.categorized_records.assets import categorized_records
from gocoder_assets.categorized_records.partition import SETTINGS_KEY
from gocoder_assets.categorized_records.residual import residual_findings
from gocoder_assets.categorized_records.serialize import mark
from gocoder_assets.checks import partition_check, result
from gocoder_assets.config import with_config
from gocoder_assets.storage import Layout

PROVENANCE = ("repo", "license", "commit_sha", "path", "fetched_at", "url")
UNRECORDED = "written before settings were recorded; re-materialize categorized_records for this partition"


class UnrecordedSettingsError(ValueError):
    """The file does not say which filter settings wrote it."""


def recorded_filter_options(path: Path) -> filters.FilterOptions:
    """The ``FilterOptions`` this file was categorized with, from its schema metadata.

    The settings are one JSON object of FilterOptions and ChangeOptions field values
    (``partition.settings_json``); the fields of FilterOptions are taken from it. A file without them,
    or without ``excluded_dirs``, raises ``UnrecordedSettingsError``: judging it by today's defaults would
    flag or miss paths the run did not.
    """
    raw = (pq.read_schema(path).metadata or {}).get(SETTINGS_KEY.encode())
    if raw is None:
        raise UnrecordedSettingsError(f"{path.name}: no {SETTINGS_KEY} in its metadata; {UNRECORDED}")
    settings: dict[str, Any] = json.loads(raw)
    if "excluded_dirs" not in settings:
        raise UnrecordedSettingsError(f"{path.name}: its {SETTINGS_KEY} lack excluded_dirs; {UNRECORDED}")
    return with_config(filters.FilterOptions(), settings)


def secret_findings(path: Path) -> list[list[str]]:
    """[record_id, kinds] of every record in which either detector set (residual.py) still finds a secret."""
    rows = []
    for batch in pq.ParquetFile(path).iter_batches(columns=["record_id", "text"], batch_size=256):
        for record_id, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
            kinds = residual_findings(text)
            if kinds:
                rows.append([record_id, ", ".join(sorted(set(kinds)))])
    return rows


def integrity_problems(path: Path) -> collections.Counter[str]:
    """Invalid UTF-8 (checked on the stored bytes), paths excluded by the settings the file was written with,
    missing provenance, and records whose structure does not open with their own category marker and
    ``<REPO>``. Raises ``UnrecordedSettingsError`` for a file that does not record its settings."""
    options = recorded_filter_options(path)
    table = pq.read_table(path)
    problems: collections.Counter[str] = collections.Counter()
    for raw in table.column("text").cast(pa.binary()).to_pylist():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            problems["invalid_utf8"] += 1
    for row in table.select(["kind", "category", "text", *PROVENANCE]).to_pylist():
        if not row["text"].startswith(mark(f"<{row['category']}>") + mark("<REPO>")):
            problems["malformed_structure"] += 1
        if row["kind"] in ("file", "doc") and filters.path_drop_reason(row["path"], options):
            problems["excluded_path"] += 1
        if any(not row[f] for f in PROVENANCE):
            problems["missing_provenance"] += 1
    return problems


@partition_check(asset=categorized_records, blocking=True, description="Two independent re-scans find no secret.")
def categorized_records_secrets_residual(layout: Layout, key: str) -> dg.AssetCheckResult:
    rows = secret_findings(layout.categorized_file(key))
    return result(not rows, ["record", "secret kinds"], rows, residual_secrets=len(rows))


@partition_check(
    asset=categorized_records,
    description="Valid UTF-8; no path the partition's own recorded filter settings exclude; provenance; structure.",
)
def categorized_records_integrity(layout: Layout, key: str) -> dg.AssetCheckResult:
    try:
        c = integrity_problems(layout.categorized_file(key))
    except UnrecordedSettingsError as e:
        return result(False, ["problem", "records"], [[str(e), "all"]], blocking_failure=False, problems=1)
    rows = [[p, c[p]] for p in ("invalid_utf8", "excluded_path", "missing_provenance", "malformed_structure") if c[p]]
    total = sum(c.values())
    return result(total == 0, ["problem", "records"], rows, blocking_failure=False, problems=total)


@partition_check(asset=categorized_records, description="Records per category and kind; a partition has records.")
def categorized_records_category_counts(layout: Layout, key: str) -> dg.AssetCheckResult:
    table = pq.read_table(layout.categorized_file(key), columns=["kind", "category"])
    counts = collections.Counter(zip(*(table.column(c).to_pylist() for c in ("kind", "category")), strict=True))
    rows = [[c, k, n] for (k, c), n in sorted(counts.items(), key=lambda kv: (kv[0][1], kv[0][0]))]
    by_category = {cat: sum(n for (_, c), n in counts.items() if c == cat) for cat in ("NAT", "MIX", "CODE")}
    return result(bool(counts), ["category", "kind", "records"], rows, blocking_failure=False, **by_category)
