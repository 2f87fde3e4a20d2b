"""The emulator charges GitHub's published GraphQL point formula, so the collector's cost is measured honestly.

Formula (docs.github.com, "Rate limits and node limits for the GraphQL API"): a connection needs as many
requests as the product of the ``first``/``last`` of the connections above it; sum, divide by 100, round
to the nearest whole number (half up here), minimum 1. The PR page the source sends
(``first: 50``, ``nested: 20``) needs 1 + 50 + 50 + 50 + 50 x 20 = 1,151 requests: 12 points.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gocoder_assets.sources.github.client import RetrySettings
from gocoder_assets.sources.github.queries import PULL_REQUESTS, REPOSITORY_HEADS
from gocoder_assets.sources.github.source import GitHubSource
from gocoder_assets_tests.github_emulator import Emulator, ensure_schema, load_schema, source_settings
from gocoder_assets_tests.github_emulator_cost import connection_requests, query_cost
from gocoder_assets_tests.github_emulator_data import Repo, widget_repo

TOKEN = "ghp_costTestToken0007"
PR_PAGE_COST = 12  # (1 + 3 x 50 + 50 x 20) / 100 = 11.51 -> 12
IDS = [f"R_{i:08d}" for i in range(50)]


@pytest.fixture(scope="module")
def schema():
    ensure_schema()
    return load_schema()


DOCS_EXAMPLE = """query { viewer { login repositories(first: 100) { edges { node { id
  issues(first: 50) { edges { node { id labels(first: 60) { edges { node { id name } } } } } } } } } } }"""


@pytest.mark.parametrize(
    ("query", "variables", "cost"),
    [
        (DOCS_EXAMPLE, None, 51),  # GitHub's own worked example: 1 + 100 + 5,000 = 5,101 requests
        ("query { viewer { login } rateLimit { cost } }", None, 1),  # no connection: the minimum
        (REPOSITORY_HEADS, {"ids": IDS}, 1),  # nodes(ids:) with no connection inside: the minimum
        # variables, and a declared default: 1 + 100 + 100 = 201 -> 2; with $n = 50: 101 -> 1
        (
            'query($n: Int!) { repository(owner: "a", name: "b") { issues(first: $n) { nodes { '
            "comments(first: 30) { totalCount } labels(first: 10) { totalCount } } } } }",
            {"n": 100},
            2,
        ),
        (
            'query($n: Int = 50) { repository(owner: "a", name: "b") { issues(first: $n) { nodes { '
            "comments(first: 30) { totalCount } labels(first: 10) { totalCount } } } } }",
            None,
            1,
        ),
        # fragments (named and inline): issues 1 + comments 100 + reactions 100 x 10 = 1,101 -> 11
        (
            'query { repository(owner: "a", name: "b") { issues(first: 100) { nodes { ...I } } } } '
            "fragment I on Issue { comments(first: 10) { nodes { ... on IssueComment { "
            "reactions(first: 100) { totalCount } } } } }",
            None,
            11,
        ),
        # nodes(ids:) multiplies what is nested (3 ids): issues 3 + comments 300 = 303 -> 3
        (
            "query($ids: [ID!]!) { nodes(ids: $ids) { ... on Repository { issues(first: 100) { nodes { "
            "comments(first: 100) { totalCount } } } } } }",
            {"ids": IDS[:3]},
            3,
        ),
        # aliased copies count each: 5 x 50 = 250 -> 2.5, rounded half up -> 3
        (
            "query($ids: [ID!]!) { nodes(ids: $ids) { ... on Repository { "
            + " ".join(f"i{k}: issues(first: 1) {{ totalCount }}" for k in range(5))
            + " } } }",
            {"ids": IDS},
            3,
        ),
    ],
)
def test_cost_formula_on_hand_computed_queries(schema, query: str, variables, cost: int) -> None:
    assert query_cost(schema, query, variables) == cost


def test_a_connection_merged_from_two_selections_counts_once(schema) -> None:
    q = 'query { repository(owner: "a", name: "b") { issues(first: 10) { totalCount } '
    q += "issues(first: 10) { nodes { id } } } }"
    assert connection_requests(schema, q) == {("repository", "issues"): 1}


def test_the_sources_pr_page_costs_twelve_points(schema) -> None:
    requests = connection_requests(schema, PULL_REQUESTS, {"first": 50, "nested": 20})
    assert sorted(requests.values()) == [1, 50, 50, 50, 1000]
    assert query_cost(schema, PULL_REQUESTS, {"first": 50, "nested": 20}) == PR_PAGE_COST


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory, schema) -> tuple[Path, list[Repo]]:
    git_root = tmp_path_factory.mktemp("cost-git")
    return git_root, [widget_repo(git_root), widget_repo(git_root, repo_id=2, name="big", n_prs=120, stars=800)]


def test_rate_limit_reports_the_cost_and_a_decreasing_budget_per_token(repos) -> None:
    git_root, fixture = repos
    payload = {
        "query": PULL_REQUESTS,
        "variables": {"owner": "acme", "name": "widget", "first": 50, "nested": 20},
    }
    with Emulator(fixture, git_root, TOKEN) as emu:
        first, second = (emu.graphql(payload)["data"]["rateLimit"] for _ in range(2))
        other = emu.graphql(payload, token="ghp_anotherToken")["data"]["rateLimit"]
    assert first["cost"] == second["cost"] == PR_PAGE_COST
    assert (first["remaining"], second["remaining"]) == (5000 - PR_PAGE_COST, 5000 - 2 * PR_PAGE_COST)
    assert other["remaining"] == 5000 - PR_PAGE_COST, "each token has its own 5,000 points"
    assert emu.points_used == 3 * PR_PAGE_COST


def test_hundred_prs_with_discussion_cost_at_most_three_requests_and_25_points(repos, tmp_path: Path) -> None:
    """Two PR pages (12 points each) and at most one follow-up at the minimum: N = 2 x 12 + 1 = 25."""
    git_root, fixture = repos
    with Emulator(fixture, git_root, TOKEN) as emu:
        source = GitHubSource(source_settings(emu, tmp_path, max_prs=100, max_issues=0), log=lambda _: None)
        repo = next(r for r in source.list_repos() if r.full_name == "acme/big")
        requests, points = emu.api_requests(), emu.points_used
        records = list(source.collect(repo))
        requests, points = emu.api_requests() - requests, emu.points_used - points
    assert sum(r["kind"] == "change" for r in records) == 99
    assert requests <= 3, emu.counts
    assert points <= 2 * PR_PAGE_COST + 1, points


def test_an_exhausted_budget_answers_rate_limited_and_the_source_waits_for_the_reset(repos, tmp_path: Path) -> None:
    """12 points per 1-second window: the PR page (12) and each follow-up find the window spent, get
    GitHub's RATE_LIMITED answer (x-ratelimit-remaining 0 and the reset), and are sent again after it."""
    git_root, fixture = repos
    logs: list[str] = []
    with Emulator(fixture, git_root, TOKEN) as emu:
        emu.graph.points.limit, emu.graph.points.window = PR_PAGE_COST, 1.0
        settings = source_settings(emu, tmp_path, max_issues=0, retry=RetrySettings(wait_scale=1.0))
        source = GitHubSource(settings, log=logs.append)
        repo = next(r for r in source.list_repos() if r.full_name == "acme/widget")
        records = list(source.collect(repo))
    assert emu.rate_limited >= 1 and any("GraphQLRateLimited" in line for line in logs), logs
    assert sum(r["kind"] == "change" for r in records) == 12
    assert emu.invalid_queries == []
