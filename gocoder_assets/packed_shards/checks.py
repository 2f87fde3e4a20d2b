"""Checks on packed_shards: readable shards with in-vocabulary ids and a matching record index, no split leakage.

Both judge a partition by what packed it: the tokenizer its manifest names, and the ``val_fraction`` its
manifest records (never packed_shards' default), so a run with another val_fraction is judged by its own.
"""

import collections
import functools
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import numpy as np

from gocoder_assets.checks import partition_check, result
from gocoder_assets.packed_shards.assets import packed_shards
from gocoder_assets.packed_shards.partition import split_assignment
from gocoder_assets.packed_shards.shard_format import CATEGORIES, ShardFormatError, open_shard, read_index
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
    if not layout.shard_manifest(key).exists():  # packing writes it last: a run died mid-partition
        return ["no manifest: the partition was not packed to the end; re-materialize it"]
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


UNRECORDED = "manifest has no val_fraction: written before settings were recorded; re-materialize packed_shards"


@functools.lru_cache(maxsize=1)
def _val_fractions(stamps: tuple[tuple[str, str, int, int], ...]) -> dict[str, float | None]:
    """Each packed partition's recorded val_fraction (None: not recorded), keyed by partition.

    ``stamps`` (key, manifest path, mtime, size) is the cache key: a run checks each of its partitions
    against every manifest, and re-reading them all per partition would be quadratic in repositories.
    """
    out: dict[str, float | None] = {}
    for key, path, _, _ in stamps:
        try:
            out[key] = read_json(Path(path)).get("val_fraction")
        except FileNotFoundError:  # removed since the stat: not packed
            continue
    return out


def recorded_fractions(layout: Layout, keys: Sequence[str]) -> dict[str, float | None]:
    """The val_fraction each packed partition of ``keys`` was packed with (partitions never packed left out)."""
    stamps = []
    for key in keys:
        path = layout.shard_manifest(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        stamps.append((key, str(path), st.st_mtime_ns, st.st_size))
    return _val_fractions(tuple(stamps))


def split_problems(layout: Layout, key: str) -> list[list]:
    """Rows ``[problem, detail]``: the split this partition was packed into is not the one ``assign_splits``
    gives it, over every repository of repo_list, with the val_fraction it was packed with; or the
    partitions were packed with different val_fractions (a mixed split, no single rule behind it)."""
    if not layout.shard_manifest(key).exists():
        return [["not packed", "no manifest; re-materialize packed_shards for this partition"]]
    manifest = read_json(layout.shard_manifest(key))
    fraction = manifest.get("val_fraction")
    if fraction is None:
        return [["settings", UNRECORDED]]
    splits = split_assignment(layout, float(fraction))
    keys = list(splits)
    rows: list[list] = []
    expected = splits[key]
    if manifest["split"] != expected:
        detail = f"packed into {manifest['split']}; assign_splits at val_fraction {fraction} puts it in {expected}"
        rows.append(["wrong split", detail])
    # Partitions without a record fail on their own (above); they say nothing about the rule.
    counts = collections.Counter(v for v in recorded_fractions(layout, keys).values() if v is not None)
    if len(counts) > 1:
        # The usual case is a few partitions packed later with another setting: those are the odd ones out.
        # With no clear majority every partition is reported, since none is the rule.
        (common, n), *rest = counts.most_common()
        if fraction != common or (rest and rest[0][1] == n):
            seen = ", ".join(f"{v}: {c} partitions" for v, c in counts.most_common())
            detail = (
                f"packed with val_fraction {fraction}; the partitions were packed with {seen}; "
                "re-materialize packed_shards over all partitions with one val_fraction"
            )
            rows.append(["mixed split", detail])
    return rows


@partition_check(
    asset=packed_shards,
    blocking=True,
    description="The repo is wholly in the split assign_splits gives it with the val_fraction its manifest "
    "records, and every partition was packed with the same val_fraction.",
)
def split_leakage(layout: Layout, key: str) -> dg.AssetCheckResult:
    rows = split_problems(layout, key)
    return result(not rows, ["problem", "detail"], rows)
