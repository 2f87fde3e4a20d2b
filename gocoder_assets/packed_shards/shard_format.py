"""Token shards in llm.c's format, so llm.c, modded-nanogpt and numpy read them as-is.

Layout (little-endian): a header of 256 int32 — ``[0]`` magic 20240520, ``[1]`` version 1,
``[2]`` number of tokens — followed by that many uint16 token ids. llm.c's GPT-2 format
was chosen over nanoGPT's headerless uint16 stream because the header makes a truncated
or foreign file detectable. uint16 caps the vocabulary at 65,536 ids.

Records are concatenated, each followed by EOS; "packing into fixed-length sequences" is
reading the stream in consecutive ``seq_len`` windows (the nanoGPT/llm.c convention), so
the shard is independent of any model's context length.

Beside each shard, ``records.parquet`` (the *record index*) keeps what the flat stream
loses: where each record starts, how many tokens it has (its trailing EOS included) and
its category. Training samples by category and evaluation reports per category from it;
llm.c-style readers that only know the ``.bin`` are unaffected. It also carries each record's
provenance (``PROVENANCE_COLUMNS``: repository, path, PR, commit, license), so any token position
traces back to what it came from (``provenance.trace``) without re-reading categorized_records.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# The one list of record categories (the serializer's, so record text and index never disagree);
# a category's *code* is its position here, as uint8.
from gocoder_assets.categorized_records.serialize import CATEGORIES
from gocoder_assets.storage import atomic_file

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
TOKEN_DTYPE = np.uint16
MAX_VOCAB = int(np.iinfo(TOKEN_DTYPE).max) + 1
INDEX_FILE = "records.parquet"
# Per-record provenance in the index: (column, Arrow type name). Repository-level facts (url, fetched_at,
# stars) stay in repo_list; these are what differs per record or what a trace must show on its own.
PROVENANCE_COLUMNS = (
    ("repo", "string"), ("path", "string"), ("pr_number", "int64"), ("commit_sha", "string"),
    ("license", "string"), ("license_key", "string"),
)  # fmt: skip


class ShardFormatError(ValueError):
    """The file is not a complete llm.c token shard."""


def write_shard(path: Path, tokens: np.ndarray) -> None:
    """Write atomically: the shard appears complete or not at all."""
    tokens = np.asarray(tokens)
    if tokens.size and int(tokens.max()) >= MAX_VOCAB:
        raise ValueError(f"token id {int(tokens.max())} does not fit uint16")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = MAGIC, VERSION, tokens.size
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2", copy=False).tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_header(path: Path) -> int:
    """Validate the header against the file size and return the token count."""
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise ShardFormatError(f"{path}: {size} bytes is shorter than the header")
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if header[0] != MAGIC or header[1] != VERSION:
        raise ShardFormatError(f"{path}: magic/version {header[0]}/{header[1]}, expected {MAGIC}/{VERSION}")
    n = int(header[2])
    if size != HEADER_BYTES + 2 * n:
        raise ShardFormatError(f"{path}: header says {n} tokens but file holds {(size - HEADER_BYTES) / 2}")
    return n


def open_shard(path: Path) -> np.memmap:
    """Memory-map the tokens (no copy: a corpus larger than RAM trains fine)."""
    n = read_header(path)
    return np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(n,))


def index_path(shard_path: Path) -> Path:
    """The record index beside a shard; data code has only shard paths, so the rule lives here."""
    return Path(shard_path).with_name(INDEX_FILE)


def category_codes(categories: Sequence[str]) -> np.ndarray:
    """uint8 codes (positions in ``CATEGORIES``); an unknown name is an error, not a silent new code."""
    lookup = {c: i for i, c in enumerate(CATEGORIES)}
    unknown = sorted({c for c in categories if c not in lookup}, key=str)
    if unknown:
        raise ShardFormatError(f"unknown categories {unknown}; known: {CATEGORIES}")
    return np.fromiter((lookup[c] for c in categories), dtype=np.uint8, count=len(categories))


def write_index(
    shard_path: Path,
    record_ids: Sequence[str],
    categories: Sequence[str],
    starts: Sequence[int] | np.ndarray,
    lengths: Sequence[int] | np.ndarray,
    kinds: Sequence[str] | None = None,
    provenance: Mapping[str, Sequence[Any]] | None = None,
) -> None:
    """Write the record index for ``shard_path`` atomically (before the shard: see pack_partition).

    ``kinds`` (file, change, issue, doc, overview) let metadata report record sizes per kind, and
    ``provenance`` (``PROVENANCE_COLUMNS`` by name, one value per record) lets a token be traced to its
    source; both optional (missing columns are nulls), since samplers and checks need only categories
    and boundaries."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    n = len(record_ids)
    if not len(categories) == len(starts) == len(lengths) == n:
        raise ValueError(f"index columns differ in length: {n}, {len(categories)}, {len(starts)}, {len(lengths)}")
    category_codes(categories)  # validate before anything is written
    provenance = dict(provenance or {})
    unknown = sorted(set(provenance) - {name for name, _ in PROVENANCE_COLUMNS})
    if unknown:
        raise ValueError(f"unknown provenance columns {unknown}; known: {[c for c, _ in PROVENANCE_COLUMNS]}")
    bad = sorted(c for c, v in provenance.items() if len(v) != n)
    if bad:
        raise ValueError(f"provenance columns {bad} do not have one value per record ({n})")
    columns = {
        "record_id": pa.array(list(record_ids), pa.string()),
        "category": pa.array(list(categories), pa.string()),
        "start": pa.array(np.asarray(starts, dtype=np.int64), pa.int64()),
        "tokens": pa.array(np.asarray(lengths, dtype=np.int32), pa.int32()),
        "kind": pa.array(list(kinds) if kinds is not None else [None] * n, pa.string()),
    }
    for name, type_name in PROVENANCE_COLUMNS:
        columns[name] = pa.array(list(provenance.get(name, [None] * n)), pa.type_for_alias(type_name))
    table = pa.table(columns)
    with atomic_file(index_path(shard_path)) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_index(shard_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts int64, lengths int64, category codes uint8) of every record, validated against the shard.

    Validation is what lets samplers trust the index blindly: records are contiguous from 0, each
    has at least one token (its EOS), they add up to the shard's token count, categories are known.
    """
    import pyarrow.parquet as pq  # noqa: PLC0415

    path = index_path(shard_path)
    if not path.exists():
        raise ShardFormatError(
            f"{shard_path}: no record index ({path.name}); the shard predates record indexes, "
            "re-materialize packed_shards"
        )
    table = pq.read_table(path, columns=["category", "start", "tokens"])
    starts = table.column("start").to_numpy().astype(np.int64, copy=False)
    lengths = table.column("tokens").to_numpy().astype(np.int64)
    codes = category_codes(table.column("category").to_pylist())
    if lengths.size and int(lengths.min()) < 1:
        raise ShardFormatError(f"{path}: a record with {int(lengths.min())} tokens (each ends in EOS, so >= 1)")
    expected = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if lengths.size else lengths
    if not np.array_equal(starts, expected):
        bad = int(np.flatnonzero(starts != expected)[0])
        raise ShardFormatError(f"{path}: record {bad} starts at {starts[bad]}, expected {expected[bad]} (contiguous)")
    total, n = int(lengths.sum()), read_header(shard_path)
    if total != n:
        raise ShardFormatError(f"{path}: records hold {total} tokens but the shard has {n}")
    return starts, lengths, codes
