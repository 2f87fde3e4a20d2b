"""Kill a partition's fetch mid-way (SIGKILL, a real process), rerun, and compare with an uninterrupted fetch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gocoder_assets.sources.github.source import GitHubSource
from gocoder_assets.storage import key_to_dirname, read_json
from gocoder_assets_tests.github_emulator import Emulator, ensure_schema, source_settings
from gocoder_assets_tests.github_emulator_data import widget_repo

TOKEN = "ghp_resumeTestToken0002"
PAGE, PRS = 5, 60  # 13 pages of PRs (12 full + the dependabot one on the last)
ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys
from pathlib import Path
from gocoder_assets.sources.github.source import GitHubSource
from gocoder_assets_tests.github_emulator import source_settings

class Emu:  # just what source_settings reads
    def __init__(self, base_url, token):
        self.base_url, self.token = base_url, token

args = json.loads(sys.argv[1])
src = GitHubSource(source_settings(Emu(args["base_url"], args["token"]), Path(args["cache"]), pr_page_size=args["page"],
                                   max_issues=0), log=lambda _: None)
repo = src.list_repos()[0]
for _ in src.collect(repo):
    pass
"""


@pytest.fixture(scope="module")
def repo_and_root(tmp_path_factory: pytest.TempPathFactory):
    ensure_schema()
    git_root = tmp_path_factory.mktemp("resume-git")
    return widget_repo(git_root, n_prs=PRS), git_root


def test_killed_fetch_resumes_without_refetching(repo_and_root, tmp_path: Path) -> None:
    repo, git_root = repo_and_root
    cache = tmp_path / "killed"
    with Emulator([repo], git_root, TOKEN, delay=0.15) as emu:
        args = json.dumps({"base_url": emu.base_url, "token": TOKEN, "cache": str(cache), "page": PAGE})
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        child = subprocess.Popen([sys.executable, "-c", CHILD, args], cwd=ROOT, env=env)
        deadline = time.monotonic() + 60
        while emu.counts["graphql:PullRequests"] < 4 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert emu.counts["graphql:PullRequests"] < 13, "the child must be killed mid-way"
        state = read_json(cache / key_to_dirname("acme/widget") / "state.json")["prs"]
        assert 3 <= state["pages"] < 13 and not state["done"]

        time.sleep(0.3)  # a request the child sent before dying may still be read and answered: let it count
        while emu.in_flight:
            time.sleep(0.01)
        emu.delay = 0.0
        answered = emu.counts["graphql:PullRequests"]
        source = GitHubSource(source_settings(emu, cache, pr_page_size=PAGE, max_issues=0), log=lambda _: None)
        info = source.list_repos()[0]
        resumed = list(source.collect(info))
        refetched = emu.counts["graphql:PullRequests"] - answered
        assert refetched == 13 - state["pages"], "only the pages the killed run had not archived are fetched"

        whole = GitHubSource(
            source_settings(emu, tmp_path / "whole", pr_page_size=PAGE, max_issues=0), log=lambda _: None
        )
        uninterrupted = list(whole.collect(info))
    assert resumed == uninterrupted
    numbers = [r["number"] for r in resumed if r["kind"] == "change"]
    assert len(numbers) == len(set(numbers)) == PRS, "no duplicates, no gaps"
