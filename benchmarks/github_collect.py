"""Collect N pull requests from the loopback GitHub emulator two ways and compare.

1. gocoder's way: GraphQL pages of 50 PRs with comments, reviews and review threads nested, code
   from a blob-less git clone (GitHubSource.collect, end to end: records with diffs and before/after).
2. The naive REST way: list closed PRs (100 a page), then per PR its issue comments, reviews,
   review comments and files (githubkit's typed REST methods, following pagination).

Prints API requests per 100 PRs and PRs/s for both, and the ratios; for gocoder also GraphQL points per
100 PRs (the emulator's ``points_used``, GitHub's cost formula, where it has one; else the summed
``rateLimit.cost`` of the answers) and, side by side with the first collection, the cost of a second,
incremental one of the unchanged repository and of one after ``--new-prs`` new PRs (requests, points,
git bytes). ``--latency`` adds a fixed
delay to every API answer (GitHub's is typically 0.1–0.5 s), which is what makes request count
dominate wall time in real use.

    .venv/bin/python benchmarks/github_collect.py --prs 500 --latency 0.05
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from githubkit import GitHub

from gocoder_assets.sources.github.source import GitHubSource
from gocoder_assets_tests.github_emulator import Emulator, ensure_schema, source_settings
from gocoder_assets_tests.github_emulator_data import BASE_FILES, Repo, add_pr, build_git, widget_prs

TOKEN = "benchmark-token"


def gocoder_way(emu: Emulator, cache: Path, n: int, stamp: str = "first") -> tuple[dict[str, float], float]:
    """One collection of a fresh listing (``stamp`` names the listing, so each call is a new round): its cost
    (requests, points, git bytes, PRs) and PRs/s."""
    source = GitHubSource(source_settings(emu, cache, max_prs=n, max_issues=0), log=lambda _: None)
    repo = dataclasses.replace(source.list_repos()[0], fetched_at=stamp)
    points = getattr(emu, "points_used", None)
    before, start = emu.api_requests(), time.perf_counter()
    prs = sum(r["kind"] == "change" for r in source.collect(repo))
    rate = prs / (time.perf_counter() - start)
    spent = source.last_cost["graphql_points"] if points is None else emu.points_used - points
    cost = {"requests": emu.api_requests() - before, "points": spent, "git_bytes": source.last_cost["git_bytes"]}
    return {**cost, "prs": prs}, rate


def naive_way(emu: Emulator, n: int) -> tuple[int, float]:
    before, start, done = emu.api_requests(), time.perf_counter(), 0
    with GitHub(TOKEN, base_url=emu.base_url) as gh:
        pulls = gh.rest.paginate(gh.rest.pulls.list, owner="acme", repo="widget", state="closed", per_page=100)
        for pr in pulls:
            if done == n:
                break
            args = {"owner": "acme", "repo": "widget", "per_page": 100}
            record = {
                "pr": pr.number,
                "comments": list(gh.rest.paginate(gh.rest.issues.list_comments, issue_number=pr.number, **args)),
                "reviews": list(gh.rest.paginate(gh.rest.pulls.list_reviews, pull_number=pr.number, **args)),
                "threads": list(gh.rest.paginate(gh.rest.pulls.list_review_comments, pull_number=pr.number, **args)),
                "files": list(gh.rest.paginate(gh.rest.pulls.list_files, pull_number=pr.number, **args)),
            }
            done += bool(record)
    return emu.api_requests() - before, done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prs", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every API answer")
    parser.add_argument("--new-prs", type=int, default=10, help="PRs added before the incremental collection")
    args = parser.parse_args()
    ensure_schema()
    with tempfile.TemporaryDirectory(prefix="gocoder-bench-") as tmp:
        git = Path(tmp) / "git"
        repo = Repo(1, "acme", "widget", 1000, "MIT", prs=widget_prs(args.prs))
        build_git(repo, git, BASE_FILES)
        with Emulator([repo], git, TOKEN, delay=args.latency) as emu:
            first, ours_rate = gocoder_way(emu, Path(tmp) / "cache", args.prs)
            second, _ = gocoder_way(emu, Path(tmp) / "cache", args.prs, "second")
            for pr in widget_prs(args.new_prs, first_number=args.prs + 1):
                add_pr(repo, git, dataclasses.replace(pr, created_at=f"2025-01-01T00:{pr.number % 60:02d}:00Z"))
            emu.graph.refresh(repo)
            third, _ = gocoder_way(emu, Path(tmp) / "cache", args.prs, "third")
            naive_requests, naive_rate = naive_way(emu, args.prs)
    ours_requests = first["requests"]
    per100 = lambda requests: 100 * requests / args.prs  # noqa: E731
    print(f"{args.prs} PRs, {args.latency * 1000:.0f} ms per API answer")
    print(f"{'':24}{'requests/100 PRs':>18}{'points/100 PRs':>16}{'PRs/s':>10}")
    print(
        f"{'gocoder (GraphQL + git)':24}{per100(ours_requests):>18.1f}{per100(first['points']):>16.1f}"
        f"{ours_rate:>10.1f}"
    )
    print(f"{'naive REST':24}{per100(naive_requests):>18.1f}{'':>16}{naive_rate:>10.1f}")
    print(f"ratio: {naive_requests / ours_requests:.0f}x fewer requests, {ours_rate / naive_rate:.1f}x the PRs/s")
    print(f"\ngocoder re-collection{'':11}{'requests':>10}{'points':>10}{'git bytes':>12}{'PRs':>7}")
    for label, c in (
        ("first (empty archive)", first),
        ("second (unchanged)", second),
        (f"incremental (+{args.new_prs} PRs)", third),
    ):
        print(f"{label:32}{c['requests']:>10}{c['points']:>10}{c['git_bytes']:>12}{c['prs']:>7}")


if __name__ == "__main__":
    main()
