"""packed_shards: each repository's token ids in an llm.c shard plus its record index, assigned to train or val."""

import dataclasses

import dagster as dg
import numpy as np
import pyarrow.parquet as pq

from gocoder_assets import automation
from gocoder_assets.categorized_records.assets import categorized_records
from gocoder_assets.categorized_records.serialize import MARKERS
from gocoder_assets.checks import require_upstream_checks_passed
from gocoder_assets.dedup_index.assets import dedup_index
from gocoder_assets.dedup_index.index import dropped_ids
from gocoder_assets.metadata import counts_metadata, markdown_table
from gocoder_assets.packed_shards.pack import VAL_FRACTION, assign_splits, pack_partition
from gocoder_assets.packed_shards.shard_format import index_path
from gocoder_assets.partitions import per_repo_asset
from gocoder_assets.repo_list.assets import repo_list
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.resources import StorageResource
from gocoder_assets.storage import read_json, write_json
from gocoder_assets.tokenizer_model.assets import INFO_FILE, tokenizer_model
from gocoder_assets.tokenizer_model.encode import RecordCodec
from gocoder_assets.tokenizer_model.train import load_processor


class PackConfig(dg.Config):
    val_fraction: float = VAL_FRACTION


@per_repo_asset(
    deps=[repo_list, categorized_records, dedup_index, tokenizer_model],
    code_version="5",
    group_name="tokenize",
    kinds={"numpy"},
    automation_condition=automation.SHARDS,
)
def packed_shards(
    context: dg.AssetExecutionContext, config: PackConfig, storage: StorageResource
) -> dg.MaterializeResult:
    """Records encoded (``RecordCodec``: content runs, marker control ids) and EOS-separated, with a
    record index (boundaries, categories, provenance: path, PR, commit, license) beside each shard; the
    manifest names the split, the tokenizer hash and the tokens per category."""
    require_upstream_checks_passed(context)
    layout = storage.layout()
    splits = assign_splits(list(read_repo_list(layout.repo_list_file)), config.val_fraction)
    sp = load_processor(layout.tokenizer_dir)
    codec = RecordCodec(sp, MARKERS)  # markers as control ids; fails here on a tokenizer without them
    tokenizer_sha = read_json(layout.tokenizer_dir / INFO_FILE)["sha256"]
    # Read the index once per run, not once per partition.
    dropped = dropped_ids(layout.dedup_file)
    per_partition = {}
    sizes: dict[str, list[np.ndarray]] = {}
    for key in context.partition_keys:
        split = splits[key]
        # A manifest means "index and shard complete": drop the old one before rewriting either, so a
        # run killed mid-partition leaves no manifest vouching for a half-replaced pair.
        layout.shard_manifest(key).unlink(missing_ok=True)
        stats = pack_partition(layout.categorized_file(key), layout.shard_file(key), codec, dropped)
        manifest = {
            **dataclasses.asdict(stats),
            "split": split,
            "tokenizer_sha256": tokenizer_sha,
            "vocab_size": sp.vocab_size(),
        }
        write_json(layout.shard_manifest(key), manifest)
        index = pq.read_table(index_path(layout.shard_file(key)), columns=["kind", "category", "tokens"])
        for kind, category, tokens in zip(*(index.column(c).to_numpy(zero_copy_only=False) for c in
                                            ("kind", "category", "tokens")), strict=True):  # fmt: skip
            sizes.setdefault(f"{kind} {category}", []).append(tokens - 1)  # without the record's EOS
        per_partition[key] = {
            "records": stats.records,
            "text_tokens": stats.text_tokens,
            "tokens": stats.tokens,
            f"{split}_tokens": stats.tokens,
            **{f"{split}_tokens_{c}": n for c, n in stats.tokens_by_category.items()},
        }
    metadata = counts_metadata(per_partition)
    metadata["record_tokens"] = dg.MetadataValue.md(token_table(sizes))
    return dg.MaterializeResult(metadata=metadata)


def token_table(sizes: dict[str, list]) -> str:
    """p50 / p99 / max tokens per record kind and category over the run's partitions (the record-size
    figures: a MIX change record should be what a reviewer reads, not two file copies)."""
    rows = []
    for name in sorted(sizes):
        v = np.asarray(sizes[name])
        rows.append([name, v.size, int(np.median(v)), int(np.percentile(v, 99)), int(v.max())])
    return markdown_table(["kind category", "records", "p50 tokens", "p99 tokens", "max tokens"], rows)
