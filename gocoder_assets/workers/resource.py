"""The ``workers`` resource: where per-partition work runs (see pool.py for the modes)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import dagster as dg

from gocoder_assets.workers.pool import run_map
from gocoder_assets.workers.settings import WorkerSettings

_DEFAULTS = WorkerSettings()
BROKER_VAR = "GOCODER_CELERY_BROKER"


class WorkersResource(dg.ConfigurableResource):
    """Runs a stage's per-partition task over a run's partitions: ``mode`` "inline" (in the run's
    process), "processes" (a local pool of ``max_workers`` processes, default the cores available) or
    "celery" (the Celery cluster at ``broker_url``, tasks on ``queue``; see celery_app.py).

    Workers read and write the data folder at the run's path: with Celery, every machine must mount the
    shared data folder at that same path.
    """

    mode: str = _DEFAULTS.mode
    max_workers: int | None = _DEFAULTS.max_workers
    broker_url: str = _DEFAULTS.broker_url
    queue: str = _DEFAULTS.queue

    def settings(self) -> WorkerSettings:
        return WorkerSettings(
            mode=self.mode, max_workers=self.max_workers, broker_url=self.broker_url, queue=self.queue
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self.settings()  # a bad mode or worker count fails the run at resource init, before any asset

    def map(self, task: str, payloads: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Each payload's result (with its ``worker_pid``), in input order; the first failure raises a
        ``WorkerError`` naming the partition."""
        return run_map(self.settings(), task, payloads)


def workers_resource_from_env(env: dict[str, str] | None = None) -> WorkersResource:
    """GOCODER_WORKERS, GOCODER_WORKERS_MAX, GOCODER_CELERY_BROKER, GOCODER_CELERY_QUEUE (settings.WorkerSettings)."""
    s = WorkerSettings.from_env(env)
    # A broker URL may carry a password. Taken from this process's environment, it stays a dg.EnvVar: Dagster
    # resolves it at launch and shows and records only the variable's name.
    broker: Any = s.broker_url
    if broker and os.environ.get(BROKER_VAR) == broker:
        broker = dg.EnvVar(BROKER_VAR)
    return WorkersResource(mode=s.mode, max_workers=s.max_workers, broker_url=broker, queue=s.queue)
