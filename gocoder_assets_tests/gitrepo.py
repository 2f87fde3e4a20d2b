"""Real git repositories for tests: deterministic dates and identity, no user config."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def _env(n: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    date = f"2024-01-{n:02d}T12:00:00+00:00"
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_AUTHOR_DATE=date,
               GIT_COMMITTER_DATE=date, LC_ALL="C")  # fmt: skip
    return env


def git(repo: Path, *args: str, n: int = 1) -> bytes:
    cmd = ["git", "-c", "user.name=Ada Lovelace", "-c", "user.email=ada@example.com", "-C", str(repo), *args]
    return subprocess.run(cmd, check=True, capture_output=True, env=_env(n)).stdout


def gits(repo: Path, *args: str) -> str:
    return git(repo, *args).decode()


def commit(repo: Path, n: int, message: str, *paths: str) -> None:
    git(repo, "add", *(paths or ["-A"]), n=n)
    git(repo, "commit", "-q", "-m", message, n=n)
