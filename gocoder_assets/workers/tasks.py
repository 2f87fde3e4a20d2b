"""The tasks a worker can run: a name for each Dagster-free per-partition function.

Every backend (inline, process pool, Celery) calls ``run_task``, so one partition's work is the same
code wherever it runs. Payloads and results are plain JSON values (Celery's serializer is JSON), and
each result carries the process id that computed it, so a run can say how many processes it used.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# name → "module:function"; imported on first use so a worker loads only the stage it runs.
TASKS = {
    "categorize": "gocoder_assets.categorized_records.partition:categorize_partition",
    "pack": "gocoder_assets.packed_shards.partition:pack_partition_job",
}
PID_KEY = "worker_pid"


def resolve(name: str) -> Any:
    if name not in TASKS:
        raise KeyError(f"unknown worker task {name!r}; known: {sorted(TASKS)}")
    module, function = TASKS[name].split(":")
    return getattr(importlib.import_module(module), function)


def run_task(name: str, payload: dict[str, Any]) -> dict[str, Any]:
    """``TASKS[name](**payload)``, with the worker's pid added to its result."""
    result = resolve(name)(**payload)
    return {**result, PID_KEY: os.getpid()}
