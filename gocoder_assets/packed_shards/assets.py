"""packed_shards: each repository's token ids in an llm.c shard plus its record index, assigned to train or val."""

import dataclasses

import dagster as dg
import numpy as np

from gocoder_assets import automation
from gocoder_assets.categorized_records.assets import categorized_records
from gocoder_assets.checks import require_upstream_checks_passed
from gocoder_assets.dedup_index.assets import dedup_index
from gocoder_assets.metadata import counts_metadata, markdown_table, workers_metadata
from gocoder_assets.packed_shards.pack import PackOptions
from gocoder_assets.packed_shards.partition import load_tokenizer
from gocoder_assets.partitions import per_repo_asset
from gocoder_assets.repo_list.assets import repo_list
from gocoder_assets.resources import StorageResource
from gocoder_assets.storage import read_json
from gocoder_assets.tokenizer_model.assets import INFO_FILE, tokenizer_model
from gocoder_assets.workers.resource import WorkersResource

_DEFAULTS = PackOptions()


class PackConfig(dg.Config):
    val_fraction: float = _DEFAULTS.val_fraction

    def options(self) -> PackOptions:
        return PackOptions(val_fraction=self.val_fraction)


@per_repo_asset(
    deps=[repo_list, categorized_records, dedup_index, tokenizer_model],
    code_version="6",
    group_name="tokenize",
    kinds={"numpy"},
    automation_condition=automation.SHARDS,
)
def packed_shards(
    context: dg.AssetExecutionContext, config: PackConfig, storage: StorageResource, workers: WorkersResource
) -> dg.MaterializeResult:
    """Records encoded (``RecordCodec``: content runs, marker control ids) and EOS-separated, with a
    record index (boundaries, categories, provenance: path, PR, commit, license) beside each shard; the
    manifest names the split (and the ``val_fraction`` that decided it), the tokenizer hash and the
    tokens per category. Each partition is one task (``partition.pack_partition_job``) run by ``workers``."""
    require_upstream_checks_passed(context)
    layout = storage.layout()
    tokenizer_sha = read_json(layout.tokenizer_dir / INFO_FILE)["sha256"]
    load_tokenizer(layout, tokenizer_sha)  # a tokenizer without the markers fails here, before any task
    settings = {**dataclasses.asdict(config.options()), "tokenizer_sha256": tokenizer_sha}
    root = str(layout.root)
    payloads = ({"data_root": root, "key": key, "settings": settings} for key in context.partition_keys)
    per_partition = {}
    sizes: dict[str, list[int]] = {}
    pids = []
    for result in workers.map("pack", payloads):
        split = result["split"]
        for name, values in result["sizes"].items():
            sizes.setdefault(name, []).extend(values)
        per_partition[result["key"]] = {
            "records": result["records"],
            "text_tokens": result["text_tokens"],
            "tokens": result["tokens"],
            f"{split}_tokens": result["tokens"],
            **{f"{split}_tokens_{c}": n for c, n in result["tokens_by_category"].items()},
        }
        pids.append(result["worker_pid"])
    metadata = counts_metadata(per_partition)
    metadata["record_tokens"] = dg.MetadataValue.md(token_table(sizes))
    metadata.update(workers_metadata(workers.mode, pids))
    return dg.MaterializeResult(metadata=metadata)


def token_table(sizes: dict[str, list]) -> str:
    """p50 / p99 / max tokens per record kind and category over the run's partitions (the record-size
    figures: a MIX change record should be what a reviewer reads, not two file copies)."""
    rows = []
    for name in sorted(sizes):
        v = np.asarray(sizes[name])
        rows.append([name, v.size, int(np.median(v)), int(np.percentile(v, 99)), int(v.max())])
    return markdown_table(["kind category", "records", "p50 tokens", "p99 tokens", "max tokens"], rows)
