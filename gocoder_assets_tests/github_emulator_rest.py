"""The emulator's REST routes: repository search and git trees (used by the project: the tree gives blob
sizes without fetching blobs) and the per-PR listings a naive REST collector would use (the benchmark's
baseline). Bodies are built from githubkit's
generated models (``skeleton``) so every required field exists with the right type."""

from __future__ import annotations

import re
import subprocess
from typing import TYPE_CHECKING, Any

from githubkit_schemas.v2026_03_10.models import (
    DiffEntry,
    GitTree,
    IssueComment,
    LicenseSimple,
    PullRequestReview,
    PullRequestReviewComment,
    PullRequestSimple,
    PullRequestSimplePropBase,
    PullRequestSimplePropHead,
    RepoSearchResultItem,
    SearchRepositoriesGetResponse200,
    SimpleUser,
)

from gocoder_assets_tests.github_emulator_data import PR, Repo, skeleton

if TYPE_CHECKING:
    from gocoder_assets_tests.github_emulator import Emulator

# route -> the githubkit model its body must parse into (tests validate every answered body)
ROUTE_MODELS: dict[str, Any] = {
    "rest:search": SearchRepositoriesGetResponse200,
    "rest:pulls": list[PullRequestSimple],
    "rest:issue_comments": list[IssueComment],
    "rest:reviews": list[PullRequestReview],
    "rest:review_comments": list[PullRequestReviewComment],
    "rest:files": list[DiffEntry],
    "rest:tree": GitTree,
}
_ROUTES = [
    (re.compile(r"^/search/repositories$"), "rest:search"),
    (re.compile(r"^/repos/([^/]+)/([^/]+)/pulls$"), "rest:pulls"),
    (re.compile(r"^/repos/([^/]+)/([^/]+)/issues/(\d+)/comments$"), "rest:issue_comments"),
    (re.compile(r"^/repos/([^/]+)/([^/]+)/pulls/(\d+)/reviews$"), "rest:reviews"),
    (re.compile(r"^/repos/([^/]+)/([^/]+)/pulls/(\d+)/comments$"), "rest:review_comments"),
    (re.compile(r"^/repos/([^/]+)/([^/]+)/pulls/(\d+)/files$"), "rest:files"),
    (re.compile(r"^/repos/([^/]+)/([^/]+)/git/trees/([0-9a-f]{40})$"), "rest:tree"),
]


def _user(login: str, bot: bool = False) -> dict[str, Any]:
    return skeleton(SimpleUser, login=login, type="Bot" if bot else "User")


