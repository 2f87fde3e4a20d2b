"""A repository source over a directory of local git clones (one clone = one partition).

The clones are untrusted, so git only ever reads their object databases: every command
runs with hooks, protocols and system/global config switched off, and against an empty
scratch directory as work tree and a nonexistent index, so nothing in a clone's checkout
(``.gitattributes``, index, fsmonitor) is consulted or executed. Blobs are read through
one long-lived ``git cat-file --batch`` per repository rather than a process per file.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from gocoder_assets.licenses import license_key

from .base import RawRecord, RepoInfo, decode_text, is_safe_relpath, utc_now
from .git_cmd import BlobReader, Git
from .git_diff import GITLINK_MODE, SYMLINK_MODE, commit_files
from .git_diff import blob_side as _side

_LICENSE_FILES = ("license", "license.md", "license.txt", "copying")
_PR_SUFFIX = re.compile(r"\s*\(#(\d+)\)\s*$")
_OWNER_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def find_git_dir(path: Path) -> Path | None:
    """The git directory of a clone (``.git`` dir or gitfile) or a bare repo, else None."""
    if (path / ".git").exists():
        candidate = path / ".git"
    elif (path / "HEAD").is_file() and (path / "objects").is_dir():
        candidate = path
    else:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        return candidate if Git(candidate, Path(scratch)).run("rev-parse", "--git-dir", check=False) else None


def detect_license(text: str) -> str | None:
    """Heuristic SPDX id from a license file's wording; None when unsure.

    The marker phrase appearing earliest wins, because license texts quote each other (the GPL
    mentions the LGPL, Apache files append bundled MIT notices). Not a substitute for a scanner.
    """
    t = " ".join(text.lower().split())
    markers = {
        "gnu affero general public license": lambda v: "AGPL-3.0" if v == "3" else None,
        "gnu lesser general public license": lambda v: {"3": "LGPL-3.0", "2.1": "LGPL-2.1"}.get(v),
        "gnu general public license": lambda v: {"3": "GPL-3.0", "2": "GPL-2.0"}.get(v),
        "mozilla public license": lambda v: "MPL-2.0" if v == "2.0" else None,
        "apache license": lambda v: "Apache-2.0" if v == "2.0" else None,
        "permission is hereby granted, free of charge": lambda v: "MIT",
        "free and unencumbered software released into the public domain": lambda v: "Unlicense",
        "distribute this software for any purpose with or without fee": lambda v: "ISC",
        "redistribution and use in source and binary forms": lambda v: (
            "BSD-3-Clause" if "neither the name" in t or "to endorse or promote" in t else "BSD-2-Clause"
        ),
    }
    found = sorted((t.find(m), m) for m in markers if m in t)
    if not found:
        return None
    pos, marker = found[0]
    version = re.search(r"(?:version|v\.?) ?(\d+(?:\.\d+)?)", t[pos + len(marker) : pos + len(marker) + 40])
    return markers[marker](version.group(1) if version else "")


def parse_remote(url: str) -> tuple[str | None, str]:
    """``(owner/name or None, url without credentials)`` for https, ssh, scp-like and file remotes."""
    if "://" in url:
        parts = urlsplit(url)
        clean = urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))
        path = parts.path
    else:  # scp-like git@host:owner/name.git or a plain path; the ssh user is no secret
        clean, path = url, (url.split(":", 1)[-1] if re.match(r"^[^/]+:", url) else url)
    segs = [s for s in path.removesuffix("/").removesuffix(".git").split("/") if s]
    if len(segs) >= 2 and all(_OWNER_NAME.match(s) for s in segs[-2:]):
        return f"{segs[-2]}/{segs[-1]}", clean
    return None, clean


def is_wanted(path: str) -> bool:
    """Files worth training on or reading: Go code, module files, READMEs and markdown."""
    name = path.rsplit("/", 1)[-1]
    return path.endswith(".go") or name == "go.mod" or name.lower().startswith("readme") or name.lower().endswith(".md")


def _nul_fields(stream: IO[bytes]) -> Iterator[bytes]:
    """NUL-terminated fields from a stream, read incrementally."""
    buf = b""
    while chunk := stream.read(1 << 16):
        *parts, buf = (buf + chunk).split(b"\0")
        yield from parts
    if buf:
        yield buf


class GitClonesSource:
    """Each immediate subdirectory of ``clones_dir`` that is a git repository is one repository."""

    def __init__(
        self, clones_dir: Path, max_commits: int = 1000, fetched_at: str | None = None, *, strict: bool = False
    ) -> None:
        """``strict``: raise ValueError for subdirectories that are not git repos instead of skipping."""
        self.clones_dir, self.max_commits, self.fetched_at, self.strict = (
            Path(clones_dir),
            max_commits,
            fetched_at,
            strict,
        )
        self._dirs: dict[str, Path] = {}

    def list_repos(self) -> list[RepoInfo]:
        if not self.clones_dir.is_dir():
            raise ValueError(f"clones directory {self.clones_dir} does not exist")
        repos: dict[str, RepoInfo] = {}
        self._dirs = {}
        fetched_at = self.fetched_at or utc_now()
        for sub in sorted(p for p in self.clones_dir.iterdir() if p.is_dir()):
            git_dir = find_git_dir(sub)
            info = self._describe(sub, git_dir, fetched_at) if git_dir else None
            if git_dir is None or info is None:
                if self.strict:
                    raise ValueError(f"{sub} is not a git repository with at least one commit")
                continue
            if info.partition_key in repos:  # two clones of one repository: keep the first
                warnings.warn(f"{sub} duplicates {info.partition_key}; skipped", stacklevel=2)
                continue
            repos[info.partition_key], self._dirs[info.partition_key] = info, git_dir
        return sorted(repos.values(), key=lambda r: r.partition_key)

    def _describe(self, sub: Path, git_dir: Path, fetched_at: str) -> RepoInfo | None:
        with tempfile.TemporaryDirectory(prefix="gocoder-git-") as scratch:
            git = Git(git_dir, Path(scratch))
            sha = git.text("rev-parse", "--verify", "--quiet", "HEAD^{commit}")
            if not sha:
                return None
            remote = git.text("remote", "get-url", "origin")
            full_name, url = parse_remote(remote) if remote else (None, f"file://{sub.resolve()}")
            full_name = full_name or f"local/{sub.name}"
            spdx = self._license(git, sha)
            return RepoInfo(
                partition_key=full_name,
                full_name=full_name,
                url=url,
                stars=None,
                license_spdx=spdx,
                license_key=license_key(spdx),
                default_branch=git.text("symbolic-ref", "--short", "-q", "HEAD") or "HEAD",
                commit_sha=sha,
                fetched_at=fetched_at,
                source="git",
                root="",
            )

    @staticmethod
    def _license(git: Git, sha: str) -> str | None:
        entries = {
            e.split(b"\t", 1)[1].decode(errors="replace").lower(): e.split()[:3]
            for e in (git.run("ls-tree", "-z", sha) or b"").split(b"\0")
            if b"\t" in e
        }
        for name in _LICENSE_FILES:
            mode, kind, oid = entries.get(name, [b"", b"", b""])
            if kind == b"blob" and mode != SYMLINK_MODE.encode():
                text, _ = decode_text(git.run("cat-file", "blob", oid.decode()) or b"")
                return detect_license(text) if text else None
        return None

    def collect(self, repo: RepoInfo) -> Iterator[RawRecord]:
        """Tree, then snapshot files and skips (in path order), then commits newest first."""
        if repo.partition_key not in self._dirs:
            self.list_repos()
        if repo.partition_key not in self._dirs:
            raise ValueError(f"no clone of {repo.partition_key} in {self.clones_dir}")
        with tempfile.TemporaryDirectory(prefix="gocoder-git-") as scratch:
            git = Git(self._dirs[repo.partition_key], Path(scratch))
            blobs = BlobReader(git)
            try:
                yield from snapshot_records(git, blobs, repo.commit_sha)
                yield from _changes(git, blobs, repo.commit_sha, self.max_commits)
            finally:
                blobs.close()


def snapshot_records(
    git: Git, blobs: BlobReader, sha: str, unread: Callable[[str, str], str | None] | None = None
) -> Iterator[RawRecord]:
    """``unread(path, oid)``: a skip reason for a blob not to read (a partial clone never fetched it)."""
    entries = []
    for entry in (git.run("ls-tree", "-r", "-z", "--full-tree", sha) or b"").split(b"\0"):
        if b"\t" in entry:
            meta, path = entry.split(b"\t", 1)
            mode, _, oid = meta.decode().split()
            entries.append((path.decode("utf-8", errors="backslashreplace"), mode, oid))
    entries.sort()
    yield {"kind": "tree", "paths": [p for p, _, _ in entries]}
    for path, mode, oid in entries:
        # Unsafe paths and submodules are recorded wherever they are; the rest only if wanted.
        if not is_safe_relpath(path) or mode == GITLINK_MODE or is_wanted(path):
            linked = mode in (SYMLINK_MODE, GITLINK_MODE)
            reason = unread(path, oid) if unread and is_safe_relpath(path) and not linked else None
            text, reason = _side(blobs, path, mode, oid) if reason is None else (None, reason)
            if text is not None:
                yield {"kind": "file", "path": path, "text": text, "size": len(text.encode())}
            else:
                yield {"kind": "skip", "path": path, "reason": reason}


def _changes(git: Git, blobs: BlobReader, sha: str, max_commits: int) -> Iterator[RawRecord]:
    if max_commits <= 0:
        return
    # A shallow clone's boundary commits look like roots; their "diff" would be the whole tree.
    shallow_file = Path(git.text("rev-parse", "--git-path", "shallow") or os.devnull)
    boundary = set(shallow_file.read_text().split()) if shallow_file.is_file() else set()
    with tempfile.TemporaryFile() as err:
        proc = git.popen(
            "log",
            "-z",
            "--first-parent",
            "--no-merges",
            f"--max-count={max_commits}",
            "--encoding=UTF-8",
            "--format=%H%x00%an%x00%aI%x00%s%x00%b",
            sha,
            "--",
            stderr=err,
        )
        try:
            fields = _nul_fields(proc.stdout)  # type: ignore[arg-type]
            for raw_fields in zip(*[fields] * 5, strict=False):
                try:
                    commit, author, date, subject, body = (f.decode("utf-8") for f in raw_fields)
                except UnicodeDecodeError:
                    # Never mangle text with replacement characters: skip the commit, counted.
                    yield {"kind": "skip", "path": f"commit:{raw_fields[0].decode('ascii')}", "reason": "invalid_utf8"}
                    continue
                if commit in boundary:
                    continue
                number = _PR_SUFFIX.search(subject)
                yield {
                    "kind": "change",
                    "number": int(number.group(1)) if number else None,
                    "sha": commit,
                    "title": _PR_SUFFIX.sub("", subject),
                    "body": body.strip(),
                    "author": author,
                    "created_at": date,
                    "comments": [],
                    "files": commit_files(git, blobs, commit),
                }
        finally:
            proc.kill()
            proc.stdout.close()  # type: ignore[union-attr]
            if proc.wait() not in (0, -9):
                err.seek(0)
                raise RuntimeError(f"git log failed in {git.git_dir}: {err.read().decode(errors='replace')}")
