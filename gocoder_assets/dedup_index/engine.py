"""The streaming dedup decision: one partition at a time, in rank order, against a store of what was kept.

Partitions are visited best-ranked first (most stars, then repository name) and each partition's records in
path order, which is exactly the order of the old whole-corpus sort ``(-stars, repo, path)``. So the first
copy inserted is always the keeper, and a later copy can only ever be the duplicate: "most stars wins, ties
by name then path" holds by construction, whatever order the partitions are stored or listed in.

Memory held here is one partition's signatures and records plus what `Lookups` caches of others (record
ids of a bounded number of partitions); the corpus-wide state is in the store.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import numpy as np

from gocoder_assets.dedup_index.stores import MemoryStore, RedisStore

MEMBER_BITS = 32  # member = partition ordinal << 32 | the record's row in the partition's signature file
_LOW = (1 << MEMBER_BITS) - 1


@dataclasses.dataclass
class Decision:
    record_id: str
    repo: str
    reason: str  # "exact" | "near"
    duplicate_of: str


@dataclasses.dataclass
class PartitionView:
    """One partition's dedup inputs in rank order; ``sigs[rows[i]]`` is record i's signature.

    ``sigs`` may read the stored signature file on demand (index.RowFile).
    """

    key: str
    record_ids: list[str]
    shas: list[str]
    rows: np.ndarray
    sigs: Any  # np.ndarray, or anything indexable like one (index.RowFile)

    def ids_by_row(self) -> list[str]:
        ids = [""] * len(self.sigs)
        for record_id, row in zip(self.record_ids, self.rows.tolist(), strict=True):
            ids[row] = record_id
        return ids


@dataclasses.dataclass(frozen=True)
class Lookups:
    """How the engine reads earlier partitions: one signature row, and record ids by row.

    Members name a signature row, not a rank position, so checking a candidate reads 1 KB of one file
    and never its records; record ids are read only for the duplicates found, a partition at a time.
    Both are expected to be cached (index.build_index: LRU of ``view_cache`` partitions).
    """

    signature: Callable[[int, int], np.ndarray]
    record_ids: Callable[[int], Sequence[str]]


@cache
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """datasketch's optimal (bands, rows) for the threshold, so candidates are what MinHashLSH would find."""
    from datasketch.lsh import _optimal_param  # noqa: PLC0415 - scipy import; same choice as MinHashLSH()

    return _optimal_param(threshold, num_perm, 0.5, 0.5)


def band_keys(values: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(records, bands) bucket keys: a 64-bit hash of each band's index and values (FNV-1a over the 32-bit
    values, murmur3 finalizer). Equal bands give equal keys; a collision only adds a candidate, which is
    checked against the real signatures, so it cannot change a verdict unless the pair is similar anyway."""
    v = values[:, : bands * rows].reshape(len(values), bands, rows).astype(np.uint64)
    h = np.full((len(values), bands), 0xCBF29CE484222325, dtype=np.uint64)
    h ^= np.arange(bands, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for j in range(rows):
        h ^= v[:, :, j]
        h *= np.uint64(0x100000001B3)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    return h


class Deduper:
    """Decides partitions one by one; call `process` in rank order (see the module docstring)."""

    def __init__(self, store: MemoryStore | RedisStore, threshold: float, num_perm: int, lookups: Lookups) -> None:
        self.store, self.threshold, self.lookups = store, threshold, lookups
        self.bands, self.rows = lsh_params(threshold, num_perm)

    def process(self, ordinal: int, view: PartitionView) -> tuple[list[Decision], collections.Counter[str]]:
        """Exact copies by content sha, then near copies by LSH candidates checked against signatures.

        Only "suspects" go through the per-record loop: records with a bucket already holding an earlier
        partition's record, or sharing a bucket with another record of this partition. Every other record
        is kept without a candidate to check, and none of its buckets can match a later record here.
        """
        counts: collections.Counter[str] = collections.Counter()
        n = len(view.record_ids)
        if n == 0:
            return [], counts
        counts["dedup_in"] = n
        members = (np.uint64(ordinal << MEMBER_BITS) | view.rows.astype(np.uint64)).tolist()
        firsts = self.store.first_members(view.shas, members)
        verdict: dict[int, tuple[str, int]] = {i: ("exact", f) for i, f in enumerate(firsts) if f is not None}
        counts["exact_dups"] = len(verdict)
        pending = np.array([i for i, first in enumerate(firsts) if first is None], dtype=np.int64)
        if len(pending):
            values = np.asarray(view.sigs[view.rows[pending]])
            keys = band_keys(values, self.bands, self.rows)
            unique, inverse, repeats = np.unique(keys.ravel(), return_inverse=True, return_counts=True)
            earlier = self.store.buckets(unique)
            suspect = repeats > 1
            if earlier:
                suspect |= np.isin(unique, np.fromiter(earlier, dtype=np.uint64, count=len(earlier)))
            kept = ~suspect[inverse.reshape(keys.shape)].any(axis=1)
            added: dict[int, list[int]] = {}
            for j in np.flatnonzero(~kept).tolist():
                i, record_keys = int(pending[j]), keys[j].tolist()
                candidates = {m for k in record_keys for m in (*earlier.get(k, ()), *added.get(k, ()))}
                match = next((m for m in sorted(candidates) if self._similar(m, ordinal, view, values[j])), None)
                if match is not None:
                    verdict[i] = ("near", match)
                    counts["near_dups"] += 1
                    continue
                kept[j] = True
                for k in record_keys:
                    added.setdefault(k, []).append(members[i])
            if kept.any():
                counts["kept"] = int(kept.sum())
                kept_members = np.array(members, dtype=np.uint64)[pending[kept]]
                self.store.add(keys[kept].ravel(), kept_members.repeat(self.bands))
        self.store.heartbeat()
        return self._decisions(ordinal, view, verdict), +counts

    def _decisions(self, ordinal: int, view: PartitionView, verdict: dict[int, tuple[str, int]]) -> list[Decision]:
        """Name the copies kept, reading record ids one source partition at a time."""
        by_source: dict[int, list[int]] = collections.defaultdict(list)
        for i, (_, member) in verdict.items():
            by_source[member >> MEMBER_BITS].append(i)
        names: dict[int, str] = {}
        for source in sorted(by_source):
            ids = view.ids_by_row() if source == ordinal else self.lookups.record_ids(source)
            for i in by_source[source]:
                names[i] = ids[verdict[i][1] & _LOW]
        return [Decision(view.record_ids[i], view.key, verdict[i][0], names[i]) for i in sorted(verdict)]

    def _similar(self, member: int, ordinal: int, current: PartitionView, values: np.ndarray) -> bool:
        source, row = member >> MEMBER_BITS, member & _LOW
        kept = np.asarray(current.sigs[row]) if source == ordinal else self.lookups.signature(source, row)
        return bool(np.mean(kept == values) >= self.threshold)
