"""The emulator is honest: GitHub's real GraphQL schema, githubkit's REST models, auth, git over HTTP, faults."""

from __future__ import annotations

import subprocess
from pathlib import Path

import graphql
import httpx
import pytest
from githubkit import GitHub
from pydantic import TypeAdapter

from gocoder_assets.sources.github.queries import ALL_QUERIES
from gocoder_assets_tests.github_emulator import Emulator, ensure_schema, load_schema
from gocoder_assets_tests.github_emulator_data import widget_repo
from gocoder_assets_tests.github_emulator_rest import ROUTE_MODELS

TOKEN = "ghp_emulatorHonestyToken0004"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    ensure_schema()
    git_root = tmp_path_factory.mktemp("emulator-git")
    return git_root, [widget_repo(git_root, n_prs=4)]


@pytest.mark.parametrize("name", sorted(ALL_QUERIES))
def test_every_project_query_validates_against_githubs_schema(name: str) -> None:
    ensure_schema()
    errors = graphql.validate(load_schema(), graphql.parse(ALL_QUERIES[name]))
    assert errors == [], [e.message for e in errors]


def test_an_invalid_query_is_rejected_like_github_would(setup) -> None:
    git_root, repos = setup
    with Emulator(repos, git_root, TOKEN) as emu, GitHub(TOKEN, base_url=emu.base_url) as gh:
        answer = gh.request("POST", "/graphql", json={"query": 'query { repository(owner: "acme") { nope } }'})
    assert answer.json()["errors"] and len(emu.invalid_queries) >= 2  # missing argument, unknown field


def test_rest_answers_parse_into_githubkit_models(setup) -> None:
    """Every REST route the project or the benchmark's naive client uses, through githubkit's typed methods."""
    git_root, repos = setup
    with Emulator(repos, git_root, TOKEN) as emu, GitHub(TOKEN, base_url=emu.base_url) as gh:
        found = gh.rest.search.repos(q="language:Go stars:>=1", sort="stars", order="desc", per_page=100)
        assert found.parsed_data.items[0].full_name == "acme/widget"
        pulls = gh.rest.pulls.list("acme", "widget", state="closed", per_page=100).parsed_data
        assert {p.number for p in pulls} == {1, 2, 3, 4, 5}
        for n in (2, 4):
            assert gh.rest.issues.list_comments("acme", "widget", n).parsed_data
            assert gh.rest.pulls.list_reviews("acme", "widget", n).parsed_data
            assert gh.rest.pulls.list_review_comments("acme", "widget", n).parsed_data
            files = gh.rest.pulls.list_files("acme", "widget", n).parsed_data
            assert "feature" in files[0].filename and files[0].patch
        tree = gh.rest.git.get_tree("acme", "widget", repos[0].head_oid, recursive="1").parsed_data
        assert not tree.truncated and any(e.type == "blob" and e.size for e in tree.tree)
    assert {route for route, _ in emu.rest_bodies} == set(ROUTE_MODELS)
    for route, body in emu.rest_bodies:
        model = ROUTE_MODELS[route]
        TypeAdapter(model).validate_python(body)
        item_model = model.__args__[0] if hasattr(model, "__args__") else None
        field = "tree" if "tree" in getattr(model, "model_fields", {}) else "items"
        items = body if item_model else body[field]
        declared_model = item_model or model.model_fields[field].annotation.__args__[0]
        names = {f.alias or n for n, f in declared_model.model_fields.items()}
        assert all(set(item) <= names for item in items), f"{route}: fields githubkit does not know"


def test_wrong_token_is_refused(setup) -> None:
    git_root, repos = setup
    with Emulator(repos, git_root, TOKEN) as emu:
        answer = httpx.post(
            f"{emu.base_url}graphql", json={"query": "{ rateLimit { cost } }"}, headers={"Authorization": "token wrong"}
        )
    assert answer.status_code == 401


def test_git_is_served_over_smart_http(setup, tmp_path: Path) -> None:
    git_root, repos = setup
    with Emulator(repos, git_root, TOKEN) as emu:
        url = f"{emu.base_url}acme/widget.git"
        out = subprocess.run(["git", "-c", "protocol.version=2", "ls-remote", url], capture_output=True, check=True)
    refs = out.stdout.decode()
    assert "refs/heads/main" in refs and "refs/pull/3/head" in refs and emu.counts["git"] >= 1


def test_faults_are_seeded_and_about_ten_percent(setup) -> None:
    git_root, repos = setup
    picks = []
    for _ in range(2):
        with Emulator(repos, git_root, TOKEN, fault_rate=0.1, seed=11) as emu:
            picks.append([emu.pick_fault("graphql:X") for _ in range(1000)])
    assert picks[0] == picks[1]
    assert 70 <= sum(p is not None for p in picks[0]) <= 130
