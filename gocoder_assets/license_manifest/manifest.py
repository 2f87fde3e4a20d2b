"""The license manifest: one CSV row per repository whose text is in the shards, with what it gave.

Distributing a model (or its shards) trained on open-source code comes with obligations that depend on
each source's license; meeting them needs a list of every source with its license, the exact revision
used and how much of it went in. The numbers come from the packed_shards record indexes (what was
actually tokenized, after filtering and dedup), not from repo_list (what was collected), so a repository
whose every record was dropped is absent: it contributed nothing. Dagster-free.
"""

from __future__ import annotations

import collections
import csv
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from gocoder_assets.packed_shards.shard_format import CATEGORIES, index_path, read_index
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.sources.base import RepoInfo
from gocoder_assets.storage import Layout, atomic_file, read_json

COLUMNS = (
    "repo", "url", "license", "license_key", "commit_sha", "fetched_at", "split",
    *(f"records_{c}" for c in CATEGORIES), "records", *(f"tokens_{c}" for c in CATEGORIES), "tokens",
)  # fmt: skip
INT_COLUMNS = tuple(c for c in COLUMNS if c.startswith(("records", "tokens")))


def repo_row(layout: Layout, repo: RepoInfo, tokenizer_sha: str) -> dict[str, Any]:
    """One repository's row, from its shard's index and manifest; refuses a partition that is missing,
    packed with another tokenizer, or whose records carry another license than repo_list says."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    key = repo.partition_key
    manifest_path, shard = layout.shard_manifest(key), layout.shard_file(key)
    if not manifest_path.exists():
        raise FileNotFoundError(f"packed_shards not materialized for partition {key!r}")
    manifest = read_json(manifest_path)
    if manifest["tokenizer_sha256"] != tokenizer_sha:
        raise ValueError(f"packed_shards partition {key!r} was built with another tokenizer; re-materialize it")
    _, lengths, codes = read_index(shard)
    names = pq.read_schema(index_path(shard)).names
    if "license" not in names:
        raise ValueError(f"{index_path(shard)} has no provenance columns; re-materialize packed_shards")
    licenses = set(pq.read_table(index_path(shard), columns=["license"]).column(0).to_pylist())
    if licenses - {repo.license_spdx}:
        raise ValueError(f"{key!r}: records licensed {sorted(map(str, licenses))}, repo_list says {repo.license_spdx}")
    tokens = np.bincount(codes, weights=lengths, minlength=len(CATEGORIES)).astype(np.int64)
    records = np.bincount(codes, minlength=len(CATEGORIES))
    return {
        "repo": key,
        "url": repo.url,
        "license": repo.license_spdx,
        "license_key": repo.license_key,
        "commit_sha": repo.commit_sha,
        "fetched_at": repo.fetched_at,
        "split": manifest["split"],
        **{f"records_{c}": int(n) for c, n in zip(CATEGORIES, records, strict=True)},
        "records": int(records.sum()),
        **{f"tokens_{c}": int(n) for c, n in zip(CATEGORIES, tokens, strict=True)},
        "tokens": int(tokens.sum()),
    }


def build_manifest(layout: Layout, tokenizer_sha: str) -> list[dict[str, Any]]:
    """Rows for every repository in repo_list with at least one token in its shard, in repo_list order."""
    rows = (repo_row(layout, repo, tokenizer_sha) for repo in read_repo_list(layout.repo_list_file).values())
    return [row for row in rows if row["tokens"] > 0]


def write_manifest(rows: Iterable[dict[str, Any]], path: Any) -> int:
    """The CSV (header ``COLUMNS``), atomically; returns the number of rows."""
    n = 0
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: "" if row[c] is None else row[c] for c in COLUMNS})
            n += 1
    return n


def read_manifest(path: Any) -> list[dict[str, Any]]:
    """The CSV back, counts as ints and empty fields as None (the model card reads it so)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [{k: (int(v) if k in INT_COLUMNS else (v or None)) for k, v in row.items()} for row in rows]


def tokens_by_license(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """License → repos, train tokens, val tokens, tokens (totals over the rows), largest first."""
    out: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for row in rows:
        totals = out[row["license"] or "none"]
        totals["repos"] += 1
        totals[f"{row['split']}_tokens"] += row["tokens"]
        totals["tokens"] += row["tokens"]
    ordered = sorted(out.items(), key=lambda kv: (-kv[1]["tokens"], kv[0]))
    return {k: {f: int(v[f]) for f in ("repos", "train_tokens", "val_tokens", "tokens")} for k, v in ordered}


def tokens_by_split_and_category(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Split → category → tokens (plus ``total``), over the rows."""
    out: dict[str, dict[str, int]] = {}
    for split in ("train", "val"):
        mine = [r for r in rows if r["split"] == split]
        out[split] = {c: sum(r[f"tokens_{c}"] for r in mine) for c in CATEGORIES}
        out[split]["total"] = sum(r["tokens"] for r in mine)
    return out
