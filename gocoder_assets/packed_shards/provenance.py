"""Token provenance: which record, file, commit and license a token position of a shard came from.

A released model must be able to answer "where did this training text come from?": for attribution,
for honouring a takedown request, for auditing a memorized snippet. The shard is a flat token stream,
so the answer lives in its record index (``records.parquet``: boundaries plus ``PROVENANCE_COLUMNS``);
a position is found among the record starts by binary search (``np.searchsorted``) and joined with the
repository's row in repo_list (url, fetched_at). Dagster-free: scripts and tests call it directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gocoder_assets.packed_shards.shard_format import (
    PROVENANCE_COLUMNS,
    ShardFormatError,
    index_path,
    open_shard,
    read_index,
)
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.storage import Layout, read_json


class ShardProvenance:
    """One shard's index loaded once, for tracing many positions (``trace`` is the one-shot form)."""

    def __init__(self, layout: Layout, repo_key: str) -> None:
        import pyarrow.parquet as pq  # noqa: PLC0415

        self.repo_key = repo_key
        shard = layout.shard_file(repo_key)
        # read_index validates what the search relies on: contiguous starts from 0 that add up to the shard.
        self.starts, self.lengths, _ = read_index(shard)
        self.tokens = open_shard(shard)
        table = pq.read_table(index_path(shard))
        missing = [c for c, _ in PROVENANCE_COLUMNS if c not in table.column_names]
        if missing:
            raise ShardFormatError(
                f"{index_path(shard)}: no provenance columns {missing}; the index predates provenance, "
                "re-materialize packed_shards"
            )
        self.rows = table.drop_columns(["start", "tokens"]).to_pydict()
        manifest = layout.shard_manifest(repo_key)
        self.split = read_json(manifest)["split"] if manifest.exists() else None
        repo = read_repo_list(layout.repo_list_file).get(repo_key) if layout.repo_list_file.exists() else None
        self.repo_fields = (
            {"url": repo.url, "fetched_at": repo.fetched_at, "full_name": repo.full_name} if repo is not None else {}
        )

    def __len__(self) -> int:
        return int(self.tokens.size)

    def record_at(self, position: int) -> int:
        """Index of the record holding ``position``: the last record starting at or before it."""
        if not 0 <= position < len(self):
            raise IndexError(f"position {position} outside shard {self.repo_key!r} of {len(self)} tokens")
        return int(np.searchsorted(self.starts, position, side="right")) - 1

    def trace(self, position: int) -> dict[str, Any]:
        """The record behind one token: its provenance, the offset inside it and whether it is the EOS."""
        i = self.record_at(position)
        start, length = int(self.starts[i]), int(self.lengths[i])
        offset = position - start
        row = {name: values[i] for name, values in self.rows.items()}
        return {
            **row,
            **self.repo_fields,
            "partition": self.repo_key,
            "split": self.split,
            "position": position,
            "token": int(self.tokens[position]),
            "record_index": i,
            "record_start": start,
            "record_tokens": length,
            "offset": offset,
            "is_eos": offset == length - 1,  # every record ends in the EOS packing appended
        }


def trace(layout: Layout | Path | str, repo_key: str, position: int) -> dict[str, Any]:
    """Provenance of token ``position`` in partition ``repo_key``'s shard (see ``ShardProvenance.trace``).

    Keys: record_id, category, kind, repo, path, pr_number, commit_sha, license, license_key (from the
    record index), url, fetched_at, full_name (from repo_list), partition, split, position, token,
    record_index, record_start, record_tokens, offset, is_eos.
    """
    layout = layout if isinstance(layout, Layout) else Layout(layout)
    return ShardProvenance(layout, repo_key).trace(position)
