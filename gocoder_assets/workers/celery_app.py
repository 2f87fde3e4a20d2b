"""The Celery app: per-partition tasks on a cluster of machines, through a Redis broker.

Start a worker on each machine (one process per core by default; ``--concurrency`` to choose):

    GOCODER_CELERY_BROKER=redis://broker-host:6379/0 \\
        celery -A gocoder_assets.workers.celery_app worker --concurrency 16 -Q gocoder

and run Dagster with GOCODER_WORKERS=celery and the same GOCODER_CELERY_BROKER. The broker is also the
result backend, so nothing else needs running. Workers read and write the data folder at the path the
run gives them: mount the shared data folder at the same path on every machine.

Settings, and why:
- JSON for tasks and results: payloads are paths, keys and settings; nothing pickled crosses machines.
- ``task_acks_late`` + ``worker_prefetch_multiplier=1``: a worker takes one partition at a time and
  acknowledges it when done, so partitions spread evenly (they vary a lot in size) and a worker that
  stops mid-task gives its partition back to the queue. A partition's writes are atomic renames, so
  running it again is safe.
- ``visibility_timeout`` (Redis): a task not acknowledged within it is handed to another worker; it is
  set well above the longest partition (Celery's default, one hour, is not).
"""

from __future__ import annotations

import functools
import os
from typing import Any

from celery import Celery, signals

from gocoder_assets.workers.settings import DEFAULT_BROKER, DEFAULT_QUEUE, WorkerError
from gocoder_assets.workers.tasks import run_task

TASK_NAME = "gocoder.run_task"
VISIBILITY_TIMEOUT_S = 12 * 3600


def make_app(broker_url: str, queue: str = DEFAULT_QUEUE) -> Celery:
    app = Celery("gocoder", broker=broker_url, backend=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_default_queue=queue,
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        worker_hijack_root_logger=False,
    )

    @app.task(name=TASK_NAME)
    def run(name: str, payload: dict[str, Any]) -> dict[str, Any]:
        return run_task(name, payload)

    return app


# The app `celery -A gocoder_assets.workers.celery_app worker` runs.
app = make_app(
    os.environ.get("GOCODER_CELERY_BROKER") or DEFAULT_BROKER, os.environ.get("GOCODER_CELERY_QUEUE") or DEFAULT_QUEUE
)


@signals.worker_init.connect
def _preload(**_: Any) -> None:
    """In a worker's main process, before it forks its pool: every pool process starts warm."""
    import gocoder_assets.workers.preload  # noqa: F401, PLC0415


@functools.lru_cache(maxsize=8)
def client_app(broker_url: str) -> Celery:
    """The app a run sends tasks with (one per broker URL; the resource's URL, not the environment's)."""
    return make_app(broker_url)


def require_workers(app: Celery, broker_url: str, queue: str, timeout: float = 1.0, tries: int = 3) -> None:
    """Fail now, clearly, when no worker consumes ``queue``, instead of waiting forever on the results.

    An inspect broadcast waits its whole ``timeout`` for replies (it cannot know how many workers there
    are), so it asks briefly and asks again, rather than once for long."""
    from kombu.utils.url import maybe_sanitize_url  # noqa: PLC0415

    replies: dict[str, Any] = {}
    for _ in range(tries):
        try:
            replies = app.control.inspect(timeout=timeout).active_queues() or {}
        except OSError as exc:  # broker unreachable
            raise WorkerError(f"cannot reach the Celery broker {maybe_sanitize_url(broker_url)}: {exc}") from exc
        if any(q.get("name") == queue for queues in replies.values() for q in queues):
            return
    raise WorkerError(
        f"no Celery worker consumes queue {queue!r} at {maybe_sanitize_url(broker_url)} "
        f"({len(replies)} workers answered); start some with: GOCODER_CELERY_BROKER=... "
        f"celery -A gocoder_assets.workers.celery_app worker -Q {queue}"
    )
