"""Running git safely against an untrusted repository's object database: the command runner and the
``cat-file`` blob reader that the clone source (git_clones.py), the patch reader (git_diff.py) and the
GitHub fetcher all use. Kept below them so none of them imports another for these."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from . import base
from .base import decode_text

# Command-line config beats the clone's own (untrusted) .git/config. The first four are the
# safety baseline; the rest pin output formats we parse, whatever the clone configures.
_GIT_CONFIG = (
    "core.hooksPath=/dev/null",
    "protocol.file.allow=never",
    "core.symlinks=false",
    "safe.directory=*",
    "protocol.allow=never",
    "core.fsmonitor=false",
    "core.quotePath=false",
    "color.ui=never",
    "diff.noprefix=false",
    "diff.mnemonicPrefix=false",
    "log.showSignature=false",
)
_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_LFS_SKIP_SMUDGE": "1",
    "GIT_NO_LAZY_FETCH": "1",
    "GIT_NO_REPLACE_OBJECTS": "1",
    "LC_ALL": "C",
}


class Git:
    """Runs git against one repository's object database, never its work tree."""

    def __init__(self, git_dir: Path, scratch: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}  # e.g. GIT_DIR from a hook
        git_dir = git_dir.absolute()  # git runs in the scratch directory, not the caller's cwd
        env.update(_GIT_ENV, GIT_DIR=str(git_dir), GIT_WORK_TREE=str(scratch), GIT_INDEX_FILE=str(scratch / "no-index"))
        self.git_dir, self.scratch, self.env = git_dir, scratch, env

    def argv(self, args: Iterable[str]) -> list[str]:
        return ["git", *(x for kv in _GIT_CONFIG for x in ("-c", kv)), *args]

    def run(self, *args: str, check: bool = True) -> bytes | None:
        """Output of one git command; None (instead of raising) when it fails and not ``check``."""
        proc = subprocess.run(
            self.argv(args), cwd=self.scratch, env=self.env, capture_output=True, stdin=subprocess.DEVNULL
        )
        if proc.returncode == 0:
            return proc.stdout
        if check:
            msg = proc.stderr.decode(errors="replace").strip()
            raise RuntimeError(f"git {' '.join(args)} failed in {self.git_dir}: {msg}")
        return None

    def text(self, *args: str) -> str | None:
        out = self.run(*args, check=False)
        return out.decode(errors="replace").strip() if out is not None else None

    def popen(self, *args: str, stdin: int = subprocess.DEVNULL, stderr: Any = subprocess.DEVNULL) -> subprocess.Popen:
        """A streaming git process (stdout piped) for long outputs and the cat-file conversation."""
        return subprocess.Popen(
            self.argv(args), cwd=self.scratch, env=self.env, stdin=stdin, stdout=subprocess.PIPE, stderr=stderr
        )


class BlobReader:
    """One ``git cat-file --batch`` process answering blob reads by object id."""

    def __init__(self, git: Git) -> None:
        self._proc = git.popen("cat-file", "--batch", stdin=subprocess.PIPE)
        self._in: IO[bytes] = self._proc.stdin  # type: ignore[assignment]
        self._out: IO[bytes] = self._proc.stdout  # type: ignore[assignment]

    def read(self, oid: str, limit: int | None = None) -> bytes | None:
        """The blob's bytes, or None when it is larger than ``limit`` (drained, never held)."""
        limit = base.MAX_FILE_BYTES if limit is None else limit  # read at call time, like git_diff
        self._in.write(oid.encode() + b"\n")
        self._in.flush()
        header = self._out.readline().split()
        if len(header) != 3 or header[1] != b"blob":
            raise RuntimeError(
                f"cat-file: {oid} is not a readable blob ({b' '.join(header)!r}); partial or corrupt clone?"
            )
        size = int(header[2])
        if size > limit:
            left = size + 1
            while left:
                chunk = self._out.read(min(left, 1 << 20))
                if not chunk:
                    raise RuntimeError("cat-file ended mid-object")
                left -= len(chunk)
            return None
        data = self._out.read(size)
        self._out.read(1)  # the newline after each object
        return data

    def text(self, oid: str) -> tuple[str | None, str | None]:
        data = self.read(oid)
        return decode_text(data) if data is not None else (None, "too_large")

    def close(self) -> None:
        self._in.close()
        self._proc.wait()
