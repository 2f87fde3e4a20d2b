"""Checks on packed_shards: readable shards with in-vocabulary ids and a matching record index, no split leakage."""

import dagster as dg
import numpy as np

from gocoder_assets.checks import partition_check, result
from gocoder_assets.packed_shards.assets import PackConfig, packed_shards
from gocoder_assets.packed_shards.pack import assign_splits
from gocoder_assets.packed_shards.shard_format import CATEGORIES, ShardFormatError, open_shard, read_index
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.storage import Layout, read_json
from gocoder_assets.tokenizer_model.assets import INFO_FILE


def index_problems(tokens: np.ndarray, starts: np.ndarray, lengths: np.ndarray, eos_id: int) -> list[str]:
    """What ``read_index`` cannot see without the tokens: every record must end in EOS.

    A record whose last token is not EOS means index and shard were cut differently; a sampler
    reading category streams would then splice text across records without a separator.
    """
    if not lengths.size:
        return []
    last = np.asarray(tokens[starts + lengths - 1])
    bad = np.flatnonzero(last != eos_id)
    if not bad.size:
        return []
    return [f"{bad.size} of {lengths.size} records do not end in EOS ({eos_id}), first is record {int(bad[0])}"]


def shard_problems(
    layout: Layout, key: str, vocab_size: int, tokenizer_sha: str, eos_id: int | None = None
) -> list[str]:
    """Every way this partition's shard, index and manifest can disagree with each other or the tokenizer.

    ``eos_id`` defaults to the tokenizer's (from tokenizer_info.json in the same layout).
    """
    if eos_id is None:
        eos_id = int(read_json(layout.tokenizer_dir / INFO_FILE)["eos_id"])
    shard = layout.shard_file(key)
    try:
        tokens = open_shard(shard)
        starts, lengths, codes = read_index(shard)
    except (ShardFormatError, FileNotFoundError) as e:
        return [f"unreadable: {e}"]
    manifest = read_json(layout.shard_manifest(key))
    problems = index_problems(tokens, starts, lengths, eos_id)
    if len(tokens) != manifest["tokens"]:
        problems.append(f"{len(tokens)} tokens, manifest says {manifest['tokens']}")
    if len(tokens) and int(np.max(tokens)) >= vocab_size:
        problems.append(f"token id {int(np.max(tokens))} >= vocab size {vocab_size}")
    if manifest["tokenizer_sha256"] != tokenizer_sha:
        problems.append("built with another tokenizer")
    by_category = np.bincount(codes, weights=lengths, minlength=len(CATEGORIES))
    indexed = {c: int(n) for c, n in zip(CATEGORIES, by_category, strict=True)}
    if manifest.get("tokens_by_category") != indexed:
        problems.append(f"index has tokens by category {indexed}, manifest {manifest.get('tokens_by_category')}")
    return problems


@partition_check(asset=packed_shards, blocking=True, description="Header, ids, record index valid; records end in EOS.")
def shards_valid(layout: Layout, key: str) -> dg.AssetCheckResult:
    info = read_json(layout.tokenizer_dir / INFO_FILE)
    rows = [[p] for p in shard_problems(layout, key, info["vocab_size"], info["sha256"], info["eos_id"])]
    return result(not rows, ["problem"], rows)


@partition_check(asset=packed_shards, blocking=True, description="The repo is wholly in its assigned split.")
def split_leakage(layout: Layout, key: str) -> dg.AssetCheckResult:
    keys = list(read_repo_list(layout.repo_list_file))
    expected = assign_splits(keys, PackConfig().val_fraction)[key]
    split = read_json(layout.shard_manifest(key))["split"]
    rows = [] if split == expected else [[split, expected]]
    return result(not rows, ["manifest split", "assigned split"], rows)
