"""Exact and near-duplicate detection across repositories (BigCode's recipe, with datasketch).

Signatures are computed once per record, when its partition is categorized, and stored
beside it; the corpus-wide index only loads stored signatures into an LSH, so adding one
repository hashes only that repository's files. Among duplicates the copy from the repo
with the most stars is kept, ties broken by repository name then path.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import re
import zlib
from collections.abc import Iterable
from functools import cache

import numpy as np

NUM_PERM = 256
SHINGLE = 5
SEED = 1
# datasketch 2.0's default scheme; its hash values fit in 32 bits, halving stored signatures.
SCHEME = "affine32"
THRESHOLD = 0.7
TOKEN = re.compile(r"\w+")


def content_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@cache
def _template():  # -> datasketch.MinHash, imported lazily: it pulls in scipy (0.6 s on every run start)
    # Building the permutations is the slow part of MinHash(); do it once and copy.
    from datasketch import MinHash  # noqa: PLC0415

    return MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME, hashfunc=zlib.crc32)


def signature(text: str) -> np.ndarray:
    """MinHash of the word 5-gram shingles (StarCoder2/The Stack v2 settings)."""
    tokens = TOKEN.findall(text)
    grams = {" ".join(tokens[i : i + SHINGLE]).encode() for i in range(max(1, len(tokens) - SHINGLE + 1))}
    # crc32 (C, stable across processes) hashes shingles ~1.6x faster than datasketch's sha1 default.
    m = type(_template())(
        num_perm=NUM_PERM, seed=SEED, permutations=_template().permutations, scheme=SCHEME, hashfunc=zlib.crc32
    )
    m.update_batch(list(grams))
    return m.hashvalues.astype(np.uint32)


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


@dataclasses.dataclass
class Decision:
    record_id: str
    repo: str
    reason: str  # "exact" | "near"
    duplicate_of: str


def deduplicate(
    candidates: Iterable[Candidate], signatures: dict[str, np.ndarray], threshold: float = THRESHOLD
) -> tuple[list[Decision], dict[str, collections.Counter[str]]]:
    """Drop decisions and per-repo counts (records in, exact dups, near dups, kept)."""
    from datasketch import LeanMinHash, MinHashLSH  # noqa: PLC0415 - heavy import, only the index needs it

    ordered = sorted(candidates, key=Candidate.rank)
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    decisions: list[Decision] = []
    first_with_sha: dict[str, str] = {}
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    kept: dict[str, np.ndarray] = {}
    for c in ordered:
        counts[c.repo]["dedup_in"] += 1
        if c.sha in first_with_sha:
            decisions.append(Decision(c.record_id, c.repo, "exact", first_with_sha[c.sha]))
            counts[c.repo]["exact_dups"] += 1
            continue
        first_with_sha[c.sha] = c.record_id
        values = signatures[c.repo][c.row]
        m = LeanMinHash(seed=SEED, hashvalues=values.astype(np.uint64), scheme=SCHEME)
        match = next(
            (k for k in lsh.query(m) if np.mean(kept[k] == values) >= threshold),
            None,
        )
        if match is not None:
            decisions.append(Decision(c.record_id, c.repo, "near", match))
            counts[c.repo]["near_dups"] += 1
            continue
        lsh.insert(c.record_id, m)
        kept[c.record_id] = values
        counts[c.repo]["kept"] += 1
    return decisions, counts
