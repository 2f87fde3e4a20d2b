"""An external sort for the drop list: sorted runs spilled to Arrow files, merged lazily.

The dedup file is sorted by record id (so its bytes, and the asset's data version, do not depend on the
order partitions were decided in), and record ids are hashes, so the order is global. Holding every drop
decision until the end would be O(corpus); this holds at most ``limit`` rows, plus one batch per run
while merging.
"""

from __future__ import annotations

import heapq
import operator
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

_BATCH = 4096


class SortedRuns:
    """Rows added in any order come back sorted by ``key``; ties keep the order they were added in."""

    def __init__(self, directory: Path, schema: pa.Schema, limit: int, key: str = "record_id") -> None:
        self.directory, self.schema, self.limit, self.key = directory, schema, limit, key
        self._buffer: list[dict[str, Any]] = []
        self._runs: list[Path] = []

    def add(self, rows: list[dict[str, Any]]) -> None:
        self._buffer += rows
        if len(self._buffer) >= self.limit:
            self._flush()

    def _flush(self) -> None:
        self._buffer.sort(key=operator.itemgetter(self.key))  # stable: ties stay in decision order
        path = self.directory / f"run-{len(self._runs):06d}.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, self.schema) as writer:
            for i in range(0, len(self._buffer), _BATCH):
                writer.write_table(pa.Table.from_pylist(self._buffer[i : i + _BATCH], schema=self.schema))
        self._runs.append(path)
        self._buffer = []

    @property
    def runs(self) -> int:
        return len(self._runs)

    def _read(self, path: Path) -> Iterator[dict[str, Any]]:
        with pa.memory_map(str(path)) as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield from reader.get_batch(i).to_pylist()

    def sorted(self) -> Iterator[dict[str, Any]]:
        if not self._runs:
            yield from sorted(self._buffer, key=operator.itemgetter(self.key))
            return
        if self._buffer:
            self._flush()
        # heapq.merge is stable across its inputs, and runs are in decision order
        yield from heapq.merge(*(self._read(p) for p in self._runs), key=operator.itemgetter(self.key))
