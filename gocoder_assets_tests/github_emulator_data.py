"""Fixture data for the GitHub emulator: repositories (bare git repos made with fast-import), PRs with
comments, reviews and threads, issues, and REST bodies shaped by githubkit's own generated models."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import subprocess
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gocoder_assets_tests.gitrepo import _env

EPOCH = dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)


def when(n: int) -> str:
    return (EPOCH + dt.timedelta(hours=n)).strftime("%Y-%m-%dT%H:%M:%SZ")


def fake_oid(*parts: object) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()


@dataclasses.dataclass
class Comment:
    author: str | None  # None: a deleted account ("ghost")
    body: str
    created_at: str
    bot: bool = False


@dataclasses.dataclass
class Thread:
    path: str
    line: int
    diff_hunk: str
    comments: list[Comment]


@dataclasses.dataclass
class PR:
    number: int
    title: str
    body: str
    author: str | None  # None: a deleted account ("ghost")
    created_at: str
    state: str  # MERGED | CLOSED
    merged_at: str | None
    base_oid: str = ""
    head_oid: str = ""
    bot: bool = False
    comments: list[Comment] = dataclasses.field(default_factory=list)
    reviews: list[tuple[Comment, str]] = dataclasses.field(default_factory=list)  # (comment, state)
    threads: list[Thread] = dataclasses.field(default_factory=list)
    files: dict[str, bytes | None] = dataclasses.field(default_factory=dict)  # path -> new content (None: delete)
    updated_at: str = ""  # "" = created_at (GitHub's updatedAt: bumped by every change to the PR)


@dataclasses.dataclass
class Issue:
    number: int
    title: str
    body: str
    author: str | None  # None: a deleted account ("ghost")
    created_at: str
    comments: list[Comment] = dataclasses.field(default_factory=list)
    updated_at: str = ""  # "" = created_at


@dataclasses.dataclass
class Repo:
    id: int
    owner: str
    name: str
    stars: int
    license: str | None  # SPDX id; None = no license; "NOASSERTION" = unrecognized
    fork: bool = False
    archived: bool = False
    language: str = "Go"
    default_branch: str = "main"
    head_oid: str = ""
    prs: list[PR] = dataclasses.field(default_factory=list)
    issues: list[Issue] = dataclasses.field(default_factory=list)
    has_git: bool = False

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def node_id(self) -> str:
        return f"R_{self.id:08d}"


def _value(tp: Any) -> Any:
    """A valid placeholder for one required field type of a githubkit model."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return None if type(None) in args else _value(args[0])
    if origin is typing.Literal:
        return args[0]
    if origin is list:
        return []
    if origin is dict or tp is typing.Any:
        return {}
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return skeleton(tp)
    return {str: "x", int: 0, float: 0.0, bool: False, dt.datetime: when(0), dt.date: "2024-01-01"}.get(tp, "x")


@functools.cache
def _template(model: type[BaseModel]) -> str:
    out = {(f.alias or name): _value(f.annotation) for name, f in model.model_fields.items() if f.is_required()}
    for key in out:
        if key.endswith("_url") and isinstance(out[key], str):
            out[key] = f"https://api.example.invalid/{key}"
    return json.dumps(out)


def skeleton(model: type[BaseModel], **overrides: Any) -> dict[str, Any]:
    """Every required field of ``model`` (by its JSON name) with a valid value, then ``overrides``."""
    return {**json.loads(_template(model)), **overrides}


# --- git fixtures ---------------------------------------------------------------------------------
def _blob(path: str, data: bytes) -> bytes:
    return b"M 100644 inline " + path.encode() + b"\ndata " + str(len(data)).encode() + b"\n" + data + b"\n"


def build_git(repo: Repo, git_root: Path, base_files: dict[str, bytes]) -> None:
    """A bare repo at ``git_root/owner/name.git``: main with ``base_files``, then one branch per PR at
    ``refs/pull/N/head`` (merged PRs merged into main with --no-ff). Fills base/head oids in."""
    bare = git_root / repo.owner / f"{repo.name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    env = _env(1)
    subprocess.run(["git", "init", "-q", "--bare", "-b", repo.default_branch, str(bare)], check=True, env=env)
    for key, value in (
        ("uploadpack.allowFilter", "true"),
        ("uploadpack.allowAnySHA1InWant", "true"),
        ("http.receivepack", "false"),
    ):
        subprocess.run(["git", "--git-dir", str(bare), "config", key, value], check=True, env=env)
    stream, t, mark = [], 1_704_110_400, 0

    def commit(ref: str, message: str, files: dict[str, bytes | None], parents: list[int]) -> int:
        nonlocal t, mark
        t, mark = t + 60, mark + 1
        msg = message.encode()
        head = [
            f"commit {ref}\nmark :{mark}\ncommitter Ada <ada@example.com> {t} +0000\n".encode(),
            b"data " + str(len(msg)).encode() + b"\n" + msg + b"\n",
        ]
        if parents:
            head.append(f"from :{parents[0]}\n".encode())
            head += [f"merge :{p}\n".encode() for p in parents[1:]]
        for path, data in files.items():
            head.append(_blob(path, data) if data is not None else b"D " + path.encode() + b"\n")
        stream.append(b"".join(head))
        return mark

    main = commit(f"refs/heads/{repo.default_branch}", "Initial import", base_files, [])
    marks: dict[int, tuple[int, int]] = {}
    for pr in sorted(repo.prs, key=lambda p: p.number):
        head = commit(f"refs/pull/{pr.number}/head", pr.title, pr.files, [main])
        marks[pr.number] = (main, head)
        if pr.state == "MERGED":
            main = commit(
                f"refs/heads/{repo.default_branch}", f"Merge pull request #{pr.number}", pr.files, [main, head]
            )
    marks_file = bare / "fixture-marks"
    subprocess.run(
        ["git", "--git-dir", str(bare), "fast-import", "--quiet", f"--export-marks={marks_file}"],
        input=b"".join(stream),
        check=True,
        env=env,
        capture_output=True,
    )
    oids = dict(line.split() for line in marks_file.read_text().splitlines())
    for pr in repo.prs:
        base, head = marks[pr.number]
        pr.base_oid, pr.head_oid = oids[f":{base}"], oids[f":{head}"]
    repo.head_oid, repo.has_git = oids[f":{main}"], True


