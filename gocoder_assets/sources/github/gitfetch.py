"""PR code from git, not the API: a blob-less partial clone, PR heads fetched by ref, diffs made locally.

One fetch brings the default branch and every collected PR's ``refs/pull/N/head`` (commits and
trees only); a second fetch brings exactly the blobs the snapshot and the PR diffs need. Each
PR's diff is ``merge-base(base, head)..head``, computed by giving the head tree a synthetic
commit whose parent is the merge base, so the clones source's own diff reader
(``commit_files``: paths, statuses, unified diffs, before/after, skips) is reused as is.

The remote is untrusted: git runs through ``git_clones.Git`` (hooks off, no system/global
config, no prompts, LFS smudge off, ``protocol.file.allow=never``); this module re-allows only
https (and http for a loopback test server), never recurses into submodules and never checks
anything out, so no symlink in the repository can point the collector outside the clone.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from gocoder_assets.sources.base import RawRecord, is_safe_relpath
from gocoder_assets.sources.git_clones import (
    GITLINK_MODE,
    SYMLINK_MODE,
    BlobReader,
    Git,
    commit_files,
    is_wanted,
    snapshot_records,
)

_IDENTITY = ("-c", "user.name=gocoder", "-c", "user.email=gocoder@localhost")
_FETCH = ("fetch", "--filter=blob:none", "--no-tags", "--recurse-submodules=no", "--no-write-fetch-head",
          "--stdin", "origin")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def clone_protocols(url: str) -> tuple[str, ...]:
    """Config re-allowing just the protocol of ``url``: https, or http to a loopback host only."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return ("-c", "protocol.https.allow=always")
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return ("-c", "protocol.http.allow=always")
    raise ValueError(f"refusing to clone {url!r}: only https (or http on loopback) remotes are allowed")


