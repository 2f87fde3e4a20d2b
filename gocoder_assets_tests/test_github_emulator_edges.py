"""Edges real GitHub has and a naive emulator would hide: a base branch that moved after the PR
branched, and a page that times out at every size down to the floor."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gocoder_assets.sources.github.client import GitHubRequestError, RetrySettings
from gocoder_assets.sources.github.source import GitHubSource
from gocoder_assets_tests.github_emulator import Emulator, ensure_schema, source_settings
from gocoder_assets_tests.github_emulator_data import Repo, moved_base_repo, widget_repo

TOKEN = "ghp_edgesTestToken0008"


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Repo]]:
    ensure_schema()
    git_root = tmp_path_factory.mktemp("edges-git")
    return git_root, [moved_base_repo(git_root), widget_repo(git_root, n_prs=3)]


def _git(git_root: Path, *args: str) -> str:
    bare = git_root / "acme" / "moved.git"
    return subprocess.run(["git", "--git-dir", str(bare), *args], capture_output=True, text=True, check=True).stdout


def test_a_moved_base_diffs_from_the_merge_base_as_github_shows(repos, tmp_path: Path) -> None:
    git_root, fixture = repos
    pr = fixture[0].prs[0]
    merge_base = _git(git_root, "merge-base", pr.base_oid, pr.head_oid).strip()
    assert merge_base != pr.base_oid, "the fixture's base moved on after the PR branched"
    github_paths = _git(git_root, "diff", "--name-only", merge_base, pr.head_oid).split()
    naive_paths = _git(git_root, "diff", "--name-only", pr.base_oid, pr.head_oid).split()
    assert github_paths == ["widget.go"] and "CHANGELOG.md" in naive_paths, "base..head reverts main's work"
    with Emulator(fixture, git_root, TOKEN) as emu:
        source = GitHubSource(source_settings(emu, tmp_path, max_issues=0), log=lambda _: None)
        repo = next(r for r in source.list_repos() if r.full_name == "acme/moved")
        change = next(r for r in source.collect(repo) if r["kind"] == "change")
    assert [f["path"] for f in change["files"]] == github_paths
    widget = change["files"][0]
    assert widget["before"] == _git(git_root, "show", f"{merge_base}:widget.go")
    assert widget["after"] == _git(git_root, "show", f"{pr.head_oid}:widget.go")
    assert "+func Double()" in widget["diff"] and "inches" not in widget["diff"]


def test_a_page_timing_out_at_every_size_fails_naming_repository_and_query(repos, tmp_path: Path) -> None:
    git_root, fixture = repos
    logs: list[str] = []
    with Emulator(fixture, git_root, TOKEN) as emu:
        emu.heavy["acme/widget"] = 1  # under min_page_size (5): no page size GitHub can compute in time
        retry = RetrySettings(wait_scale=0.001, max_retries=2)
        source = GitHubSource(source_settings(emu, tmp_path, max_issues=0, retry=retry), log=logs.append)
        repo = next(r for r in source.list_repos() if r.full_name == "acme/widget")
        with pytest.raises(GitHubRequestError) as failed:
            list(source.collect(repo))
    message = str(failed.value)
    assert message.startswith("acme/widget: ") and "PullRequests" in message and "min_page_size=5" in message
    # 50 -> 25 -> 12 -> 6 -> 5, then the floor page is retried by the client (2 retries) before giving up
    assert [line.rsplit(" ", 1)[-1] for line in logs if "page size now" in line] == ["25", "12", "6", "5"]
    assert emu.faults["heavy_502"] == 4 + 1 + 2
