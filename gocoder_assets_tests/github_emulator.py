"""A GitHub emulator on 127.0.0.1 for the GitHub source's tests and benchmark.

One threaded HTTP server speaks the parts of GitHub the project uses: REST repository search
(and, for the benchmark's naive client, the per-PR REST listings), GraphQL — executed by
graphql-core against GitHub's published schema, so an invalid query fails exactly as it would
on github.com — and git's smart HTTP protocol through ``git http-backend`` for clone URLs.
It checks the token, counts requests per route, tracks requests in flight, and injects faults
(429, primary/secondary 403, 502/503, connection reset, read timeout, truncated JSON, GraphQL
RATE_LIMITED) into a seeded fraction of API requests.
"""

from __future__ import annotations

import collections
import contextlib
import email.utils
import gzip
import json
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gocoder_assets.sources.github.client import RetrySettings
from gocoder_assets.sources.github.settings import GitHubSettings
from gocoder_assets_tests.github_emulator_cost import RateLimited
from gocoder_assets_tests.github_emulator_data import Repo
from gocoder_assets_tests.github_emulator_graphql import SCHEMA_FILE, Graph, load_schema
from gocoder_assets_tests.github_emulator_rest import RestRoutes

__all__ = ["FAULTS", "Emulator", "ensure_schema", "load_schema", "source_settings"]

FAULTS = ("429", "403_primary", "403_secondary", "502", "503", "reset", "timeout", "truncated", "gql_limited")


