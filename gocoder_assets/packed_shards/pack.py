"""Tokenize one partition's records into a token shard, and decide its split.

A repository goes wholly to train or to val, so no file, PR or near-copy inside one repo
leaks across the split. The decision is a hash of the repository name, stable as repos
come and go; only the small-corpus fallback (guaranteeing a val repo) looks at the set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gocoder_assets.packed_shards.shard_format import MAX_VOCAB, write_shard


def split_score(name: str) -> float:
    """Uniform in [0, 1), a pure function of the repository name."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(names: Sequence[str], val_fraction: float = 0.05) -> dict[str, str]:
    """Repo name → "train" | "val".

    Repos whose score falls under ``val_fraction`` go to val. When that leaves val empty
    (likely with few repos: 0.95²⁰ ≈ 36% at 20 repos) the lowest-scoring repo goes to val,
    and if everything landed in val the highest-scoring one goes back to train.
    """
    scores = {n: split_score(n) for n in set(names)}
    splits = {n: ("val" if s < val_fraction else "train") for n, s in scores.items()}
    if len(scores) >= 2:
        if "val" not in splits.values():
            splits[min(scores, key=scores.__getitem__)] = "val"
        if "train" not in splits.values():
            splits[max(scores, key=scores.__getitem__)] = "train"
    return splits


def pack_partition(
    parquet_path: Path, shard_path: Path, sp: Any, skip: Container[str] = (), batch_records: int = 256
) -> dict[str, int]:
    """Encode every record not in ``skip`` (duplicates), append EOS after each, write the shard atomically."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    if sp.vocab_size() > MAX_VOCAB:
        raise ValueError(f"vocab size {sp.vocab_size()} does not fit the uint16 shard format")
    eos = sp.eos_id()
    chunks: list[np.ndarray] = []
    n_records = n_text_tokens = 0
    for batch in pq.ParquetFile(parquet_path).iter_batches(columns=["record_id", "text"], batch_size=batch_records):
        ids, texts = batch.column(0).to_pylist(), batch.column(1).to_pylist()
        texts = [t for i, t in zip(ids, texts, strict=True) if i not in skip]
        for ids in sp.encode(texts, num_threads=2):
            chunks.append(np.asarray([*ids, eos], dtype=np.uint16))
            n_text_tokens += len(ids)
        n_records += len(texts)
    tokens = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint16)
    write_shard(shard_path, tokens)
    return {"records": n_records, "text_tokens": n_text_tokens, "tokens": int(tokens.size)}
