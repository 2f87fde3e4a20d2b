"""The one interface every repository source implements.

A source answers two questions: which repositories exist (`list_repos`) and what raw
records one of them holds (`collect`). The local sources (Go distribution, git clones)
and the GitHub source (later) implement it, so the assets never know where data came
from: the GitHub token is the only switch.

Raw records are plain JSON-able dicts so they can be archived as-is (JSON lines) for
audit and re-derivation. Every record has a ``kind``:

- ``file``:   a text file at the snapshot commit: ``path``, ``text``, ``size``.
- ``tree``:   the repository's file tree at the snapshot: ``paths`` (sorted list).
- ``change``: a pull request or commit: ``number`` (PR number or None), ``sha``,
  ``title``, ``body``, ``author``, ``created_at``, ``comments`` (list of
  ``{"author", "body", "created_at"}``) and ``files`` (list of ``{"path", "status",
  "diff", "before", "after"}``; ``status`` is ``A`` added, ``D`` deleted, ``M`` modified
  (type changes included) or ``R`` renamed; a rename is one entry whose ``path`` is the new
  path, with ``old_path`` and ``similarity`` (git's percent, 100 = unchanged content) added
  and ``before`` read at ``old_path``; a copy, should git report one, is an ``A`` of the new
  path; ``before``/``after`` are None when the file did not exist on that side or was
  skipped, with ``skipped`` naming the reason).
  GitHub pull requests add ``state``, ``merged_at``, ``base_sha``, ``reviews`` (list of
  ``{"author", "state", "body", "created_at"}``), ``review_threads`` (list of ``{"path",
  "line", "diff_hunk", "comments"}``) and ``files_unavailable`` (base/head not fetchable).
- ``issue``:  an issue: ``number``, ``title``, ``body``, ``author``, ``created_at``,
  ``comments``.
- ``excluded``: the whole repository could not be collected (GitHub answered ``NOT_FOUND`` or
  ``FORBIDDEN`` for it, e.g. deleted after the search or DMCA-blocked): ``reason``, ``message``.
  The partition completes with this one record, counted in raw_prs' metadata.
- ``skip``:   something deliberately not collected: ``path``, ``reason`` (one of
  ``SKIP_REASONS``). Skips are recorded, never silent, so nothing is lost.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterator
from typing import Any, Protocol

RawRecord = dict[str, Any]

SKIP_REASONS = (
    "binary",
    "invalid_utf8",
    "too_large",
    "symlink",
    "unsafe_path",
    "submodule",
    "excluded_dir",  # a partial clone does not fetch vendor/, testdata/… (the categorizer drops them anyway)
    "unavailable",  # the remote would not send the blob
)

# Files larger than this are recorded as skips: they are almost never hand-written code
# and they dominate memory (BigCode uses 1 MB too).
MAX_FILE_BYTES = 1_000_000


@dataclasses.dataclass(frozen=True)
class RepoInfo:
    """One repository (one partition) with the provenance every record inherits.

    ``commit_sha`` is the revision the snapshot was taken at: a commit sha for git
    sources, or the release tag for the Go distribution (which ships without git
    metadata; the tag resolves to one commit on GitHub).
    ``root`` is the path prefix inside the repository this partition covers ("" for a
    whole repository, "src/net" for one directory of the Go distribution).
    """

    partition_key: str
    full_name: str
    url: str
    stars: int | None
    license_spdx: str | None
    default_branch: str
    commit_sha: str
    fetched_at: str
    source: str
    root: str = ""
    license_key: str | None = None  # GitHub's license key (e.g. "bsd-3-clause") where the source has one

    def as_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RepoInfo:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})


class RepoSource(Protocol):
    """What the repo_list and raw_prs assets need from any source."""

    def list_repos(self) -> list[RepoInfo]: ...

    def collect(self, repo: RepoInfo) -> Iterator[RawRecord]: ...


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def decode_text(data: bytes) -> tuple[str | None, str | None]:
    """Decode file bytes as UTF-8 training text, or say why not.

    Returns ``(text, None)`` or ``(None, reason)``. Never decodes with replacement
    characters: a mangled file is worse than a counted skip.
    """
    if len(data) > MAX_FILE_BYTES:
        return None, "too_large"
    if b"\x00" in data:
        return None, "binary"
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, "invalid_utf8"


# Bot accounts: GitHub's `[bot]` apps and the usual automation names (dependabot, renovate…).
BOT_LOGIN = re.compile(
    r"(\[bot\]$|[-_]bot$|^bot[-_]|[-_]robot$|^(dependabot|renovate|codecov|coveralls|greenkeeper|snyk|mergify|"
    r"copybara|googlebot|gopherbot|netlify|vercel|sonarcloud|github-actions|k8s-ci-robot|stale|allcontributors|"
    r"pre-commit-ci|imgbot)(-io|-bot|-preview)?$)",
    re.IGNORECASE,
)


def is_bot_login(login: str | None) -> bool:
    return bool(login) and bool(BOT_LOGIN.search(login or ""))


def is_safe_relpath(path: str) -> bool:
    """A repository-relative path we may join onto a local directory."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


class ChainedSource:
    """Several sources as one (e.g. the Go distribution plus a folder of clones).

    ``collect`` dispatches on ``RepoInfo.source``, which each source stamps on its repos.
    """

    def __init__(self, sources: dict[str, RepoSource]) -> None:
        self.sources = sources

    def list_repos(self) -> list[RepoInfo]:
        repos = [repo for source in self.sources.values() for repo in source.list_repos()]
        return sorted(repos, key=lambda r: r.partition_key)

    def collect(self, repo: RepoInfo) -> Iterator[RawRecord]:
        if repo.source not in self.sources:
            raise ValueError(f"{repo.partition_key}: no configured source of kind {repo.source!r}")
        return self.sources[repo.source].collect(repo)
