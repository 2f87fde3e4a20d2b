"""Incremental re-collection: a later listing of a repository fetches only what changed since the last one.

The archive and the clone are kept across snapshots; PRs and issues are listed by ``updatedAt`` and the
listing stops at the previous round's high-water mark, so an unchanged repository costs two small
requests and no git objects, and a new PR or an edited comment costs a few requests and only new objects.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gocoder_assets.sources.base import RepoInfo
from gocoder_assets.sources.github.source import GitHubSource
from gocoder_assets_tests.github_emulator import Emulator, ensure_schema, source_settings
from gocoder_assets_tests.github_emulator_data import PR, Comment, add_pr, edit_pr_comment, when, widget_repo

TOKEN = "ghp_incrementalTestToken0003"


def _collect(emu: Emulator, cache: Path, repo: RepoInfo, **overrides: object) -> tuple[list[dict], dict[str, int]]:
    source = GitHubSource(source_settings(emu, cache, **overrides), log=lambda _: None)
    before = emu.api_requests()
    records = list(source.collect(repo))
    assert emu.invalid_queries == [], "every query must validate against GitHub's schema"
    assert source.last_cost["api_requests"] == emu.api_requests() - before
    return records, source.last_cost


def _listed(emu: Emulator, cache: Path, stamp: str) -> RepoInfo:
    """The repository as a new listing sees it (``stamp``: the listing's time, so each listing is a round)."""
    source = GitHubSource(source_settings(emu, cache), log=lambda _: None)
    return dataclasses.replace(source.list_repos()[0], fetched_at=stamp)


@pytest.fixture
def repo_and_root(tmp_path: Path):
    ensure_schema()
    git_root = tmp_path / "git"
    return widget_repo(git_root, n_prs=30), git_root


def test_unchanged_then_changed_repository(repo_and_root, tmp_path: Path) -> None:
    repo, git_root = repo_and_root
    cache = tmp_path / "cache"
    with Emulator([repo], git_root, TOKEN) as emu:
        first, cost1 = _collect(emu, cache, _listed(emu, cache, "t1"))
        assert cost1["git_bytes"] > 0 and cost1["graphql_points"] > 0

        again, cost2 = _collect(emu, cache, _listed(emu, cache, "t2"))
        assert cost2["api_requests"] <= 2, emu.counts
        assert cost2["git_bytes"] == 0, "an unchanged repository fetches no git objects"
        assert again == first

        old_head = repo.head_oid
        new = PR(
            40,
            "Add feature 40",
            "Feature 40.",
            "dev4",
            when(1000),
            "MERGED",
            when(1001),
            files={"feature40.go": b"package widget\n\nfunc F40() int { return 40 }\n"},
        )
        new.comments = [Comment("rev1", "Nice.", when(1002))]
        add_pr(repo, git_root, new)
        edit_pr_comment(repo, 2, 0, "Edited: looks fine after all.", when(1003))
        emu.graph.refresh(repo)
        info = _listed(emu, cache, "t3")
        assert info.commit_sha == repo.head_oid != old_head
        changed, cost3 = _collect(emu, cache, info)
    assert cost3["api_requests"] <= 3, emu.counts
    assert 0 < cost3["git_bytes"] < cost1["git_bytes"], "only the new objects are fetched"
    changes = {r["number"]: r for r in changed if r["kind"] == "change"}
    assert changes[40]["files"][0]["path"] == "feature40.go" and changes[40]["comments"][0]["body"] == "Nice."
    assert changes[2]["comments"][0]["body"] == "Edited: looks fine after all."
    olds = {r["number"]: r for r in first if r["kind"] == "change"}
    assert sorted(changes) == sorted([*olds, 40])
    assert all(changes[n] == olds[n] for n in olds if n != 2), "unchanged PRs keep their records"
    assert "feature40.go" in next(r for r in changed if r["kind"] == "tree")["paths"]


def test_replay_of_an_incremental_round_needs_no_api(repo_and_root, tmp_path: Path) -> None:
    repo, git_root = repo_and_root
    cache = tmp_path / "cache"
    with Emulator([repo], git_root, TOKEN) as emu:
        _collect(emu, cache, _listed(emu, cache, "t1"))
        edit_pr_comment(repo, 3, 0, "Edited comment.", when(1003))
        emu.graph.refresh(repo)
        info = _listed(emu, cache, "t2")
        live, _ = _collect(emu, cache, info)
        replayed, cost = _collect(emu, cache, info, replay=True, token="")
    assert cost["api_requests"] == 0 and replayed == live
    assert next(r for r in live if r.get("number") == 3)["comments"][0]["body"] == "Edited comment."


def test_larger_max_prs_extends_the_stored_stream(repo_and_root, tmp_path: Path) -> None:
    repo, git_root = repo_and_root
    cache = tmp_path / "cache"
    with Emulator([repo], git_root, TOKEN) as emu:
        small, _ = _collect(emu, cache, _listed(emu, cache, "t1"), max_prs=10, pr_page_size=5, max_issues=0)
        assert sum(r["kind"] == "change" for r in small) == 9  # the 10 most recently updated, less the bot's
        before = emu.counts["graphql:PullRequests"]
        larger, _ = _collect(emu, cache, _listed(emu, cache, "t2"), max_prs=20, pr_page_size=5, max_issues=0)
        fetched = emu.counts["graphql:PullRequests"] - before
    numbers = [r["number"] for r in larger if r["kind"] == "change"]
    assert len(numbers) == len(set(numbers)) == 19
    assert fetched <= 3, "one probe of what changed, then only the two pages past the stored ten"
