"""A commit's changed files from one streamed ``git diff-tree --patch-with-raw``.

A commit or PR that vendors a dependency or regenerates code can touch thousands of files, so
the patch is never held whole: the raw entries (ids, modes, statuses, paths: small) are read
first, then the patch is cut into per-file sections as it arrives, each paired with its raw
entry and its blobs read before the next section is taken. Parsing holds one section at a time,
and a section over twice ``MAX_FILE_BYTES`` (it could never become text) is drained, keeping only
its header for the pairing check.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import IO, TYPE_CHECKING, Any

from . import base
from .base import decode_text, is_safe_relpath

if TYPE_CHECKING:
    from .git_cmd import BlobReader, Git

# Raw ids and the patch in one go; no external diff or textconv programs, no orderfile. Renames
# are detected at git's default similarity (50%); copies are not asked for (no -C).
_DIFF_ARGS = (
    "-r",
    "--root",
    "--no-commit-id",
    "--find-renames",
    "-z",
    "--patch-with-raw",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--submodule=short",
    "-O/dev/null",
)
_HEADER_END = re.compile(rb"(?m)^(?:--- |@@ |Binary files |GIT binary patch)")
_RENAME_LINE = re.compile(rb"(?m)^(rename|copy) from ")
# A section starts at every line that starts with this (content lines start with " +-\\").
_SECTION_MARK = b"\ndiff --git "
_CHUNK = 1 << 16
SYMLINK_MODE, GITLINK_MODE = "120000", "160000"

# (old_mode, new_mode, old_oid, new_oid, status, [path] or [old path, new path])
RawEntry = tuple[str, str, str, str, str, list[str]]


@dataclass(frozen=True)
class Section:
    """One file's patch section: its bytes, or None when over the cap (drained, never held).

    ``header`` is the part before the first ``---``/``@@``/binary line (all of it when there is
    none, then ``header_ended`` is False): the rename/copy pairing check reads it, and a type
    change's two sections are checked as one, the header running on into the second section.
    """

    data: bytes | None
    header: bytes
    header_ended: bool

    @classmethod
    def of(cls, data: bytes, held: bool) -> Section:
        m = _HEADER_END.search(data)
        return cls(data if held else None, data[: m.start()] if m else data, m is not None)


class _RawReader:
    """NUL-terminated raw fields off the front of a stream; what follows is left in ``rest``."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream, self.rest, self._pos = stream, b"", 0

    def _fill(self, n: int) -> bool:
        """At least ``n`` unread bytes buffered, unless the stream ends first (then False)."""
        while len(self.rest) - self._pos < n:
            chunk = self.stream.read(_CHUNK)
            if not chunk:
                return False
            self.rest = self.rest[self._pos :] + chunk
            self._pos = 0
        return True

    def peek(self) -> bytes:
        return self.rest[self._pos : self._pos + 1] if self._fill(1) else b""

    def field(self) -> bytes:
        while (end := self.rest.find(b"\0", self._pos)) < 0:
            if not self._fill(len(self.rest) - self._pos + 1):
                raise RuntimeError("diff-tree output ended inside a raw entry")
        out, self._pos = self.rest[self._pos : end], end + 1
        return out

    def entries(self) -> list[RawEntry]:
        """``:oldmode newmode oldoid newoid status\\0path\\0`` (two paths for R/C), then the patch."""
        raw: list[RawEntry] = []
        while self.peek() == b":":
            old_mode, new_mode, old_oid, new_oid, status = self.field()[1:].decode().split()
            paths = [
                self.field().decode("utf-8", errors="backslashreplace")
                for _ in range(2 if status[:1] in ("R", "C") else 1)
            ]
            raw.append((old_mode, new_mode, old_oid, new_oid, status, paths))
        if self.peek() == b"\0":  # the separator between raw entries and the patch
            self._pos += 1
        self.rest, self._pos = self.rest[self._pos :], 0
        return raw


def _pieces(first: bytes, stream: IO[bytes]) -> Iterator[tuple[bool, bytes]]:
    """The patch as ``(starts_a_section, bytes)`` pieces of at most about one read each.

    A cut falls before each line starting ``diff --git ``; the last few bytes of a read are held
    back in case they begin such a line. The patch's first byte starts a section.
    """
    buf, new, keep_back = first, True, len(_SECTION_MARK) - 1
    while True:
        chunk = stream.read(_CHUNK)
        buf += chunk
        start = 0
        while (cut := buf.find(_SECTION_MARK, start)) >= 0:
            yield new, buf[start : cut + 1]
            new, start = True, cut + 1
        keep = len(buf) if not chunk else max(start, len(buf) - keep_back)
        if keep > start:
            yield new, buf[start:keep]
            new = False
        buf = buf[keep:]
        if not chunk:
            return


