"""One partition of categorized_records, Dagster-free: what a worker process runs (workers/tasks.py).

``categorize_partition`` reads the partition's raw records, writes its Parquet (with the settings it
was made with in the schema metadata) and its MinHash signatures, and returns its counts and record
sizes as plain JSON values, so it runs the same inline, in a process pool or on a Celery worker.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from gocoder_assets.categorized_records.categorize import INT_COLUMNS, RECORD_COLUMNS, Categorizer
from gocoder_assets.categorized_records.changes import ChangeOptions
from gocoder_assets.categorized_records.filters import FilterOptions
from gocoder_assets.raw_prs.archive import read_raw
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.sources.base import RepoInfo
from gocoder_assets.storage import Layout, atomic_file, write_parquet
from gocoder_assets.workers.cache import Stamp, file_stamp

RECORD_SCHEMA = pa.schema([(name, pa.int64() if name in INT_COLUMNS else pa.string()) for name in RECORD_COLUMNS])
# Schema metadata key of the settings a partition was made with: FilterOptions and ChangeOptions fields,
# one flat JSON object (their field names do not overlap; checked below).
SETTINGS_KEY = "gocoder:settings"
_FILTER_FIELDS = [f.name for f in dataclasses.fields(FilterOptions)]
_CHANGE_FIELDS = [f.name for f in dataclasses.fields(ChangeOptions)]
if set(_FILTER_FIELDS) & set(_CHANGE_FIELDS):
    raise TypeError(f"FilterOptions and ChangeOptions share fields: {set(_FILTER_FIELDS) & set(_CHANGE_FIELDS)}")


def settings_payload(options: FilterOptions, change_options: ChangeOptions) -> dict[str, Any]:
    """The run's settings as a payload's ``settings``: {"filter": {...}, "change": {...}}."""
    return {"filter": dataclasses.asdict(options), "change": dataclasses.asdict(change_options)}


def options_from_settings(settings: dict[str, Any]) -> tuple[FilterOptions, ChangeOptions]:
    """Back from JSON (lists to the dataclasses' tuples); an unknown field is a TypeError, not ignored."""

    def build(cls: Any, values: dict[str, Any]) -> Any:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    return build(FilterOptions, settings.get("filter", {})), build(ChangeOptions, settings.get("change", {}))


def settings_json(options: FilterOptions, change_options: ChangeOptions) -> str:
    """What goes under ``SETTINGS_KEY``: every field of both dataclasses, by name, sorted."""
    values = {**dataclasses.asdict(options), **dataclasses.asdict(change_options)}
    return json.dumps(values, sort_keys=True)


@functools.lru_cache(maxsize=4)
def cached_repos(stamp: Stamp) -> dict[str, RepoInfo]:
    return read_repo_list(Path(stamp[0]))


def repo_of(layout: Layout, key: str) -> RepoInfo:
    """The partition's repository, from the repository list (read once per worker process per version)."""
    repos = cached_repos(file_stamp(layout.repo_list_file))
    if key not in repos:
        raise KeyError(f"partition {key!r} is not in {layout.repo_list_file}: re-materialize repo_list")
    return repos[key]


def warm() -> None:
    """One-time set-up done before workers fork (workers/preload.py): the MinHash permutations."""
    from gocoder_assets.dedup_index.dedup import signature  # noqa: PLC0415

    signature("package warm")


def categorize_partition(data_root: str, key: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Write partition ``key``'s records Parquet and signatures under ``data_root``; return
    {"key", "records": rows written, "counts": {reason: n}, "sizes": {kind: [characters per record]}}."""
    layout = Layout(data_root)
    options, change_options = options_from_settings(settings)
    categorizer = Categorizer(repo_of(layout, key), options, change_options)
    rows = categorizer.run(read_raw(layout.raw_records_file(key)))
    metadata = {SETTINGS_KEY: settings_json(options, change_options)}
    written = write_parquet(rows, layout.categorized_file(key), RECORD_SCHEMA, metadata=metadata)
    sigs = np.stack(categorizer.signatures) if categorizer.signatures else np.zeros((0, 0), np.uint32)
    with atomic_file(layout.signatures_file(key)) as tmp, open(tmp, "wb") as f:
        np.save(f, sigs)
    return {
        "key": key,
        "records": written,
        "counts": {k: int(v) for k, v in categorizer.counts.items()},
        "sizes": {kind: [int(n) for n in values] for kind, values in categorizer.sizes.items()},
    }
