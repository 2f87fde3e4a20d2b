"""raw_prs through the GitHub source against the loopback emulator: content, faults, cost, replay."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gocoder_assets.sources.base import RepoInfo
from gocoder_assets.sources.github.archive import ReplayMissing
from gocoder_assets.sources.github.source import GitHubSource
from gocoder_assets_tests.github_emulator import FAULTS, Emulator, ensure_schema, source_settings
from gocoder_assets_tests.github_emulator_data import Repo, widget_repo

TOKEN = "ghp_emulatorTokenThatMustNeverLeak0001"


@pytest.fixture(scope="module")
def fixture_repos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Repo]]:
    ensure_schema()
    git_root = tmp_path_factory.mktemp("github-git")
    return git_root, [widget_repo(git_root), widget_repo(git_root, repo_id=2, name="big", n_prs=120, stars=800)]


def collect(emu: Emulator, cache: Path, name: str, **overrides: object) -> tuple[RepoInfo, list[dict]]:
    source = GitHubSource(source_settings(emu, cache, **overrides), log=lambda _: None)
    repo = next(r for r in source.list_repos() if r.full_name == name)
    records = list(source.collect(repo))
    assert emu.invalid_queries == [], "every query must validate against GitHub's schema"
    return repo, records


def test_records_cover_prs_issues_and_code(fixture_repos, tmp_path: Path) -> None:
    git_root, repos = fixture_repos
    with Emulator(repos, git_root, TOKEN) as emu:
        _, records = collect(emu, tmp_path, "acme/widget")
    assert emu.invalid_queries == []
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "tree" and kinds.count("issue") == 5
    files = {r["path"]: r for r in records if r["kind"] == "file"}
    assert "widget.go" in files and "README.md" in files
    assert "internal/data.bin" in records[0]["paths"] and "internal/data.bin" not in files  # not wanted: tree only
    changes = {r["number"]: r for r in records if r["kind"] == "change"}
    assert sorted(changes) == list(range(1, 13)), "the dependabot PR is filtered, all others kept"
    busy = changes[1]
    assert len(busy["comments"]) == 25, "an overflowing nested connection is completed by follow-up queries"
    assert all("[bot]" not in c["author"] for r in changes.values() for c in r["comments"])
    pr4 = changes[4]
    by_path = {f["path"]: f for f in pr4["files"]}
    assert by_path["logo4.png"]["skipped"] == "binary" and by_path["logo4.png"]["after"] is None
    widget = by_path["widget.go"]
    assert widget["status"] == "M" and "const Size = 2" in widget["before"] and "const Size = 4" in widget["after"]
    assert "-const Size = 2\n+const Size = 4" in widget["diff"]
    assert pr4["reviews"][0]["state"] == "APPROVED" and pr4["state"] == "MERGED" and pr4["merged_at"]
    thread = pr4["review_threads"][0]
    assert thread["path"] == "feature4.go" and thread["line"] == 3 and thread["diff_hunk"].startswith("@@")
    assert [c["body"] for c in thread["comments"]] == ["Name F4 better?", "Kept for symmetry."]
    assert changes[3]["state"] == "CLOSED" and changes[3]["merged_at"] is None and changes[3]["files"]
    issue = next(r for r in records if r["kind"] == "issue")
    assert [c["author"] for c in issue["comments"]] == ["dev1"], "bot comments on issues are dropped"


def test_faulted_run_equals_clean_run(fixture_repos, tmp_path: Path) -> None:
    git_root, repos = fixture_repos
    with Emulator(repos, git_root, TOKEN) as emu:
        clean_repo, clean = collect(emu, tmp_path / "clean", "acme/widget")
    with Emulator(repos, git_root, TOKEN, fault_rate=0.1, seed=7) as emu:
        faulted_repo, faulted = collect(emu, tmp_path / "faulted", "acme/widget", pr_page_size=2, issue_page_size=1)
    assert sum(emu.faults.values()) >= 2, f"the seed must inject faults: {emu.faults}"

    def listed(info: RepoInfo) -> RepoInfo:  # fetch time and the emulator's port differ between the runs
        return dataclasses.replace(info, fetched_at="", url="")

    assert listed(faulted_repo) == listed(clean_repo)
    assert len(faulted) == len(clean)
    for a, b in zip(faulted, clean, strict=True):
        assert a == b


def test_every_fault_kind_is_survived(fixture_repos, tmp_path: Path) -> None:
    git_root, repos = fixture_repos
    with Emulator(repos, git_root, TOKEN, fault_rate=0.5, seed=3, round_robin=True) as emu:
        _, records = collect(emu, tmp_path, "acme/widget", pr_page_size=2, max_issues=5)
    assert set(emu.faults) == set(FAULTS), emu.faults
    assert sum(r["kind"] == "change" for r in records) == 12


def test_at_most_three_requests_per_hundred_prs(fixture_repos, tmp_path: Path) -> None:
    git_root, repos = fixture_repos
    with Emulator(repos, git_root, TOKEN) as emu:
        source = GitHubSource(source_settings(emu, tmp_path, max_prs=100, max_issues=0), log=lambda _: None)
        repo = next(r for r in source.list_repos() if r.full_name == "acme/big")
        before = emu.api_requests()
        records = list(source.collect(repo))
        spent = emu.api_requests() - before
    changes = [r for r in records if r["kind"] == "change"]
    assert len(changes) == 99, "the newest 100 PRs, less the dependabot one"
    assert all(r["comments"] and r["reviews"] and r["review_threads"] for r in changes)
    assert spent <= 3, emu.counts


def test_replay_needs_no_api_and_equals_live(fixture_repos, tmp_path: Path) -> None:
    git_root, repos = fixture_repos
    with Emulator(repos, git_root, TOKEN) as emu:
        repo, live = collect(emu, tmp_path, "acme/widget")
        before = emu.api_requests()
        replay = GitHubSource(source_settings(emu, tmp_path, replay=True, token=""), log=lambda _: None)
        assert replay.list_repos()[0].full_name == repo.full_name
        assert list(replay.collect(repo)) == live
        assert emu.api_requests() == before, "replay must not send a single API request"
        with pytest.raises(ReplayMissing):
            list(GitHubSource(source_settings(emu, tmp_path / "empty", replay=True), log=print).collect(repo))


def test_new_snapshot_starts_a_new_round(fixture_repos, tmp_path: Path) -> None:
    git_root, repos = fixture_repos
    with Emulator(repos, git_root, TOKEN) as emu:
        repo, first = collect(emu, tmp_path, "acme/widget")
        before = emu.api_requests()
        source = GitHubSource(source_settings(emu, tmp_path), log=lambda _: None)
        assert list(source.collect(repo)) == first and emu.api_requests() == before, "same snapshot: archive reused"
        moved = dataclasses.replace(repo, commit_sha=repos[0].prs[0].base_oid)  # an older commit on main
        records = list(source.collect(moved))
        assert emu.api_requests() > before, "another snapshot starts a new round: GitHub is asked what changed"
    assert [r for r in records if r["kind"] == "change"] == [r for r in first if r["kind"] == "change"]
    assert "feature1.go" not in next(r for r in records if r["kind"] == "tree")["paths"]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_requests_in_flight_never_exceed_concurrency(fixture_repos, tmp_path: Path, concurrency: int) -> None:
    git_root, repos = fixture_repos
    with Emulator(repos, git_root, TOKEN, delay=0.05) as emu:
        _, records = collect(emu, tmp_path, "acme/widget", concurrency=concurrency, pr_page_size=3, issue_page_size=2)
    assert sum(r["kind"] == "change" for r in records) == 12
    assert emu.max_in_flight <= concurrency
    if concurrency > 1:
        assert emu.max_in_flight >= 2, "issues are paged beside the PRs"