class PartialClone:
    """A bare, blob-less clone of one repository kept under the partition's archive folder."""

    def __init__(self, git_dir: Path, url: str, scratch: Path) -> None:
        self.protocols = clone_protocols(url)
        git_dir.mkdir(parents=True, exist_ok=True)
        self.git = Git(git_dir, scratch)
        if not (git_dir / "HEAD").exists():  # init must not see GIT_DIR/GIT_WORK_TREE: it creates the former
            env = {k: v for k, v in self.git.env.items() if k not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")}
            subprocess.run(self.git.argv(("init", "-q", "--bare", str(self.git.git_dir))), env=env, check=True,
                           cwd=scratch, capture_output=True)
        for key, value in (("core.repositoryformatversion", "1"), ("extensions.partialClone", "origin"),
                           ("remote.origin.url", url), ("remote.origin.promisor", "true"),
                           ("remote.origin.partialclonefilter", "blob:none")):
            self.git.run("config", key, value)

    def _fetch(self, lines: Iterable[str], *, check: bool = True) -> bool:
        stdin = "".join(f"{line}\n" for line in lines).encode()
        argv = self.git.argv((*self.protocols, "-c", "credential.helper=", *_FETCH))
        proc = subprocess.run(argv, cwd=self.git.scratch, env=self.git.env, input=stdin, capture_output=True)
        if proc.returncode != 0 and check:
            raise RuntimeError(f"git fetch failed for {self.git.git_dir}: {proc.stderr.decode(errors='replace')}")
        return proc.returncode == 0

    def missing(self, oids: Iterable[str]) -> set[str]:
        """Which of these commits the clone lacks, in one ``cat-file --batch-check``."""
        wanted = sorted({o for o in oids if o})
        if not wanted:
            return set()
        stdin = "".join(f"{oid}^{{commit}}\n" for oid in wanted).encode()
        proc = subprocess.run(self.git.argv(("cat-file", "--batch-check")), cwd=self.git.scratch, env=self.git.env,
                              input=stdin, capture_output=True, check=True)
        lines = proc.stdout.decode().splitlines()
        return {oid for oid, line in zip(wanted, lines, strict=True) if line.endswith(" missing")}

    def fetch_refs(self, branch: str, pr_numbers: Iterable[int], want: Iterable[str] = ()) -> None:
        """The default branch and each PR's head ref (commits and trees only), in one fetch."""
        refspecs = [f"+refs/heads/{branch}:refs/heads/{branch}"]
        refspecs += [f"+refs/pull/{n}/head:refs/pull/{n}/head" for n in sorted(set(pr_numbers))]
        self._fetch(refspecs)
        missing = sorted(self.missing(want))
        if missing:  # e.g. a snapshot or PR base no longer on any branch: ask for the commits themselves
            self._fetch(missing, check=False)

    def fetch_blobs(self, oids: Iterable[str]) -> None:
        """Exactly these blobs, in one fetch (what git's own lazy fetch would do, but batched)."""
        wanted = sorted(set(oids))
        if wanted:
            self._fetch(wanted)

    def tree_blobs(self, sha: str) -> list[str]:
        """Blob ids ``snapshot_records`` will read at ``sha`` (wanted, safe, regular files)."""
        oids = []
        for entry in (self.git.run("ls-tree", "-r", "-z", "--full-tree", sha) or b"").split(b"\0"):
            if b"\t" in entry:
                meta, raw_path = entry.split(b"\t", 1)
                mode, kind, oid = meta.decode().split()
                path = raw_path.decode("utf-8", errors="backslashreplace")
                linked = mode in (SYMLINK_MODE, GITLINK_MODE)
                if kind == "blob" and not linked and is_safe_relpath(path) and is_wanted(path):
                    oids.append(oid)
        return oids

    def pr_commits(self, prs: dict[int, tuple[str | None, str]]) -> dict[int, str | None]:
        """PR number -> a synthetic commit whose diff against its parent is the PR's diff
        (``merge-base(base, head)..head``); None where the clone lacks either end."""
        absent = self.missing(oid for pair in prs.values() for oid in pair if oid)
        out: dict[int, str | None] = {}
        for number, (base, head) in prs.items():
            merge_base = self.git.text("merge-base", base, head) if base and {base, head}.isdisjoint(absent) \
                else None
            out[number] = self.git.text(*_IDENTITY, "commit-tree", f"{head}^{{tree}}", "-p", merge_base, "-m",
                                        "pr") if merge_base else None
        return out

    def diff_blobs(self, commits: Iterable[str]) -> list[str]:
        """Blob ids on both sides of these commits' diffs, from one ``diff-tree --stdin`` (trees only:
        works before any blob is fetched)."""
        stdin = "".join(f"{c}\n" for c in commits).encode()
        if not stdin:
            return []
        # --no-renames stays on purpose: ``commit_files`` detects renames, but a rename pairs the
        # deleted path's old blob with the added path's new blob, exactly the two blobs this lists
        # for that delete + add, and rename detection only compares contents of deleted and added
        # regular files, all listed here; so the same set is fetched without detecting renames twice.
        out = subprocess.run(self.git.argv(("diff-tree", "--stdin", "-r", "-z", "--no-renames")),
                             cwd=self.git.scratch, env=self.git.env, input=stdin, capture_output=True,
                             check=True).stdout
        oids: list[str] = []
        for field in out.split(b"\0"):
            if field.startswith(b":"):
                old_mode, new_mode, old_oid, new_oid, _status = field[1:].decode().split()
                oids += [oid for mode, oid in ((old_mode, old_oid), (new_mode, new_oid))
                         if mode not in ("000000", SYMLINK_MODE, GITLINK_MODE) and set(oid) != {"0"}]
        return oids

    def snapshot(self, blobs: BlobReader, sha: str) -> list[RawRecord]:
        return list(snapshot_records(self.git, blobs, sha))

    def files(self, blobs: BlobReader, commit: str) -> list[dict]:
        return commit_files(self.git, blobs, commit)
