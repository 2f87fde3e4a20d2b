"""Blobs over the size cap are never fetched where GitHub's tree listing gives their size, and the raw
records are exactly those of fetching and measuring them; a truncated listing falls back to that."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gocoder_assets.sources.github import source as source_module
from gocoder_assets.sources.github.source import GitHubSource
from gocoder_assets.sources.github.trees import TreeSizes
from gocoder_assets_tests.github_emulator import Emulator, ensure_schema, source_settings
from gocoder_assets_tests.github_emulator_data import BASE_FILES, Repo, build_git, widget_prs
from gocoder_assets_tests.test_github_partial_clone import _oid, _served_blobs
from gocoder_assets_tests.test_github_source import TOKEN


def _text(size: int, word: str) -> bytes:
    line = f"var {word} = 1 // padding to make a large, hand-written-looking file\n".encode()
    return b"package big\n\n" + line * (size // len(line))


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Repo]:
    """acme/widget with a 2 MB Go file and a 1.5 MB README at HEAD; merged PR 1 adds a 3 MB file (so it is at
    HEAD too) and closed PR 3 adds another 3 MB file (at no listed commit: fetched and measured)."""
    ensure_schema()
    git_root = tmp_path / "git-root"
    info = Repo(1, "acme", "widget", 900, "MIT", prs=widget_prs(4))
    info.prs[0].files["huge.go"] = _text(3_000_000, "Huge")
    info.prs[2].files["closed_huge.go"] = _text(3_000_000, "Closed")
    base = {**BASE_FILES, "big.go": _text(2_000_000, "Big"), "README.md": b"# widget\n" + b"x" * 1_500_000 + b"\n"}
    build_git(info, git_root, base)
    return git_root, info


def _collect(emu: Emulator, cache: Path, *, listing: bool = True) -> tuple[GitHubSource, list[dict], int]:
    """Collect acme/widget (with or without the tree listing); the API requests the collect spent."""
    source = GitHubSource(source_settings(emu, cache), log=lambda _: None)
    repo = next(r for r in source.list_repos() if r.full_name == "acme/widget")
    before = emu.api_requests()
    if listing:
        records = list(source.collect(repo))
    else:  # today's path: no sizes known, every blob fetched and measured
        original = source_module.tree_sizes
        source_module.tree_sizes = lambda *_args: TreeSizes({}, True)  # type: ignore[assignment]
        try:
            records = list(source.collect(repo))
        finally:
            source_module.tree_sizes = original
    assert emu.invalid_queries == []
    return source, records, emu.api_requests() - before


def _run(git_root: Path, info: Repo, cache: Path, *, listing: bool = True, tree_limit: int | None = None):
    with Emulator([info], git_root, TOKEN) as emu:
        if tree_limit is not None:
            emu.rest.tree_limit[info.full_name] = tree_limit
        source, records, requests = _collect(emu, cache, listing=listing)
        return source, records, requests, _served_blobs(emu, git_root, info), emu.counts["rest:tree"]


def test_blobs_over_the_cap_are_never_fetched_and_records_are_unchanged(repo, tmp_path: Path) -> None:
    git_root, info = repo
    _, plain, plain_requests, plain_served, _ = _run(git_root, info, tmp_path / "plain", listing=False)
    source, records, requests, served, trees = _run(git_root, info, tmp_path / "cap")
    big = {p: _oid(git_root, info, f"{info.default_branch}:{p}") for p in ("big.go", "README.md", "huge.go")}
    closed_huge = _oid(git_root, info, "refs/pull/3/head:closed_huge.go")
    assert set(big.values()) <= plain_served, "without sizes, the big blobs are fetched to be measured"
    assert not served & set(big.values()), "with the listing, no blob over the cap at HEAD is fetched"
    assert closed_huge in served, "a PR blob at no listed commit is fetched and measured as before"
    assert records == plain, "the raw records do not change"
    assert requests == plain_requests + 1 and trees == 1, "one tree request per repository"
    assert source.trees_truncated == 0
    skips = {r["path"]: r["reason"] for r in records if r["kind"] == "skip"}
    assert skips["big.go"] == skips["README.md"] == skips["huge.go"] == "too_large"
    pr1 = {f["path"]: f for r in records if r["kind"] == "change" and r["number"] == 1 for f in r["files"]}
    assert pr1["huge.go"]["skipped"] == "too_large" and pr1["huge.go"]["diff"] is None
    print(f"requests {plain_requests} -> {requests}; blobs served {len(plain_served)} -> {len(served)}")


def test_replay_needs_no_tree_request(repo, tmp_path: Path) -> None:
    git_root, info = repo
    with Emulator([info], git_root, TOKEN) as emu:  # one emulator: the archived listing names its port
        _, live, _ = _collect(emu, tmp_path / "cache")
        source = GitHubSource(source_settings(emu, tmp_path / "cache"), log=lambda _: None)
        listed = next(r for r in source.list_repos() if r.full_name == "acme/widget")
        again = list(source.collect(dataclasses.replace(listed, fetched_at="later")))  # a new round, same head
        assert again == live and emu.counts["rest:tree"] == 1, "an unchanged head commit: its tree is archived"
        before = emu.api_requests()
        replay = GitHubSource(source_settings(emu, tmp_path / "cache", replay=True), log=lambda _: None)
        replayed = list(replay.collect(dataclasses.replace(listed, fetched_at="later")))
        assert emu.api_requests() == before and emu.counts["rest:tree"] == 1
    assert replayed == live


def test_truncated_listing_falls_back_for_unlisted_blobs(repo, tmp_path: Path) -> None:
    git_root, info = repo
    _, plain, _, _, _ = _run(git_root, info, tmp_path / "plain", listing=False)
    # ls-tree order: README.md is listed (size known), big.go and huge.go are not (fetched, then skipped)
    source, records, _, served, trees = _run(git_root, info, tmp_path / "cut", tree_limit=2)
    assert trees == 1 and source.trees_truncated == 1
    assert records == plain, "a truncated listing still gives the same records"
    readme = _oid(git_root, info, f"{info.default_branch}:README.md")
    unlisted = {_oid(git_root, info, f"{info.default_branch}:{p}") for p in ("big.go", "huge.go")}
    assert readme not in served and unlisted <= served
