"""Raw records → typed, categorized training records with provenance.

Category rules (the seed's NAT / MIX / CODE split, by what the text teaches):
- CODE: a Go source file (or go.mod) at the snapshot — code only.
- NAT: natural language about code — the repository overview (README + file structure),
  markdown documents, and changes that carry discussion but no surviving code content.
- MIX: a change (pull request / commit) whose text comes with the code it changed
  (before/after content of at least one file).

Filtering here is deliberately small (excluded directories, unencodable text); the data
quality stage extends the `DROP_REASONS` it counts. Every drop is counted by reason.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath
from typing import Any

from gocoder_assets.categorized_records.serialize import (
    file_block,
    render_change,
    render_code,
    render_overview,
)
from gocoder_assets.sources.base import RawRecord, RepoInfo

# SentencePiece escapes spaces as U+2581 and decodes every U+2581 back to a space, so text
# containing it cannot round-trip byte for byte; such records are skipped and counted.
SP_SPACE = "\u2581"

RECORD_COLUMNS = (
    "record_id", "repo", "full_name", "kind", "category", "path", "pr_number",
    "commit_sha", "license", "url", "fetched_at", "text",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class CategorizeOptions:
    excluded_dirs: tuple[str, ...] = ("vendor", "third_party", "node_modules", "dist", "testdata")
    max_structure_paths: int = 400
    max_change_chars: int = 200_000


def is_excluded(path: str, excluded_dirs: Iterable[str]) -> bool:
    return any(part in excluded_dirs for part in PurePosixPath(path).parts[:-1])


def is_doc(path: str) -> bool:
    name = PurePosixPath(path).name
    return name.upper().startswith("README") or name.endswith(".md")


class Categorizer:
    """Streams one partition's raw records into rows; ``counts`` holds the tallies."""

    def __init__(self, repo: RepoInfo, options: CategorizeOptions | None = None) -> None:
        self.repo = repo
        self.options = options or CategorizeOptions()
        self.counts: collections.Counter[str] = collections.Counter()

    def _row(self, kind: str, category: str, path: str, text: str, **extra: Any) -> dict[str, Any] | None:
        if SP_SPACE in text:
            self.counts["dropped:sp_space_symbol"] += 1
            return None
        key = f"{self.repo.partition_key}|{kind}|{extra.get('commit_sha') or path}"
        self.counts[f"category:{category}"] += 1
        return {
            "record_id": hashlib.sha1(key.encode()).hexdigest()[:16],
            "repo": self.repo.partition_key,
            "full_name": self.repo.full_name,
            "kind": kind,
            "category": category,
            "path": path,
            "pr_number": extra.get("pr_number"),
            "commit_sha": extra.get("commit_sha") or self.repo.commit_sha,
            "license": self.repo.license_spdx,
            "url": self.repo.url,
            "fetched_at": self.repo.fetched_at,
            "text": text,
        }

    def run(self, records: Iterable[RawRecord]) -> Iterator[dict[str, Any]]:
        excluded = self.options.excluded_dirs
        tree: list[str] = []
        readmes: list[tuple[str, str]] = []
        root = self.repo.root
        for rec in records:
            kind = rec["kind"]
            self.counts[f"raw:{kind}"] += 1
            row = None
            if kind == "tree":
                tree = [p for p in rec["paths"] if not is_excluded(p, excluded)]
            elif kind == "skip":
                self.counts[f"dropped:{rec['reason']}"] += 1
            elif kind == "file" and is_excluded(rec["path"], excluded):
                self.counts["dropped:excluded_dir"] += 1
            elif kind == "file" and is_doc(rec["path"]):
                if str(PurePosixPath(rec["path"]).parent) == (root or "."):
                    readmes.append((rec["path"], rec["text"]))
                else:
                    text = f"<NAT><REPO>{self.repo.full_name}\n" + file_block(rec["path"], rec["text"])
                    row = self._row("doc", "NAT", rec["path"], text)
            elif kind == "file":
                row = self._row(
                    "file", "CODE", rec["path"], render_code(self.repo.full_name, rec["path"], rec["text"])
                )
            elif kind == "change":
                row = self._change(rec)
            if row is not None:
                yield row
        overview = self._overview(tree, readmes)
        if overview is not None:
            yield overview

    def _overview(self, tree: list[str], readmes: list[tuple[str, str]]) -> dict[str, Any] | None:
        cap = self.options.max_structure_paths
        shown = tree[:cap] + ([f"… {len(tree) - cap} more paths"] if len(tree) > cap else [])
        text = render_overview(self.repo.full_name, shown, readmes)
        return self._row("overview", "NAT", self.repo.root or ".", text)

    def _change(self, change: RawRecord) -> dict[str, Any] | None:
        kept, budget = [], self.options.max_change_chars
        for f in change.get("files", []):
            if is_excluded(f["path"], self.options.excluded_dirs):
                self.counts["change_files:excluded_dir"] += 1
            elif f.get("before") is None and f.get("after") is None:
                self.counts[f"change_files:{f.get('skipped') or 'no_content'}"] += 1
            else:
                size = len(f.get("before") or "") + len(f.get("after") or "")
                if size > budget:
                    self.counts["change_files:over_budget"] += 1
                    continue
                budget -= size
                kept.append(f)
        category = "MIX" if kept else "NAT"
        text = render_change(category, self.repo.full_name, change, kept)
        paths = ",".join(f["path"] for f in change.get("files", []))
        return self._row("change", category, paths or self.repo.root or ".", text,
                         pr_number=change.get("number"), commit_sha=change.get("sha"))  # fmt: skip
