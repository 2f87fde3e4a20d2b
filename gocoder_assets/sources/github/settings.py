"""Plain settings for the GitHub source (the Dagster resource builds one; tests and benchmarks too)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gocoder_assets.licenses import DEFAULT_ALLOWLIST
from gocoder_assets.sources.github.client import RetrySettings


@dataclasses.dataclass(frozen=True)
class GitHubSettings:
    """Everything the source needs. The token is only handed to the HTTP client, never stored elsewhere."""

    token: str = dataclasses.field(repr=False)
    cache_dir: Path
    base_url: str = "https://api.github.com/"
    top_n: int = 5000
    min_stars: int = 1
    licenses: frozenset[str] = DEFAULT_ALLOWLIST
    include_forks: bool = False
    include_archived: bool = False
    max_prs: int = 1000
    max_issues: int = 1000
    pr_page_size: int = 50
    issue_page_size: int = 100
    nested_page_size: int = 20
    min_page_size: int = 5  # a page that times out (502/504) is halved down to this size, then retried as is
    concurrency: int = 4
    replay: bool = False
    request_timeout: float = 30.0
    retry: RetrySettings = dataclasses.field(default_factory=RetrySettings)
