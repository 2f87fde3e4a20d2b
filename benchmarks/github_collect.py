"""Collect N pull requests from the loopback GitHub emulator two ways and compare.

1. gocoder's way: GraphQL pages of 50 PRs with comments, reviews and review threads nested, code
   from a blob-less git clone (GitHubSource.collect, end to end: records with diffs and before/after).
2. The naive REST way: list closed PRs (100 a page), then per PR its issue comments, reviews,
   review comments and files (githubkit's typed REST methods, following pagination).

Prints API requests per 100 PRs and PRs/s for both, and the ratios. ``--latency`` adds a fixed
delay to every API answer (GitHub's is typically 0.1–0.5 s), which is what makes request count
dominate wall time in real use.

    .venv/bin/python benchmarks/github_collect.py --prs 500 --latency 0.05
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from githubkit import GitHub

from gocoder_assets.sources.github.source import GitHubSource
from gocoder_assets_tests.github_emulator import Emulator, ensure_schema, source_settings
from gocoder_assets_tests.github_emulator_data import BASE_FILES, Repo, build_git, widget_prs

TOKEN = "benchmark-token"


def gocoder_way(emu: Emulator, cache: Path, n: int) -> tuple[int, float]:
    source = GitHubSource(source_settings(emu, cache, max_prs=n, max_issues=0), log=lambda _: None)
    repo = source.list_repos()[0]
    before, start = emu.api_requests(), time.perf_counter()
    prs = sum(r["kind"] == "change" for r in source.collect(repo))
    return emu.api_requests() - before, prs / (time.perf_counter() - start)


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
                "threads": list(gh.rest.paginate(gh.rest.pulls.list_review_comments, pull_number=pr.number,
                                                 **args)),
                "files": list(gh.rest.paginate(gh.rest.pulls.list_files, pull_number=pr.number, **args)),
            }
            done += bool(record)
    return emu.api_requests() - before, done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prs", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every API answer")
    args = parser.parse_args()
    ensure_schema()
    with tempfile.TemporaryDirectory(prefix="gocoder-bench-") as tmp:
        repo = Repo(1, "acme", "widget", 1000, "MIT", prs=widget_prs(args.prs))
        build_git(repo, Path(tmp) / "git", BASE_FILES)
        with Emulator([repo], Path(tmp) / "git", TOKEN, delay=args.latency) as emu:
            ours_requests, ours_rate = gocoder_way(emu, Path(tmp) / "cache", args.prs)
            naive_requests, naive_rate = naive_way(emu, args.prs)
    per100 = lambda requests: 100 * requests / args.prs  # noqa: E731
    print(f"{args.prs} PRs, {args.latency * 1000:.0f} ms per API answer")
    print(f"{'':24}{'requests/100 PRs':>18}{'PRs/s':>10}")
    print(f"{'gocoder (GraphQL + git)':24}{per100(ours_requests):>18.1f}{ours_rate:>10.1f}")
    print(f"{'naive REST':24}{per100(naive_requests):>18.1f}{naive_rate:>10.1f}")
    print(f"ratio: {naive_requests / ours_requests:.0f}x fewer requests, {ours_rate / naive_rate:.1f}x the PRs/s")


if __name__ == "__main__":
    main()
