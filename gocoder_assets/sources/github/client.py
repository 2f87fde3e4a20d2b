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

import contextvars
import datetime as dt
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from githubkit import GitHub
from githubkit.exception import GitHubException, GraphQLFailed, RateLimitExceeded, RequestError, RequestFailed
from githubkit.retry import RetryOption
from githubkit.throttling import LocalThrottler

from gocoder_assets.sources.github.archive import replace_surrogates

Log = Callable[[str], None]
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")  # also matches valid pairs: only a cheap pre-check


class TruncatedBody(Exception):
    """A JSON answer that does not parse: a connection cut mid-body. Retried."""


# GraphQL errors that concern one item (a repository deleted or DMCA-blocked since the search), not the
# query: the rest of the answer is good, so it is kept and the item excluded under this reason.
ITEM_ERRORS = {"NOT_FOUND": "not_found", "FORBIDDEN": "forbidden"}


# Set while a GraphQL page could still be asked for in a smaller size: a 502/504 (GitHub's 10-second
# limit) is then not retried as is, so the caller halves ``first`` instead (see ``GitHubSource``).
PAGE_CAN_SHRINK: contextvars.ContextVar[bool] = contextvars.ContextVar("page_can_shrink", default=False)
TIMEOUT_STATUSES = (502, 504)


class GitHubQueryError(Exception):
    """A GraphQL answer whose errors are not about single items (githubkit's ``GraphQLFailed`` has no text)."""


class GitHubRequestError(Exception):
    """A GitHub failure explained: which repository, or that the token is bad. Never carries the token."""


def describe_failure(status: int, headers: httpx.Headers | dict[str, str], what: str) -> str:
    """A human sentence for a non-retried HTTP failure of a request about ``what`` (a repository or a step)."""
    if status == 401:
        return (
            f"{what}: GitHub rejected the token (401 Bad credentials): it is invalid, expired or revoked; "
            "create a new one and set it in the environment"
        )
    if status == 301:
        return f"{what}: the repository moved (301) to {headers.get('location', 'a new name')}; re-list repositories"
    if status == 404:
        return f"{what}: not found on GitHub (404): deleted, renamed or made private since it was listed"
    if status == 451:
        return f"{what}: unavailable for legal reasons (451, e.g. a DMCA takedown)"
    if status == 403:
        return f"{what}: forbidden (403): the token lacks access to it"
    return f"{what}: GitHub answered HTTP {status}"


def explained(exc: RequestFailed, what: str) -> GitHubRequestError:
    """``exc`` as a ``GitHubRequestError`` (raise it ``from None``: the original holds the request, headers
    included)."""
    return GitHubRequestError(describe_failure(exc.response.status_code, exc.response.headers, what))


def graphql_partial(gh: GitHub, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """The answer's data; item errors (``ITEM_ERRORS``) are kept beside it under ``_errors`` (not a field
    name GraphQL allows at the root, so it cannot collide) instead of failing the whole request."""
    try:
        return gh.graphql.request(query, variables)
    except GraphQLFailed as e:
        errors = e.response.errors or []
        summary = "; ".join(f"{x.type or 'ERROR'}: {x.message}" for x in errors)
        if e.response.data is None or any(x.type not in ITEM_ERRORS for x in errors):
            raise GitHubQueryError(f"GitHub GraphQL errors: {summary}") from None
        kept = [{"type": x.type, "path": list(x.path or []), "message": x.message} for x in errors]
        return {**e.response.data, "_errors": kept}


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
            if status in TIMEOUT_STATUSES and PAGE_CAN_SHRINK.get():
                return None  # a heavy page: a smaller one is asked for, not the same one again
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
        cause = (
            type(exc.exc).__name__
            if isinstance(exc, RequestError) and not isinstance(exc, RequestFailed)
            else type(exc).__name__
        )
        self.log(
            f"GitHub API: {cause}; retry {retry_count + 1}/{self.settings.max_retries} in {scaled.total_seconds():.1f}s"
        )
        return RetryOption(True, scaled)


class Budget:
    """The latest rate-limit headers seen, per resource (core, search, graphql). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.remaining: dict[str, int] = {}
        self.requests = 0
        self.surrogates = 0  # lone surrogates GitHub sent, replaced by U+FFFD before parsing

    def count_surrogates(self, n: int) -> None:
        with self._lock:
            self.surrogates += n

    def observe(self, response: httpx.Response) -> None:
        with self._lock:
            self.requests += 1
            if "x-ratelimit-remaining" in response.headers:
                resource = response.headers.get("x-ratelimit-resource", "core")
                self.remaining[resource] = int(response.headers["x-ratelimit-remaining"])

    def summary(self) -> str:
        with self._lock:
            left = ", ".join(f"{k} {v}" for k, v in sorted(self.remaining.items())) or "unknown"
            fixed = f"; {self.surrogates} lone surrogates replaced by U+FFFD" if self.surrogates else ""
            return f"{self.requests} API requests so far; remaining budget: {left}{fixed}"


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
        if _ESCAPED_SURROGATE.search(response.content):
            # githubkit's parser (pydantic's) rejects lone surrogates ("\ud800", valid JSON, seen in user
            # text), failing the page on every try: hand it the same answer with U+FFFD in their place.
            data, found = replace_surrogates(data)
            if found:
                budget.count_surrogates(found)
                response._content = json.dumps(data, ensure_ascii=False).encode("utf-8")
        errors = data.get("errors") if isinstance(data, dict) else None
        if isinstance(errors, list) and any(
            isinstance(x, dict) and x.get("type") in ("RATE_LIMITED", "RATE_LIMIT") for x in errors
        ):
            raise GraphQLRateLimited(_reset_wait(response.headers) or dt.timedelta(seconds=60))

    return hook


def make_client(
    token: str, base_url: str, *, concurrency: int, timeout: float, retry: RetrySettings, log: Log, budget: Budget
) -> GitHub:
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
