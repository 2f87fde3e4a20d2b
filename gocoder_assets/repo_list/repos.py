"""The repository table: one row per repository with its provenance (Parquet)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gocoder_assets.sources.base import RepoInfo
from gocoder_assets.storage import write_parquet

REPO_SCHEMA = pa.schema(
    [
        ("partition_key", pa.string()),
        ("full_name", pa.string()),
        ("url", pa.string()),
        ("stars", pa.int64()),
        ("license_spdx", pa.string()),
        ("default_branch", pa.string()),
        ("commit_sha", pa.string()),
        ("fetched_at", pa.string()),
        ("source", pa.string()),
        ("root", pa.string()),
        ("license_key", pa.string()),
    ]
)


def write_repo_list(repos: list[RepoInfo], path: Path) -> None:
    keys = [r.partition_key for r in repos]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ValueError(f"duplicate repositories in the source's list: {dupes[:10]}")
    write_parquet(iter(r.as_row() for r in repos), path, REPO_SCHEMA)


def read_repo_list(path: Path) -> dict[str, RepoInfo]:
    """Partition key → repo, in list order. A clear error if repo_list was never materialized."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: materialize repo_list first")
    return {row["partition_key"]: RepoInfo.from_row(row) for row in pq.read_table(path).to_pylist()}
