"""Shard format and train/val split rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gocoder_assets.checkpoint.assets import shard_splits
from gocoder_assets.packed_shards.pack import assign_splits
from gocoder_assets.packed_shards.shard_format import HEADER_BYTES, ShardFormatError, open_shard, write_shard
from gocoder_assets.repo_list.repos import write_repo_list
from gocoder_assets.sources.base import RepoInfo
from gocoder_assets.storage import Layout, write_json


def test_shard_round_trip_and_numpy_memmap(tmp_path: Path) -> None:
    tokens = np.array([5, 0, 65535, 2], dtype=np.uint16)
    path = tmp_path / "s.bin"
    write_shard(path, tokens)
    np.testing.assert_array_equal(open_shard(path), tokens)
    # The documented plain-numpy recipe reads the same thing.
    np.testing.assert_array_equal(np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES), tokens)
    assert np.fromfile(path, dtype="<i4", count=3).tolist() == [20240520, 1, 4]


def test_truncated_or_foreign_shards_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "s.bin"
    write_shard(path, np.arange(100, dtype=np.uint16))
    data = path.read_bytes()
    path.write_bytes(data[:-2])
    with pytest.raises(ShardFormatError, match="header says 100"):
        open_shard(path)
    path.write_bytes(b"\0" * len(data))
    with pytest.raises(ShardFormatError, match="magic"):
        open_shard(path)
    with pytest.raises(ValueError, match="uint16"):
        write_shard(path, np.array([70000]))


def test_splits_are_per_repo_deterministic_and_never_empty() -> None:
    names = [f"owner/repo{i}" for i in range(1000)]
    splits = assign_splits(names)
    assert splits == assign_splits(list(reversed(names)))
    assert 0.03 < sum(s == "val" for s in splits.values()) / len(names) < 0.07
    # Adding repos never moves an existing one (for corpora big enough to need no fallback).
    assert all(assign_splits([*names, "new/one"])[n] == s for n, s in splits.items())
    for n in range(2, 20):
        small = assign_splits(names[:n])
        assert set(small.values()) == {"train", "val"}, n
    assert assign_splits(["only/one"]) in ({"only/one": "train"}, {"only/one": "val"})


def test_training_refuses_shards_from_another_tokenizer_or_torn(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    repos = [RepoInfo(k, k, "u" + k, None, "MIT", "main", "sha", "now", "git") for k in ("a/x", "b/y")]
    write_repo_list(repos, layout.repo_list_file)
    for key, split in (("a/x", "train"), ("b/y", "val")):
        write_shard(layout.shard_file(key), np.arange(10, dtype=np.uint16))
        write_json(layout.shard_manifest(key), {"tokens": 10, "split": split, "tokenizer_sha256": "t1"})
    assert shard_splits(layout, "t1") == ([layout.shard_file("a/x")], [layout.shard_file("b/y")])
    with pytest.raises(ValueError, match="older tokenizer"):
        shard_splits(layout, "t2")
    write_shard(layout.shard_file("b/y"), np.arange(5, dtype=np.uint16))
    with pytest.raises(ValueError, match="disagrees with its manifest"):
        shard_splits(layout, "t1")
