"""Imported once where workers are forked from, so every worker starts ready.

The fork server of the process pool (pool._mp_context) and a Celery worker's main process (its
``worker_init`` signal, celery_app.py) import this module before forking. It imports each task's module
and calls its ``warm()``, the one-time set-up a first partition would otherwise pay in every new worker
(measured on the 2-core test machine: ~1 s of imports and ~2.5 s for the MinHash permutations'
datasketch import, per worker, per run).

What runs here must stay fork-safe: no Python threads, no torch. numpy and pyarrow start native thread
pools at import; both re-create them in a forked child (pthread_atfork), as Celery's prefork workers rely
on too.
"""

from __future__ import annotations

import importlib

from gocoder_assets.workers.tasks import TASKS

for _target in TASKS.values():
    _warm = getattr(importlib.import_module(_target.split(":")[0]), "warm", None)
    if _warm is not None:
        _warm()
