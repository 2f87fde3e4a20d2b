"""PR code from git, not the API: a blob-less partial clone, PR heads fetched by ref, diffs made locally.

One fetch brings the default branch and every collected PR's ``refs/pull/N/head`` (commits and
trees only); a second fetch brings exactly the blobs the snapshot and the PR diffs need. Each
PR's diff is ``merge-base(base, head)..head``, computed by giving the head tree a synthetic
commit whose parent is the merge base, so the clones source's own diff reader
(``commit_files``: paths, statuses, unified diffs, before/after, skips) is reused as is.

The remote is untrusted: git runs through ``git_cmd.Git`` (hooks off, no system/global
config, no prompts, LFS smudge off, ``protocol.file.allow=never``); this module re-allows only
https (and http for a loopback test server), never recurses into submodules and never checks
anything out, so no symlink in the repository can point the collector outside the clone.

Real remotes are imperfect, and one bad object must cost one record, not the partition: a PR
whose ``refs/pull/N/head`` is gone (deleted fork branch) is fetched by commit id instead, or gets
no files (``unavailable_prs``); a blob the server will not send is found by halving the failed
fetch, and its files are skipped as ``unavailable``. Blobs nobody keeps are never fetched:
excluded directories (the categorizer's own ``excluded_dirs``) and known binary extensions are
recorded as skips from the tree alone. git itself must never be asked about an absent blob (with
lazy fetching off it dies), so the diff of such a path is excluded by pathspec and the path gets
an entry with ``skipped`` instead.

Blobs over ``MAX_FILE_BYTES`` are not fetched either, where their size is known without them:
``sizes`` (blob id -> bytes) comes from GitHub's tree listing of the snapshot commit (``trees.py``).
A snapshot blob over the cap is recorded ``too_large``, as the fetched blob would have been. A PR's
changed blob is left out only when its record cannot tell: its size is listed (it is also at the
snapshot; old versions would cost one REST request per PR, so they are fetched and measured as
before), the path is safe and only added or only deleted (no other side to read), and it is over
twice the cap, so its text diff is over the diff cap too (``diff=None`` either way). Limits of that
equality: a blob git itself deems binary (a NUL early on) would have had a "Binary files differ"
diff, and an exact rename of such a blob is recorded as delete + add.

The clone is kept across snapshots, so a later collection fetches only objects it lacks (git's
negotiation for refs, a presence check for blobs asked by id). ``object_bytes`` measures what
came in: fetched packs are kept as packs (``fetch.unpackLimit=1``) and never repacked
(``gc.auto=0``), so the growth of ``objects/pack`` is the pack data received.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

from gocoder_assets.categorized_records.filters import FilterOptions
from gocoder_assets.sources.base import MAX_FILE_BYTES, RawRecord, is_safe_relpath
from gocoder_assets.sources.git_clones import (
    GITLINK_MODE,
    SYMLINK_MODE,
    commit_files,
    is_wanted,
    snapshot_records,
)
from gocoder_assets.sources.git_cmd import BlobReader, Git
from gocoder_assets.sources.github.client import GitHubRequestError, describe_failure

_IDENTITY = ("-c", "user.name=gocoder", "-c", "user.email=gocoder@localhost")
_FETCH = (
    "fetch",
    "--filter=blob:none",
    "--no-tags",
    "--recurse-submodules=no",
    "--no-write-fetch-head",
    "--stdin",
    "origin",
)
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_EXCLUDED_DIRS = frozenset(FilterOptions().excluded_dirs)
_BINARY_EXTENSIONS = frozenset(
    (
        "png",
        "jpg",
        "jpeg",
        "gif",
        "bmp",
        "ico",
        "webp",
        "tif",
        "tiff",
        "psd",
        "pdf",
        "zip",
        "gz",
        "tgz",
        "bz2",
        "xz",
        "zst",
        "7z",
        "rar",
        "tar",
        "jar",
        "war",
        "exe",
        "dll",
        "so",
        "dylib",
        "a",
        "o",
        "lib",
        "bin",
        "dat",
        "wasm",
        "class",
        "pyc",
        "woff",
        "woff2",
        "ttf",
        "otf",
        "eot",
        "mp3",
        "mp4",
        "mov",
        "avi",
        "wav",
        "ogg",
        "flac",
        "mkv",
        "webm",
        "db",
        "sqlite",
    )
)
_MAX_REFUSED = 32  # more single objects refused than this: the remote is down, not one object bad


def unfetched_reason(path: str) -> str | None:
    """Why a path's blob is not worth fetching, from the path alone: excluded directory or binary."""
    *dirs, name = path.split("/")
    if _EXCLUDED_DIRS.intersection(dirs):
        return "excluded_dir"
    if "." in name and name.rsplit(".", 1)[1].lower() in _BINARY_EXTENSIONS:
        return "binary"
    return None


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
        self.name = "/".join(url.rstrip("/").removesuffix(".git").split("/")[-2:])  # owner/name, for messages
        git_dir.mkdir(parents=True, exist_ok=True)
        self.git = Git(git_dir, scratch)
        if not (git_dir / "HEAD").exists():  # init must not see GIT_DIR/GIT_WORK_TREE: it creates the former
            env = {k: v for k, v in self.git.env.items() if k not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")}
            subprocess.run(
                self.git.argv(("init", "-q", "--bare", str(self.git.git_dir))),
                env=env,
                check=True,
                cwd=scratch,
                capture_output=True,
            )
        for key, value in (
            ("core.repositoryformatversion", "1"),
            ("extensions.partialClone", "origin"),
            ("remote.origin.url", url),
            ("remote.origin.promisor", "true"),
            ("remote.origin.partialclonefilter", "blob:none"),
            ("fetch.unpackLimit", "1"),
            ("gc.auto", "0"),
        ):
            self.git.run("config", key, value)
        self.unavailable: set[str] = set()  # objects the remote refused (each alone)
        self.missing_refs: set[int] = set()  # PRs whose refs/pull/N/head the remote lacks
        self.unavailable_prs: dict[int, str] = {}  # PR number -> why it has no files (set by pr_commits)
        self.sizes: dict[str, int] = {}  # blob id -> size, as GitHub listed them (set by the caller)
        self.elided: set[str] = set()  # blobs over the cap never fetched (set by fetch_blobs)

    def _fetch(self, lines: Iterable[str], *, check: bool = True) -> bool:
        stdin = "".join(f"{line}\n" for line in lines).encode()
        argv = self.git.argv((*self.protocols, "-c", "credential.helper=", *_FETCH))
        proc = subprocess.run(argv, cwd=self.git.scratch, env=self.git.env, input=stdin, capture_output=True)
        if proc.returncode != 0 and check:
            raise self._failure("git fetch", proc.stderr)
        return proc.returncode == 0

    def _fetch_each(self, oids: list[str]) -> list[str]:
        """Fetch these objects, halving a refused batch until the refused objects stand alone;
        returns those (one bad object costs ~2·log2(n) extra fetches, not the partition)."""
        if not oids or self._fetch(oids, check=False):
            return []
        if len(oids) == 1:
            return list(oids)
        mid = len(oids) // 2
        refused = self._fetch_each(oids[:mid])
        if len(refused) > _MAX_REFUSED:
            raise RuntimeError(f"git fetch keeps failing for {self.git.git_dir}: {len(refused)} objects refused")
        return refused + self._fetch_each(oids[mid:])

    def _failure(self, what: str, stderr: bytes) -> Exception:
        """A failed git command as an error: a repository gone (404) or blocked (451) is named like the API's
        failures (client.describe_failure); anything else keeps git's own words."""
        err = stderr.decode(errors="replace")
        http = re.search(r"The requested URL returned error: (\d{3})", err)
        status = int(http.group(1)) if http else 404 if re.search(r"fatal: repository '[^']*' not found", err) else 0
        if status:  # git words a 404 as "repository … not found"
            return GitHubRequestError(describe_failure(status, {}, f"{self.name} (git)"))
        return RuntimeError(f"{what} failed for {self.git.git_dir}: {err}")

    def _remote_refs(self, patterns: Iterable[str]) -> set[str]:
        argv = self.git.argv((*self.protocols, "-c", "credential.helper=", "ls-remote", "origin", *patterns))
        proc = subprocess.run(argv, cwd=self.git.scratch, env=self.git.env, capture_output=True)
        if proc.returncode != 0:
            raise self._failure("git ls-remote", proc.stderr)
        return {line.split("\t", 1)[1] for line in proc.stdout.decode().splitlines() if "\t" in line}

    def object_bytes(self) -> int:
        """Bytes of the clone's pack files: fetched objects only (fetches keep their packs; the synthetic PR
        commits are loose objects), so its growth over a collection is the git data that collection fetched."""
        return sum(f.stat().st_size for f in (self.git.git_dir / "objects" / "pack").glob("*.pack"))

    def absent(self, oids: Iterable[str]) -> set[str]:
        """Which of these objects the clone lacks, from its own object list (asking git about an absent blob
        one by one would make it try to fetch it lazily)."""
        wanted = {o for o in oids if o}
        if not wanted:
            return set()
        argv = ("cat-file", "--batch-all-objects", "--unordered", "--batch-check=%(objectname)")
        return wanted - set((self.git.run(*argv) or b"").decode().split())

    def missing(self, oids: Iterable[str]) -> set[str]:
        """Which of these commits the clone lacks, in one ``cat-file --batch-check``."""
        wanted = sorted({o for o in oids if o})
        if not wanted:
            return set()
        stdin = "".join(f"{oid}^{{commit}}\n" for oid in wanted).encode()
        proc = subprocess.run(
            self.git.argv(("cat-file", "--batch-check")),
            cwd=self.git.scratch,
            env=self.git.env,
            input=stdin,
            capture_output=True,
            check=True,
        )
        lines = proc.stdout.decode().splitlines()
        return {oid for oid, line in zip(wanted, lines, strict=True) if line.endswith(" missing")}

    def fetch_refs(self, branch: str, pr_numbers: Iterable[int], want: Iterable[str] = ()) -> None:
        """The default branch and each PR's head ref (commits and trees only), in one fetch."""
        refspecs = [f"+refs/heads/{branch}:refs/heads/{branch}"]
        refspecs += [f"+refs/pull/{n}/head:refs/pull/{n}/head" for n in sorted(set(pr_numbers))]
        if not self._fetch(refspecs, check=False):  # e.g. a deleted fork branch: fetch the refs that exist
            present = self._remote_refs([f"refs/heads/{branch}", "refs/pull/*/head"])
            self.missing_refs = {n for n in pr_numbers if f"refs/pull/{n}/head" not in present}
            self._fetch([r for r in refspecs if r.split(":", 1)[1] in present] or refspecs[:1])
        missing = sorted(self.missing(want))
        if missing:  # e.g. a snapshot or PR base no longer on any branch: ask for the commits themselves
            self._fetch_each(missing)

    def fetch_blobs(self, oids: Iterable[str]) -> None:
        """Exactly these blobs that the clone lacks, in one fetch (what git's own lazy fetch would do, but
        batched); the blobs an earlier snapshot fetched are not asked for again. Listed blobs over the cap
        that nothing asked for (``tree_blobs`` and ``diff_blobs`` leave them out) become ``elided``."""
        wanted = set(oids)
        self.elided = {oid for oid, size in self.sizes.items() if size > MAX_FILE_BYTES} - wanted
        self.unavailable.update(self._fetch_each(sorted(self.absent(wanted - self.unavailable))))

    def tree_blobs(self, sha: str) -> list[str]:
        """Blob ids ``snapshot_records`` will read at ``sha`` (wanted, safe, regular files, not listed as over
        the cap)."""
        oids = []
        for entry in (self.git.run("ls-tree", "-r", "-z", "--full-tree", sha) or b"").split(b"\0"):
            if b"\t" in entry:
                meta, raw_path = entry.split(b"\t", 1)
                mode, kind, oid = meta.decode().split()
                path = raw_path.decode("utf-8", errors="backslashreplace")
                linked = mode in (SYMLINK_MODE, GITLINK_MODE)
                if (
                    kind == "blob"
                    and not linked
                    and is_safe_relpath(path)
                    and is_wanted(path)
                    and not unfetched_reason(path)
                    and self.sizes.get(oid, 0) <= MAX_FILE_BYTES
                ):
                    oids.append(oid)
        return oids

    def pr_commits(self, prs: dict[int, tuple[str | None, str]]) -> dict[int, str | None]:
        """PR number -> a synthetic commit whose diff against its parent is the PR's diff
        (``merge-base(base, head)..head``); None where the clone lacks either end."""
        absent = self.missing(oid for pair in prs.values() for oid in pair if oid)
        out: dict[int, str | None] = {}
        for number, (base, head) in prs.items():
            merge_base = self.git.text("merge-base", base, head) if base and {base, head}.isdisjoint(absent) else None
            if not merge_base:
                self.unavailable_prs[number] = (
                    "missing_ref" if number in self.missing_refs and head in absent else "missing_commit"
                )
            out[number] = (
                self.git.text(*_IDENTITY, "commit-tree", f"{head}^{{tree}}", "-p", merge_base, "-m", "pr")
                if merge_base
                else None
            )
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
        out = subprocess.run(
            self.git.argv(("diff-tree", "--stdin", "-r", "-z", "--no-renames")),
            cwd=self.git.scratch,
            env=self.git.env,
            input=stdin,
            capture_output=True,
            check=True,
        ).stdout
        return [
            oid
            for path, status, sides in _raw_entries(out)
            if not unfetched_reason(path)
            for oid in sides
            if not self._elidable(path, status, oid)
        ]

    def _elidable(self, path: str, status: str, oid: str) -> bool:
        """Whether this changed blob's record is the same unfetched: a listed size over twice the cap (text
        diff over the diff cap too), on a safe path added or deleted (no other side to read)."""
        return status in ("A", "D") and self.sizes.get(oid, 0) > 2 * MAX_FILE_BYTES and is_safe_relpath(path)

    def _unread(self, path: str, oid: str) -> str | None:
        """Skip reason for a blob this clone did not fetch (never hand git an absent blob)."""
        if reason := unfetched_reason(path):
            return reason
        return "unavailable" if oid in self.unavailable else "too_large" if oid in self.elided else None

    def _absent_paths(self, commit: str) -> dict[str, tuple[str, str]]:
        """Changed paths with a side this clone lacks -> (status, skip reason); trees only."""
        out = self.git.run("diff-tree", "-r", "-z", "--root", "--no-commit-id", "--no-renames", commit) or b""
        absent = {}
        for path, status, sides in _raw_entries(out):
            reason = next((r for oid in sides if (r := self._unread(path, oid))), None)
            if reason:
                absent[path] = ({"T": "M"}.get(status, status), reason)
        return absent

    def snapshot(self, blobs: BlobReader, sha: str) -> list[RawRecord]:
        return list(snapshot_records(self.git, blobs, sha, self._unread))

    def files(self, blobs: BlobReader, commit: str) -> list[dict]:
        """``commit_files`` for the paths whose blobs are here; the others as skipped entries."""
        absent = self._absent_paths(commit)
        if not absent:
            return commit_files(self.git, blobs, commit)
        files = commit_files(self.git, blobs, commit, [f":(top,literal,exclude){p}" for p in sorted(absent)])
        files += [
            {"path": p, "status": status, "diff": None, "before": None, "after": None, "skipped": reason}
            for p, (status, reason) in absent.items()
        ]
        return sorted(files, key=lambda f: f["path"])


def _raw_entries(out: bytes) -> Iterator[tuple[str, str, list[str]]]:
    """``(path, status, blob ids of its regular-file sides)`` per entry of ``diff-tree -z --no-renames``
    raw output (commit id lines from ``--stdin`` skipped)."""
    fields = iter(out.split(b"\0"))
    for meta in fields:
        if meta.startswith(b":"):
            raw_path = next(fields, b"")
            old_mode, new_mode, old_oid, new_oid, status = meta[1:].decode().split()
            sides = [
                oid
                for mode, oid in ((old_mode, old_oid), (new_mode, new_oid))
                if mode not in ("000000", SYMLINK_MODE, GITLINK_MODE) and set(oid) != {"0"}
            ]
            yield raw_path.decode("utf-8", errors="backslashreplace"), status[:1], sides
