"""dedup_index: which records are exact or near duplicates of a better-starred copy elsewhere."""

import dagster as dg

from gocoder_assets.categorized_records.assets import categorized_records
from gocoder_assets.dedup_index.dedup import THRESHOLD
from gocoder_assets.dedup_index.index import build_index
from gocoder_assets.metadata import counts_metadata
from gocoder_assets.repo_list.assets import repo_list
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.resources import StorageResource
from gocoder_assets.storage import file_sha256


class DedupConfig(dg.Config):
    threshold: float = THRESHOLD  # Jaccard similarity (The Stack v2: 0.7)


@dg.asset(deps=[repo_list, categorized_records], code_version="1", group_name="prepare", kinds={"parquet"})
def dedup_index(config: DedupConfig, storage: StorageResource) -> dg.MaterializeResult:
    """Built from signatures stored per partition: adding a repo hashes only that repo's files."""
    layout = storage.layout()
    counts = build_index(layout, read_repo_list(layout.repo_list_file), config.threshold)
    meta = counts_metadata(counts)
    total_in = sum(c["dedup_in"] for c in counts.values()) or 1
    meta["exact_dup_rate"] = dg.MetadataValue.float(sum(c["exact_dups"] for c in counts.values()) / total_in)
    meta["near_dup_rate"] = dg.MetadataValue.float(sum(c["near_dups"] for c in counts.values()) / total_in)
    meta["path"] = dg.MetadataValue.path(str(layout.dedup_file))
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(file_sha256(layout.dedup_file)))
