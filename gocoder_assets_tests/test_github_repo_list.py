"""repo_list through the Search API: star slices across the 1,000-result cap, exclusions, determinism."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from gocoder_assets.sources.github.source import GitHubSource
from gocoder_assets_tests.github_emulator import Emulator, ensure_schema, source_settings
from gocoder_assets_tests.github_emulator_data import Repo, fake_oid

TOKEN = "ghp_repoListToken0003"


def population(n: int = 2600, seed: int = 5) -> list[Repo]:
    """Go repositories with heavy star ties (like GitHub's long tail), some forks, archived,
    unlicensed, NOASSERTION and non-OSI ones, plus a few in other languages."""
    rng = random.Random(seed)
    licenses = ["MIT"] * 6 + ["Apache-2.0"] * 4 + ["GPL-3.0", "BSD-3-Clause", None, "NOASSERTION", "CC-BY-4.0"]
    repos = []
    for i in range(n):
        stars = 50_000 // (1 + i // 3) + rng.randrange(3)  # long tail with ties
        r = Repo(
            i + 10,
            f"org{i % 97}",
            f"proj{i}",
            stars,
            rng.choice(licenses),
            fork=i % 41 == 0,
            archived=i % 53 == 0,
            language="Rust" if i % 89 == 0 else "Go",
        )
        r.head_oid = fake_oid(r.full_name)
        repos.append(r)
    # 1,200 repositories tied at exactly 3 stars: one star level larger than the search cap
    for j in range(1200):
        r = Repo(n + 10 + j, "tail", f"t{j}", 3, "MIT")
        r.head_oid = fake_oid(r.full_name)
        repos.append(r)
    return repos


def expected(repos: list[Repo], n: int) -> list[str]:
    kept = [
        r
        for r in repos
        if r.language == "Go"
        and not r.fork
        and not r.archived
        and r.license in {"MIT", "Apache-2.0", "GPL-3.0", "BSD-3-Clause"}
    ]
    return [r.full_name for r in sorted(kept, key=lambda r: (-r.stars, r.full_name))[:n]]


@pytest.fixture(scope="module")
def repos() -> list[Repo]:
    ensure_schema()
    return population()


def test_star_slices_cross_the_search_cap(repos: list[Repo], tmp_path: Path) -> None:
    with Emulator(repos, tmp_path, TOKEN) as emu:
        source = GitHubSource(source_settings(emu, tmp_path, top_n=1100), log=lambda _: None)
        listed = source.list_repos()
    names = [r.full_name for r in listed]
    assert names == expected(repos, 1100), "exact top N, stars descending then name"
    assert len(set(names)) == len(names)
    queries = {q for route, body in emu.rest_bodies if route == "rest:search" for q in [body["total_count"]]}
    assert max(queries) > 1000, "the first slice alone exceeds the cap"
    assert emu.counts["rest:search"] > 10, "more than one slice was needed"
    assert emu.counts["graphql:RepositoryHeads"] == 11, "heads in batches of 100"
    first = listed[0]
    assert first.commit_sha == fake_oid(first.full_name) and first.default_branch == "main"
    assert first.url == f"{emu.base_url}{first.full_name}" and first.source == "github" and first.fetched_at
    assert first.license_spdx in {"MIT", "Apache-2.0", "GPL-3.0", "BSD-3-Clause"}
    assert first.license_key == first.license_spdx.lower()  # the emulator keys licenses like GitHub: lower-case


def test_exclusions_are_counted(repos: list[Repo], tmp_path: Path) -> None:
    with Emulator(repos, tmp_path, TOKEN) as emu:
        source = GitHubSource(source_settings(emu, tmp_path, top_n=200), log=lambda _: None)
        listed = source.list_repos()
    assert [r.full_name for r in listed] == expected(repos, 200)
    excluded = source.excluded
    assert excluded["license_unknown"] > 0 and excluded["license_not_allowed"] > 0, excluded
    assert "fork" not in excluded and "archived" not in excluded, "the search qualifiers already drop them"
    seen = [
        r
        for r in repos
        if r.stars >= min(x.stars for x in listed) and r.language == "Go" and not r.fork and not r.archived
    ]
    assert excluded["license_unknown"] >= sum(r.license in (None, "NOASSERTION") for r in seen)
    assert excluded["license_not_allowed"] >= sum(r.license == "CC-BY-4.0" for r in seen)


def test_forks_archived_and_licenses_are_configurable(repos: list[Repo], tmp_path: Path) -> None:
    with Emulator(repos, tmp_path, TOKEN) as emu:
        settings = source_settings(
            emu, tmp_path, top_n=300, include_forks=True, include_archived=True, licenses=frozenset({"MIT"})
        )
        listed = GitHubSource(settings, log=lambda _: None).list_repos()
    by_name = {r.full_name: r for r in repos}
    assert all(r.license_spdx == "MIT" for r in listed)
    assert any(by_name[r.full_name].fork for r in listed) and any(by_name[r.full_name].archived for r in listed)


def test_star_level_larger_than_the_cap_terminates(repos: list[Repo], tmp_path: Path) -> None:
    with Emulator(repos, tmp_path, TOKEN) as emu:
        logs: list[str] = []
        listed = GitHubSource(source_settings(emu, tmp_path, top_n=100_000), log=logs.append).list_repos()
    assert len(listed) == len({r.full_name for r in listed})
    assert any("exactly 3 stars" in line for line in logs), "the lost part of the tied level is reported"
    assert sum(r.stars == 3 for r in listed) <= 1000
