"""categorized_records: filtered, redacted NAT / MIX / CODE records with training text and provenance."""

import dataclasses

import dagster as dg
import numpy as np
import pyarrow as pa

from gocoder_assets.categorized_records.categorize import INT_COLUMNS, RECORD_COLUMNS, Categorizer
from gocoder_assets.categorized_records.filters import FilterOptions
from gocoder_assets.metadata import counts_metadata
from gocoder_assets.partitions import per_repo_asset
from gocoder_assets.raw_prs.archive import read_raw
from gocoder_assets.raw_prs.assets import raw_prs
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.resources import StorageResource
from gocoder_assets.storage import atomic_file, write_parquet

RECORD_SCHEMA = pa.schema([(name, pa.int64() if name in INT_COLUMNS else pa.string()) for name in RECORD_COLUMNS])
_DEFAULTS = FilterOptions()


class CategorizeConfig(dg.Config):
    """BigCode's filter parameters (The Stack v2 / StarCoder2); see filters.py."""

    excluded_dirs: list[str] = list(_DEFAULTS.excluded_dirs)
    max_lines: int = _DEFAULTS.max_lines
    max_bytes: int = _DEFAULTS.max_bytes
    max_avg_line: int = _DEFAULTS.max_avg_line
    max_line: int = _DEFAULTS.max_line
    min_alnum_fraction: float = _DEFAULTS.min_alnum_fraction
    max_encoded_run: int = _DEFAULTS.max_encoded_run
    max_encoded_fraction: float = _DEFAULTS.max_encoded_fraction
    min_comment_chars: int = _DEFAULTS.min_comment_chars

    def options(self) -> FilterOptions:
        values = self.model_dump()
        values["excluded_dirs"] = tuple(values["excluded_dirs"])
        return dataclasses.replace(_DEFAULTS, **values)


@per_repo_asset(deps=[raw_prs], code_version="3", group_name="prepare", kinds={"parquet"})
def categorized_records(
    context: dg.AssetExecutionContext, config: CategorizeConfig, storage: StorageResource
) -> dg.MaterializeResult:
    """Serialized training text per record, tagged NAT / MIX / CODE, every drop and redaction counted."""
    layout = storage.layout()
    repos = read_repo_list(layout.repo_list_file)
    per_partition = {}
    for key in context.partition_keys:
        categorizer = Categorizer(repos[key], config.options())
        rows = categorizer.run(read_raw(layout.raw_records_file(key)))
        written = write_parquet(rows, layout.categorized_file(key), RECORD_SCHEMA)
        sigs = np.stack(categorizer.signatures) if categorizer.signatures else np.zeros((0, 0), np.uint32)
        with atomic_file(layout.signatures_file(key)) as tmp, open(tmp, "wb") as f:
            np.save(f, sigs)
        per_partition[key] = {"records": written, **categorizer.counts}
    return dg.MaterializeResult(metadata=counts_metadata(per_partition))
