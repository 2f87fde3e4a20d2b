"""Per-process caches of per-run loads (repository list, dedup index, tokenizer), never stale.

A worker process handles many partitions of a run; loading the tokenizer or the dedup index once per
partition would cost more than the work. Each cache is keyed by the file's stamp: path, inode, mtime and
size. Every artifact is written by renaming a new file into place (storage.atomic_file), which gives it
a new inode, so a rewritten file always misses the cache, even within the same second.
"""

from __future__ import annotations

from pathlib import Path

Stamp = tuple[str, int, int, int] | tuple[str, None, None, None]


def file_stamp(path: Path) -> Stamp:
    """(path, inode, mtime_ns, size), or (path, None, None, None) when it does not exist."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return (str(path), None, None, None)
    return (str(path), st.st_ino, st.st_mtime_ns, st.st_size)
