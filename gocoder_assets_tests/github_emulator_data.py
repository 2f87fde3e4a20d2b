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


@dataclasses.dataclass
class Issue:
    number: int
    title: str
    body: str
    author: str | None  # None: a deleted account ("ghost")
    created_at: str
    comments: list[Comment] = dataclasses.field(default_factory=list)


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
