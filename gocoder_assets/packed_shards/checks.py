"""Checks on packed_shards: readable shards with in-vocabulary ids, and no split leakage."""

import dagster as dg
import numpy as np

from gocoder_assets.checks import result, run_partition_keys
from gocoder_assets.packed_shards.assets import PackConfig, packed_shards
from gocoder_assets.packed_shards.pack import assign_splits
from gocoder_assets.packed_shards.shard_format import ShardFormatError, open_shard
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.resources import StorageResource
from gocoder_assets.storage import Layout, read_json
from gocoder_assets.tokenizer_model.assets import INFO_FILE


def shard_problems(layout: Layout, key: str, vocab_size: int, tokenizer_sha: str) -> list[str]:
    try:
        tokens = open_shard(layout.shard_file(key))
    except (ShardFormatError, FileNotFoundError) as e:
        return [f"unreadable: {e}"]
    manifest = read_json(layout.shard_manifest(key))
    problems = []
    if len(tokens) != manifest["tokens"]:
        problems.append(f"{len(tokens)} tokens, manifest says {manifest['tokens']}")
    if len(tokens) and int(np.max(tokens)) >= vocab_size:
        problems.append(f"token id {int(np.max(tokens))} >= vocab size {vocab_size}")
    if manifest["tokenizer_sha256"] != tokenizer_sha:
        problems.append("built with another tokenizer")
    return problems


@dg.asset_check(asset=packed_shards, blocking=True, description="Header, token count and ids valid.")
def shards_valid(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    layout = storage.layout()
    info = read_json(layout.tokenizer_dir / INFO_FILE)
    keys = run_partition_keys(context)
    rows = [[k, p] for k in keys for p in shard_problems(layout, k, info["vocab_size"], info["sha256"])]
    return result(not rows, ["partition", "problem"], rows, shards=len(keys))


@dg.asset_check(asset=packed_shards, blocking=True, description="Every repo wholly in train or in val.")
def split_leakage(storage: StorageResource) -> dg.AssetCheckResult:
    layout = storage.layout()
    keys = list(read_repo_list(layout.repo_list_file))
    expected = assign_splits(keys, PackConfig().val_fraction)
    rows, splits = [], {"train": 0, "val": 0}
    for key in keys:
        if not layout.shard_manifest(key).exists():
            continue
        split = read_json(layout.shard_manifest(key))["split"]
        splits[split] += 1
        if split != expected[key]:
            rows.append([key, split, expected[key]])
    return result(not rows, ["partition", "manifest split", "assigned split"], rows, **splits)
