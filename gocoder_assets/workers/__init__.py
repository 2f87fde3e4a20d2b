"""Per-partition work of the CPU-heavy per-repo stages, spread over worker processes.

An asset builds one JSON-friendly payload per partition and hands them to ``WorkersResource.map``
(resource.py), which runs the task (tasks.py: a Dagster-free function per stage) inline, in a local
process pool, or on a Celery cluster (celery_app.py), and yields the results in input order.

Shared storage: workers read and write the data folder at the path the run passes them, so every
worker must see that folder at the same path (one machine, or a shared filesystem in production).

This package imports neither Dagster nor the stages at import time: a Celery worker loads only what
a task needs.
"""
