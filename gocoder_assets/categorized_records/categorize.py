"""Raw records → filtered, redacted, categorized training records with provenance.

Category rules (the seed's NAT / MIX / CODE split, by what the text teaches):
- CODE: a Go source file (or go.mod) at the snapshot — code only.
- NAT: natural language about code — the repository overview (README + file structure),
  markdown documents, issues, and changes whose code did not survive filtering.
- MIX: a change (pull request / commit) whose text comes with the code it changed.

A record passes through small blocks, each with one job (datatrove style): path filter →
content filter (filters.py) → redaction of PII and secrets (redact.py) → serialization
(serialize.py). Every drop and every redaction is counted by reason. File-like records
also get a content hash and a MinHash signature for corpus-wide deduplication.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from gocoder_assets.categorized_records import filters
from gocoder_assets.categorized_records.filters import FilterOptions
from gocoder_assets.categorized_records.redact import UsernameMapper, redact
from gocoder_assets.categorized_records.serialize import (
    file_block,
    render_change,
    render_code,
    render_issue,
    render_overview,
)
from gocoder_assets.dedup_index.dedup import content_sha, signature
from gocoder_assets.sources.base import RawRecord, RepoInfo, is_bot_login

# SentencePiece escapes spaces as U+2581 and decodes every U+2581 back to a space, so text
# containing it cannot round-trip byte for byte; such records are skipped and counted.
SP_SPACE = "\u2581"
MAX_STRUCTURE_PATHS = 400
MAX_CHANGE_CHARS = 200_000

RECORD_COLUMNS = (
    "record_id", "repo", "full_name", "kind", "category", "path", "pr_number",
    "commit_sha", "license", "url", "fetched_at", "text", "content_sha", "sig_row",
)  # fmt: skip
INT_COLUMNS = ("pr_number", "sig_row")


def is_doc(path: str) -> bool:
    name = PurePosixPath(path).name
    return name.upper().startswith("README") or name.endswith(".md")


class Categorizer:
    """Streams one partition's raw records into rows; ``counts`` and ``signatures`` fill as it goes."""

    def __init__(self, repo: RepoInfo, options: FilterOptions | None = None) -> None:
        self.repo = repo
        self.options = options or FilterOptions()
        self.counts: collections.Counter[str] = collections.Counter()
        self.signatures: list[np.ndarray] = []

    # -- blocks ---------------------------------------------------------------------------
    def _clean(self, text: str) -> str:
        text, found = redact(text)
        self.counts.update({f"redacted:{k}": v for k, v in found.items()})
        return text

    def _file_text(self, path: str, text: str | None, tally: str = "dropped") -> str | None:
        """Filtered and redacted content of one file, or None (counted under ``tally``) if it must go."""
        if text is None:
            return None
        reason = filters.path_drop_reason(path, self.options) or filters.content_drop_reason(text, self.options)
        if reason:
            self.counts[f"{tally}:{reason}"] += 1
            return None
        return self._clean(text)

    def _row(self, kind: str, category: str, path: str, text: str, **extra: Any) -> dict[str, Any] | None:
        if SP_SPACE in text:
            self.counts["dropped:sp_space_symbol"] += 1
            return None
        key = f"{self.repo.partition_key}|{kind}|{extra.get('commit_sha') or extra.get('pr_number') or path}"
        self.counts[f"category:{category}"] += 1
        sig_row = None
        if extra.get("content") is not None:
            sig_row = len(self.signatures)
            self.signatures.append(signature(extra["content"]))
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
            "content_sha": content_sha(extra["content"]) if sig_row is not None else None,
            "sig_row": sig_row,
        }

    # -- records --------------------------------------------------------------------------
    def run(self, records: Iterable[RawRecord]) -> Iterator[dict[str, Any]]:
        tree: list[str] = []
        readmes: list[tuple[str, str]] = []
        for rec in records:
            kind = rec["kind"]
            self.counts[f"raw:{kind}"] += 1
            row = None
            if kind == "tree":
                tree = [p for p in rec["paths"] if filters.path_drop_reason(p, self.options) != "excluded_dir"]
            elif kind == "skip":
                self.counts[f"dropped:{rec['reason']}"] += 1
            elif kind == "file":
                row = self._file(rec, readmes)
            elif kind == "change":
                row = self._change(rec)
            elif kind == "issue":
                row = self._issue(rec)
            if row is not None:
                yield row
        overview = self._overview(tree, readmes)
        if overview is not None:
            yield overview

    def _file(self, rec: RawRecord, readmes: list[tuple[str, str]]) -> dict[str, Any] | None:
        path = rec["path"]
        text = self._file_text(path, rec["text"])
        if text is None:
            return None
        if not is_doc(path):
            return self._row("file", "CODE", path, render_code(self.repo.full_name, path, text), content=text)
        if str(PurePosixPath(path).parent) == (self.repo.root or "."):
            readmes.append((path, text))  # the repository's own README goes into its overview
            return None
        doc = f"<NAT><REPO>{self.repo.full_name}\n" + file_block(path, text)
        return self._row("doc", "NAT", path, doc, content=text)

    def _overview(self, tree: list[str], readmes: list[tuple[str, str]]) -> dict[str, Any] | None:
        cap = MAX_STRUCTURE_PATHS
        shown = tree[:cap] + ([f"… {len(tree) - cap} more paths"] if len(tree) > cap else [])
        text = render_overview(self.repo.full_name, shown, readmes)
        return self._row("overview", "NAT", self.repo.root or ".", text)

    def _discussion(self, rec: RawRecord) -> dict[str, Any] | None:
        """Title, body and comments: bots out, truncated, short chatter dropped, redacted, anonymized.

        None when a bot opened the thread. Usernames are numbered per thread, author first.
        """
        if is_bot_login(rec.get("author")):
            self.counts["dropped:bot_author"] += 1
            return None
        users = UsernameMapper()
        users.name(rec.get("author"))
        o = self.options
        comments = []
        for c in rec.get("comments") or []:
            if is_bot_login(c.get("author")):
                self.counts["dropped_comments:bot"] += 1
            elif len((c.get("body") or "").strip()) < o.min_comment_chars:
                self.counts["dropped_comments:short"] += 1
            else:
                comments.append((users.name(c.get("author")), c["body"]))
        # Review comments are kept whatever their length: they point at specific code.
        for r in rec.get("reviews") or []:
            if r.get("body") and not is_bot_login(r.get("author")):
                comments.append((f"{users.name(r.get('author'))} ({str(r.get('state', '')).lower()})", r["body"]))
        for t in rec.get("review_threads") or []:
            for c in t.get("comments") or []:
                if c.get("body") and not is_bot_login(c.get("author")):
                    comments.append((f"{users.name(c.get('author'))} on {t.get('path')}:{t.get('line')}", c["body"]))
        return {
            "title": self._clean(users.mention_text(filters.truncate_title(rec.get("title") or "", o))),
            "body": self._clean(users.mention_text(filters.truncate_body(rec.get("body") or "", o))),
            "comments": [{"author": a, "body": self._clean(users.mention_text(b))} for a, b in comments],
        }

    def _change(self, change: RawRecord) -> dict[str, Any] | None:
        discussion = self._discussion(change)
        if discussion is None:
            return None
        kept, budget = [], MAX_CHANGE_CHARS
        for f in change.get("files", []):
            if f.get("before") is None and f.get("after") is None:
                self.counts[f"change_files:{f.get('skipped') or 'no_content'}"] += 1
                continue
            before = self._file_text(f["path"], f.get("before"), "change_files")
            after = self._file_text(f["path"], f.get("after"), "change_files")
            if (f.get("before") is not None and before is None) or (f.get("after") is not None and after is None):
                continue
            size = len(before or "") + len(after or "")
            if size > budget:
                self.counts["change_files:over_budget"] += 1
                continue
            budget -= size
            kept.append({"path": f["path"], "before": before, "after": after})
        category = "MIX" if kept else "NAT"
        text = render_change(category, self.repo.full_name, discussion, kept)
        paths = ",".join(f["path"] for f in change.get("files", []))
        return self._row("change", category, paths or self.repo.root or ".", text,
                         pr_number=change.get("number"), commit_sha=change.get("sha"))  # fmt: skip

    def _issue(self, issue: RawRecord) -> dict[str, Any] | None:
        discussion = self._discussion(issue)
        if discussion is None:
            return None
        text = render_issue(self.repo.full_name, discussion)
        return self._row("issue", "NAT", self.repo.root or ".", text, pr_number=issue.get("number"))
