"""A githubkit client that follows GitHub's rate-limit protocol and survives flaky networks.

githubkit already turns 403/429 answers into ``RateLimitExceeded`` with the wait GitHub asks
for (``retry-after``, else ``x-ratelimit-reset``) and retries inside ``GitHub.request``; this
module supplies the retry *decision* (githubkit's ``auto_retry`` hook) so every failure kind
waits the right time, and a response hook that turns the two failures githubkit cannot see at
the HTTP layer — a truncated JSON body and a GraphQL ``RATE_LIMITED`` error inside a 200 — into
exceptions raised within githubkit's retry loop. No hand-written retry loop is needed.

The token only ever lives in the client's auth strategy (an ``Authorization`` header); nothing
here logs headers, request bodies or exception reprs that could carry it.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from githubkit import GitHub
from githubkit.exception import GitHubException, RateLimitExceeded, RequestError, RequestFailed
from githubkit.retry import RetryOption
from githubkit.throttling import LocalThrottler

Log = Callable[[str], None]


class TruncatedBody(Exception):
    """A JSON answer that does not parse: a connection cut mid-body. Retried."""


class GraphQLRateLimited(Exception):
    """A GraphQL answer whose errors say RATE_LIMITED (HTTP 200). Retried after the reset."""

    def __init__(self, wait: dt.timedelta) -> None:
        super().__init__(f"GraphQL rate limited; reset in {wait.total_seconds():.0f}s")
        self.wait = wait


@dataclass(frozen=True)
class RetrySettings:
    """How long to wait between retries. ``wait_scale`` shrinks every wait (tests only)."""

    max_retries: int = 10
    backoff_base: float = 60.0  # GitHub: "wait at least one minute", then exponential
    max_backoff: float = 900.0
    wait_scale: float = 1.0


def _reset_wait(headers: httpx.Headers) -> dt.timedelta | None:
    if "retry-after" in headers:
        return dt.timedelta(seconds=int(headers["retry-after"]))
    if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
        reset = dt.datetime.fromtimestamp(int(headers["x-ratelimit-reset"]), tz=dt.UTC)
        return max(reset - dt.datetime.now(dt.UTC), dt.timedelta())
    return None


class RetryPolicy:
    """githubkit ``RetryDecisionFunc`` implementing GitHub's documented back-off protocol.

    1. obey ``retry-after``; 2. else with ``x-ratelimit-remaining: 0`` wait until the reset;
    3. else (secondary limits without headers, 5xx, resets, timeouts, truncated bodies) wait
    ``backoff_base`` and double per retry. Anything else (404, 401, validation) is not retried.
    """

    def __init__(self, settings: RetrySettings, log: Log) -> None:
        self.settings, self.log = settings, log

    def _backoff(self, retry_count: int) -> dt.timedelta:
        s = self.settings
        return dt.timedelta(seconds=min(s.backoff_base * 2**retry_count, s.max_backoff))

    def wait_for(self, exc: GitHubException, retry_count: int) -> dt.timedelta | None:
        """The wait before the next try, or None when this failure must not be retried."""
        if isinstance(exc, RateLimitExceeded):  # githubkit computed retry-after / reset
            has_headers = "retry-after" in exc.response.headers or "x-ratelimit-reset" in exc.response.headers
            return exc.retry_after if has_headers else self._backoff(retry_count)
        if isinstance(exc, RequestFailed):
            status = exc.response.status_code
            if status in (403, 429) and "rate limit" in exc.response.text.lower():
                return _reset_wait(exc.response.headers) or self._backoff(retry_count)  # secondary limit
            return self._backoff(retry_count) if status >= 500 else None
        if isinstance(exc, RequestError):  # timeouts, resets, truncated bodies, GraphQL RATE_LIMITED
            cause = exc.exc
            if isinstance(cause, GraphQLRateLimited):
                return cause.wait
            if isinstance(cause, httpx.TransportError | TruncatedBody):
                return self._backoff(retry_count)
        return None

    def __call__(self, exc: GitHubException, retry_count: int) -> RetryOption:
        wait = self.wait_for(exc, retry_count) if retry_count < self.settings.max_retries else None
        if wait is None:
            return RetryOption(False)
        # At least a second (a reset that just passed), and never zero: githubkit sleeps 60 s on a falsy wait.
        scaled = max(max(wait, dt.timedelta(seconds=1)) * self.settings.wait_scale, dt.timedelta(microseconds=1))
        cause = type(exc.exc).__name__ if isinstance(exc, RequestError) and not isinstance(exc, RequestFailed) \
            else type(exc).__name__
        self.log(f"GitHub API: {cause}; retry {retry_count + 1}/{self.settings.max_retries} in "
                 f"{scaled.total_seconds():.1f}s")
        return RetryOption(True, scaled)


class Budget:
    """The latest rate-limit headers seen, per resource (core, search, graphql). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.remaining: dict[str, int] = {}
        self.requests = 0

    def observe(self, response: httpx.Response) -> None:
        with self._lock:
            self.requests += 1
            if "x-ratelimit-remaining" in response.headers:
                resource = response.headers.get("x-ratelimit-resource", "core")
                self.remaining[resource] = int(response.headers["x-ratelimit-remaining"])

    def summary(self) -> str:
        with self._lock:
            left = ", ".join(f"{k} {v}" for k, v in sorted(self.remaining.items())) or "unknown"
            return f"{self.requests} API requests so far; remaining budget: {left}"


def _check_body(budget: Budget) -> Callable[[httpx.Response], None]:
    def hook(response: httpx.Response) -> None:
        response.read()
        budget.observe(response)
        if "json" not in response.headers.get("content-type", "") or not response.content:
            return
        try:
            data = json.loads(response.content)
        except ValueError as e:
            raise TruncatedBody(f"unparseable JSON from {response.request.url.path}") from e
        errors = data.get("errors") if isinstance(data, dict) else None
        if isinstance(errors, list) and any(isinstance(x, dict) and x.get("type") in ("RATE_LIMITED", "RATE_LIMIT")
                                            for x in errors):
            raise GraphQLRateLimited(_reset_wait(response.headers) or dt.timedelta(seconds=60))

    return hook


def make_client(token: str, base_url: str, *, concurrency: int, timeout: float, retry: RetrySettings,
                log: Log, budget: Budget) -> GitHub:
    """A sync githubkit client: at most ``concurrency`` requests in flight, protocol-following retries."""
    return GitHub(
        token,
        base_url=base_url,
        timeout=timeout,
        http_cache=False,  # our own per-partition archive replaces it
        throttler=LocalThrottler(concurrency),
        auto_retry=RetryPolicy(retry, log),
        event_hooks={"response": [_check_body(budget)]},
        user_agent="gocoder",
    )