def widget_prs(n: int, *, first_number: int = 1, comments: int = 2) -> list[PR]:
    """``n`` PRs, each adding a Go file; even ones edit ``widget.go``, every 4th adds a binary file,
    every 3rd is closed unmerged."""
    prs = []
    for i in range(n):
        num = first_number + i
        merged = i % 3 != 2
        files: dict[str, bytes | None] = {
            f"feature{num}.go": (
                f"package widget\n\n// F{num} is feature {num}.\nfunc F{num}() int {{ return {num} }}\n"
            ).encode()
        }
        if num % 2 == 0:
            files["widget.go"] = f"package widget\n\n// Size is the widget size.\nconst Size = {num}\n".encode()
        if num % 4 == 0:
            files[f"logo{num}.png"] = b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(range(256))
        pr = PR(
            number=num,
            title=f"Add feature {num}",
            body=f"Feature {num} for widgets.\n\nDetails.",
            author=f"dev{num % 5}",
            created_at=when(num),
            state="MERGED" if merged else "CLOSED",
            merged_at=when(num + 1) if merged else None,
            files=files,
        )
        pr.comments = [
            Comment(f"rev{(num + k) % 4}", f"Looks fine, comment {k} on {num}.", when(num + 2)) for k in range(comments)
        ]
        pr.reviews = [
            (
                Comment("rev1", "Approved with a note." if num % 2 else "", when(num + 3)),
                "APPROVED" if merged else "CHANGES_REQUESTED",
            )
        ]
        pr.threads = [
            Thread(
                f"feature{num}.go",
                3,
                f"@@ -0,0 +1,4 @@\n+package widget\n+// F{num}",
                [
                    Comment("rev2", f"Name F{num} better?", when(num + 2)),
                    Comment(pr.author, "Kept for symmetry.", when(num + 2)),
                ],
            )
        ]
        prs.append(pr)
    return prs


BASE_FILES = {
    "README.md": b"# widget\n\nWidgets for Go programs.\n",
    "LICENSE": b"MIT License\n\nPermission is hereby granted, free of charge, to any person\n",
    "widget.go": b"package widget\n\n// Size is the widget size.\nconst Size = 3\n",
    "internal/data.bin": b"\x00\x01\x02binary",
    "docs/guide.md": b"# Guide\n\nSpin widgets.\n",
}


def widget_repo(
    git_root: Path, *, repo_id: int = 1, owner: str = "acme", name: str = "widget", n_prs: int = 12, stars: int = 900
) -> Repo:
    """A repository exercising every collection path: bots (a bot PR, bot comments), a PR whose comments
    overflow one nested page (25 > 20), binary files, closed and merged PRs, issues with comments."""
    repo = Repo(repo_id, owner, name, stars, "MIT", prs=widget_prs(n_prs))
    busy = repo.prs[0]
    busy.comments = [Comment(f"user{k}", f"Discussion point {k}.", when(200 + k)) for k in range(25)]
    repo.prs[1].comments.append(Comment("codecov[bot]", "Coverage: 100%", when(300), bot=True))
    bot_pr = PR(
        number=n_prs + 1,
        title="Bump golang.org/x/net",
        body="Bumps x/net.",
        author="dependabot",
        created_at=when(400),
        state="MERGED",
        merged_at=when(401),
        bot=True,
        files={"go.mod": b"module example.com/widget\n\ngo 1.22\n"},
    )
    repo.prs.append(bot_pr)
    repo.issues = [
        Issue(
            k,
            f"Widget issue {k}",
            f"Steps to reproduce {k}.",
            f"user{k}",
            when(500 + k),
            [
                Comment("dev1", f"Thanks for report {k}.", when(600 + k)),
                Comment("stale[bot]", "This issue is stale.", when(700 + k), bot=True),
            ],
        )
        for k in range(1, 6)
    ]
    build_git(repo, git_root, BASE_FILES)
    return repo


