"""Real GitHub's failure shapes through the emulator: partial GraphQL errors, timeouts, clear errors."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest

from gocoder_assets.raw_prs.checks import raw_problems
from gocoder_assets.sources.github.client import GitHubRequestError, describe_failure
from gocoder_assets.sources.github.source import GitHubSource
from gocoder_assets_tests.github_emulator import Emulator, ensure_schema, source_settings
from gocoder_assets_tests.github_emulator_data import Repo, widget_repo

TOKEN = "ghp_errorsTestTokenThatMustNeverLeak0006"


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Repo]]:
    ensure_schema()
    git_root = tmp_path_factory.mktemp("errors-git")
    return git_root, [
        widget_repo(git_root, n_prs=3),
        widget_repo(git_root, repo_id=2, name="gone", n_prs=2, stars=800),
        widget_repo(git_root, repo_id=3, name="blocked", n_prs=2, stars=700),
    ]


def _source(emu: Emulator, cache: Path, logs: list[str] | None = None, **overrides: object) -> GitHubSource:
    return GitHubSource(
        source_settings(emu, cache, **overrides), log=logs.append if logs is not None else lambda _: None
    )


def test_repos_deleted_or_blocked_after_the_search_are_excluded_and_counted(repos, tmp_path: Path) -> None:
    git_root, fixture = repos
    with Emulator(fixture, git_root, TOKEN) as emu:
        emu.unavailable("acme/gone", "NOT_FOUND")
        emu.unavailable("acme/blocked", "FORBIDDEN")
        source = _source(emu, tmp_path)
        listed = source.list_repos()
    assert emu.invalid_queries == []
    assert [r.full_name for r in listed] == ["acme/widget"]
    assert source.excluded["not_found"] == 1 and source.excluded["forbidden"] == 1


@pytest.mark.parametrize(("kind", "reason"), [("NOT_FOUND", "not_found"), ("FORBIDDEN", "forbidden")])
def test_a_partition_whose_repo_vanished_is_excluded_not_failed(repos, tmp_path: Path, kind: str, reason: str) -> None:
    git_root, fixture = repos
    with Emulator(fixture, git_root, TOKEN) as emu:
        source = _source(emu, tmp_path)
        repo = next(r for r in source.list_repos() if r.full_name == "acme/gone")
        emu.unavailable("acme/gone", kind)  # between the listing and the partition's run
        records = list(source.collect(repo))
        replayed = list(_source(emu, tmp_path, replay=True).collect(repo))
    assert emu.invalid_queries == []
    assert [r["kind"] for r in records] == ["excluded"] and records[0]["reason"] == reason
    assert "acme/gone" in records[0]["message"]
    assert replayed == records, "the archive keeps the error, so a replay excludes it the same way"


def test_raw_prs_metadata_counts_the_exclusion() -> None:
    from gocoder_assets.raw_prs.assets import _noting_exclusions  # noqa: PLC0415

    excluded: list[str] = []
    out = list(_noting_exclusions(iter([{"kind": "excluded", "reason": "forbidden", "message": "x"}]), excluded))
    assert len(out) == 1 and excluded == ["forbidden"]


def test_a_page_that_times_out_is_asked_for_in_halves(repos, tmp_path: Path) -> None:
    git_root, fixture = repos
    logs: list[str] = []
    with Emulator(fixture, git_root, TOKEN) as emu:
        clean_source = _source(emu, tmp_path / "clean", max_issues=0)
        clean = list(clean_source.collect(next(r for r in clean_source.list_repos() if r.full_name == "acme/widget")))
        emu.heavy["acme/widget"] = 25  # 50 (the default) and 50 // 2 = 25: one timeout, then pages of 25
        source = _source(emu, tmp_path / "heavy", logs, max_issues=0)
        repo = next(r for r in source.list_repos() if r.full_name == "acme/widget")
        records = list(source.collect(repo))
        assert emu.faults["heavy_502"] == 1, "a timed-out page is not retried at the same size"
        emu.heavy["acme/widget"] = 5  # 8 // 2 = 4 is under the floor: the floor's size (5) is asked for
        floor = list(_source(emu, tmp_path / "floor", logs, max_issues=0, pr_page_size=8).collect(repo))
    assert emu.invalid_queries == []
    assert any("page size now 25" in line for line in logs), logs
    assert any("page size now 5" in line for line in logs), logs
    changes = [r for r in clean if r["kind"] == "change"]
    assert [r for r in records if r["kind"] == "change"] == changes
    assert [r for r in floor if r["kind"] == "change"] == changes


def test_a_revoked_token_is_named_as_such_and_never_shown(repos, tmp_path: Path) -> None:
    git_root, fixture = repos
    logs: list[str] = []
    with Emulator(fixture, git_root, TOKEN) as emu:
        source = _source(emu, tmp_path, logs)
        repo = next(r for r in source.list_repos() if r.full_name == "acme/widget")
        emu.token = "ghp_theNewTokenTheRunDoesNotHave"  # the run's token was revoked
        with pytest.raises(GitHubRequestError) as listing:
            _source(emu, tmp_path / "again", logs, token=TOKEN).list_repos()
        with pytest.raises(GitHubRequestError) as collecting:
            list(_source(emu, tmp_path / "collect", logs, token=TOKEN).collect(repo))
    assert "token" in str(listing.value) and "expired" in str(listing.value)
    assert "acme/widget" in str(collecting.value) and "401" in str(collecting.value)
    for exc in (listing.value, collecting.value):
        chain = traceback.format_exception(exc)
        assert TOKEN not in "".join(chain) and TOKEN not in repr(exc)
    assert logs and all(TOKEN not in line for line in logs)


@pytest.mark.parametrize(("status", "words"), [(404, "not found"), (451, "legal")])
def test_a_repository_gone_from_git_fails_naming_it(repos, tmp_path: Path, status: int, words: str) -> None:
    """The API still lists it, but its git endpoint answers 404 (deleted) or 451 (taken down)."""
    git_root, fixture = repos
    logs: list[str] = []
    with Emulator(fixture, git_root, TOKEN) as emu:
        source = _source(emu, tmp_path, logs)
        repo = next(r for r in source.list_repos() if r.full_name == "acme/widget")
        emu.git_status["acme/widget"] = status
        with pytest.raises(GitHubRequestError) as failed:
            list(source.collect(repo))
    message = str(failed.value)
    assert message.startswith("acme/widget (git): ") and words in message and str(status) in message
    assert TOKEN not in "".join(traceback.format_exception(failed.value)) and all(TOKEN not in x for x in logs)


@pytest.mark.parametrize(("status", "words"), [(404, "not found"), (451, "legal"), (301, "moved"), (401, "expired")])
def test_failures_name_the_repository(status: int, words: str) -> None:
    text = describe_failure(status, {"location": "https://api.github.com/repositories/7"}, "acme/widget")
    assert text.startswith("acme/widget: ") and words in text


@pytest.fixture(scope="module")
def odd_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Repo]:
    """Lone surrogates in user text, and deleted accounts (null authors) on every kind of item."""
    ensure_schema()
    git_root = tmp_path_factory.mktemp("odd-git")
    repo = widget_repo(git_root, n_prs=3)
    pr = repo.prs[0]
    pr.body = "broken \ud800 emoji"
    pr.comments[0].body = "tail \udfff"
    pr.author = None
    for comment in [pr.comments[1], pr.reviews[0][0], pr.threads[0].comments[0], repo.issues[0].comments[0]]:
        comment.author = None
    repo.issues[0].author = None
    return git_root, repo


def test_lone_surrogates_are_archived_raw_and_replaced_when_decoded(odd_repo, tmp_path: Path) -> None:
    git_root, repo = odd_repo
    logs: list[str] = []
    with Emulator([repo], git_root, TOKEN) as emu:
        source = _source(emu, tmp_path, logs, max_issues=0)
        info = source.list_repos()[0]
        live = list(source.collect(info))
        replayed = list(_source(emu, tmp_path, replay=True, max_issues=0).collect(info))
    assert emu.invalid_queries == []
    change = next(r for r in live if r["kind"] == "change" and r["number"] == repo.prs[0].number)
    assert change["body"] == "broken \ufffd emoji" and change["comments"][0]["body"] == "tail \ufffd"
    assert raw_problems(live) == {}, "records are valid UTF-8"
    assert replayed == live
    assert any("3 lone surrogates replaced" in line for line in logs), logs
    assert source.budget.surrogates == 3, "the body, and the comment on its first page and in the follow-up"


def test_deleted_accounts_parse_as_ghost_everywhere(odd_repo, tmp_path: Path) -> None:
    git_root, repo = odd_repo
    with Emulator([repo], git_root, TOKEN) as emu:
        source = _source(emu, tmp_path)
        records = list(source.collect(source.list_repos()[0]))
    assert emu.invalid_queries == []
    change = next(r for r in records if r["kind"] == "change" and r["number"] == repo.prs[0].number)
    issue = next(r for r in records if r["kind"] == "issue" and r["number"] == repo.issues[0].number)
    authors = [
        change["author"],
        change["comments"][1]["author"],
        change["reviews"][0]["author"],
        change["review_threads"][0]["comments"][0]["author"],
        issue["author"],
        issue["comments"][0]["author"],
    ]
    assert authors == ["ghost"] * 6


@pytest.mark.parametrize(("times", "counted"), [(2, 0), (5, 1)])
def test_incomplete_search_pages_are_retried_then_counted(repos, tmp_path: Path, times: int, counted: int) -> None:
    git_root, fixture = repos
    query = "language:Go stars:>=1 archived:false"
    with Emulator(fixture, git_root, TOKEN) as emu:
        emu.rest.incomplete[query] = times
        source = _source(emu, tmp_path)
        listed = source.list_repos()
        searches = emu.counts["rest:search"]
    assert source.search_incomplete == counted
    if counted == 0:
        assert [r.full_name for r in listed] == ["acme/widget", "acme/gone", "acme/blocked"]
        assert searches == 3, "two incomplete answers, then the complete one"
