"""The top N Go repositories by stars through the Search API, sliced below its 1,000-result cap.

Each slice is ``language:Go stars:MIN..HI`` sorted by stars, read page by page (100 a page, 10
pages at most). When a slice hits the cap, the next slice starts at the lowest star count seen
(inclusive, so repositories tied at that count but cut off are found again; duplicates merge by
name). Collection stops once N eligible repositories are known and every repository with at least
the N-th one's stars has been seen, so the cut is exact and the order — stars descending, then
name — is deterministic. Default-branch heads come from one GraphQL request per 100 repositories.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable
from typing import Any

from githubkit import GitHub
from githubkit_schemas.v2026_03_10.models import SearchRepositoriesGetResponse200

from gocoder_assets.sources.base import RepoInfo, utc_now
from gocoder_assets.sources.github.archive import ApiArchive
from gocoder_assets.sources.github.client import ITEM_ERRORS, graphql_partial
from gocoder_assets.sources.github.queries import REPOSITORY_HEADS
from gocoder_assets.sources.github.settings import GitHubSettings

SEARCH_CAP, PER_PAGE = 1000, 100
INCOMPLETE_RETRIES = 2  # GitHub's search timed out inside (``incomplete_results``): ask again this many times


class RepoSearch:
    def __init__(
        self, gh: GitHub | None, settings: GitHubSettings, archive: ApiArchive, log: Callable[[str], None]
    ) -> None:
        self.gh, self.settings, self.archive, self.log = gh, settings, archive, log
        self.excluded: collections.Counter[str] = collections.Counter()
        self.incomplete = 0  # search pages still incomplete after the retries (repo_list metadata)
        self.unavailable: dict[str, str] = {}  # node id -> exclusion reason (deleted or blocked after the search)
        # how to run independent requests (the source installs its bounded thread pool here)
        self.run_parallel: Callable[[list[Callable[[], Any]]], list[Any]] = lambda calls: [c() for c in calls]

    def _query(self, hi: int | None) -> str:
        s = self.settings
        stars = f"stars:>={s.min_stars}" if hi is None else f"stars:{s.min_stars}..{hi}"
        extra = (" fork:true" if s.include_forks else "") + ("" if s.include_archived else " archived:false")
        return f"language:Go {stars}{extra}"

    def _page(self, query: str, page: int) -> dict[str, Any]:
        """One search page. ``incomplete_results: true`` (the search timed out on GitHub's side, so some
        matches may be missing) is asked again; a page still incomplete is kept, logged and counted."""
        stream = f"search {query} page {page}"
        if stream in self.archive.state:
            data = self.archive.read_page(stream, 0)
        elif self.gh is None:
            raise RuntimeError(f"replay: no archived search page for {stream!r}")
        else:
            for _ in range(INCOMPLETE_RETRIES + 1):
                resp = self.gh.rest.search.repos(q=query, sort="stars", order="desc", per_page=PER_PAGE, page=page)
                SearchRepositoriesGetResponse200.model_validate(resp.json())  # GitHub's own schema, via githubkit
                data = resp.json()
                if not data.get("incomplete_results"):
                    break
            data = self.archive.save_page(stream, 0, data, None, True, len(data["items"]))
        if data.get("incomplete_results"):
            self.incomplete += 1
            self.log(
                f"search: {query!r} page {page} is still incomplete after {INCOMPLETE_RETRIES} retries; "
                "some repositories may be missing from this slice"
            )
        return data

    def _eligible(self, item: dict[str, Any]) -> str | None:
        """None if the repository is kept, else the exclusion reason."""
        spdx = (item.get("license") or {}).get("spdx_id")
        if item["fork"] and not self.settings.include_forks:
            return "fork"
        if item["archived"] and not self.settings.include_archived:
            return "archived"
        if spdx in (None, "NOASSERTION"):
            return "license_unknown"
        return None if spdx in self.settings.licenses else "license_not_allowed"

    def top_items(self) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        n, hi = self.settings.top_n, None
        while True:
            query, lowest, exhausted = self._query(hi), None, False
            for page in range(1, SEARCH_CAP // PER_PAGE + 1):
                data = self._page(query, page)
                for item in data["items"]:
                    seen[item["full_name"]] = item
                    lowest = item["stargazers_count"] if lowest is None else min(lowest, item["stargazers_count"])
                if len(data["items"]) < PER_PAGE or page * PER_PAGE >= data["total_count"]:
                    exhausted = data["total_count"] <= SEARCH_CAP or len(data["items"]) < PER_PAGE
                    break
            kept = sorted(
                (i for i in seen.values() if self._eligible(i) is None),
                key=lambda i: (-i["stargazers_count"], i["full_name"]),
            )
            if exhausted or lowest is None or (len(kept) >= n and kept[n - 1]["stargazers_count"] > lowest):
                break
            next_hi = lowest if hi is None or lowest < hi else lowest - 1
            if next_hi == lowest - 1:
                self.log(
                    f"search: more than {SEARCH_CAP} Go repositories have exactly {lowest} stars; "
                    "those beyond the cap are not listed"
                )
            if next_hi < self.settings.min_stars:
                break
            hi = next_hi
        self.excluded = collections.Counter(r for i in seen.values() if (r := self._eligible(i)))
        return kept[:n]

    def _heads_page(self, ids: list[str], start: int) -> dict[str, Any]:
        stream = f"heads {start}"
        if stream in self.archive.state:
            return self.archive.read_page(stream, 0)
        if self.gh is None:
            raise RuntimeError(f"replay: no archived page {stream!r}")
        data = graphql_partial(self.gh, REPOSITORY_HEADS, {"ids": ids[start : start + 100]})
        return self.archive.save_page(stream, 0, data, None, True, len(data["nodes"]))

    def heads(self, items: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
        """node id -> (default branch, head commit sha), 100 repositories per request, in parallel.

        A repository deleted (NOT_FOUND) or blocked (FORBIDDEN) since the search comes back as a null
        node with an error at ``["nodes", i]``: it is excluded under that reason, the others are kept."""
        out: dict[str, tuple[str, str]] = {}
        ids = [i["node_id"] for i in items]
        starts = range(0, len(ids), 100)
        pages = self.run_parallel([functools.partial(self._heads_page, ids, s) for s in starts])
        for start, data in zip(starts, pages, strict=True):
            for err in data.get("_errors") or []:
                path = err["path"]
                if len(path) == 2 and path[0] == "nodes" and isinstance(path[1], int):
                    self.unavailable[ids[start + path[1]]] = ITEM_ERRORS[err["type"]]
                    self.log(f"repo_list: {err['message']} ({err['type']})")
            for node in data["nodes"]:
                ref = (node or {}).get("defaultBranchRef")
                if ref and ref.get("target"):
                    out[node["id"]] = (ref["name"], ref["target"]["oid"])
        return out

    def list_repos(self) -> list[RepoInfo]:
        items = self.top_items()
        heads = self.heads(items)
        fetched_at = utc_now()
        repos = []
        for item in items:
            if item["node_id"] in self.unavailable:
                self.excluded[self.unavailable[item["node_id"]]] += 1
                continue
            if item["node_id"] not in heads:
                self.excluded["empty"] += 1  # no default branch: nothing to collect
                continue
            branch, sha = heads[item["node_id"]]
            repos.append(
                RepoInfo(
                    partition_key=item["full_name"],
                    full_name=item["full_name"],
                    url=item["html_url"],
                    stars=item["stargazers_count"],
                    license_spdx=item["license"]["spdx_id"],
                    default_branch=branch,
                    commit_sha=sha,
                    fetched_at=fetched_at,
                    source="github",
                    root="",
                    license_key=item["license"].get("key"),
                )
            )
        self.log(
            f"repo_list: {len(repos)} repositories; excluded: {dict(sorted(self.excluded.items()))}"
            + (f"; {self.incomplete} search pages incomplete" if self.incomplete else "")
        )
        return repos
