"""The retry policy computes the waits GitHub's protocol asks for (driven through githubkit itself)."""

from __future__ import annotations

import time

import httpx
import pytest
from githubkit import GitHub
from githubkit.exception import RequestFailed

from gocoder_assets.sources.github.client import Budget, RetryPolicy, RetrySettings, _check_body

OK = httpx.Response(
    200,
    json={"data": {"rateLimit": {"cost": 1}}},
    headers={"x-ratelimit-remaining": "4321", "x-ratelimit-resource": "graphql"},
)


class Recorder(RetryPolicy):
    """The real policy; records each wait it decides, and sleeps none of it (wait_scale 0)."""

    def __init__(self) -> None:
        super().__init__(RetrySettings(wait_scale=0.0, max_retries=4), log=lambda _: None)
        self.waits: list[float] = []

    def wait_for(self, exc, retry_count):  # type: ignore[no-untyped-def]
        wait = super().wait_for(exc, retry_count)
        if wait is not None:
            self.waits.append(wait.total_seconds())
        return wait


def run(*answers: httpx.Response) -> tuple[Recorder, Budget, dict]:
    queue = list(answers)
    policy, budget = Recorder(), Budget()

    def handler(request: httpx.Request) -> httpx.Response:
        answer = queue.pop(0) if queue else OK
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    gh = GitHub(
        "t",
        base_url="https://api.example.invalid/",
        transport=httpx.MockTransport(handler),
        auto_retry=policy,
        http_cache=False,
        event_hooks={"response": [_check_body(budget)]},
    )
    return policy, budget, gh.graphql.request("query { rateLimit { cost } }")


def test_retry_after_is_obeyed() -> None:
    policy, _, data = run(httpx.Response(429, json={"message": "slow down"}, headers={"retry-after": "7"}))
    assert policy.waits == [7.0] and data["rateLimit"]["cost"] == 1


def test_primary_limit_waits_until_reset() -> None:
    reset = int(time.time()) + 30
    policy, _, _ = run(
        httpx.Response(
            403,
            json={"message": "API rate limit exceeded"},
            headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
        )
    )
    assert 27 <= policy.waits[0] <= 30


def test_secondary_limit_and_server_errors_back_off_exponentially_from_a_minute() -> None:
    secondary = httpx.Response(403, json={"message": "You have exceeded a secondary rate limit."})
    policy, _, _ = run(secondary, secondary, httpx.Response(502, text="bad gateway"))
    assert policy.waits == [60.0, 120.0, 240.0]


def test_truncated_json_and_graphql_rate_limited_are_retried() -> None:
    reset = int(time.time()) + 12
    limited = httpx.Response(
        200,
        json={"errors": [{"type": "RATE_LIMITED", "message": "limit"}]},
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
    )
    truncated = httpx.Response(200, content=b'{"data": {"rateLim', headers={"content-type": "application/json"})
    policy, budget, _ = run(limited, truncated)
    assert 9 <= policy.waits[0] <= 12 and policy.waits[1] == 120.0
    assert budget.remaining["graphql"] == 4321 and budget.requests == 3


def test_client_errors_are_not_retried() -> None:
    with pytest.raises(RequestFailed):
        run(httpx.Response(404, json={"message": "Not Found"}))
