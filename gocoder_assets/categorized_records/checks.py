"""Checks on categorized_records: nothing secret, mangled, vendored or unattributed gets through."""

import collections
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from gocoder_assets.categorized_records import filters
from gocoder_assets.categorized_records.assets import categorized_records
from gocoder_assets.categorized_records.residual import residual_findings
from gocoder_assets.categorized_records.serialize import mark
from gocoder_assets.checks import partition_check, result
from gocoder_assets.storage import Layout

PROVENANCE = ("repo", "license", "commit_sha", "path", "fetched_at", "url")


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
    """Invalid UTF-8 (checked on the stored bytes), excluded paths, missing provenance, and records whose
    structure does not open with their own category marker and ``<REPO>``."""
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
        if row["kind"] in ("file", "doc") and filters.path_drop_reason(row["path"], filters.FilterOptions()):
            problems["excluded_path"] += 1
        if any(not row[f] for f in PROVENANCE):
            problems["missing_provenance"] += 1
    return problems


@partition_check(asset=categorized_records, blocking=True, description="Two independent re-scans find no secret.")
def categorized_records_secrets_residual(layout: Layout, key: str) -> dg.AssetCheckResult:
    rows = secret_findings(layout.categorized_file(key))
    return result(not rows, ["record", "secret kinds"], rows, residual_secrets=len(rows))


@partition_check(asset=categorized_records, description="Valid UTF-8, no vendored/generated paths, provenance.")
def categorized_records_integrity(layout: Layout, key: str) -> dg.AssetCheckResult:
    c = integrity_problems(layout.categorized_file(key))
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