class RestRoutes:
    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator
        self.incomplete: dict[str, int] = {}  # search query -> how many more of its answers are incomplete
        # full name -> entries a git/trees answer keeps before saying ``truncated`` (GitHub's 100,000 / 7 MB)
        self.tree_limit: dict[str, int] = {}

    @staticmethod
    def route(path: str) -> str:
        return next((name for rx, name in _ROUTES if rx.match(path)), "rest:unknown")

    def answer(self, route: str, path: str, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        page = int(query.get("page", ["1"])[0])
        per_page = int(query.get("per_page", ["30"])[0])
        if route == "rest:search":
            return self.search(query["q"][0], page, per_page)
        match = next(rx.match(path) for rx, name in _ROUTES if name == route) if route != "rest:unknown" else None
        repo = self.emu.repos.get(f"{match.group(1)}/{match.group(2)}") if match else None
        if repo is None or match is None:
            return 404, {"message": "Not Found"}, {}
        if route == "rest:tree":
            return self.tree(repo, match.group(3), query.get("recursive", [""])[0] not in ("", "0", "false"))
        if route == "rest:pulls":
            items = [self.pull(repo, p) for p in sorted(repo.prs, key=lambda p: p.created_at, reverse=True)]
        else:
            pr = next((p for p in repo.prs if p.number == int(match.group(3))), None)
            if pr is None:
                return 404, {"message": "Not Found"}, {}
            items = {
                "rest:issue_comments": lambda: self.comments(pr),
                "rest:reviews": lambda: self.reviews(pr),
                "rest:review_comments": lambda: self.review_comments(pr),
                "rest:files": lambda: self.files(repo, pr),
            }[route]()
        start = (page - 1) * per_page
        link = {}
        if start + per_page < len(items):
            link = {"Link": f'<{self.emu.base_url.rstrip("/")}{path}?per_page={per_page}&page={page + 1}>; rel="next"'}
        return 200, items[start : start + per_page], link

    # --- search ---------------------------------------------------------------------------------
    def search(self, q: str, page: int, per_page: int) -> tuple[int, Any, dict[str, str]]:
        if page * per_page > 1000:
            return (
                422,
                {
                    "message": "Only the first 1000 search results are available",
                    "documentation_url": "https://docs.github.com/v3/search/",
                },
                {},
            )
        terms = dict(t.split(":", 1) for t in q.split() if ":" in t)
        lo, hi = 0, 10**9
        stars = terms.get("stars", "")
        if stars.startswith(">="):
            lo = int(stars[2:])
        elif ".." in stars:
            a, b = stars.split("..")
            lo, hi = int(a) if a != "*" else 0, int(b) if b != "*" else 10**9
        hits = [
            r
            for r in self.emu.repos.values()
            if r.language.lower() == terms.get("language", "go").lower()
            and lo <= r.stars <= hi
            and (not r.fork or terms.get("fork") in ("true", "only"))
            and not (r.archived and terms.get("archived") == "false")
        ]
        hits.sort(key=lambda r: (-r.stars, r.id))  # ties in creation order, not by name
        items = [self.repo_item(r) for r in hits[(page - 1) * per_page : page * per_page]]
        incomplete = self.incomplete.get(q, 0) > 0  # GitHub's search timed out inside: a partial page
        if incomplete:
            self.incomplete[q] -= 1
            items = items[: len(items) // 2]
        return 200, {"total_count": len(hits), "incomplete_results": incomplete, "items": items}, {}

    def repo_item(self, r: Repo) -> dict[str, Any]:
        lic = (
            None
            if r.license is None
            else skeleton(
                LicenseSimple, key=r.license.lower(), name=r.license, spdx_id=r.license, url=None, node_id="L"
            )
        )
        html = self.emu.html_url(r)
        return skeleton(
            RepoSearchResultItem,
            id=r.id,
            node_id=r.node_id,
            name=r.name,
            full_name=r.full_name,
            owner=_user(r.owner),
            html_url=html,
            clone_url=f"{html}.git",
            fork=r.fork,
            archived=r.archived,
            stargazers_count=r.stars,
            watchers_count=r.stars,
            watchers=r.stars,
            language=r.language,
            default_branch=r.default_branch,
            license=lic,
            score=1.0,
            description=f"{r.name} in Go",
        )

    # --- git trees ------------------------------------------------------------------------------
    def tree(self, repo: Repo, sha: str, recursive: bool) -> tuple[int, Any, dict[str, str]]:
        """``GET /repos/{o}/{r}/git/trees/{sha}``: a commit or tree id, its entries with blob sizes, from
        ``git ls-tree -l`` on the bare repo (``-r -t``: every subtree listed too, as GitHub does)."""
        bare = self.emu.git_root / repo.owner / f"{repo.name}.git"
        git = ["git", "--git-dir", str(bare)]
        tree_sha = subprocess.run([*git, "rev-parse", "--verify", "--quiet", f"{sha}^{{tree}}"], capture_output=True)
        if tree_sha.returncode != 0:
            return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}, {}
        root = tree_sha.stdout.decode().strip()
        flags = ["-r", "-t"] if recursive else []
        out = subprocess.run([*git, "ls-tree", "-l", "-z", *flags, root], capture_output=True, check=True).stdout
        api = f"{self.emu.base_url.rstrip('/')}/repos/{repo.full_name}/git"
        entries = []
        for entry in out.split(b"\0"):
            if b"\t" not in entry:
                continue
            meta, path = entry.split(b"\t", 1)
            mode, kind, oid, size = meta.decode().split()
            item: dict[str, Any] = {"path": path.decode(errors="replace"), "mode": mode, "type": kind, "sha": oid}
            if kind == "blob":
                item.update(size=int(size), url=f"{api}/blobs/{oid}")
            elif kind == "tree":
                item["url"] = f"{api}/trees/{oid}"
            entries.append(item)
        limit = self.tree_limit.get(repo.full_name)
        truncated = limit is not None and len(entries) > limit
        body = {"sha": root, "url": f"{api}/trees/{root}", "tree": entries[:limit], "truncated": truncated}
        return 200, body, {}

    # --- naive per-PR listings ------------------------------------------------------------------
    def pull(self, repo: Repo, pr: PR) -> dict[str, Any]:
        return skeleton(
            PullRequestSimple,
            number=pr.number,
            title=pr.title,
            body=pr.body,
            user=_user(pr.author, pr.bot),
            state="closed",
            created_at=pr.created_at,
            updated_at=pr.created_at,
            closed_at=pr.merged_at or pr.created_at,
            merged_at=pr.merged_at,
            head=skeleton(PullRequestSimplePropHead, sha=pr.head_oid, ref=f"pr{pr.number}"),
            base=skeleton(PullRequestSimplePropBase, sha=pr.base_oid, ref=repo.default_branch),
        )

    def comments(self, pr: PR) -> list[dict[str, Any]]:
        return [
            skeleton(
                IssueComment,
                id=i + 1,
                body=c.body,
                user=_user(c.author, c.bot),
                created_at=c.created_at,
                updated_at=c.created_at,
            )
            for i, c in enumerate(pr.comments)
        ]

    def reviews(self, pr: PR) -> list[dict[str, Any]]:
        return [
            skeleton(
                PullRequestReview,
                id=i + 1,
                body=c.body,
                user=_user(c.author, c.bot),
                state=state,
                submitted_at=c.created_at,
                commit_id=pr.head_oid,
            )
            for i, (c, state) in enumerate(pr.reviews)
        ]

    def review_comments(self, pr: PR) -> list[dict[str, Any]]:
        return [
            skeleton(
                PullRequestReviewComment,
                id=i * 100 + j + 1,
                body=c.body,
                user=_user(c.author, c.bot),
                path=t.path,
                line=t.line,
                diff_hunk=t.diff_hunk,
                created_at=c.created_at,
                updated_at=c.created_at,
                commit_id=pr.head_oid,
                original_commit_id=pr.head_oid,
                in_reply_to_id=i * 100 + 1 if j else None,
            )
            for i, t in enumerate(pr.threads)
            for j, c in enumerate(t.comments)
        ]

    def files(self, repo: Repo, pr: PR) -> list[dict[str, Any]]:
        bare = self.emu.git_root / repo.owner / f"{repo.name}.git"
        out = []
        for path, data in sorted(pr.files.items()):
            patch = subprocess.run(
                ["git", "--git-dir", str(bare), "diff", "--no-color", pr.base_oid, pr.head_oid, "--", path],
                capture_output=True,
                check=True,
            ).stdout.decode(errors="replace")
            status = "removed" if data is None else ("modified" if "\n--- a/" in patch else "added")
            out.append(
                skeleton(
                    DiffEntry,
                    sha=pr.head_oid,
                    filename=path,
                    status=status,
                    additions=0,
                    deletions=0,
                    changes=0,
                    patch=patch.split("@@", 1)[-1] and "@@" + patch.split("@@", 1)[-1],
                )
            )
        return out
