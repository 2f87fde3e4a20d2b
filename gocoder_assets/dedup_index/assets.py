"""dedup_index: which records are exact or near duplicates of a better-starred copy elsewhere."""

import dagster as dg
import pyarrow.parquet as pq

from gocoder_assets.categorized_records.assets import categorized_records
from gocoder_assets.dedup_index.index import DROPPED_SCHEMA, build_index
from gocoder_assets.dedup_index.options import DedupOptions
from gocoder_assets.metadata import counts_metadata, table_metadata
from gocoder_assets.repo_list.assets import repo_list
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.resources import StorageResource
from gocoder_assets.storage import file_sha256

# Defaults as the definitions load: GOCODER_LSH_STORAGE picks the store for runs that set no config
# (automation, backfills); the Redis URL is read from GOCODER_LSH_REDIS when a run starts.
_DEFAULTS = DedupOptions.from_env()


class DedupConfig(dg.Config):
    threshold: float = _DEFAULTS.threshold  # Jaccard similarity (The Stack v2: 0.7)
    lsh_storage: str = _DEFAULTS.lsh_storage  # "memory" | "redis" (set GOCODER_LSH_REDIS)


@dg.asset(deps=[repo_list, categorized_records], code_version="2", group_name="prepare", kinds={"parquet"})
def dedup_index(config: DedupConfig, storage: StorageResource) -> dg.MaterializeResult:
    """Built from signatures stored per partition: adding a repo hashes only that repo's files."""
    layout = storage.layout()
    options = DedupOptions.from_env(threshold=config.threshold, lsh_storage=config.lsh_storage)
    counts = build_index(layout, read_repo_list(layout.repo_list_file), options)
    meta = counts_metadata(counts)
    total_in = sum(c["dedup_in"] for c in counts.values()) or 1
    meta["exact_dup_rate"] = dg.MetadataValue.float(sum(c["exact_dups"] for c in counts.values()) / total_in)
    meta["near_dup_rate"] = dg.MetadataValue.float(sum(c["near_dups"] for c in counts.values()) / total_in)
    meta["lsh_storage"] = dg.MetadataValue.text(options.lsh_storage)
    meta["path"] = dg.MetadataValue.path(str(layout.dedup_file))
    meta.update(table_metadata(DROPPED_SCHEMA, pq.ParquetFile(layout.dedup_file).metadata.num_rows))
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(file_sha256(layout.dedup_file)))
