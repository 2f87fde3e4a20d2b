"""Token shards in llm.c's format, so llm.c, modded-nanogpt and numpy read them as-is.

Layout (little-endian): a header of 256 int32 — ``[0]`` magic 20240520, ``[1]`` version 1,
``[2]`` number of tokens — followed by that many uint16 token ids. llm.c's GPT-2 format
was chosen over nanoGPT's headerless uint16 stream because the header makes a truncated
or foreign file detectable. uint16 caps the vocabulary at 65,536 ids.

Records are concatenated, each followed by EOS; "packing into fixed-length sequences" is
reading the stream in consecutive ``seq_len`` windows (the nanoGPT/llm.c convention), so
the shard is independent of any model's context length.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
TOKEN_DTYPE = np.uint16
MAX_VOCAB = int(np.iinfo(TOKEN_DTYPE).max) + 1


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
