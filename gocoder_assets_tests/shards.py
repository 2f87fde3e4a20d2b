"""Planted token shards for tests: each record's tokens plus EOS, with the record index beside them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gocoder_assets.packed_shards.shard_format import write_index, write_shard


def make_shard(path: Path, records: Sequence[tuple[str, Sequence[int]]], eos: int) -> Path:
    """Write ``path`` (a shard) and its index from (category, tokens) records; record ids are r0, r1, ….

    Each shard needs a folder of its own (the index is ``records.parquet`` beside it), so pass
    paths like ``tmp / "repo0" / "tokens.bin"``; the folder is created.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = [np.asarray([*tokens, eos], dtype=np.uint16) for _, tokens in records]
    lengths = np.array([c.size for c in chunks], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if chunks else lengths
    ids = [f"r{i}" for i in range(len(records))]
    write_index(path, ids, [category for category, _ in records], starts, lengths)
    write_shard(path, np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint16))
    return path
