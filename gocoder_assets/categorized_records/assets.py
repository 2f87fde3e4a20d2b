"""categorized_records: filtered, redacted NAT / MIX / CODE records with training text and provenance."""

import dagster as dg
import numpy as np

from gocoder_assets.categorized_records.changes import ChangeOptions
from gocoder_assets.categorized_records.filters import FilterOptions
from gocoder_assets.categorized_records.partition import RECORD_SCHEMA, settings_payload
from gocoder_assets.config import with_config
from gocoder_assets.metadata import counts_metadata, markdown_table, table_metadata, workers_metadata
from gocoder_assets.partitions import per_repo_asset
from gocoder_assets.raw_prs.assets import raw_prs
from gocoder_assets.resources import StorageResource
from gocoder_assets.workers.resource import WorkersResource

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
        return with_config(_DEFAULTS, self.model_dump())

    def change_options(self) -> ChangeOptions:
        return with_config(_CHANGES, self.model_dump())


def size_table(sizes: dict[str, list[int]]) -> str:
    """p50 / p99 / max characters per record kind, over every partition of the run."""
    rows = []
    for kind in sorted(sizes):
        v = np.asarray(sizes[kind])
        rows.append([kind, v.size, int(np.median(v)), int(np.percentile(v, 99)), int(v.max())])
    return markdown_table(["kind", "records", "p50 chars", "p99 chars", "max chars"], rows)


@per_repo_asset(deps=[raw_prs], code_version="5", group_name="prepare", kinds={"parquet"})
def categorized_records(
    context: dg.AssetExecutionContext, config: CategorizeConfig, storage: StorageResource, workers: WorkersResource
) -> dg.MaterializeResult:
    """Serialized training text per record, tagged NAT / MIX / CODE, every drop and redaction counted.

    Each partition is one task (``partition.categorize_partition``) run by ``workers``; the settings it
    was made with are in its Parquet's schema metadata (``partition.SETTINGS_KEY``)."""
    root = str(storage.layout().root)
    settings = settings_payload(config.options(), config.change_options())
    payloads = ({"data_root": root, "key": key, "settings": settings} for key in context.partition_keys)
    per_partition = {}
    sizes: dict[str, list[int]] = {}
    pids = []
    for result in workers.map("categorize", payloads):
        per_partition[result["key"]] = {"records": result["records"], **result["counts"]}
        for kind, values in result["sizes"].items():
            sizes.setdefault(kind, []).extend(values)
        pids.append(result["worker_pid"])
    metadata = counts_metadata(per_partition)
    total = sum(p.get("change_chars:total", 0) for p in per_partition.values())
    copied = sum(p.get("change_chars:in_code_records", 0) for p in per_partition.values())
    metadata["mix_share_in_code_records"] = dg.MetadataValue.float(round(copied / total, 4) if total else 0.0)
    metadata["record_chars"] = dg.MetadataValue.md(size_table(sizes))
    metadata.update(table_metadata(RECORD_SCHEMA, sum(p["records"] for p in per_partition.values())))
    metadata.update(workers_metadata(workers.mode, pids))
    return dg.MaterializeResult(metadata=metadata)
