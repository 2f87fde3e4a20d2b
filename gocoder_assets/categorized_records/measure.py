"""How much of the MIX change text repeats a CODE record of the same repository.

A change record that carried whole files taught the model the same code twice (once as the file's
CODE record, once per change that touched it). The measure: of the characters on the lines of MIX
change records, the share on lines that also occur in a CODE record of the partition. Lines are
compared stripped, and short lines (``}``, ``return nil``, blank) are left out on both sides
because they repeat everywhere and say nothing about copying.

Snapshot files come before changes in every source's record stream, so the CODE lines are
known when the first change arrives. Only 64-bit hashes are kept (8 bytes a line, in a compact
array, sorted once), so a repository of millions of lines costs tens of MB.
"""

from __future__ import annotations

import array
import hashlib

import numpy as np

MIN_LINE_CHARS = 16


def _hash(line: str) -> int:
    return int.from_bytes(hashlib.blake2b(line.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


class CodeLines:
    """CODE lines seen so far, and the change characters measured against them."""

    def __init__(self) -> None:
        self._code = array.array("q")
        self._sorted: np.ndarray | None = None
        self.change_chars = 0
        self.duplicate_chars = 0

    def add_code(self, text: str) -> None:
        self._code.extend(_hash(s) for line in text.splitlines() if len(s := line.strip()) >= MIN_LINE_CHARS)
        self._sorted = None

    def add_change(self, text: str) -> None:
        if self._sorted is None:
            self._sorted = np.unique(np.frombuffer(self._code, dtype=np.int64))
        lines = text.splitlines()
        self.change_chars += sum(len(line) + 1 for line in lines)
        long = [(line, s) for line in lines if len(s := line.strip()) >= MIN_LINE_CHARS]
        if not long or not self._sorted.size:
            return
        hashes = np.fromiter((_hash(s) for _, s in long), dtype=np.int64, count=len(long))
        pos = np.minimum(np.searchsorted(self._sorted, hashes), self._sorted.size - 1)
        found = self._sorted[pos] == hashes
        self.duplicate_chars += sum(len(line) + 1 for (line, _), f in zip(long, found, strict=True) if f)

    def counts(self) -> dict[str, int]:
        """Characters of change text and of those on lines copied from CODE records (metadata counters)."""
        return {"change_chars:total": self.change_chars, "change_chars:in_code_records": self.duplicate_chars}
