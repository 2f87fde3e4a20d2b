"""``GitHubSource``: the `RepoSource` behind the GitHub token.

``list_repos`` is the star-sliced search (`search.py`). ``collect`` reads one repository in four
steps, every API page going through the partition's archive (so a killed run resumes and
``replay`` re-derives with zero API calls): merged/closed PRs with their discussion (GraphQL, 50
a request), follow-ups for nested connections that overflowed, issues, then code from git (one
blob-less clone per repository: snapshot files at the listed commit and each PR's diff; blob sizes
from one REST tree listing per head commit, `trees.py`, so no blob over the size cap is fetched).
Records come out in a fixed order — tree, files and skips in path order, PRs newest first,
issues newest first — so two runs over the same data are equal record for record.

Collection is incremental: the archive and the clone are kept across snapshots. Each collection
(a snapshot key: head commit and listing time) is one archive round; a later round lists PRs and
issues by ``updatedAt``, newest first, starting with a small probe page, and stops at the previous
round's high-water mark. Items are merged by id (the newest ``updatedAt`` wins) and bounded by
``max_prs``/``max_issues``, so an unchanged repository costs two small requests and no git objects.
``last_cost`` holds what the latest ``collect`` spent (requests, GraphQL points, git bytes).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import functools
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from githubkit import GitHub
from githubkit.exception import RequestFailed

from gocoder_assets.sources.base import RawRecord, RepoInfo
from gocoder_assets.sources.git_cmd import BlobReader
from gocoder_assets.sources.github.archive import ApiArchive
from gocoder_assets.sources.github.client import (
    ITEM_ERRORS,
    PAGE_CAN_SHRINK,
    TIMEOUT_STATUSES,
    Budget,
    GitHubRequestError,
    explained,
    graphql_partial,
    make_client,
)
from gocoder_assets.sources.github.gitfetch import PartialClone
from gocoder_assets.sources.github.queries import ISSUES, MORE, PULL_REQUESTS
from gocoder_assets.sources.github.records import change_record, is_bot, issue_record
from gocoder_assets.sources.github.search import RepoSearch
from gocoder_assets.sources.github.settings import GitHubSettings
from gocoder_assets.sources.github.trees import tree_sizes

_REPO_LIST_KEY = "_repo_list"  # not a valid owner/name, so never a partition's folder
_PROBE = 5  # an incremental stream's first page: usually the only one, and its cost grows with its size


def merge_updated(rounds: list[list[dict[str, Any]]], limit: int) -> list[dict[str, Any]]:
    """Nodes of all rounds, one per id (the newest ``updatedAt`` wins; on a tie the later round), the
    ``limit`` most recently updated, then newest created first (the records' order)."""
    by_id: dict[str, dict[str, Any]] = {}
    for nodes in rounds:
        for node in nodes:
            old = by_id.get(node["id"])
            if old is None or node.get("updatedAt", "") >= old.get("updatedAt", ""):
                by_id[node["id"]] = node
    kept = sorted(by_id.values(), key=lambda n: (n.get("updatedAt", ""), n["number"]), reverse=True)[:limit]
    return sorted(kept, key=lambda n: (n["createdAt"], n["number"]), reverse=True)


def newest_update(nodes: list[dict[str, Any]], previous: str | None) -> str:
    """The high-water mark after a round: the newest ``updatedAt`` seen ("" when nothing was listed, so
    the next round lists everything newer than nothing)."""
    return max([n["updatedAt"] for n in nodes if n.get("updatedAt")] + ([previous] if previous else []), default="")


class RepositoryUnavailable(Exception):
    """The repository itself answered NOT_FOUND (deleted since the listing) or FORBIDDEN (blocked)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PageTimedOut(Exception):
    """A page that timed out (502/504) even at ``min_page_size`` and after the client's retries: the
    collection stops with this, naming the stream and query, instead of retrying it without end."""


class GitHubSource:
    def __init__(self, settings: GitHubSettings, log: Callable[[str], None] = print) -> None:
        self.settings, self.log = settings, log
        self.budget = Budget()
        self._gh: GitHub | None = None
        self.excluded: dict[str, int] = {}
        self.search_incomplete = 0  # search pages GitHub answered with incomplete_results even when asked again
        self.item_errors: collections.Counter[str] = collections.Counter()  # errors on single nested items
        self.points = 0  # GraphQL points spent (the summed ``rateLimit.cost`` of every fetched page)
        self._points_lock = threading.Lock()
        self._marks: dict[str, str] = {}  # kind -> high-water mark of the partition being collected
        self.last_cost: dict[str, int] = {}  # what the latest collect spent: api_requests, graphql_points, git_bytes
        self.trees_truncated = 0  # snapshots whose tree listing GitHub truncated (unlisted blobs fetched to measure)

    @property
    def gh(self) -> GitHub | None:
        """The API client; None in replay mode, so a replay cannot spend a single request."""
        if self.settings.replay:
            return None
        if self._gh is None:
            s = self.settings
            self._gh = make_client(
                s.token,
                s.base_url,
                concurrency=s.concurrency,
                timeout=s.request_timeout,
                retry=s.retry,
                log=self.log,
                budget=self.budget,
            )
        return self._gh

    def list_repos(self) -> list[RepoInfo]:
        cache = Path(self.settings.cache_dir)
        if not self.settings.replay:  # a live listing is of now: drop the previous listing's pages
            shutil.rmtree(cache / _REPO_LIST_KEY, ignore_errors=True)
        archive = ApiArchive(cache, _REPO_LIST_KEY, "search", replay=self.settings.replay)
        search = RepoSearch(self.gh, self.settings, archive, self.log)
        try:
            with self._session(), ThreadPoolExecutor(self.settings.concurrency) as pool:
                search.run_parallel = lambda calls: self._parallel(pool, calls)
                repos = search.list_repos()
        except RequestFailed as e:
            raise explained(e, "repo_list (GitHub search)") from None
        self.excluded = dict(search.excluded)
        self.search_incomplete = search.incomplete
        self.log(self.budget.summary())
        return repos

    # --- API side -------------------------------------------------------------------------------
    def _session(self) -> contextlib.AbstractContextManager[Any]:
        """One HTTP connection pool for a whole listing or partition (githubkit otherwise opens a client,
        TLS set-up included, per request)."""
        return self.gh if self.gh is not None else contextlib.nullcontext()

    def _parallel(self, pool: ThreadPoolExecutor, calls: list[Callable[[], Any]]) -> list[Any]:
        """Run ``calls`` on the pool, each in a copy of this context so it shares the session's client.
        githubkit's throttler keeps requests in flight at ``concurrency`` whatever the thread count."""
        futures = [pool.submit(contextvars.copy_context().run, call) for call in calls]
        return [f.result() for f in futures]

    def _graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        if self.gh is None:
            raise RuntimeError("replay mode must not call the API")
        data = graphql_partial(self.gh, query, variables)
        with self._points_lock:
            self.points += int((data.get("rateLimit") or {}).get("cost") or 0)
        return data

    def _check_errors(self, data: dict[str, Any], path: tuple[str, ...]) -> None:
        """Raise if the connection's root object itself is gone; count errors on single items inside it."""
        for err in data.get("_errors") or []:
            reason = ITEM_ERRORS.get(err["type"] or "", "error")
            if err["path"] == [path[0]] and data.get(path[0]) is None:
                if path[0] == "repository":
                    raise RepositoryUnavailable(reason, err["message"])
                self.log(f"GitHub: {err['message']} ({reason}); its list is left empty")
            self.item_errors[reason] += 1

    def _connection(
        self,
        archive: ApiArchive,
        stream: str,
        query: str,
        variables: dict[str, Any],
        path: tuple[str, ...],
        page_size: int,
        limit: int | None = None,
        stop: Callable[[dict[str, Any]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """All nodes of one connection through the archive (githubkit's paginator cannot resume);
        with ``stop``, an incremental stream (a probe page first, see ``ApiArchive.pages``).

        A page GitHub cannot compute within its 10 seconds (502/504) is asked for again with half the
        ``first``, down to ``min_page_size``, and the stream keeps the smaller size. The archive resumes
        by cursor and node count, never by page size, so pages of any size resume correctly."""
        current = page_size

        def fetch(cursor: str | None, size: int) -> dict[str, Any]:
            nonlocal current
            floor = self.settings.min_page_size
            size = min(size, current)
            while True:
                token = PAGE_CAN_SHRINK.set(size > floor)
                try:
                    return self._graphql(query, {**variables, "cursor": cursor, "first": size})
                except RequestFailed as e:
                    status = e.response.status_code
                    if status in TIMEOUT_STATUSES and size <= floor:
                        op = query.split("(", 1)[0].split()[-1]
                        raise PageTimedOut(
                            f"GraphQL query {op} ({stream!r} page) timed out (HTTP {status}) at every page size "
                            f"down to min_page_size={floor}; lower min_page_size or retry later"
                        ) from None
                    if status not in TIMEOUT_STATUSES:
                        raise
                    size = current = max(floor, size // 2)
                    self.log(f"GitHub: {stream!r} page timed out (HTTP {status}); page size now {size}")
                finally:
                    PAGE_CAN_SHRINK.reset(token)

        nodes = []
        probe = _PROBE if stop else None
        for data in archive.pages(stream, fetch, path, page_size, limit, stop=stop, probe=probe):
            self._check_errors(data, path)
            conn = data
            for name in path:
                conn = conn.get(name) or {}
            nodes += conn.get("nodes") or []
        return nodes[:limit] if limit is not None else nodes

    def _complete(
        self, archive: ApiArchive, node: dict[str, Any], node_type: str, field: str, version: str | None
    ) -> None:
        """Replace an overflowing nested connection by all of its nodes (follow-up queries). ``version``
        (the owning item's ``updatedAt``) names the stream, so an updated item's lists are fetched anew."""
        conn = node[field]
        if not conn["pageInfo"]["hasNextPage"]:
            return
        rest = self._connection(
            archive,
            f"more {node['id']} {field} {version or ''}".rstrip(),
            MORE[(node_type, field)],
            {"id": node["id"], "first": 100},
            ("node", field),
            100,
        )
        # The follow-up starts from the beginning (its cursor is independent): keep its nodes only.
        conn["nodes"] = rest
        conn["pageInfo"] = {"hasNextPage": False, "endCursor": None}

    def _updated(
        self,
        archive: ApiArchive,
        kind: str,
        query: str,
        variables: dict[str, Any],
        path: tuple[str, ...],
        page_size: int,
        limit: int,
    ) -> list[dict[str, Any]]:
        """PRs or issues over all archive rounds: the first round's full stream (continued if ``limit``
        grew), each later round's stream of what was updated since the round before it, merged."""
        rounds = [self._connection(archive, kind, query, variables, path, page_size, limit)]
        mark = archive.high_water(kind)  # None: no earlier round listed this kind, the full stream is all
        for r in range(1, archive.round + 1):
            stream = f"{kind}@{r}"
            if (r < archive.round and stream not in archive.state) or (r == archive.round and mark is None):
                continue

            def stop(conn: dict[str, Any], mark: str = mark or "") -> bool:
                return any(n.get("updatedAt", "") < mark for n in conn.get("nodes") or [])

            # Earlier rounds' streams are complete: read from the archive only (no limit, so never extended).
            current = r == archive.round
            rounds.append(
                self._connection(
                    archive,
                    stream,
                    query,
                    variables,
                    path,
                    page_size,
                    limit if current else None,
                    stop if current else None,
                )
            )
        merged = merge_updated(rounds, limit)
        self._marks[kind] = newest_update([n for nodes in rounds for n in nodes], mark)
        return merged

    def _pull_requests(
        self, archive: ApiArchive, owner: str, name: str, pool: ThreadPoolExecutor
    ) -> list[dict[str, Any]]:
        s = self.settings
        if s.max_prs <= 0:
            return []
        prs = self._updated(
            archive,
            "prs",
            PULL_REQUESTS,
            {"owner": owner, "name": name, "first": s.pr_page_size, "nested": s.nested_page_size},
            ("repository", "pullRequests"),
            s.pr_page_size,
            s.max_prs,
        )
        prs = [pr for pr in prs if not is_bot(pr)]  # before the follow-ups: no requests spent on bots' PRs
        # Follow-ups are independent of each other; thread replies only after the threads themselves.
        self._parallel(
            pool,
            [
                functools.partial(self._complete, archive, pr, "PullRequest", field, pr.get("updatedAt"))
                for pr in prs
                for field in ("comments", "reviews", "reviewThreads")
            ],
        )
        self._parallel(
            pool,
            [
                functools.partial(
                    self._complete, archive, thread, "PullRequestReviewThread", "comments", pr.get("updatedAt")
                )
                for pr in prs
                for thread in pr["reviewThreads"]["nodes"]
            ],
        )
        return prs

    def _issues(self, archive: ApiArchive, owner: str, name: str, pool: ThreadPoolExecutor) -> list[dict[str, Any]]:
        s = self.settings
        if s.max_issues <= 0:
            return []
        issues = self._updated(
            archive,
            "issues",
            ISSUES,
            {"owner": owner, "name": name, "first": s.issue_page_size, "nested": s.nested_page_size},
            ("repository", "issues"),
            s.issue_page_size,
            s.max_issues,
        )
        issues = [i for i in issues if not is_bot(i)]
        self._parallel(
            pool,
            [functools.partial(self._complete, archive, i, "Issue", "comments", i.get("updatedAt")) for i in issues],
        )
        return issues

    # --- collect --------------------------------------------------------------------------------
    def collect(self, repo: RepoInfo) -> Iterator[RawRecord]:
        owner, name = repo.full_name.split("/", 1)
        # One round per listing of the repository (head commit and listing time): collecting the same listed
        # repository again re-derives from the archive; a new listing checks GitHub for what changed.
        archive = ApiArchive(
            Path(self.settings.cache_dir),
            repo.partition_key,
            f"{repo.commit_sha} {repo.fetched_at}",
            replay=self.settings.replay,
        )
        requests, points, self._marks = self.budget.requests, self.points, {}
        self.last_cost = {"api_requests": 0, "graphql_points": 0, "git_bytes": 0}
        # Issues page beside the PRs; follow-ups fan out. Two pools: a task never waits on its own pool.
        try:
            with self._session(), ThreadPoolExecutor(1) as side, ThreadPoolExecutor(self.settings.concurrency) as pool:
                issues_done = side.submit(contextvars.copy_context().run, self._issues, archive, owner, name, pool)
                prs = self._pull_requests(archive, owner, name, pool)
                issues = issues_done.result()
                tree = tree_sizes(self.gh, archive, owner, name, repo.commit_sha)  # sizes: skip blobs over the cap
        except RequestFailed as e:
            raise explained(e, repo.full_name) from None
        except PageTimedOut as e:
            raise GitHubRequestError(f"{repo.full_name}: {e}") from None
        except RepositoryUnavailable as e:  # one record says why the partition is empty; the run goes on
            self.log(f"{repo.partition_key}: excluded ({e.reason}): {e}")
            self.last_cost.update(api_requests=self.budget.requests - requests, graphql_points=self.points - points)
            yield {"kind": "excluded", "reason": e.reason, "message": str(e)}
            return
        archive.finish_round({k: self._marks.get(k, archive.high_water(k)) for k in ("prs", "issues")})
        self.last_cost.update(api_requests=self.budget.requests - requests, graphql_points=self.points - points)
        fixed = f"; {archive.surrogates} lone surrogates replaced by U+FFFD" if archive.surrogates else ""
        fixed += "; tree listing truncated (unlisted blobs fetched to be measured)" if tree.truncated else ""
        self.log(f"{repo.partition_key}: {len(prs)} PRs, {len(issues)} issues{fixed}; {self.budget.summary()}")
        with tempfile.TemporaryDirectory(prefix="gocoder-git-") as scratch:
            clone = PartialClone(archive.dir / "git", repo.url.removesuffix("/") + ".git", Path(scratch))
            heads, before = [pr["headRefOid"] for pr in prs], clone.object_bytes()
            clone.sizes, self.trees_truncated = tree.sizes, self.trees_truncated + tree.truncated
            clone.fetch_refs(
                repo.default_branch,
                [pr["number"] for pr in prs],
                want=[repo.commit_sha, *heads, *(pr.get("baseRefOid") for pr in prs)],
            )
            commits = clone.pr_commits({pr["number"]: (pr.get("baseRefOid"), pr["headRefOid"]) for pr in prs})
            clone.fetch_blobs([*clone.tree_blobs(repo.commit_sha), *clone.diff_blobs(c for c in commits.values() if c)])
            self.last_cost["git_bytes"] = clone.object_bytes() - before
            blobs = BlobReader(clone.git)
            try:
                yield from clone.snapshot(blobs, repo.commit_sha)
                for pr in prs:
                    commit = commits[pr["number"]]
                    files = clone.files(blobs, commit) if commit else []
                    record = change_record(pr, files)
                    if commit is None:
                        record["files_unavailable"] = clone.unavailable_prs.get(pr["number"], "missing_commit")
                    yield record
            finally:
                blobs.close()
        for issue in issues:
            yield issue_record(issue)
