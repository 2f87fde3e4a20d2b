"""Where per-partition work runs, and how a failure is named: the settings the pool, the Celery app and the
resource all read (kept apart from pool.py so the Celery app needs nothing from the pool)."""

from __future__ import annotations

import dataclasses
import os

MODES = ("inline", "processes", "celery")
DEFAULT_BROKER = "redis://localhost:6379/0"
DEFAULT_QUEUE = "gocoder"


class WorkerError(RuntimeError):
    """A partition's task failed (or its worker died); the message names the task and the partition."""


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    """Where per-partition work runs; one default per setting (``WorkersResource`` takes them from here).

    ``mode``: "inline" (this process, one partition after another), "processes" (a local pool of
    ``max_workers`` processes; None = the cores available), "celery" (tasks on ``queue`` of the Celery
    cluster behind ``broker_url``, which is also the result backend).
    """

    mode: str = "processes"
    max_workers: int | None = None
    broker_url: str = DEFAULT_BROKER
    queue: str = DEFAULT_QUEUE

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"workers mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.max_workers is not None and self.max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, not {self.max_workers}")

    @property
    def workers(self) -> int:
        return self.max_workers or available_cores()

    @property
    def window(self) -> int:
        """Payloads in flight at most: enough to keep every worker busy while the head result is read."""
        return 2 * self.workers

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> WorkerSettings:
        """GOCODER_WORKERS (mode), GOCODER_WORKERS_MAX, GOCODER_CELERY_BROKER, GOCODER_CELERY_QUEUE."""
        env = dict(os.environ if env is None else env)
        default = cls()
        workers_max = env.get("GOCODER_WORKERS_MAX")
        return cls(
            mode=env.get("GOCODER_WORKERS") or default.mode,
            max_workers=int(workers_max) if workers_max else default.max_workers,
            broker_url=env.get("GOCODER_CELERY_BROKER") or default.broker_url,
            queue=env.get("GOCODER_CELERY_QUEUE") or default.queue,
        )
