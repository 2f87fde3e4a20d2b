"""Running one task over many payloads: inline, in a local process pool, or on a Celery cluster.

``run_map`` yields results in input order and keeps at most ``in_flight`` payloads submitted but not
yet handed back (``WorkerSettings.window``: twice the workers). That bounds memory on both sides: each
worker holds one partition at a time (a stage streams its rows to disk in batches), and the caller holds
at most ``in_flight`` results (a partition's counts and size lists), whatever the number of partitions.

A failing payload stops the map: what was not started is cancelled, and the error names the partition
(the payload's ``key``) with the worker's own exception chained to it.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from gocoder_assets.workers.settings import WorkerError, WorkerSettings
from gocoder_assets.workers.tasks import run_task


def _failed(task: str, payload: dict[str, Any], where: str, exc: BaseException) -> WorkerError:
    key = payload.get("key", "?")
    return WorkerError(f"{task} failed on partition {key!r} ({where}): {type(exc).__name__}: {exc}")


def _ordered(
    payloads: Iterable[dict[str, Any]],
    submit: Callable[[dict[str, Any]], Any],
    window: int,
) -> Iterator[tuple[dict[str, Any], Any]]:
    """Submit payloads keeping at most ``window`` unreturned; yield (payload, handle) in input order,
    each once it may be waited on. The caller waits; a handle is never waited on twice."""
    pending: collections.deque[tuple[dict[str, Any], Any]] = collections.deque()
    for payload in payloads:
        pending.append((payload, submit(payload)))
        if len(pending) >= window:
            yield pending.popleft()
    while pending:
        yield pending.popleft()


def run_map(settings: WorkerSettings, task: str, payloads: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """``run_task(task, p)`` for every payload, results in input order (see the module docstring)."""
    if settings.mode == "inline":
        for payload in payloads:
            try:
                yield run_task(task, payload)
            except Exception as exc:
                raise _failed(task, payload, "inline", exc) from exc
    elif settings.mode == "processes":
        yield from _processes(settings, task, payloads)
    else:
        yield from _celery(settings, task, payloads)


def _mp_context() -> Any:
    """forkserver where the platform has it, else spawn; never fork.

    The parent (a Dagster run) has threads and may have torch loaded: a forked child inherits locks held
    by threads that do not exist in it. The fork server is a fresh process, started once per parent, that
    forks the workers; it imports the task modules and warms them first (preload.py), so each worker
    starts in milliseconds, ready.
    """
    import multiprocessing  # noqa: PLC0415

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["gocoder_assets.workers.preload"])
    return ctx


def _processes(settings: WorkerSettings, task: str, payloads: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

    payloads = list(payloads)  # a run's partitions (GOCODER_PARTITIONS_PER_RUN): small dicts
    if not payloads:
        return
    # No more processes than partitions: a one-partition run starts one process, not one per core.
    pool = ProcessPoolExecutor(max_workers=min(settings.workers, len(payloads)), mp_context=_mp_context())
    try:
        for payload, future in _ordered(payloads, lambda p: pool.submit(run_task, task, p), settings.window):
            try:
                result = future.result()
            except Exception as exc:  # BrokenProcessPool too: a worker was killed (out of memory?)
                raise _failed(task, payload, "worker process", exc) from exc
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _celery(settings: WorkerSettings, task: str, payloads: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    from gocoder_assets.workers.celery_app import TASK_NAME, client_app, require_workers  # noqa: PLC0415

    app = client_app(settings.broker_url)
    require_workers(app, settings.broker_url, settings.queue)
    sent: dict[str, Any] = {}  # task id → AsyncResult, for what is submitted and not yet read

    def submit(payload: dict[str, Any]) -> Any:
        result = app.send_task(TASK_NAME, args=[task, payload], queue=settings.queue)
        sent[result.id] = result
        return result

    try:
        for payload, result in _ordered(payloads, submit, settings.window):
            del sent[result.id]
            try:
                value = result.get(propagate=True, disable_sync_subtasks=False)
            except Exception as exc:
                raise _failed(task, payload, f"celery worker, queue {settings.queue}", exc) from exc
            finally:
                result.forget()  # the backend keeps no result nobody will read
            yield value
    finally:
        for result in sent.values():  # after a failure: queued tasks are dropped, not run for nobody
            result.revoke()
            result.forget()
