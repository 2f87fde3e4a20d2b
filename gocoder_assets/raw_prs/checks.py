"""Check on raw_prs: the archive holds only valid UTF-8 text and safe paths."""

import collections
from collections.abc import Iterable, Iterator
from typing import Any

import dagster as dg

from gocoder_assets.checks import asset_check, result, run_partition_keys
from gocoder_assets.raw_prs.archive import read_raw
from gocoder_assets.raw_prs.assets import raw_prs
from gocoder_assets.resources import StorageResource
from gocoder_assets.sources.base import SKIP_REASONS, RawRecord, is_safe_relpath


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def raw_problems(records: Iterable[RawRecord]) -> collections.Counter[str]:
    problems: collections.Counter[str] = collections.Counter()
    for rec in records:
        for s in _strings(rec):
            try:
                s.encode("utf-8")  # JSON can carry lone surrogates ("\ud800") that are not UTF-8
            except UnicodeEncodeError:
                problems["invalid_utf8"] += 1
        if rec["kind"] == "file" and not is_safe_relpath(rec["path"]):
            problems["unsafe_path"] += 1
        if rec["kind"] == "skip" and rec["reason"] not in SKIP_REASONS:
            problems["unknown_skip_reason"] += 1
    return problems


@asset_check(asset=raw_prs, description="Valid UTF-8 everywhere, only safe relative paths, known skip reasons.")
def raw_prs_valid(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    layout = storage.layout()
    per_key = {k: raw_problems(read_raw(layout.raw_records_file(k))) for k in run_partition_keys(context)}
    rows = [[k, c["invalid_utf8"], c["unsafe_path"], c["unknown_skip_reason"]] for k, c in per_key.items() if c]
    header = ["partition", "invalid UTF-8 strings", "unsafe paths", "unknown skip reasons"]
    return result(not rows, header, rows, blocking_failure=False)
