"""The raw archive of one repository partition: every record the source produced, as is.

Gzipped JSON lines: readable by any tool, streamed in and out (memory stays flat for large
repositories), kept for audit and so later stages can be re-derived without the source.
"""

from __future__ import annotations

import collections
import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from gocoder_assets.sources.base import RawRecord
from gocoder_assets.storage import atomic_file


def write_raw(records: Iterable[RawRecord], path: Path) -> dict[str, Any]:
    """Write records atomically; return counts by kind and by skip reason."""
    kinds: collections.Counter[str] = collections.Counter()
    skips: collections.Counter[str] = collections.Counter()
    text_bytes = 0
    with atomic_file(path) as tmp, gzip.open(tmp, "wt", encoding="utf-8", compresslevel=3) as out:
        for record in records:
            kinds[record["kind"]] += 1
            if record["kind"] == "skip":
                skips[record["reason"]] += 1
            elif record["kind"] == "change":  # files of a change skipped for content (binary, too large…)
                skips.update(f"change_file_{f['skipped']}" for f in record.get("files", []) if f.get("skipped"))
                if record.get("files_unavailable"):  # no files at all: head/base ref or commit gone
                    skips[f"change_files_unavailable:{record['files_unavailable']}"] += 1
            elif record["kind"] == "file":
                text_bytes += len(record["text"].encode("utf-8"))
            out.write(json.dumps(record, ensure_ascii=False))
            out.write("\n")
    return {
        "kinds": dict(sorted(kinds.items())),
        "skips": dict(sorted(skips.items())),
        "text_bytes": text_bytes,
    }


def read_raw(path: Path) -> Iterator[RawRecord]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)
