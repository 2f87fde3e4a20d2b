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
from gocoder_assets.checks import asset_check, result, run_partition_keys
from gocoder_assets.resources import StorageResource

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


@asset_check(asset=categorized_records, blocking=True, description="Two independent re-scans find no secret.")
def categorized_records_secrets_residual(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> dg.AssetCheckResult:
    layout = storage.layout()
    rows = [[key, *f] for key in run_partition_keys(context) for f in secret_findings(layout.categorized_file(key))]
    return result(not rows, ["partition", "record", "secret kinds"], rows, residual_secrets=len(rows))


@asset_check(asset=categorized_records, description="Valid UTF-8, no vendored/generated paths, provenance.")
def categorized_records_integrity(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> dg.AssetCheckResult:
    layout = storage.layout()
    per_key = {key: integrity_problems(layout.categorized_file(key)) for key in run_partition_keys(context)}
    kinds = ("invalid_utf8", "excluded_path", "missing_provenance", "malformed_structure")
    rows = [[k, *(c[p] for p in kinds)] for k, c in per_key.items() if c]
    total = sum(sum(c.values()) for c in per_key.values())
    header = ["partition", "invalid UTF-8", "excluded path", "missing provenance", "malformed structure"]
    return result(total == 0, header, rows, blocking_failure=False, problems=total)


@asset_check(asset=categorized_records, description="Records per category and kind, per partition.")
def categorized_records_category_counts(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> dg.AssetCheckResult:
    layout = storage.layout()
    per_key = {}
    for key in run_partition_keys(context):
        table = pq.read_table(layout.categorized_file(key), columns=["kind", "category"])
        per_key[key] = collections.Counter(zip(*(table.column(c).to_pylist() for c in ("kind", "category")),
                                               strict=True))  # fmt: skip
    totals = sum(per_key.values(), collections.Counter())
    columns = sorted(totals, key=lambda kc: (kc[1], kc[0]))
    rows = [[key, *(c[kc] for kc in columns)] for key, c in per_key.items()]
    empty = [r for r in rows if sum(r[1:]) == 0]
    by_category = {cat: sum(n for (_, c), n in totals.items() if c == cat) for cat in ("NAT", "MIX", "CODE")}
    header = ["partition", *(f"{c} {k}" for k, c in columns)]
    return result(not empty, header, rows, blocking_failure=False, **by_category, empty_partitions=len(empty))
