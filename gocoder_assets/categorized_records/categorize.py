"""Raw records → filtered, redacted, categorized training records with provenance.

Categories (the design's NAT / MIX / CODE split, by what the text teaches):
- CODE: source files and patches — a Go file (or go.mod) at the snapshot, and a change whose only
  text is its title (a commit subject over a diff is a patch, not a discussion).
- MIX: natural language with code — a change with a description or discussion and the code it
  changed; an issue, or a change whose files did not survive, whose text holds code (code_detect.py:
  code blocks, inline code, Go-looking lines, code references).
- NAT: natural language without code — the repository overview (README + file structure), markdown
  documents, issues and changes without code.

A record passes through small blocks, each with one job (datatrove style): path filter → content
filter (filters.py) → redaction of PII and secrets (redact.py) → change rendering (changes.py) →
serialization (serialize.py). Every drop, cut and redaction is counted by reason. Every record also
gets a content hash and a MinHash signature, so dedup_index removes copied files and copied text
(issue and PR templates, READMEs of forks) alike.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from gocoder_assets.categorized_records import filters
from gocoder_assets.categorized_records.changes import ChangeOptions, RenderedFile, ReviewComment, render_file_change
from gocoder_assets.categorized_records.code_detect import code_reasons
from gocoder_assets.categorized_records.filters import FilterOptions
from gocoder_assets.categorized_records.measure import CodeLines
from gocoder_assets.categorized_records.redact import UsernameMapper, redact
from gocoder_assets.categorized_records.serialize import (
    ReservedCharError,
    data,
    readable,
    render_change,
    render_code,
    render_doc,
    render_issue,
    render_overview,
)
from gocoder_assets.dedup_index.dedup import content_sha, signature
from gocoder_assets.sources.base import RawRecord, RepoInfo, is_bot_login

# SentencePiece escapes spaces as U+2581 and decodes every U+2581 back to a space, so text
# containing it cannot round-trip byte for byte; such records are skipped and counted.
SP_SPACE = "\u2581"
MAX_STRUCTURE_PATHS = 400
FILE_VERDICTS = 512  # recent file versions whose filter/redaction verdict is kept (see _file_text)

RECORD_COLUMNS = (
    "record_id", "repo", "full_name", "kind", "category", "path", "pr_number", "commit_sha", "license",
    "license_key", "stars", "url", "fetched_at", "text", "content_sha", "sig_row",
)  # fmt: skip
INT_COLUMNS = ("pr_number", "stars", "sig_row")
# A closed pull request that was not merged is a rejected change: the model should know which is which.
STATUS = {"MERGED": "merged", "CLOSED": "closed unmerged"}


def is_doc(path: str) -> bool:
    name = PurePosixPath(path).name
    return name.upper().startswith("README") or name.endswith(".md")


class Categorizer:
    """Streams one partition's raw records into rows; ``counts`` and ``signatures`` fill as it goes."""

    def __init__(
        self, repo: RepoInfo, options: FilterOptions | None = None, change_options: ChangeOptions | None = None
    ) -> None:
        self.repo = repo
        self.options = options or FilterOptions()
        self.change_options = change_options or ChangeOptions()
        self.counts: collections.Counter[str] = collections.Counter()
        self.signatures: list[np.ndarray] = []
        self.sizes: dict[str, list[int]] = collections.defaultdict(list)  # characters per record, by kind
        self.code_lines = CodeLines()
        self._seen: dict[tuple[str, str], tuple[str | None, str | None, collections.Counter[str]]] = {}

    # -- blocks ---------------------------------------------------------------------------
    def _clean(self, text: str) -> str:
        text, found = redact(text)
        self.counts.update({f"redacted:{k}": v for k, v in found.items()})
        return text

    def _file_text(self, path: str, text: str | None, tally: str = "dropped") -> str | None:
        """Filtered and redacted content of one file, or None (counted under ``tally``) if it must go.

        History repeats file versions: a change's before is the previous change's after, and the newest
        after is the snapshot's file. The verdicts of recent versions are kept (bounded, least recently
        used out) and replayed with their counts, so each version is filtered and redacted once.
        """
        if text is None:
            return None
        key = (path, text)
        hit = self._seen.pop(key, None)
        if hit is None:
            reason = filters.path_drop_reason(path, self.options) or filters.content_drop_reason(text, self.options)
            clean, found = (None, collections.Counter()) if reason else redact(text)
            hit = (reason, clean, found)
            if len(self._seen) >= FILE_VERDICTS:
                del self._seen[next(iter(self._seen))]
        self._seen[key] = hit
        reason, clean, found = hit
        if reason:
            self.counts[f"{tally}:{reason}"] += 1
            return None
        self.counts.update({f"redacted:{k}": v for k, v in found.items()})
        return clean

    def _row(self, kind: str, category: str, path: str, text: str, **extra: Any) -> dict[str, Any] | None:
        """One record; every record gets a content hash and a signature, so dedup sees copied text too."""
        if SP_SPACE in text:
            self.counts["dropped:sp_space_symbol"] += 1
            return None
        key = f"{self.repo.partition_key}|{kind}|{extra.get('commit_sha') or extra.get('pr_number') or path}"
        self.counts[f"category:{category}"] += 1
        self.counts[f"records:{kind}:{category}"] += 1
        self.sizes[kind].append(len(text))
        # Text records are compared without their header line, which names the repository.
        content = extra["content"] if "content" in extra else text.split("\n", 1)[-1]
        sig_row = len(self.signatures)
        self.signatures.append(signature(content))
        r = self.repo
        return {
            "record_id": hashlib.sha1(key.encode()).hexdigest()[:16], "repo": r.partition_key,
            "full_name": r.full_name, "kind": kind, "category": category, "path": path,
            "pr_number": extra.get("pr_number"), "commit_sha": extra.get("commit_sha") or r.commit_sha,
            "license": r.license_spdx, "license_key": r.license_key, "stars": r.stars, "url": r.url,
            "fetched_at": r.fetched_at, "text": text, "content_sha": content_sha(content), "sig_row": sig_row,
        }  # fmt: skip

    def _category_of_text(self, texts: Iterable[str]) -> str:
        """MIX when the discussion holds code (each rule that fired is counted), else NAT."""
        reasons = sorted({reason for t in texts for reason in code_reasons(t)})
        self.counts.update(f"code_rule:{r}" for r in reasons)
        return "MIX" if reasons else "NAT"

    # -- records --------------------------------------------------------------------------
    def run(self, records: Iterable[RawRecord]) -> Iterator[dict[str, Any]]:
        tree: list[str] = []
        readmes: list[tuple[str, str]] = []
        for rec in records:
            kind = rec["kind"]
            self.counts[f"raw:{kind}"] += 1
            row = None
            try:
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
            except ReservedCharError:  # content that could forge a marker: never trained on
                self.counts["dropped:reserved_char"] += 1
                row = None
            if row is not None:
                yield row
        try:
            overview = self._overview(tree, readmes)
        except ReservedCharError:
            self.counts["dropped:reserved_char"] += 1
            overview = None
        if overview is not None:
            yield overview
        self.counts.update(self.code_lines.counts())

    def _file(self, rec: RawRecord, readmes: list[tuple[str, str]]) -> dict[str, Any] | None:
        path = rec["path"]
        at_root = str(PurePosixPath(path).parent) == (self.repo.root or ".")
        if at_root and is_doc(path) and filters.boilerplate_doc(path, self.options):
            self.counts["dropped:boilerplate_doc"] += 1
            return None
        text = self._file_text(path, rec["text"])
        if text is None:
            return None
        if not is_doc(path):
            row = self._row("file", "CODE", path, render_code(self.repo.full_name, path, text), content=text)
            if row is not None:
                self.code_lines.add_code(text)
            return row
        if at_root and PurePosixPath(path).name.upper().startswith("README"):
            readmes.append((path, text))  # the repository's own README goes into its overview
            return None
        if at_root and len(text) > self.options.max_root_doc_chars:
            self.counts["cut:root_doc"] += 1
            text = filters.cut(text, self.options.max_root_doc_chars)
        return self._row("doc", "NAT", path, render_doc(self.repo.full_name, path, text), content=text)

    def _overview(self, tree: list[str], readmes: list[tuple[str, str]]) -> dict[str, Any] | None:
        cap = MAX_STRUCTURE_PATHS
        shown = tree[:cap] + ([f"[… {len(tree) - cap} more paths]"] if len(tree) > cap else [])
        text = render_overview(self.repo.full_name, shown, readmes)
        return self._row("overview", "NAT", self.repo.root or ".", text)

    def _discussion(self, rec: RawRecord) -> tuple[dict[str, Any], dict[str, list[ReviewComment]]] | None:
        """Title, body and comments (bots out, truncated visibly, short chatter dropped, redacted,
        anonymized), and the review-thread comments by path, to be placed beside the code they discuss.

        None when a bot opened the thread. Usernames are numbered per thread, author first.
        """
        if is_bot_login(rec.get("author")):
            self.counts["dropped:bot_author"] += 1
            return None
        users = UsernameMapper()
        users.name(rec.get("author"))
        o = self.options

        def text(body: str) -> str:
            if len(body) > o.max_comment_chars:
                self.counts["cut:comment"] += 1
            return self._clean(users.mention_text(filters.cut(body, o.max_comment_chars)))

        comments = []
        for c in rec.get("comments") or []:
            if is_bot_login(c.get("author")):
                self.counts["dropped_comments:bot"] += 1
            elif len((c.get("body") or "").strip()) < o.min_comment_chars:
                self.counts["dropped_comments:short"] += 1
            else:
                comments.append({"author": users.name(c.get("author")), "body": c["body"]})
        # Review comments are kept whatever their length: they point at specific code.
        for r in rec.get("reviews") or []:
            if r.get("body") and not is_bot_login(r.get("author")):
                comments.append({"author": f"{users.name(r.get('author'))} ({str(r.get('state', '')).lower()})",
                                 "body": r["body"]})  # fmt: skip
        placed: dict[str, list[ReviewComment]] = collections.defaultdict(list)
        for t in rec.get("review_threads") or []:
            for c in t.get("comments") or []:
                if c.get("body") and not is_bot_login(c.get("author")):
                    placed[t.get("path") or ""].append(ReviewComment(users.name(c.get("author")), t.get("line"),
                                                                     text(c["body"])))  # fmt: skip
        if len(comments) > o.max_comments:
            self.counts["cut:comments"] += len(comments) - o.max_comments
            more = {"author": "…", "body": f"[… {len(comments) - o.max_comments} more comments]"}
            comments = [*comments[: o.max_comments], more]
        discussion = {
            "title": self._clean(users.mention_text(filters.truncate_title(rec.get("title") or "", o))),
            "body": self._clean(users.mention_text(filters.truncate_body(rec.get("body") or "", o))),
            "comments": [c if c["author"] == "…" else {**c, "body": text(c["body"])} for c in comments],
        }
        return discussion, placed

    def _change(self, change: RawRecord) -> dict[str, Any] | None:
        found = self._discussion(change)
        if found is None:
            return None
        discussion, placed = found
        discussion["status"] = STATUS.get(str(change.get("state") or "").upper(), "merged")
        blocks, shown_chars, o, complete = [], 0, self.options, True
        files = change.get("files", [])
        for i, f in enumerate(files):
            if len(blocks) >= o.max_change_files or shown_chars >= o.max_change_chars:
                rest = len(files) - i
                self.counts["cut:change_files"] += rest
                blocks.append(data(f"[… {rest} more changed files not shown]\n"))
                complete = False
                break
            rendered = self._file_change(f, placed.pop(f.get("path") or "", []))
            if rendered is not None:
                blocks.append(rendered.text)
                shown_chars += len(rendered.text)
                complete = complete and not rendered.truncated
        self.counts["change_records:complete" if complete else "change_records:cut"] += 1
        # Thread comments on files that are not shown still belong to the discussion.
        discussion["comments"] += [{"author": f"{c.author} on {path}" + (f":{c.line}" if c.line else ""),
                                    "body": c.body} for path, cs in placed.items() for c in cs]  # fmt: skip
        texts = [discussion["title"], discussion["body"], *(c["body"] for c in discussion["comments"])]
        if blocks:
            category = "MIX" if discussion["body"] or discussion["comments"] else "CODE"
        else:
            category = self._category_of_text(texts)
        text = render_change(category, self.repo.full_name, discussion, blocks)
        if category == "MIX" and blocks:
            self.code_lines.add_change(readable(text))
        paths = ",".join(f["path"] for f in files)
        return self._row("change", category, paths or self.repo.root or ".", text,
                         pr_number=change.get("number"), commit_sha=change.get("sha"))  # fmt: skip

    def _file_change(self, f: RawRecord, comments: list[ReviewComment]) -> RenderedFile | None:
        """One file of a change as a reviewer reads it, from filtered, redacted sides; None if it must go."""
        status = f.get("status") or "M"
        if f.get("before") is None and f.get("after") is None and status not in ("D", "R"):
            self.counts[f"change_files:{f.get('skipped') or 'no_content'}"] += 1
            return None
        before = self._file_text(f["path"], f.get("before"), "change_files")
        after = self._file_text(f["path"], f.get("after"), "change_files")
        if (f.get("before") is not None and before is None) or (f.get("after") is not None and after is None):
            return None
        # git's hunks still fit the redacted sides unless redaction changed line counts (a key block becomes
        # one placeholder); changes.change_blocks checks that and recomputes the hunks when they don't.
        entry = {**f, "before": before, "after": after}
        rendered = render_file_change(entry, comments, self.change_options)
        if status != "D":  # a deleted file's lines are not shown on purpose: the deletion is the change
            self.counts["change_lines:changed"] += rendered.changed_lines
            self.counts["change_lines:shown"] += rendered.shown_changed_lines
        if rendered.truncated:
            self.counts["cut:change_file_lines"] += 1
        return rendered

    def _issue(self, issue: RawRecord) -> dict[str, Any] | None:
        found = self._discussion(issue)
        if found is None:
            return None
        discussion, _ = found
        texts = [discussion["title"], discussion["body"], *(c["body"] for c in discussion["comments"])]
        category = self._category_of_text(texts)
        text = render_issue(category, self.repo.full_name, discussion)
        return self._row("issue", category, self.repo.root or ".", text, pr_number=issue.get("number"))