MOVED_BASE_PR_FILE = BASE_FILES["widget.go"] + b"\nfunc Double() int { return 2 * Size }\n"


def moved_base_repo(git_root: Path, *, repo_id: int = 9, name: str = "moved") -> Repo:
    """A PR whose base branch moved on after the PR branched: main changes ``widget.go`` (a comment) and adds
    ``CHANGELOG.md`` after the fork point, the PR edits ``widget.go`` too, and GitHub's ``baseRefOid`` is
    main's *moved* tip. So ``base..head`` would show main's changes reverted; only
    ``merge-base(base, head)..head`` (what GitHub shows) is the PR's own diff."""
    repo = Repo(repo_id, "acme", name, 50, "MIT")
    build_git(repo, git_root, BASE_FILES)  # main: the initial import only (mark :1)
    bare = git_root / repo.owner / f"{repo.name}.git"
    moved = BASE_FILES["widget.go"].replace(b"widget size.", b"widget size, in inches.")
    merged = MOVED_BASE_PR_FILE.replace(b"widget size.", b"widget size, in inches.")

    def commit(ref: str, mark: int, message: str, files: dict[str, bytes], parents: list[int]) -> bytes:
        msg = message.encode()
        head = f"commit {ref}\nmark :{mark}\ncommitter Ada <ada@example.com> {1_704_200_000 + mark} +0000\n"
        links = "".join([f"from :{parents[0]}\n", *(f"merge :{p}\n" for p in parents[1:])])
        body = b"".join(_blob(p, d) for p, d in files.items())
        return head.encode() + f"data {len(msg)}\n".encode() + msg + b"\n" + links.encode() + body

    stream = [
        commit("refs/pull/1/head", 100, "Add Double", {"widget.go": MOVED_BASE_PR_FILE}, [1]),
        commit("refs/heads/main", 101, "Document units", {"widget.go": moved, "CHANGELOG.md": b"# Changes\n"}, [1]),
        commit("refs/heads/main", 102, "Merge pull request #1", {"widget.go": merged}, [101, 100]),
    ]
    marks = bare / "fixture-marks"
    subprocess.run(
        ["git", "--git-dir", str(bare), "fast-import", "--quiet", f"--import-marks={marks}", f"--export-marks={marks}"],
        input=b"".join(stream),
        check=True,
        env=_env(1),
        capture_output=True,
    )
    oids = dict(line.split() for line in marks.read_text().splitlines())
    pr = PR(1, "Add Double", "Doubles the size.", "dev1", when(10), "MERGED", when(12))
    pr.base_oid, pr.head_oid, pr.files = oids[":101"], oids[":100"], {"widget.go": MOVED_BASE_PR_FILE}
    repo.prs, repo.head_oid = [pr], oids[":102"]
    return repo


# --- changes after a first collection (incremental re-collection tests) -----------------------------
def add_pr(repo: Repo, git_root: Path, pr: PR) -> None:
    """Add ``pr`` to a built repository: its branch at ``refs/pull/N/head`` off the current head and, if
    merged, a merge commit that advances the default branch (so the repository gets a new head).
    Refresh the emulator's graph afterwards (``Graph.refresh``)."""
    bare = git_root / repo.owner / f"{repo.name}.git"
    t = 1_705_000_000 + 60 * pr.number

    def commit(ref: str, mark: int, message: str, parents: list[str]) -> bytes:
        msg = message.encode()
        head = f"commit {ref}\nmark :{mark}\ncommitter Ada <ada@example.com> {t + mark} +0000\n"
        links = "".join([f"from {parents[0]}\n", *(f"merge {p}\n" for p in parents[1:])])
        body = b"".join(_blob(p, d) if d is not None else b"D " + p.encode() + b"\n" for p, d in pr.files.items())
        return head.encode() + f"data {len(msg)}\n".encode() + msg + b"\n" + links.encode() + body

    stream = [commit(f"refs/pull/{pr.number}/head", 1, pr.title, [repo.head_oid])]
    if pr.state == "MERGED":
        stream.append(
            commit(f"refs/heads/{repo.default_branch}", 2, f"Merge pull request #{pr.number}", [repo.head_oid, ":1"])
        )
    marks = bare / "added-marks"
    subprocess.run(
        ["git", "--git-dir", str(bare), "fast-import", "--quiet", f"--export-marks={marks}"],
        input=b"".join(stream),
        check=True,
        env=_env(1),
        capture_output=True,
    )
    oids = dict(line.split() for line in marks.read_text().splitlines())
    pr.base_oid, pr.head_oid = repo.head_oid, oids[":1"]
    if pr.state == "MERGED":
        repo.head_oid = oids[":2"]
    repo.prs.append(pr)


def edit_pr_comment(repo: Repo, number: int, index: int, body: str, at: str) -> None:
    """Edit one comment of PR ``number``; its ``updatedAt`` becomes ``at`` (as GitHub bumps it)."""
    pr = next(p for p in repo.prs if p.number == number)
    pr.comments[index].body = body
    pr.updated_at = at
