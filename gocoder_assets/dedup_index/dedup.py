"""Exact and near-duplicate detection across repositories (BigCode's recipe, with datasketch).

Signatures are computed once per record, when its partition is categorized, and stored
beside it; the corpus-wide index only loads stored signatures into an LSH, so adding one
repository hashes only that repository's files. Among duplicates the copy from the repo
with the most stars is kept, ties broken by repository name then path (engine.py says how
that survives streaming one partition at a time).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import itertools
import re
from collections.abc import Iterable
from functools import cache

import numpy as np

from gocoder_assets.dedup_index.engine import Decision, Deduper, Lookups, PartitionView
from gocoder_assets.dedup_index.options import DedupOptions
from gocoder_assets.dedup_index.stores import MemoryStore

NUM_PERM = 256
SHINGLE = 5
SEED = 1
# datasketch 2.0's default scheme; its hash values fit in 32 bits, halving stored signatures.
SCHEME = "affine32"
TOKEN = re.compile(r"\w+")


def content_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@cache
def _permutations() -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 (a, b) for our seed, so stored values stay LeanMinHash-compatible in the index.

    datasketch is imported lazily: it pulls in scipy (0.6 s on every run start).
    """
    from datasketch import MinHash  # noqa: PLC0415

    a, b = MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME).permutations
    return a.astype(np.uint32), b.astype(np.uint32)


# Polynomial shingle hashing mod 2^64 (wrapping uint64 arithmetic); an odd base is invertible, so the hash of
# any slice is (prefix[end] - prefix[start]) * base^-start, computed for all shingles at once in numpy.
_BASE = 0x100000001B3  # FNV-64 prime (odd)
_BASE_INV = pow(_BASE, -1, 1 << 64)
_WORD_BYTE = np.zeros(256, dtype=bool)
_WORD_BYTE[[ord(c) for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"]] = True
_CHUNK = 512  # rows of the (shingles x permutations) block kept in cache at a time
_MAX32 = np.uint32(0xFFFFFFFF)


_powers_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """base^k and base^-k mod 2^64 for k < n: one pair of arrays, grown by doubling and sliced.

    Replaced with a single dict assignment, so a thread categorizing another file never sees half of it.
    """
    pair = _powers_cache.get("pair")
    if pair is None or len(pair[0]) < n:
        size = 1 << max(16, (n - 1).bit_length())
        grown = []
        for base in (_BASE, _BASE_INV):
            factors = np.full(size, base, dtype=np.uint64)
            factors[0] = 1
            grown.append(np.cumprod(factors))
        pair = _powers_cache["pair"] = (grown[0], grown[1])
    return pair[0][:n], pair[1][:n]


def _normalized(text: str) -> np.ndarray:
    """UTF-8 bytes of the \\w+ tokens joined by single spaces (`" ".join(TOKEN.findall(text))`).

    ASCII text (nearly all Go) is tokenized with a byte lookup table in numpy, a regex pass costing as much
    as everything else together; other text goes through the regex, whose \\w is Unicode-aware.
    """
    if not text.isascii():
        return np.frombuffer(" ".join(TOKEN.findall(text)).encode(), dtype=np.uint8)
    raw = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    word = _WORD_BYTE[raw]
    # keep word bytes, and the first non-word byte after each word as its separator
    keep = word.copy()
    keep[1:] |= word[:-1]
    joined = np.where(word, raw, np.uint8(32))[keep]
    return joined[:-1] if len(joined) and joined[-1] == 32 else joined


def _shingle_hashes(text: str) -> np.ndarray:
    """Distinct 32-bit hashes of the word 5-gram shingles, each hashed as its space-joined bytes."""
    joined = _normalized(text)
    spaces = np.flatnonzero(joined == 32)
    starts = np.concatenate(([0], spaces + 1))
    ends = np.concatenate((spaces, [len(joined)]))
    count = max(1, len(starts) - SHINGLE + 1)  # fewer than 5 tokens (or none): one shingle of them all
    first, last = starts[:count], ends[min(len(starts), SHINGLE) - 1 :][:count]
    pw, inv = _powers(len(joined) + 1)
    prefix = np.zeros(len(joined) + 1, dtype=np.uint64)
    np.cumsum((joined.astype(np.uint64) + np.uint64(1)) * pw[: len(joined)], out=prefix[1:])
    h = (prefix[last] - prefix[first]) * inv[first]
    # murmur3's 64-bit finalizer mixes the high half well; keep it
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    # sort + neighbour compare: numpy 2's hash-table np.unique is ~25x slower on uint32
    ordered = np.sort((h >> np.uint64(32)).astype(np.uint32))
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def minhash_values(hashes: np.ndarray) -> np.ndarray:
    """What datasketch's affine32 `MinHash.update_batch` computes for these 32-bit input hashes.

    It premixes with murmur3's 32-bit finalizer, then takes min over inputs of a*h + b mod 2^32 per
    permutation; done here in cache-sized blocks with in-place arithmetic instead of one huge temporary.
    """
    a, b = _permutations()
    h = hashes.astype(np.uint32)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    out = np.full(NUM_PERM, _MAX32, dtype=np.uint32)
    block = np.empty((min(_CHUNK, len(h)), NUM_PERM), dtype=np.uint32)
    for i in range(0, len(h), _CHUNK):
        chunk = h[i : i + _CHUNK, None]
        view = block[: len(chunk)]
        np.multiply(chunk, a, out=view)
        np.add(view, b, out=view)
        np.minimum(out, view.min(axis=0), out=out)
    return out


def signature(text: str) -> np.ndarray:
    """MinHash of the word 5-gram shingles (StarCoder2/The Stack v2 settings), vectorised end to end.

    Shingles are hashed with a polynomial hash over the normalized token stream rather than one crc32
    call per shingle: the per-shingle Python loop was most of the cost of categorizing a file.
    """
    return minhash_values(_shingle_hashes(text))


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A dedup-eligible record (a file's content) and its owner's rank."""

    record_id: str
    repo: str
    path: str
    stars: int | None
    sha: str
    row: int  # index into the partition's signature matrix

    def rank(self) -> tuple[int, str, str]:
        return (-(self.stars if self.stars is not None else -1), self.repo, self.path)


__all__ = ["Candidate", "Decision", "deduplicate", "signature"]


def deduplicate(
    candidates: Iterable[Candidate], signatures: dict[str, np.ndarray], threshold: float | None = None
) -> tuple[list[Decision], dict[str, collections.Counter[str]]]:
    """Drop decisions and per-repo counts (records in, exact dups, near dups, kept), all in memory.

    The same engine as `index.build_index`: candidates sorted by rank, cut into runs of one repo, each
    run decided as a partition.
    """
    threshold = DedupOptions().threshold if threshold is None else threshold
    ordered = sorted(candidates, key=Candidate.rank)
    views = [
        PartitionView(
            repo,
            [c.record_id for c in run],
            [c.sha for c in run],
            np.array([c.row for c in run], dtype=np.int64),
            signatures[repo],
        )
        for repo, group in itertools.groupby(ordered, key=lambda c: c.repo)
        for run in [list(group)]
    ]
    lookups = Lookups(lambda o, row: views[o].sigs[row], lambda o: views[o].ids_by_row())
    deduper = Deduper(MemoryStore(), threshold, NUM_PERM, lookups)
    decisions: list[Decision] = []
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for ordinal, view in enumerate(views):
        decided, counted = deduper.process(ordinal, view)
        decisions += decided
        counts[view.key].update(counted)
    return decisions, counts
