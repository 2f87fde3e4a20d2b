"""Partial clones degrade, not fail: a deleted PR ref, a blob the server refuses, and blobs never worth
fetching (excluded directories, binaries) each cost one record's content, never the partition."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from gocoder_assets.sources.github.gitfetch import PartialClone
from gocoder_assets_tests.github_emulator import Emulator, ensure_schema
from gocoder_assets_tests.github_emulator_data import BASE_FILES, Repo, build_git, widget_prs
from gocoder_assets_tests.test_github_source import TOKEN, collect


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Repo]:
    """acme/widget with vendored and testdata code; PR 1 also edits the vendored file."""
    ensure_schema()
    git_root = tmp_path / "git-root"
    repo = Repo(1, "acme", "widget", 900, "MIT", prs=widget_prs(4))
    repo.prs[0].files["vendor/lib/lib.go"] = b"package lib\n\nconst V = 2\n"
    base = {**BASE_FILES, "vendor/lib/lib.go": b"package lib\n\nconst V = 1\n", "testdata/t.go": b"package t\n"}
    build_git(repo, git_root, base)
    return git_root, repo


def _bare(git_root: Path, repo: Repo) -> Path:
    return git_root / repo.owner / f"{repo.name}.git"


def _oid(git_root: Path, repo: Repo, rev: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(_bare(git_root, repo)), "rev-parse", rev], check=True, capture_output=True, text=True
    ).stdout.strip()


def _served_blobs(emu: Emulator, git_root: Path, repo: Repo) -> set[str]:
    wanted = "".join(f"{oid}\n" for oid in emu.git_wants)
    out = subprocess.run(
        ["git", "--git-dir", str(_bare(git_root, repo)), "cat-file", "--batch-check"],
        input=wanted,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    return {line.split()[0] for line in out if line.endswith("blob") or " blob " in line}


def _changes(records: list[dict]) -> dict[int, dict]:
    return {r["number"]: r for r in records if r["kind"] == "change"}


def test_deleted_pr_ref_and_unfetchable_head_leave_that_pr_without_files(repo, tmp_path: Path) -> None:
    git_root, info = repo
    head = _oid(git_root, info, "refs/pull/3/head")
    subprocess.run(["git", "--git-dir", str(_bare(git_root, info)), "update-ref", "-d", "refs/pull/3/head"], check=True)
    with Emulator([info], git_root, TOKEN) as emu:
        emu.refused_oids.add(head)  # the fork is gone: not even its commit id can be fetched
        _, records = collect(emu, tmp_path / "cache", "acme/widget")
        changes = _changes(records)
        assert changes[3]["files"] == [] and changes[3]["files_unavailable"]
        assert all(changes[n]["files"] for n in (1, 2, 4)), "the other PRs keep their files"
        with tempfile.TemporaryDirectory() as scratch:  # the reason, as counted
            clone = PartialClone(tmp_path / "clone", f"{emu.html_url(info)}.git", Path(scratch))
            clone.fetch_refs("main", [3, 4], want=[head])
            clone.pr_commits({3: (info.prs[2].base_oid, head), 4: (info.prs[3].base_oid, info.prs[3].head_oid)})
            assert clone.missing_refs == {3} and clone.unavailable_prs == {3: "missing_ref"}


def test_deleted_pr_ref_falls_back_to_the_head_commit(repo, tmp_path: Path) -> None:
    git_root, info = repo
    subprocess.run(["git", "--git-dir", str(_bare(git_root, info)), "update-ref", "-d", "refs/pull/3/head"], check=True)
    with Emulator([info], git_root, TOKEN) as emu:
        _, records = collect(emu, tmp_path / "cache", "acme/widget")
    pr3 = _changes(records)[3]
    assert "files_unavailable" not in pr3 and {f["path"] for f in pr3["files"]} == {"feature3.go"}


def test_refused_blob_is_skipped_not_fatal(repo, tmp_path: Path) -> None:
    git_root, info = repo
    refused = _oid(git_root, info, "refs/pull/3/head:feature3.go")
    with Emulator([info], git_root, TOKEN) as emu:
        emu.refused_oids.add(refused)
        _, records = collect(emu, tmp_path / "cache", "acme/widget")
    by_path = {f["path"]: f for f in _changes(records)[3]["files"]}
    assert by_path["feature3.go"]["skipped"] == "unavailable" and by_path["feature3.go"]["after"] is None
    assert by_path["feature3.go"]["status"] == "A" and by_path["feature3.go"]["diff"] is None
    assert "F1" in _changes(records)[1]["files"][0]["after"], "other PRs are read as usual"


def test_excluded_dirs_and_binaries_are_never_fetched(repo, tmp_path: Path) -> None:
    git_root, info = repo
    with Emulator([info], git_root, TOKEN) as emu:
        _, records = collect(emu, tmp_path / "cache", "acme/widget")
        served = _served_blobs(emu, git_root, info)
    never = {
        _oid(git_root, info, f"{info.default_branch}:vendor/lib/lib.go"),
        _oid(git_root, info, f"{info.prs[0].base_oid}:vendor/lib/lib.go"),
        _oid(git_root, info, f"{info.prs[0].base_oid}:testdata/t.go"),
        _oid(git_root, info, "refs/pull/4/head:logo4.png"),
    }
    assert served and not served & never, f"{len(served)} blobs served"
    skips = {r["path"]: r["reason"] for r in records if r["kind"] == "skip"}
    assert skips["vendor/lib/lib.go"] == "excluded_dir" and skips["testdata/t.go"] == "excluded_dir"
    changes = _changes(records)
    pr1 = {f["path"]: f for f in changes[1]["files"]}
    assert pr1["vendor/lib/lib.go"]["skipped"] == "excluded_dir" and pr1["vendor/lib/lib.go"]["status"] == "M"
    assert "F1" in pr1["feature1.go"]["after"] and list(pr1) == sorted(pr1)
    assert {f["path"]: f for f in changes[4]["files"]}["logo4.png"]["skipped"] == "binary"
    print(f"blobs served: {len(served)}")
