"""categorized_records: typed NAT / MIX / CODE records with training text and provenance."""


import dagster as dg
import pyarrow as pa

from gocoder_assets.categorized_records.categorize import RECORD_COLUMNS, CategorizeOptions, Categorizer
from gocoder_assets.metadata import counts_metadata
from gocoder_assets.partitions import per_repo_asset
from gocoder_assets.raw_prs.archive import read_raw
from gocoder_assets.raw_prs.assets import raw_prs
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.resources import StorageResource
from gocoder_assets.storage import write_parquet

RECORD_SCHEMA = pa.schema(
    [(name, pa.int64() if name == "pr_number" else pa.string()) for name in RECORD_COLUMNS]
)


class CategorizeConfig(dg.Config):
    excluded_dirs: list[str] = list(CategorizeOptions.excluded_dirs)
    max_structure_paths: int = CategorizeOptions.max_structure_paths
    max_change_chars: int = CategorizeOptions.max_change_chars


@per_repo_asset(
    deps=[raw_prs],
    code_version="1",
    group_name="prepare",
    kinds={"parquet"},
)
def categorized_records(
    context: dg.AssetExecutionContext, config: CategorizeConfig, storage: StorageResource
) -> dg.MaterializeResult:
    """Serialized training text per record, tagged NAT / MIX / CODE, with every drop counted."""
    layout = storage.layout()
    repos = read_repo_list(layout.repo_list_file)
    options = CategorizeOptions(tuple(config.excluded_dirs), config.max_structure_paths, config.max_change_chars)
    per_partition = {}
    for key in context.partition_keys:
        categorizer = Categorizer(repos[key], options)
        rows = categorizer.run(read_raw(layout.raw_records_file(key)))
        written = write_parquet(rows, layout.categorized_file(key), RECORD_SCHEMA)
        per_partition[key] = {"records": written, **categorizer.counts}
    return dg.MaterializeResult(metadata=counts_metadata(per_partition))
