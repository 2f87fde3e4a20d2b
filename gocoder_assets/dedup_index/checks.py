"""Check on dedup_index: duplicate rates reported; a corpus that is mostly copies is stopped."""

import collections

import dagster as dg
import pyarrow.parquet as pq

from gocoder_assets.checks import asset_check, result
from gocoder_assets.dedup_index.assets import dedup_index
from gocoder_assets.dedup_index.options import DedupOptions
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.resources import StorageResource


class DupRateConfig(dg.Config):
    """See ``DedupOptions.max_dup_rate``."""

    max_dup_rate: float = DedupOptions.max_dup_rate


@asset_check(asset=dedup_index, blocking=True, description="Exact and near-duplicate rates per partition.")
def dedup_rates(config: DupRateConfig, storage: StorageResource) -> dg.AssetCheckResult:
    layout = storage.layout()
    # Counted in Arrow: at 5,000 repositories the drop list has millions of rows, too many as Python dicts.
    dropped = pq.read_table(layout.dedup_file, columns=["repo", "reason"])
    by_repo: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for row in dropped.group_by(["repo", "reason"]).aggregate([("reason", "count")]).to_pylist():
        by_repo[row["repo"]][row["reason"]] += row["reason_count"]
    rows, total_in = [], 0
    for key in read_repo_list(layout.repo_list_file):
        sig_rows = pq.read_table(layout.categorized_file(key), columns=["sig_row"]).column(0)
        n = len(sig_rows) - sig_rows.null_count
        total_in += n
        c = by_repo[key]
        rows.append([key, n, c["exact"], c["near"], n - c["exact"] - c["near"]])
    exact = sum(c["exact"] for c in by_repo.values()) / (total_in or 1)
    near = sum(c["near"] for c in by_repo.values()) / (total_in or 1)
    return result(
        exact + near <= config.max_dup_rate,
        ["partition", "records in", "exact dups", "near dups", "kept"],
        rows,
        exact_dup_rate=exact,
        near_dup_rate=near,
        max_dup_rate=config.max_dup_rate,
    )
