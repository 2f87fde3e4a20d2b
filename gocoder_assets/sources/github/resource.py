"""``GitHubResource``: the `source` resource when a GitHub token is configured.

Bind ``token`` with ``dg.EnvVar("GITHUB_TOKEN")``: Dagster then records only the variable's
name in run config and the UI, never its value. Every other field has a production default;
tests shrink the waits (``retry_wait_scale``) and point ``base_url`` at a loopback emulator.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from gocoder_assets.licenses import DEFAULT_ALLOWLIST
from gocoder_assets.resources import RepoSourceResource
from gocoder_assets.sources.base import RepoSource
from gocoder_assets.sources.github.client import RetrySettings
from gocoder_assets.sources.github.settings import GitHubSettings
from gocoder_assets.sources.github.source import GitHubSource


class GitHubResource(RepoSourceResource):
    """Repositories, PRs, issues and code from GitHub (REST search, GraphQL, git).

    ``mode``: ``live`` (fetch what the archive lacks) or ``replay`` (re-derive records from the
    archive in ``cache_dir`` with zero API calls; fails naming what is missing).
    """

    token: str = Field(description="GitHub token (fine-grained, public repositories, read-only).")
    base_url: str = "https://api.github.com/"
    top_n: int = 5000
    min_stars: int = 1
    licenses: list[str] = Field(default=sorted(DEFAULT_ALLOWLIST), description="Allowed SPDX ids.")
    include_forks: bool = False
    include_archived: bool = False
    max_prs: int = Field(default=1000, description="Merged/closed PRs per repository, newest first.")
    max_issues: int = 1000
    pr_page_size: int = Field(default=50, description="PRs per GraphQL request (≤ 100).")
    concurrency: int = Field(default=4, description="API requests in flight at most.")
    cache_dir: str = Field(default="data/github_api", description="Raw API archive and clones, per partition.")
    mode: str = "live"
    request_timeout: float = 30.0
    max_retries: int = 10
    backoff_base: float = Field(default=60.0, description="First wait (s) when GitHub gives no reset time.")
    retry_wait_scale: float = Field(default=1.0, description="Multiplies every wait; tests only.")

    def settings(self) -> GitHubSettings:
        if self.mode not in ("live", "replay"):
            raise ValueError(f"mode must be 'live' or 'replay', not {self.mode!r}")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not 1 <= self.pr_page_size <= 100:
            raise ValueError("pr_page_size must be within 1..100 (GitHub's `first` limit)")
        if not self.token and self.mode == "live":
            raise ValueError("GitHubResource needs a token in live mode (set GITHUB_TOKEN)")
        return GitHubSettings(
            token=self.token,
            cache_dir=Path(self.cache_dir),
            base_url=self.base_url,
            top_n=self.top_n,
            min_stars=self.min_stars,
            licenses=frozenset(self.licenses),
            include_forks=self.include_forks,
            include_archived=self.include_archived,
            max_prs=self.max_prs,
            max_issues=self.max_issues,
            pr_page_size=self.pr_page_size,
            concurrency=self.concurrency,
            replay=self.mode == "replay",
            request_timeout=self.request_timeout,
            retry=RetrySettings(
                max_retries=self.max_retries, backoff_base=self.backoff_base, wait_scale=self.retry_wait_scale
            ),
        )

    def get_source(self) -> RepoSource:
        logger = dg.get_dagster_logger("gocoder.github")
        return GitHubSource(self.settings(), log=logger.info)


def github_resource_from_env(env: dict[str, str]) -> GitHubResource | None:
    """The `source` resource when ``GITHUB_TOKEN`` is set (the only switch), else None.

    The token itself is bound through ``dg.EnvVar`` so Dagster resolves it at launch and records only
    the variable's name. Optional: GOCODER_GITHUB_TOP_N, GOCODER_GITHUB_MAX_PRS, GOCODER_GITHUB_MAX_ISSUES,
    GOCODER_GITHUB_MODE (live | replay). The archive goes under the data folder (GOCODER_DATA_DIR).
    """
    if not env.get("GITHUB_TOKEN"):
        return None
    return GitHubResource(
        token=dg.EnvVar("GITHUB_TOKEN"),
        cache_dir=str(Path(env.get("GOCODER_DATA_DIR", "data")) / "github_api"),
        top_n=int(env.get("GOCODER_GITHUB_TOP_N", "5000")),
        max_prs=int(env.get("GOCODER_GITHUB_MAX_PRS", "1000")),
        max_issues=int(env.get("GOCODER_GITHUB_MAX_ISSUES", "1000")),
        mode=env.get("GOCODER_GITHUB_MODE", "live"),
    )
