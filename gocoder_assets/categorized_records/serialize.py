"""The training-text format: records serialized with the seed's markers.

Each marker is a single token in the tokenizer (``MARKERS`` is the list the tokenizer
registers). ``<FILE`` opens a file block and is followed by ordinary text
`` path="…">``: SentencePiece matches user-defined symbols on whitespace-escaped text, so
a marker containing a space could never be one token, and the path is data, not a marker.

Layouts (``{…}`` is data, every block ends with a newline):

    CODE   <CODE><REPO>{repo}\\n<FILE path="{path}">\\n{content}</FILE>\\n
    NAT    <NAT><REPO>{repo}\\n<STRUCTURE>\\n{paths, one per line}<FILE path="README…">…</FILE>\\n
    MIX    <MIX><REPO>{repo}\\n<PR_TITLE>{title}\\n<PR_BODY>{body}\\n<FILES>\\n
           <FILE path="{path}">\\n<BEFORE>\\n{old}<AFTER>\\n{new}</FILE>\\n …
           <COMMENTS>\\n{author}: {comment}\\n …
"""

from __future__ import annotations

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
)
MARKERS = CATEGORY_MARKERS + STRUCTURE_MARKERS


def _line(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def file_block(path: str, content: str) -> str:
    return f'<FILE path="{path}">\n{_line(content) if content else ""}</FILE>\n'


def render_code(repo: str, path: str, content: str) -> str:
    return f"<CODE><REPO>{repo}\n" + file_block(path, content)


def render_overview(repo: str, paths: Sequence[str], readmes: Iterable[tuple[str, str]]) -> str:
    parts = [f"<NAT><REPO>{repo}\n<STRUCTURE>\n", "".join(p + "\n" for p in paths)]
    parts.extend(file_block(path, text) for path, text in readmes)
    return "".join(parts)


def _comments(comments: Sequence[dict[str, Any]]) -> str:
    if not comments:
        return ""
    return "<COMMENTS>\n" + "".join(f"{c.get('author') or 'unknown'}: {_line(c['body'])}" for c in comments)


def render_issue(repo: str, issue: dict[str, Any]) -> str:
    body = f"<ISSUE_BODY>{_line(issue['body'])}" if issue.get("body") else ""
    return f"<NAT><REPO>{repo}\n<ISSUE_TITLE>{_line(issue['title'])}" + body + _comments(issue.get("comments") or [])


def render_change(category: str, repo: str, change: dict[str, Any], files: Sequence[dict[str, Any]]) -> str:
    """A pull request / commit. ``files`` are the entries whose content survived filtering."""
    parts = [f"<{category}><REPO>{repo}\n<PR_TITLE>{_line(change['title'])}"]
    if change.get("body"):
        parts.append(f"<PR_BODY>{_line(change['body'])}")
    if files:
        parts.append("<FILES>\n")
        for f in files:
            parts.append(f'<FILE path="{f["path"]}">\n')
            parts.append("<BEFORE>\n" + (_line(f["before"]) if f.get("before") else ""))
            parts.append("<AFTER>\n" + (_line(f["after"]) if f.get("after") else ""))
            parts.append("</FILE>\n")
    parts.append(_comments(change.get("comments") or []))
    return "".join(parts)
