"""Loading stored signatures into one corpus-wide dedup decision, and reading it back."""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gocoder_assets.dedup_index.dedup import Candidate, deduplicate
from gocoder_assets.sources.base import RepoInfo
from gocoder_assets.storage import Layout, write_parquet

DROPPED_SCHEMA = pa.schema(
    [("record_id", pa.string()), ("repo", pa.string()), ("reason", pa.string()), ("duplicate_of", pa.string())]
)


def load_candidates(layout: Layout, repos: dict[str, RepoInfo]) -> tuple[list[Candidate], dict[str, np.ndarray]]:
    candidates, signatures = [], {}
    for key, repo in repos.items():
        table = pq.read_table(layout.categorized_file(key), columns=["record_id", "path", "content_sha", "sig_row"])
        sigs = np.load(layout.signatures_file(key))
        rows = [r for r in table.to_pylist() if r["sig_row"] is not None]
        if len(rows) != len(sigs):
            msg = f"{key}: {len(rows)} records but {len(sigs)} signatures; re-materialize categorized_records"
            raise ValueError(msg)
        signatures[key] = sigs
        candidates += [
            Candidate(r["record_id"], key, r["path"], repo.stars, r["content_sha"], r["sig_row"]) for r in rows
        ]
    return candidates, signatures


def build_index(layout: Layout, repos: dict[str, RepoInfo], threshold: float) -> dict[str, collections.Counter[str]]:
    candidates, signatures = load_candidates(layout, repos)
    decisions, counts = deduplicate(candidates, signatures, threshold)
    rows = (dataclasses.asdict(d) for d in sorted(decisions, key=lambda d: d.record_id))
    write_parquet(rows, layout.dedup_file, DROPPED_SCHEMA)
    return counts


def dropped_ids(path: Path) -> set[str]:
    """Record ids the index removed; empty when there is no index yet. Record ids embed their
    partition key, so one set serves every partition."""
    if not path.exists():
        return set()
    return set(pq.read_table(path, columns=["record_id"]).column(0).to_pylist())
