"""Checks on categorized_records: nothing secret, mangled, vendored or unattributed gets through."""

import collections
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from gocoder_assets.categorized_records import filters
from gocoder_assets.categorized_records.assets import categorized_records
from gocoder_assets.categorized_records.residual import residual_findings
from gocoder_assets.checks import result, run_partition_keys
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
    """Invalid UTF-8 (checked on the stored bytes), excluded paths, missing provenance."""
    table = pq.read_table(path)
    problems: collections.Counter[str] = collections.Counter()
    for raw in table.column("text").cast(pa.binary()).to_pylist():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            problems["invalid_utf8"] += 1
    for row in table.select(["kind", *PROVENANCE]).to_pylist():
        if row["kind"] in ("file", "doc") and filters.path_drop_reason(row["path"], filters.FilterOptions()):
            problems["excluded_path"] += 1
        if any(not row[f] for f in PROVENANCE):
            problems["missing_provenance"] += 1
    return problems


@dg.asset_check(asset=categorized_records, blocking=True, description="Two independent re-scans find no secret.")
def categorized_records_secrets_residual(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> dg.AssetCheckResult:
    layout = storage.layout()
    rows = [[key, *f] for key in run_partition_keys(context) for f in secret_findings(layout.categorized_file(key))]
    return result(not rows, ["partition", "record", "secret kinds"], rows, residual_secrets=len(rows))


@dg.asset_check(asset=categorized_records, description="Valid UTF-8, no vendored/generated paths, provenance.")
def categorized_records_integrity(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> dg.AssetCheckResult:
    layout = storage.layout()
    per_key = {key: integrity_problems(layout.categorized_file(key)) for key in run_partition_keys(context)}
    rows = [[k, c["invalid_utf8"], c["excluded_path"], c["missing_provenance"]] for k, c in per_key.items() if c]
    total = sum(sum(c.values()) for c in per_key.values())
    header = ["partition", "invalid UTF-8", "excluded path", "missing provenance"]
    return result(total == 0, header, rows, blocking_failure=False, problems=total)


@dg.asset_check(asset=categorized_records, description="Records per category and partition.")
def categorized_records_category_counts(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> dg.AssetCheckResult:
    layout = storage.layout()
    rows, totals = [], collections.Counter()
    for key in run_partition_keys(context):
        categories = pq.read_table(layout.categorized_file(key), columns=["category"]).column(0)
        counts = collections.Counter(categories.to_pylist())
        totals.update(counts)
        rows.append([key, counts["NAT"], counts["MIX"], counts["CODE"]])
    empty = [r for r in rows if sum(r[1:]) == 0]
    return result(not empty, ["partition", "NAT", "MIX", "CODE"], rows, blocking_failure=False,
                  NAT=totals["NAT"], MIX=totals["MIX"], CODE=totals["CODE"], empty_partitions=len(empty))  # fmt: skip
