"""Real servers on 127.0.0.1 for the tests that need them: Redis, PostgreSQL, and a Dagster deployment
(webserver + daemon) on an instance folder of the test's own.

Each starts the real program (Debian's redis-server and PostgreSQL, which `.ci/run` installs; Dagster's own
`dagster-webserver` / `dagster-daemon`), waits until it answers, and stops it afterwards. Without the program
the test skips with the install command, unless GOCODER_REQUIRE_SERVERS=1 (CI) makes that a failure.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require(program: str | None, install: str) -> str:
    """The program's path, or a skip (a failure under GOCODER_REQUIRE_SERVERS=1) saying how to install it."""
    if program and Path(program).exists():
        return program
    message = f"not installed: {install}"
    if os.environ.get("GOCODER_REQUIRE_SERVERS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ConnectionError):
            if ready():
                return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it answered")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not answer in {timeout:.0f}s")
        time.sleep(0.3)


def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A throwaway redis-server on 127.0.0.1 (no persistence); yields its URL."""
    exe = require(shutil.which("redis-server"), "apt-get install redis-server")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(workdir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _port_open(port), proc, "redis-server", timeout=30)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@contextlib.contextmanager
def postgres_server(workdir: Path) -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (initdb into ``workdir``); yields connection settings.

    PostgreSQL refuses to run as root, so under root (CI) the cluster belongs to Debian's ``postgres`` user.
    """
    initdb = require(_pg_bin("initdb"), "apt-get install postgresql")
    postgres = require(_pg_bin("postgres"), "apt-get install postgresql")
    as_user: list[str] = []
    if os.geteuid() == 0:
        # The cluster runs as `postgres`, which cannot enter pytest's 0700 tmp folders: use a folder of its own.
        as_user = ["runuser", "-u", "postgres", "--"]
        workdir = Path(tempfile.mkdtemp(prefix="gocoder-pg-"))
        shutil.chown(workdir, "postgres")
    data = workdir / "pgdata"
    data.mkdir(parents=True, exist_ok=True)
    if as_user:
        shutil.chown(data, "postgres")
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "dagster", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)  # fmt: skip
    port = free_port()
    cmd = [*as_user, postgres, "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(workdir),
           "-c", "max_connections=200", "-c", "fsync=off"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _port_open(port), proc, "postgres", timeout=60)
        psql = _pg_bin("createdb")
        for _ in range(50):  # the port opens a moment before the server accepts connections
            if subprocess.run([psql, "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", "dagster"],
                              capture_output=True).returncode == 0:  # fmt: skip
                break
            time.sleep(0.2)
        yield {"hostname": "127.0.0.1", "port": str(port), "username": "dagster", "password": "", "db_name": "dagster"}
    finally:
        stop(proc)
        if as_user:
            shutil.rmtree(workdir, ignore_errors=True)


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    """POST a query to the webserver's GraphQL endpoint (what the UI itself does); raises on GraphQL errors."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.load(response)
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return body["data"]


@dataclass
class Deployment:
    """A running `dagster-webserver` (port) and, when started, `dagster-daemon` on one DAGSTER_HOME."""

    home: Path
    port: int
    env: dict[str, str]

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        return graphql(self.port, query, variables)


def _dagster_exe(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@contextlib.contextmanager
def dagster_deployment(
    home: Path,
    env: dict[str, str] | None = None,
    *,
    module: str = "gocoder_assets.definitions",
    daemon: bool = True,
    log_dir: Path | None = None,
) -> Iterator[Deployment]:
    """`dagster-webserver` (+ `dagster-daemon run`) for ``module`` on the instance at ``home``.

    ``home`` must already hold the dagster.yaml under test. Process output goes to ``log_dir`` (default:
    ``home``) so a failing test can show it.
    """
    full_env = {**os.environ, **(env or {}), "DAGSTER_HOME": str(home)}
    log_dir = log_dir or home
    port = free_port()
    procs = []
    try:
        with open(log_dir / "webserver.log", "ab") as out:
            web = subprocess.Popen(
                [_dagster_exe("dagster-webserver"), "-m", module, "-h", "127.0.0.1", "-p", str(port)],
                env=full_env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        procs.append(web)
        if daemon:
            with open(log_dir / "daemon.log", "ab") as out:
                daemon_cmd = [_dagster_exe("dagster-daemon"), "run", "-m", module]
                procs.append(subprocess.Popen(daemon_cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT))
        wait_until(lambda: bool(graphql(port, "{ version }")), web, "dagster-webserver", timeout=180)
        yield Deployment(home=home, port=port, env=full_env)
    finally:
        for proc in reversed(procs):
            stop(proc)
