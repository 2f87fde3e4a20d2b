"""Deciding the corpus-wide drop list from stored per-partition signatures, and reading it back.

Partitions stream through the engine one at a time in rank order (engine.py); the LSH buckets and
first-seen content hashes live in a store (stores.py: this process, or Redis), and the drop decisions go
through an external sort (spill.py) into one atomically written Parquet file. So with
``lsh_storage="redis"`` the building process holds one partition's records and signatures, the record ids
of at most ``view_cache`` other partitions, at most ``spill_rows`` decisions, and per-repo counters and
keys: O(repos), not O(records).
"""

from __future__ import annotations

import collections
import functools
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gocoder_assets.dedup_index.dedup import NUM_PERM
from gocoder_assets.dedup_index.engine import Deduper, Lookups, PartitionView, lsh_params
from gocoder_assets.dedup_index.options import DedupOptions
from gocoder_assets.dedup_index.spill import SortedRuns
from gocoder_assets.dedup_index.stores import open_store
from gocoder_assets.sources.base import RepoInfo
from gocoder_assets.storage import Layout, write_parquet

DROPPED_SCHEMA = pa.schema(
    [("record_id", pa.string()), ("repo", pa.string()), ("reason", pa.string()), ("duplicate_of", pa.string())]
)


def repo_rank(key: str, repo: RepoInfo) -> tuple[int, str]:
    """Most stars first (unknown below zero), then name: the order partitions are decided in."""
    return (-(repo.stars if repo.stars is not None else -1), key)


class RowFile:
    """A stored signature matrix (.npy) read on demand: one row by pread, or all rows for a fancy index.

    Views of other partitions stay cached for checking candidates; a memory map would keep every page
    such a check touched resident in this process (64 views x 2 MB at 2,000 records each), a pread keeps
    nothing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            self.shape, fortran, self.dtype = read(f)
            self.offset = f.tell()
        if fortran or len(self.shape) != 2:
            msg = f"{path}: expected a C-order 2-D signature matrix, got shape {self.shape}"
            raise ValueError(msg)
        self.row_bytes = self.shape[1] * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: int | np.ndarray) -> np.ndarray:
        if isinstance(rows, np.ndarray):
            return np.fromfile(self.path, dtype=self.dtype, offset=self.offset).reshape(self.shape)[rows]
        with open(self.path, "rb") as f:
            data = os.pread(f.fileno(), self.row_bytes, self.offset + int(rows) * self.row_bytes)
        return np.frombuffer(data, dtype=self.dtype)


def load_view(layout: Layout, key: str) -> PartitionView:
    """A partition's records with a signature, in path order (ties in stored order); signatures on disk."""
    table = pq.read_table(layout.categorized_file(key), columns=["record_id", "path", "content_sha", "sig_row"])
    sigs = RowFile(layout.signatures_file(key))
    rows = [r for r in table.to_pylist() if r["sig_row"] is not None]
    if len(rows) != len(sigs):
        msg = f"{key}: {len(rows)} records but {len(sigs)} signatures; re-materialize categorized_records"
        raise ValueError(msg)
    rows.sort(key=lambda r: r["path"])
    return PartitionView(
        key,
        [r["record_id"] for r in rows],
        [r["content_sha"] for r in rows],
        np.array([r["sig_row"] for r in rows], dtype=np.int64),
        sigs,
    )


def load_ids(layout: Layout, key: str) -> list[str]:
    """A partition's record ids by signature row (what a duplicate's ``duplicate_of`` names)."""
    table = pq.read_table(layout.categorized_file(key), columns=["record_id", "sig_row"])
    ids = [""] * (len(table) - table.column("sig_row").null_count)
    for record_id, row in zip(*(table.column(c).to_pylist() for c in ("record_id", "sig_row")), strict=True):
        if row is not None:
            ids[row] = record_id
    return ids


def _reap_spill_dirs(directory: Path, older_than_s: float) -> None:
    """Spill folders of builds killed mid-way (a finished or failed build removes its own)."""
    for stale in directory.glob(".runs.*"):
        if time.time() - stale.stat().st_mtime > older_than_s:
            shutil.rmtree(stale, ignore_errors=True)


def build_index(
    layout: Layout,
    repos: dict[str, RepoInfo],
    options: DedupOptions | None = None,
    load: Callable[[Layout, str], PartitionView] = load_view,
) -> dict[str, collections.Counter[str]]:
    """Write the drop list (sorted by record id) and return per-repo counts.

    The file is replaced only when the whole build succeeds; a Redis build deletes its keys either way.
    ``load`` is how a partition is read (tests count what it hands out).
    """
    options = options or DedupOptions.from_env()
    order = sorted(repos, key=lambda k: repo_rank(k, repos[k]))
    out_dir = layout.dedup_file.parent
    _reap_spill_dirs(out_dir, options.stale_after_s)

    @functools.lru_cache(maxsize=options.view_cache)
    def row_file(ordinal: int) -> RowFile:
        return RowFile(layout.signatures_file(order[ordinal]))

    @functools.lru_cache(maxsize=options.view_cache)
    def record_ids(ordinal: int) -> list[str]:
        return load_ids(layout, order[ordinal])

    lookups = Lookups(lambda ordinal, row: row_file(ordinal)[row], record_ids)
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    with tempfile.TemporaryDirectory(prefix=".runs.", dir=out_dir) as spill_dir:
        runs = SortedRuns(Path(spill_dir), DROPPED_SCHEMA, options.spill_rows)
        store = open_store(options, bands=lsh_params(options.threshold, NUM_PERM)[0])
        deduper = Deduper(store, options.threshold, NUM_PERM, lookups)
        try:
            for ordinal, key in enumerate(order):
                decisions, counted = deduper.process(ordinal, load(layout, key))
                if counted:
                    counts[key].update(counted)
                runs.add(
                    [
                        dict(zip(DROPPED_SCHEMA.names, (d.record_id, d.repo, d.reason, d.duplicate_of), strict=True))
                        for d in decisions
                    ]
                )
        finally:
            store.close()
        write_parquet(runs.sorted(), layout.dedup_file, DROPPED_SCHEMA)
    return counts


def dropped_ids(path: Path, repo: str | None = None) -> set[str]:
    """Record ids the index removed; empty when there is no index yet.

    With ``repo``, only that partition's (a per-partition consumer then holds its own drops, not the
    corpus's: the file is row-grouped in record-id order, so this still reads the repo column whole).
    """
    if not path.exists():
        return set()
    filters = [("repo", "=", repo)] if repo is not None else None
    return set(pq.read_table(path, columns=["record_id"], filters=filters).column(0).to_pylist())