class Emulator:
    def __init__(
        self,
        repos: list[Repo],
        git_root: Path,
        token: str,
        *,
        fault_rate: float = 0.0,
        seed: int = 0,
        timeout_sleep: float = 1.2,
        delay: float = 0.0,
        round_robin: bool = False,
    ) -> None:
        """``fault_rate`` of API requests (seeded) get a fault, chosen at random or, with ``round_robin``, each
        kind in turn (so a short run sees all of them). ``delay`` slows every API answer down."""
        self.repos = {r.full_name: r for r in repos}
        self.git_root, self.token = git_root, token
        self.fault_rate, self.timeout_sleep, self.delay = fault_rate, timeout_sleep, delay
        self.rng = random.Random(seed)
        self.round_robin, self._turn = round_robin, 0
        self.heavy: dict[str, int] = {}  # full name -> largest PR page GitHub computes in time (else 502)
        self.graph = Graph(self.repos)  # before serving: building the schema takes a second
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()  # answered requests per route
        self.faults: collections.Counter[str] = collections.Counter()
        self.invalid_queries: list[str] = []
        self.rate_limited = 0  # GraphQL queries refused for want of points (not injected faults)
        self.rest_bodies: list[tuple[str, Any]] = []  # (route, JSON body) of every answered REST request
        self.in_flight = self.max_in_flight = 0
        self.remaining = collections.Counter({"core": 5000, "search": 30, "graphql": 5000})
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.emulator = self  # type: ignore[attr-defined]
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.rest = RestRoutes(self)
        # git side (test_github_partial_clone): every oid a fetch asked for; oids whose fetch is refused
        self.git_wants: collections.Counter[str] = collections.Counter()
        self.refused_oids: set[str] = set()
        self.git_status: dict[str, int] = {}  # full name -> HTTP status its git endpoint answers (404, 451 …)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Emulator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def html_url(self, repo: Repo) -> str:
        return f"{self.base_url}{repo.full_name}"

    def api_requests(self, prefix: str = "") -> int:
        with self.lock:
            return sum(n for k, n in self.counts.items() if k.startswith(prefix) and not k.startswith("git"))

    # --- GraphQL -------------------------------------------------------------------------------
    def unavailable(self, full_name: str, kind: str) -> None:
        """From now on ``full_name`` answers like a deleted ("NOT_FOUND") or DMCA-blocked ("FORBIDDEN")
        repository does; search still lists it (the listing went stale)."""
        self.graph.unavailable[full_name] = kind

    def too_heavy(self, route: str, payload: dict[str, Any]) -> bool:
        """Whether this PullRequests page is over the repository's ``heavy`` size: GitHub's 10-second limit."""
        v = payload.get("variables") or {}
        limit = self.heavy.get(f"{v.get('owner')}/{v.get('name')}")
        too = route == "graphql:PullRequests" and limit is not None and int(v.get("first") or 0) > limit
        if too:
            with self.lock:
                self.faults["heavy_502"] += 1
        return too

    @property
    def points_used(self) -> int:
        """GraphQL points charged so far (GitHub's formula, ``github_emulator_cost``), all tokens together."""
        return self.graph.points.used

    def graphql(self, payload: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        return self.graphql_answer(payload, token)[0]

    def graphql_answer(self, payload: dict[str, Any], token: str | None = None) -> tuple[dict[str, Any], dict]:
        """The JSON answer and its rate-limit headers: the points left, or GitHub's RATE_LIMITED answer
        (HTTP 200, ``x-ratelimit-remaining: 0`` and the reset) when the query costs more than is left."""
        token = self.token if token is None else token
        try:
            out, invalid = self.graph.execute(payload, token)
        except RateLimited as e:
            with self.lock:
                self.rate_limited += 1
            error = {"type": "RATE_LIMITED", "message": f"API rate limit exceeded for token. {e}"}
            return {"data": None, "errors": [error]}, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(e.reset)}
        if invalid:
            with self.lock:
                self.invalid_queries += invalid
        remaining, reset = self.graph.points.window_of(token)
        return out, {"x-ratelimit-remaining": str(remaining), "x-ratelimit-reset": str(reset)}

    # --- faults ---------------------------------------------------------------------------------
    def pick_fault(self, route: str) -> str | None:
        with self.lock:
            if self.rng.random() >= self.fault_rate:
                return None
            choices = FAULTS if route.startswith("graphql") else FAULTS[:-1]
            if self.round_robin:
                fault = FAULTS[self._turn % len(FAULTS)]
                fault = fault if fault in choices else choices[0]
                self._turn += 1
            else:
                fault = self.rng.choice(choices)
            self.faults[fault] += 1
            return fault


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # clients leaving mid-answer are part of the faults
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    @property
    def emu(self) -> Emulator:
        return self.server.emulator  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes: without NODELAY, Nagle + delayed ACK add 40 ms per answer
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def finish(self) -> None:
        with contextlib.suppress(OSError):  # the client went away (timeouts, resets): nothing to flush to
            super().finish()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while size := int(self.rfile.readline().strip() or b"0", 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return data
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json; charset=utf-8",
        length: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        if m := re.match(r"^/([^/]+/[^/]+)\.git/", url.path):
            if m.group(1) in self.emu.git_status:  # a repository gone (404) or taken down (451) since listing
                self._send(self.emu.git_status[m.group(1)], b"gone\n", {"content-type": "text/plain"})
            else:
                self._git(method, url.path, url.query)
            return
        body = self._body() if method == "POST" else b""
        emu = self.emu
        with emu.lock:
            emu.in_flight += 1
            emu.max_in_flight = max(emu.max_in_flight, emu.in_flight)
        try:
            self._api(method, url.path, parse_qs(url.query), body)
        finally:
            with emu.lock:
                emu.in_flight -= 1

    def _api(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        emu = self.emu
        if self.headers.get("Authorization") not in (f"token {emu.token}", f"Bearer {emu.token}"):
            self._send(401, b'{"message": "Bad credentials"}')
            return
        if emu.delay:
            time.sleep(emu.delay)
        if method == "POST" and path == "/graphql":
            payload = json.loads(body)
            match = re.search(r"query\s+(\w+)", payload.get("query", ""))
            route, resource = f"graphql:{match.group(1) if match else 'anonymous'}", "graphql"
        else:
            route, resource = emu.rest.route(path), "search" if path.startswith("/search/") else "core"
        if route.startswith("graphql") and emu.too_heavy(route, payload):
            self._send(502, b"<html>We couldn't respond to your request in time.</html>", content_type="text/html")
            return
        fault = emu.pick_fault(route)
        if fault and self._fault(fault, resource):
            return
        if route.startswith("graphql"):
            status, (data, extra) = 200, emu.graphql_answer(payload, self.headers["Authorization"].split()[-1])
        else:
            status, data, extra = emu.rest.answer(route, path, query)
        with emu.lock:
            if fault != "truncated":  # a truncated answer is a fault, not an answer
                emu.counts[route] += 1
            emu.remaining[resource] -= resource != "graphql"  # GraphQL spends points (graph.points) instead
            if status == 200 and fault != "truncated" and not route.startswith("graphql"):
                emu.rest_bodies.append((route, data))
            remaining = emu.remaining[resource]
        payload_bytes = json.dumps(data).encode()
        headers = {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": str(max(remaining, 1)),
            "x-ratelimit-reset": str(int(time.time()) + 3600),
            "x-ratelimit-resource": resource,
            **extra,
        }
        if fault == "truncated":
            payload_bytes = payload_bytes[: len(payload_bytes) // 2]
        self._send(status, payload_bytes, headers)

    def _fault(self, fault: str, resource: str) -> bool:
        """Answer with ``fault``; False for faults that corrupt an otherwise normal answer."""
        now = int(time.time())
        limited = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(now + 1), "x-ratelimit-resource": resource}
        if fault == "429":
            self._send(429, b'{"message": "Too many requests"}', {"retry-after": "2"})
        elif fault == "403_primary":
            self._send(403, b'{"message": "API rate limit exceeded for user ID 1."}', limited)
        elif fault == "403_secondary":
            self._send(
                403,
                b'{"message": "You have exceeded a secondary rate limit. Please wait a few minutes."}',
                {"x-ratelimit-remaining": "4000"},
            )
        elif fault in ("502", "503"):
            self._send(int(fault), b"<html>Server Error</html>", content_type="text/html")
        elif fault == "gql_limited":
            self._send(
                200,
                b'{"data": null, "errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded"}]}',
                limited,
            )
        elif fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        elif fault == "timeout":
            time.sleep(self.emu.timeout_sleep)
            self.close_connection = True
        else:
            return False
        return True

    def _git(self, method: str, path: str, query: str) -> None:
        """git's smart HTTP through the real ``git http-backend`` CGI program."""
        body = self._body() if method == "POST" else b""
        if self._git_refused(body):
            return
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.emu.git_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": method,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        status, headers = 200, {}
        for line in head.decode(errors="replace").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers[key] = value.strip()
        content_type = headers.pop("Content-Type", "text/plain")
        with self.emu.lock:
            self.emu.counts["git"] += 1
        self._send(status, payload, {**headers, "Date": email.utils.formatdate(usegmt=True)}, content_type)


def _git_wants(body: bytes, encoding: str) -> list[str]:
    """The object ids an upload-pack request body asks for (``want <oid>`` pkt-lines)."""
    data = gzip.decompress(body) if encoding == "gzip" and body else body
    return [m.decode() for m in re.findall(rb"want ([0-9a-f]{40})", data)]


def _git_refused(self: _Handler, body: bytes) -> bool:
    """Count the wanted oids; refuse (HTTP 500, as a flaky or filtering server might) a fetch wanting any
    of ``refused_oids``."""
    wants = _git_wants(body, self.headers.get("Content-Encoding", ""))
    with self.emu.lock:
        self.emu.git_wants.update(wants)
        refused = not self.emu.refused_oids.isdisjoint(wants)
    if refused:
        self._send(500, b"refused", {}, "text/plain")
    return refused


_Handler._git_refused = _git_refused  # type: ignore[attr-defined]


def ensure_schema() -> None:
    """Install GitHub's schema if missing (when npm is there); else fail the calling test, never skip it.

    Why fail: a skipped GitHub test looks like a pass in CI, and these tests are what shows the queries
    would be valid on github.com, so a missing schema must be a visible, explained failure."""
    import pytest  # noqa: PLC0415  (only the tests need it; the benchmark imports this module too)

    if SCHEMA_FILE.exists():
        return
    if shutil.which("npm") is not None:
        subprocess.run(["bash", str(SCHEMA_FILE.parents[4] / "setup-github-schema")], check=False)
    if not SCHEMA_FILE.exists():
        pytest.fail(
            f"GitHub's GraphQL schema (npm @octokit/graphql-schema) is missing at {SCHEMA_FILE}: "
            "run bash .ci/setup-github-schema (needs npm) before the GitHub tests",
            pytrace=False,
        )


def source_settings(emu: Emulator, cache_dir: Path, **overrides: Any) -> GitHubSettings:
    """Settings pointing at ``emu`` with waits shrunk 1000× (the policy still computes real waits)."""
    values: dict[str, Any] = {
        "token": emu.token,
        "cache_dir": cache_dir,
        "base_url": emu.base_url,
        "request_timeout": 1.0,
        "retry": RetrySettings(wait_scale=0.001),
        **overrides,
    }
    return GitHubSettings(**values)
