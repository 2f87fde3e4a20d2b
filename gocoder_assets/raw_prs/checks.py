"""Check on raw_prs: the archive holds only valid UTF-8 text and safe paths."""

import collections
from collections.abc import Iterable, Iterator
from typing import Any

import dagster as dg

from gocoder_assets.checks import partition_check, result
from gocoder_assets.raw_prs.archive import read_raw
from gocoder_assets.raw_prs.assets import raw_prs
from gocoder_assets.sources.base import SKIP_REASONS, RawRecord, is_safe_relpath
from gocoder_assets.storage import Layout


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


@partition_check(asset=raw_prs, description="Valid UTF-8 everywhere, only safe relative paths, known skip reasons.")
def raw_prs_valid(layout: Layout, key: str) -> dg.AssetCheckResult:
    c = raw_problems(read_raw(layout.raw_records_file(key)))
    rows = [[n, c[n]] for n in ("invalid_utf8", "unsafe_path", "unknown_skip_reason") if c[n]]
    return result(not rows, ["problem", "count"], rows, blocking_failure=False)