def sections(first: bytes, stream: IO[bytes], cap: int) -> Iterator[Section]:
    """Patch sections as they arrive; one over ``cap`` bytes is drained with only its head held."""
    held: list[bytes] | None = []
    size, oversized = 0, None
    for starts, piece in _pieces(first, stream):
        if starts and size:
            yield oversized or Section.of(b"".join(held or ()), held=True)
            held, size, oversized = [], 0, None
        size += len(piece)
        if held is not None:
            held.append(piece)
            if size > cap:  # the header is within the head (no header comes near the cap)
                oversized, held = Section.of(b"".join(held), held=False), None
    if size:
        yield oversized or Section.of(b"".join(held or ()), held=True)


def _entry_header(parts: list[Section]) -> bytes:
    """The header of a raw entry's sections taken together (as if they were one text)."""
    out = []
    for part in parts:
        out.append(part.header)
        if part.header_ended:
            break
    return b"".join(out)


def blob_side(blobs: BlobReader, path: str, mode: str, oid: str) -> tuple[str | None, str | None]:
    """One side of a change as text, or why not: the path is checked where the side is read."""
    if not is_safe_relpath(path):
        return None, "unsafe_path"
    if mode in (SYMLINK_MODE, GITLINK_MODE):
        return None, "symlink" if mode == SYMLINK_MODE else "submodule"
    return blobs.text(oid)


def commit_files(git: Git, blobs: BlobReader, sha: str, exclude: Iterable[str] = ()) -> list[dict[str, Any]]:
    """One entry per changed path, from one streamed ``diff-tree`` (raw ids + patch) and blob reads.

    A rename is one entry: ``path`` the new path, ``old_path`` the old one, status ``R`` with
    git's ``similarity`` percent, ``before`` read at the old path and ``after`` at the new. A copy
    (status ``C``; not requested, so not expected) is recorded as an add of the new path, its
    ``diff`` being git's copy section (relative to the source). A type change (file <-> symlink
    or submodule) is ``M``. ``exclude``: pathspecs left out (paths whose blobs a partial clone lacks:
    git cannot diff them). A diff section over twice ``MAX_FILE_BYTES`` is ``diff=None``, skipped
    ``too_large``, without being held.
    """
    excluded = tuple(exclude)
    args = ("diff-tree", *_DIFF_ARGS, sha, *(("--", *excluded) if excluded else ()))
    with tempfile.TemporaryFile() as err:
        proc = git.popen(*args, stderr=err)
        try:
            files = _stream_files(git, blobs, sha, proc.stdout)  # type: ignore[arg-type]
        except BaseException:
            proc.kill()
            raise
        finally:
            proc.stdout.close()  # type: ignore[union-attr]
            rc = proc.wait()
        if rc != 0:
            err.seek(0)
            msg = err.read().decode(errors="replace").strip()
            raise RuntimeError(f"git {' '.join(args)} failed in {git.git_dir}: {msg}")
    return files


def _stream_files(git: Git, blobs: BlobReader, sha: str, stream: IO[bytes]) -> list[dict[str, Any]]:
    reader = _RawReader(stream)
    raw = reader.entries()
    patch = sections(reader.rest, stream, 2 * base.MAX_FILE_BYTES)
    files: list[dict[str, Any]] = []

    def unpaired() -> RuntimeError:
        return RuntimeError(f"cannot pair diff sections with paths in commit {sha} of {git.git_dir}")

    consumed = 0  # sections paired so far, for the error message
    for old_mode, new_mode, old_oid, new_oid, status, paths in raw:
        kind, path, old_path = status[:1], paths[-1], paths[0]
        # A type change (file <-> symlink/submodule) prints as delete + add: two sections.
        n = 2 if kind == "T" else 1
        parts = list(islice(patch, n))
        if len(parts) != n:
            raise unpaired()
        consumed += len(parts)
        # Header lines never start a content line (those start with " ", "+", "-" or "\\"), so a
        # section has "rename/copy from" exactly when its raw entry is R/C: a second pairing check.
        marker = _RENAME_LINE.search(_entry_header(parts))
        if (marker.group(1) if marker else None) != {"R": b"rename", "C": b"copy"}.get(kind):
            raise RuntimeError(
                f"diff section {consumed} does not match {status} {path!r} in commit {sha} of {git.git_dir}"
            )
        held = [p.data for p in parts if p.data is not None]
        diff, diff_reason = decode_text(b"".join(held)) if len(held) == len(parts) else (None, "too_large")
        has_before = kind not in ("A", "C")
        before, before_reason = blob_side(blobs, old_path, old_mode, old_oid) if has_before else (None, None)
        after, after_reason = blob_side(blobs, path, new_mode, new_oid) if kind != "D" else (None, None)
        entry: dict[str, Any] = {"path": path}
        if kind == "R":
            entry.update(old_path=old_path, similarity=int(status[1:] or 0))
        entry.update(status={"T": "M", "C": "A"}.get(kind, kind), diff=diff, before=before, after=after)
        reason = before_reason or after_reason or diff_reason
        if reason:
            entry["skipped"] = reason
        files.append(entry)
    if next(patch, None) is not None:
        raise unpaired()
    return files
