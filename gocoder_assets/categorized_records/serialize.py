"""The training-text format: records serialized with the seed's markers, which content cannot forge.

A marker (``<REPO>``, ``<FILE`` …) is structure, not text. In a stored record each marker is one
reserved character, a Unicode *noncharacter* (U+FDD0 + its index in ``MARKERS``): the standard sets
U+FDD0–U+FDEF aside for a program's internal use, so they never occur in real text, and content that
does hold one is refused (``ReservedCharError``, counted as a drop by the categorizer). The
tokenizer registers the markers as SentencePiece *control* symbols, which SentencePiece never
matches in text, and tokenizes a record by encoding the text between sentinels and inserting each
marker's id (``tokenizer_model.encode``). So a README that says ``<REPO>`` is the characters
``<``, ``R`` … and never the marker's id. The GGUF and Hugging Face tokenizers still map the marker
strings to their ids, for prompting. ``readable`` turns a stored record into the marker strings
for people (asset metadata, docs).

Paths are data too: ``<FILE`` is followed by `` path="…"`` with the path as a JSON string, so a
quote or newline in a file name is escaped and cannot close the attribute or start a fake line.

Layouts (``⟨…⟩`` is data, every block ends with a newline; see changes.py for a file change):

    CODE   <CODE><REPO>⟨repo⟩\\n<FILE path="⟨path⟩">\\n⟨content⟩</FILE>\\n
    NAT    <NAT><REPO>⟨repo⟩\\n<STRUCTURE>\\n⟨paths, one per line⟩<FILE path="README…">…</FILE>\\n
    issue  <NAT|MIX><REPO>⟨repo⟩\\n<ISSUE_TITLE>⟨title⟩\\n<ISSUE_BODY>⟨body⟩\\n<COMMENTS>\\n⟨author⟩: ⟨comment⟩\\n
    change <MIX|NAT|CODE><REPO>⟨repo⟩\\n<PR_TITLE>⟨title⟩\\n<PR_STATUS>⟨merged|closed⟩\\n<PR_BODY>⟨body⟩\\n
           <FILES>\\n⟨one file change per touched file⟩<COMMENTS>\\n⟨author⟩: ⟨comment⟩\\n …
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

CATEGORIES = ("NAT", "MIX", "CODE")
CATEGORY_MARKERS = tuple(f"<{c}>" for c in CATEGORIES)
STRUCTURE_MARKERS = (
    "<REPO>",
    "<PR_TITLE>",
    "<PR_BODY>",
    "<FILES>",
    "<FILE",
    "<BEFORE>",
    "<AFTER>",
    "</FILE>",
    "<COMMENTS>",
    "<STRUCTURE>",
    "<ISSUE_TITLE>",
    "<ISSUE_BODY>",
    "<PR_STATUS>",
)
MARKERS = CATEGORY_MARKERS + STRUCTURE_MARKERS

_FIRST_NONCHARACTER, _LAST_NONCHARACTER = 0xFDD0, 0xFDEF
assert len(MARKERS) <= _LAST_NONCHARACTER - _FIRST_NONCHARACTER + 1
SENTINELS: dict[str, str] = {m: chr(_FIRST_NONCHARACTER + i) for i, m in enumerate(MARKERS)}
MARKER_OF: dict[str, str] = {s: m for m, s in SENTINELS.items()}
RESERVED = re.compile(f"[{chr(_FIRST_NONCHARACTER)}-{chr(_LAST_NONCHARACTER)}]")
_SPLIT = re.compile(f"({RESERVED.pattern})")
_READABLE = str.maketrans(MARKER_OF)


class ReservedCharError(ValueError):
    """Content holds a character the format reserves for markers; the record is dropped, counted."""


def mark(marker: str) -> str:
    """The stored form of one marker (``mark("<REPO>")``); a KeyError names an unknown marker."""
    return SENTINELS[marker]


def data(text: str) -> str:
    """Content as it may enter a record: unchanged, or ReservedCharError if it could forge a marker."""
    if RESERVED.search(text):
        raise ReservedCharError("content holds a reserved noncharacter (U+FDD0-U+FDEF)")
    return text


def readable(text: str) -> str:
    """A stored record with its markers written out (``<REPO>`` …), for people, not the tokenizer."""
    return text.translate(_READABLE)


def split_markers(text: str) -> list[str]:
    """``[text, sentinel, text, sentinel, …, text]``: content runs (maybe empty) around each marker."""
    return _SPLIT.split(text)


def quote(value: str) -> str:
    """An attribute value as a JSON string: quotes, backslashes and control characters escaped."""
    return json.dumps(data(value), ensure_ascii=False)


def line(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def listed_path(path: str) -> str:
    """A path on a line of its own (the structure listing): quoted only when it could break the line."""
    return (
        quote(path) if path != path.strip() or any(c in path for c in '"\\') or not path.isprintable() else data(path)
    )


def header(category: str, repo: str) -> str:
    return mark(f"<{category}>") + mark("<REPO>") + line(data(repo))


def file_block(path: str, content: str) -> str:
    body = line(data(content)) if content else ""
    return f"{mark('<FILE')} path={quote(path)}>\n{body}{mark('</FILE>')}\n"


def render_code(repo: str, path: str, content: str) -> str:
    return header("CODE", repo) + file_block(path, content)


def render_doc(repo: str, path: str, content: str) -> str:
    return header("NAT", repo) + file_block(path, content)


def render_overview(repo: str, paths: Sequence[str], readmes: Iterable[tuple[str, str]]) -> str:
    parts = [header("NAT", repo), mark("<STRUCTURE>"), "\n", "".join(listed_path(p) + "\n" for p in paths)]
    parts.extend(file_block(path, text) for path, text in readmes)
    return "".join(parts)


def render_comments(comments: Sequence[dict[str, Any]]) -> str:
    """``<COMMENTS>`` then one ``author: body`` entry per comment; empty for no comments."""
    if not comments:
        return ""
    entries = (f"{data(c.get('author') or 'unknown')}: {line(data(c['body']))}" for c in comments)
    return mark("<COMMENTS>") + "\n" + "".join(entries)


def render_issue(category: str, repo: str, issue: dict[str, Any]) -> str:
    body = mark("<ISSUE_BODY>") + line(data(issue["body"])) if issue.get("body") else ""
    title = mark("<ISSUE_TITLE>") + line(data(issue["title"]))
    return header(category, repo) + title + body + render_comments(issue.get("comments") or [])


def render_change(category: str, repo: str, change: dict[str, Any], file_changes: Sequence[str]) -> str:
    """A pull request / commit; ``file_changes`` are rendered file blocks (changes.render_file_change)."""
    parts = [header(category, repo), mark("<PR_TITLE>"), line(data(change["title"]))]
    if change.get("status"):
        parts += [mark("<PR_STATUS>"), line(data(change["status"]))]
    if change.get("body"):
        parts += [mark("<PR_BODY>"), line(data(change["body"]))]
    if file_changes:
        parts += [mark("<FILES>"), "\n", *file_changes]
    parts.append(render_comments(change.get("comments") or []))
    return "".join(parts)
