"""One touched file of a change (pull request or commit) as a reviewer reads it.

Why: a change record used to carry the full before and full after of every touched file, so a
one-line fix cost two whole file copies (median change record 35k-57k characters on cobra/gin) and
the model learned file copying, not editing. A reviewer reads the changed regions with enough
context to understand them; for Go that is usually the whole enclosing func or type, so a hunk is
widened to its enclosing top-level declaration when that is cheap, and to plain context otherwise.

Layout of one file block (markers via ``mark``, ``⟨…⟩`` is data, attribute values via ``quote``)::

    <FILE path="⟨path⟩" change="modified">\\n        renamed: change="renamed" from="⟨old path⟩"
    @@ -⟨old start⟩,⟨n⟩ +⟨new start⟩,⟨m⟩ @@ ⟨enclosing decl's first line, when not shown⟩\\n
    <BEFORE>\\n⟨old lines of the region⟩<AFTER>\\n⟨new lines of the region⟩
    <COMMENTS>\\n⟨author⟩ (line ⟨N⟩): ⟨body⟩\\n     review comments on this region's AFTER lines
    … next region …
    [… 3 more changed regions (812 lines) not shown]\\n            only when the file was cut
    <COMMENTS>\\n⟨author⟩ (outdated): ⟨body⟩\\n     comments placed in no region ("(line N)" if any)
    </FILE>\\n

An added file shows ``<AFTER>\\n`` and its first lines; a deleted file, a pure rename, a mode change
and a binary or skipped file are an empty block: the fact is the change, and ``<BEFORE>`` of a whole
deleted file teaches nothing. Line numbers count ``\\n``-separated lines, as git does.
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import re
from collections.abc import Sequence
from typing import Any

from gocoder_assets.categorized_records.serialize import data, line, mark, quote

_CHANGE_TYPES = {"A": "added", "D": "deleted", "M": "modified", "R": "renamed"}
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_DECL_START = re.compile(r"(?:func|type|var|const) ")
_NO_NEWLINE = "\\ No newline at end of file\n"  # git's own wording, so a reader sees the difference

Block = tuple[int, int, int, int]  # changed lines: old [o1, o2), new [n1, n2), 0-based half-open
Spans = tuple[list[tuple[int, int]], list[int]]  # Go declarations [start, end) and their starts


@dataclasses.dataclass(frozen=True)
class ChangeOptions:
    """How much of a change to show; one default per setting (the Dagster config takes them from here)."""

    function_context_lines: int = 60  # widen to the enclosing Go func/type when that adds at most this many lines
    context_lines: int = 3  # otherwise this many unchanged lines around each change
    max_file_lines: int = 300  # snippet lines per file, both sides together; beyond: a visible truncation line
    max_added_lines: int = 120  # an added file shows its first N lines


@dataclasses.dataclass(frozen=True)
class ReviewComment:
    """A review comment on a file; ``line`` is in the AFTER file (GitHub's ``line``), None when outdated."""

    author: str
    line: int | None
    body: str


@dataclasses.dataclass(frozen=True)
class RenderedFile:
    """One file block and what it shows of the change.

    ``changed_lines`` counts the change's +/- lines (a deleted file counts its lines, an added file
    its lines); ``shown_changed_lines`` those in ``text``. They differ when ``truncated`` (a limit cut
    the file) and for a deleted file, whose omitted content is the format, not a cut.
    """

    text: str
    changed_lines: int
    shown_changed_lines: int
    truncated: bool


def change_type(status: str) -> str:
    """``"added" | "deleted" | "modified" | "renamed"`` for a git status letter (``R087`` is renamed)."""
    try:
        return _CHANGE_TYPES[status[:1]]
    except KeyError:
        raise ValueError(f"unknown file change status {status!r}") from None


def split_lines(text: str) -> list[str]:
    """Lines as git counts them: split at ``\\n`` only (``\\r``, U+2028 stay inside a line), ends kept."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def parse_diff(diff: str) -> list[Block] | None:
    """The changed-line blocks of a unified diff, or None when its hunks do not parse."""
    blocks: list[Block] = []
    lines, k = diff.split("\n"), 0
    while k < len(lines):
        m = _HUNK.match(lines[k])
        k += 1
        if not m:
            continue
        a, b, c, d = (int(g) if g is not None else 1 for g in m.groups())
        i, j = (a - 1 if b else a), (c - 1 if d else c)  # a count of 0 names the line before
        left_old, left_new, open_at = b, d, None
        while left_old or left_new:
            if k >= len(lines):
                return None
            tag, k = lines[k][:1], k + 1
            if tag == "\\":
                continue
            if tag in (" ", ""):  # "": a tool stripped the space of an empty context line
                if not (left_old and left_new):
                    return None
                if open_at:
                    blocks.append((open_at[0], i, open_at[1], j))
                    open_at = None
                i, j, left_old, left_new = i + 1, j + 1, left_old - 1, left_new - 1
                continue
            if (tag == "-" and not left_old) or (tag == "+" and not left_new) or tag not in "-+":
                return None
            open_at = open_at or (i, j)
            if tag == "-":
                i, left_old = i + 1, left_old - 1
            else:
                j, left_new = j + 1, left_new - 1
        if open_at:
            blocks.append((open_at[0], i, open_at[1], j))
    return blocks


def _consistent(blocks: list[Block], old: list[str], new: list[str]) -> bool:
    """Whether ``blocks`` turn ``old`` into ``new``: every unchanged stretch equal on both sides."""
    i = j = 0
    for o1, o2, n1, n2 in blocks:
        if not (i <= o1 <= o2 <= len(old) and j <= n1 <= n2 <= len(new)) or old[i:o1] != new[j:n1]:
            return False
        i, j = o2, n2
    return old[i:] == new[j:]


def change_blocks(entry: dict[str, Any], old: list[str], new: list[str]) -> list[Block]:
    """From git's diff when it matches the texts, else difflib (no diff, unparsable, or stale)."""
    blocks = parse_diff(entry["diff"]) if entry.get("diff") else None
    if blocks is not None and _consistent(blocks, old, new):
        return blocks
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    return [(i1, i2, j1, j2) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def go_decls(lines: list[str]) -> Spans:
    """Top-level declarations: a ``func``/``type``/``var``/``const`` line at column 0 down to the
    column-0 ``}`` or ``)`` that closes it (gofmt's layout; a one-line decl is its own span)."""
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(lines):
        if not _DECL_START.match(lines[i]):
            i += 1
            continue
        if not lines[i].rstrip().endswith(("{", "(", ",")):
            spans.append((i, i + 1))
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not _DECL_START.match(lines[j]):
            s = lines[j].rstrip()
            if s[:1] in ("}", ")") and not s.endswith(("{", "(")):  # not ") error {" of a long signature
                spans.append((i, j + 1))
                break
            j += 1
        i = j + 1 if spans and spans[-1][0] == i else j
    return spans, [s for s, _ in spans]


def _enclosing(spans: Spans, at: int) -> tuple[int, int] | None:
    """The declaration with start < at < end: it holds line ``at`` and the line above it."""
    k = bisect.bisect_left(spans[1], at) - 1
    return spans[0][k] if k >= 0 and spans[0][k][1] > at else None


def _widths(block: Block, sides: tuple[Spans, Spans] | None, options: ChangeOptions) -> tuple[int, int]:
    """Unchanged lines to show above and below a block: its enclosing declarations if cheap."""
    c = options.context_lines
    if sides is None:
        return c, c
    up = down = 0
    found = False
    for (lo, hi), spans in zip(((block[0], block[1]), (block[2], block[3])), sides, strict=True):
        top, bottom = _enclosing(spans, lo), _enclosing(spans, hi)
        up = max(up, lo - top[0] if top else c)
        down = max(down, bottom[1] - hi if bottom else c)
        found = found or bool(top or bottom)
    return (up, down) if found and up + down <= options.function_context_lines else (c, c)


def regions(
    blocks: list[Block], old: list[str], new: list[str], path: str, options: ChangeOptions
) -> list[tuple[Block, list[Block]]]:
    """Blocks widened by context and merged where they touch: ``(old/new range, its blocks)``.

    Widening stays inside the unchanged stretch around a block (equal on both sides), so one
    (up, down) applies to both files; a wider reach would meet the neighbour's region and merge."""
    sides = (go_decls(old), go_decls(new)) if path.endswith(".go") else None
    out: list[tuple[Block, list[Block]]] = []
    for k, (o1, o2, n1, n2) in enumerate(blocks):
        up, down = _widths((o1, o2, n1, n2), sides, options)
        up = min(up, o1 - (blocks[k - 1][1] if k else 0))
        down = min(down, (blocks[k + 1][0] if k + 1 < len(blocks) else len(old)) - o2)
        span = (o1 - up, o2 + down, n1 - up, n2 + down)
        if out and span[0] <= out[-1][0][1]:
            (a, _, c, _), members = out[-1]
            out[-1] = ((a, span[1], c, span[3]), [*members, (o1, o2, n1, n2)])
        else:
            out.append((span, [(o1, o2, n1, n2)]))
    return out


def _snippet(lines: list[str], start: int, end: int, keep: int) -> str:
    shown = lines[start : min(end, start + keep)]
    text = data("".join(shown))
    if shown and not shown[-1].endswith("\n"):
        text += "\n" + _NO_NEWLINE
    return text + (f"[… {end - start - keep} more lines not shown]\n" if end - start > keep else "")


def _range(start: int, end: int) -> str:
    return f"{start + 1 if end > start else start},{end - start}"


def _signature(start: int, lines: list[str], spans: Spans) -> str:
    decl = _enclosing(spans, start)
    return " " + data(lines[decl[0]].rstrip("\r\n")) if decl else ""


def _comments(comments: Sequence[ReviewComment]) -> str:
    if not comments:
        return ""
    body = "".join(
        f"{data(c.author or 'unknown')} ({'outdated' if c.line is None else f'line {c.line}'}): {line(data(c.body))}"
        for c in comments
    )
    return mark("<COMMENTS>") + "\n" + body


def render_file_change(
    entry: dict[str, Any], comments: Sequence[ReviewComment] = (), options: ChangeOptions = ChangeOptions()
) -> RenderedFile:
    """One file block (see the module docstring) with what it shows of the change."""
    kind = change_type(entry["status"])
    head = f"{mark('<FILE')} path={quote(entry['path'])} change={quote(kind)}"
    if kind == "renamed":
        head += f" from={quote(entry.get('old_path') or entry['path'])}"
    parts, left = [head + ">\n"], list(comments)
    before, after = entry.get("before"), entry.get("after")
    changed = shown = 0
    truncated = False
    if kind == "deleted":
        changed = len(split_lines(before)) if before is not None else 0
    elif kind == "added" and after is not None:
        new = split_lines(after)
        changed, shown = len(new), min(len(new), options.max_added_lines)
        truncated = changed > shown
        parts += [mark("<AFTER>"), "\n", _snippet(new, 0, len(new), options.max_added_lines)]
    elif kind != "added" and before is not None and after is not None and before != after:
        old, new = split_lines(before), split_lines(after)
        found = regions(change_blocks(entry, old, new), old, new, entry["path"], options)
        sides = (go_decls(old), go_decls(new)) if entry["path"].endswith(".go") else None
        budget = options.max_file_lines
        changed = sum(o2 - o1 + n2 - n1 for _, members in found for o1, o2, n1, n2 in members)
        for k, ((os_, oe, ns, ne), members) in enumerate(found):
            size = oe - os_ + ne - ns
            if k and size > budget:  # stop here, visibly; only the first region is ever cut
                rest = [r for r, _ in found[k:]]
                parts.append(
                    f"[… {len(rest)} more changed region{'s' * (len(rest) > 1)} "
                    f"({sum(r[1] - r[0] + r[3] - r[2] for r in rest)} lines) not shown]\n"
                )
                truncated = True
                break
            keep_old = min(oe - os_, max(budget // 2, budget - (ne - ns)))
            keep_new = min(ne - ns, budget - keep_old)
            truncated, budget = keep_old + keep_new < size, budget - keep_old - keep_new
            shown += sum(
                max(0, min(o2, os_ + keep_old) - o1) + max(0, min(n2, ns + keep_new) - n1) for o1, o2, n1, n2 in members
            )
            sig = (_signature(ns, new, sides[1]) or _signature(os_, old, sides[0])) if sides else ""
            here = [c for c in left if c.line is not None and ns < c.line <= ne]
            left = [c for c in left if c not in here]
            parts += [
                f"@@ -{_range(os_, oe)} +{_range(ns, ne)} @@{sig}\n",
                mark("<BEFORE>"),
                "\n",
                _snippet(old, os_, oe, keep_old),
                mark("<AFTER>"),
                "\n",
                _snippet(new, ns, ne, keep_new),
                _comments(here),
            ]
    parts += [_comments(left), mark("</FILE>"), "\n"]
    return RenderedFile("".join(parts), changed, shown, truncated)
