"""Tokenize one partition's records into a token shard, and decide its split.

A repository goes wholly to train or to val, so no file, PR or near-copy inside one repo
leaks across the split. The decision is a hash of the repository name, stable as repos
come and go; only the small-corpus fallback (guaranteeing a val repo) looks at the set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gocoder_assets.packed_shards.shard_format import (
    CATEGORIES,
    MAX_VOCAB,
    PROVENANCE_COLUMNS,
    category_codes,
    write_index,
    write_shard,
)


def split_score(name: str) -> float:
    """Uniform in [0, 1), a pure function of the repository name."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class PackOptions:
    """How packing splits the corpus; one default per setting (PackConfig takes it from here).

    ``val_fraction``: the share of repositories in val; tokenizer_model holds out the same repositories.
    """

    val_fraction: float = 0.05


VAL_FRACTION = PackOptions().val_fraction


def assign_splits(names: Sequence[str], val_fraction: float = VAL_FRACTION) -> dict[str, str]:
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


@dataclass(frozen=True)
class PackStats:
    """What one partition's shard holds; ``tokens`` counts each record's trailing EOS, ``text_tokens`` not."""

    records: int
    text_tokens: int
    tokens: int
    tokens_by_category: dict[str, int]


def pack_partition(
    parquet_path: Path, shard_path: Path, codec: Any, skip: Container[str] = (), batch_records: int = 256
) -> PackStats:
    """Encode every record not in ``skip`` (duplicates), append EOS after each, write index and shard.

    ``codec`` is a ``tokenizer_model.encode.RecordCodec`` (anything with its ``encode``, ``vocab_size``
    and ``eos_id``): records are stored with marker sentinels, and only the codec turns them into ids,
    content runs through SentencePiece and each marker as its control id, so no content forges one.

    The index is written first and the shard second (each atomically), and the caller writes the
    manifest last: a reader that finds a manifest finds both, and a shard never lacks its index.

    Each record's provenance columns (``PROVENANCE_COLUMNS``) that the Parquet has are copied into the
    index, so every token position can be traced to its repository, path, commit and license; a column
    the input lacks (a hand-made test file) is left null rather than failing the pack.
    """
    import pyarrow.parquet as pq  # noqa: PLC0415

    if codec.vocab_size() > MAX_VOCAB:
        raise ValueError(f"vocab size {codec.vocab_size()} does not fit the uint16 shard format")
    eos = codec.eos_id()
    chunks: list[np.ndarray] = []
    record_ids: list[str] = []
    categories: list[str] = []
    kinds: list[str] = []
    n_text_tokens = 0
    source = pq.ParquetFile(parquet_path)
    traced = [c for c, _ in PROVENANCE_COLUMNS if c in source.schema_arrow.names]
    provenance: dict[str, list[Any]] = {c: [] for c in traced}
    columns = ["record_id", "category", "kind", "text", *traced]
    for batch in source.iter_batches(columns=columns, batch_size=batch_records):
        rows = zip(*(batch.column(c).to_pylist() for c in columns), strict=True)
        kept = [row for row in rows if row[0] not in skip]
        for ids in codec.encode([row[3] for row in kept]):
            chunks.append(np.asarray([*ids, eos], dtype=np.uint16))
            n_text_tokens += len(ids)
        record_ids.extend(row[0] for row in kept)
        categories.extend(row[1] for row in kept)
        kinds.extend(row[2] for row in kept)
        for i, c in enumerate(traced, start=4):
            provenance[c].extend(row[i] for row in kept)
    lengths = np.fromiter((c.size for c in chunks), dtype=np.int64, count=len(chunks))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if chunks else lengths
    tokens = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint16)
    codes = category_codes(categories)  # an unknown category fails here, before anything is written
    by_category = np.bincount(codes, weights=lengths, minlength=len(CATEGORIES))
    write_index(shard_path, record_ids, categories, starts, lengths, kinds, provenance)
    write_shard(shard_path, tokens)
    return PackStats(
        records=len(record_ids),
        text_tokens=n_text_tokens,
        tokens=int(tokens.size),
        tokens_by_category={c: int(n) for c, n in zip(CATEGORIES, by_category, strict=True)},
    )
