"""categorized_records: filtered, redacted NAT / MIX / CODE records with training text and provenance."""

import dataclasses
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa

from gocoder_assets.categorized_records.categorize import INT_COLUMNS, RECORD_COLUMNS, Categorizer
from gocoder_assets.categorized_records.changes import ChangeOptions
from gocoder_assets.categorized_records.filters import FilterOptions
from gocoder_assets.metadata import counts_metadata, markdown_table
from gocoder_assets.partitions import per_repo_asset
from gocoder_assets.raw_prs.archive import read_raw
from gocoder_assets.raw_prs.assets import raw_prs
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.resources import StorageResource
from gocoder_assets.storage import atomic_file, write_parquet

RECORD_SCHEMA = pa.schema([(name, pa.int64() if name in INT_COLUMNS else pa.string()) for name in RECORD_COLUMNS])
_DEFAULTS = FilterOptions()
_CHANGES = ChangeOptions()


class CategorizeConfig(dg.Config):
    """BigCode's filter parameters (The Stack v2 / StarCoder2; see filters.py), the caps on discussion
    and change text, and how much context a change shows (changes.py)."""

    excluded_dirs: list[str] = list(_DEFAULTS.excluded_dirs)
    max_lines: int = _DEFAULTS.max_lines
    max_bytes: int = _DEFAULTS.max_bytes
    max_avg_line: int = _DEFAULTS.max_avg_line
    max_line: int = _DEFAULTS.max_line
    min_alnum_fraction: float = _DEFAULTS.min_alnum_fraction
    max_encoded_run: int = _DEFAULTS.max_encoded_run
    max_encoded_fraction: float = _DEFAULTS.max_encoded_fraction
    min_comment_chars: int = _DEFAULTS.min_comment_chars
    max_comment_chars: int = _DEFAULTS.max_comment_chars
    max_comments: int = _DEFAULTS.max_comments
    boilerplate_docs: list[str] = list(_DEFAULTS.boilerplate_docs)
    max_root_doc_chars: int = _DEFAULTS.max_root_doc_chars
    max_change_chars: int = _DEFAULTS.max_change_chars
    max_change_files: int = _DEFAULTS.max_change_files
    function_context_lines: int = _CHANGES.function_context_lines
    context_lines: int = _CHANGES.context_lines
    max_file_lines: int = _CHANGES.max_file_lines
    max_added_lines: int = _CHANGES.max_added_lines

    def options(self) -> FilterOptions:
        return _with_config(_DEFAULTS, self.model_dump())

    def change_options(self) -> ChangeOptions:
        return _with_config(_CHANGES, self.model_dump())


def _with_config(defaults: Any, values: dict[str, Any]) -> Any:
    """``defaults`` with the config's values for its own fields (lists back to the dataclass's tuples)."""
    names = {f.name for f in dataclasses.fields(defaults)}
    mine = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
    return dataclasses.replace(defaults, **mine)


def size_table(sizes: dict[str, list[int]]) -> str:
    """p50 / p99 / max characters per record kind, over every partition of the run."""
    rows = []
    for kind in sorted(sizes):
        v = np.asarray(sizes[kind])
        rows.append([kind, v.size, int(np.median(v)), int(np.percentile(v, 99)), int(v.max())])
    return markdown_table(["kind", "records", "p50 chars", "p99 chars", "max chars"], rows)


@per_repo_asset(deps=[raw_prs], code_version="4", group_name="prepare", kinds={"parquet"})
def categorized_records(
    context: dg.AssetExecutionContext, config: CategorizeConfig, storage: StorageResource
) -> dg.MaterializeResult:
    """Serialized training text per record, tagged NAT / MIX / CODE, every drop and redaction counted."""
    layout = storage.layout()
    repos = read_repo_list(layout.repo_list_file)
    per_partition = {}
    sizes: dict[str, list[int]] = {}
    for key in context.partition_keys:
        categorizer = Categorizer(repos[key], config.options(), config.change_options())
        rows = categorizer.run(read_raw(layout.raw_records_file(key)))
        written = write_parquet(rows, layout.categorized_file(key), RECORD_SCHEMA)
        sigs = np.stack(categorizer.signatures) if categorizer.signatures else np.zeros((0, 0), np.uint32)
        with atomic_file(layout.signatures_file(key)) as tmp, open(tmp, "wb") as f:
            np.save(f, sigs)
        per_partition[key] = {"records": written, **categorizer.counts}
        for kind, values in categorizer.sizes.items():
            sizes.setdefault(kind, []).extend(values)
    metadata = counts_metadata(per_partition)
    total = sum(p.get("change_chars:total", 0) for p in per_partition.values())
    copied = sum(p.get("change_chars:in_code_records", 0) for p in per_partition.values())
    metadata["mix_share_in_code_records"] = dg.MetadataValue.float(round(copied / total, 4) if total else 0.0)
    metadata["record_chars"] = dg.MetadataValue.md(size_table(sizes))
    return dg.MaterializeResult(metadata=metadata)
