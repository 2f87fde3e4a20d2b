"""Nested connections that overflow: every list pages with its own cursor and no item is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from gocoder_assets.sources.github.source import GitHubSource
from gocoder_assets_tests.github_emulator import Emulator, ensure_schema, source_settings
from gocoder_assets_tests.github_emulator_data import Comment, Repo, Thread, when, widget_repo

TOKEN = "ghp_paginationTestToken0005"
THREADS, THREAD_COMMENTS, LONG_THREAD, LONG = 150, 3, 140, 45
REVIEWS, PR_COMMENTS, ISSUE_COMMENTS = 120, 130, 110


def _comments(prefix: str, n: int) -> list[Comment]:
    return [Comment(f"{prefix}{k % 7}", f"{prefix} {k}", when(1000 + k)) for k in range(n)]


@pytest.fixture(scope="module")
def busy_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Repo]:
    """One PR whose threads (> 100, one of them > 20 comments deep on the threads' second page),
    reviews, comments and one issue's comments all overflow their first page."""
    ensure_schema()
    git_root = tmp_path_factory.mktemp("pagination-git")
    repo = widget_repo(git_root, n_prs=2)
    pr = repo.prs[0]
    pr.threads = [
        Thread(f"f{i}.go", i + 1, f"@@ hunk {i}", _comments(f"t{i}-", LONG if i == LONG_THREAD else THREAD_COMMENTS))
        for i in range(THREADS)
    ]
    pr.reviews = [(c, "COMMENTED") for c in _comments("review", REVIEWS)]
    pr.comments = _comments("comment", PR_COMMENTS)
    repo.issues[0].comments = _comments("issue", ISSUE_COMMENTS)
    return git_root, repo


def test_every_nested_item_of_overflowing_lists_is_collected(busy_repo, tmp_path: Path) -> None:
    git_root, repo = busy_repo
    with Emulator([repo], git_root, TOKEN) as emu:
        source = GitHubSource(source_settings(emu, tmp_path), log=lambda _: None)
        records = list(source.collect(source.list_repos()[0]))
    assert emu.invalid_queries == [], "a cursor used on another list is a GraphQL error"
    change = next(r for r in records if r["kind"] == "change" and r["number"] == repo.prs[0].number)
    threads = change["review_threads"]
    assert len(threads) == THREADS
    assert [t["path"] for t in threads] == [f"f{i}.go" for i in range(THREADS)], "threads in order, none twice"
    assert sum(len(t["comments"]) for t in threads) == (THREADS - 1) * THREAD_COMMENTS + LONG
    long = threads[LONG_THREAD]["comments"]
    assert [c["body"] for c in long] == [f"t{LONG_THREAD}- {k}" for k in range(LONG)]
    assert [r["body"] for r in change["reviews"]] == [f"review {k}" for k in range(REVIEWS)]
    assert [c["body"] for c in change["comments"]] == [f"comment {k}" for k in range(PR_COMMENTS)]
    issue = next(r for r in records if r["kind"] == "issue" and r["number"] == repo.issues[0].number)
    assert [c["body"] for c in issue["comments"]] == [f"issue {k}" for k in range(ISSUE_COMMENTS)]


def test_a_cursor_of_another_list_is_a_graphql_error(busy_repo) -> None:
    """The emulator's cursors are opaque per list, as GitHub's are, so cursor mix-ups cannot hide."""
    git_root, repo = busy_repo
    pr_id = f"PR_{repo.id}_{repo.prs[0].number}"
    query = """query($id: ID!, $cursor: String) { node(id: $id) { ... on PullRequest {
      reviews(first: 5, after: $cursor) { nodes { body } } } } }"""
    with Emulator([repo], git_root, TOKEN) as emu:
        assert "errors" not in emu.graphql({"query": query, "variables": {"id": pr_id}})
        threads = emu.graphql(
            {
                "query": """query($id: ID!) { node(id: $id) { ... on PullRequest {
          reviewThreads(first: 5) { pageInfo { endCursor } } } } }""",
                "variables": {"id": pr_id},
            }
        )
        cursor = threads["data"]["node"]["reviewThreads"]["pageInfo"]["endCursor"]
        wrong = emu.graphql({"query": query, "variables": {"id": pr_id, "cursor": cursor}})
    assert wrong["errors"] and "valid cursor" in wrong["errors"][0]["message"]
