"""The raw API archive of one partition: every response page, compressed, plus page cursors.

Layout under ``<cache_dir>/<partition dir>/``: ``snapshot.json`` (the commit the archive
belongs to), ``state.json`` (per stream: pages archived, next cursor, done) and
``<stream>/<n>.json.gz`` (one API response page each). A page file is written (atomically)
before the state that counts it, so a process killed at any point leaves either the old or
the new state, never a state naming a missing page: the next run resumes at the saved cursor
and re-fetches nothing it already holds. The same files serve ``replay`` mode, where no page
may be fetched at all.

JSON may carry lone UTF-16 surrogates (``"\ud800"``, GitHub passes them through from user text);
they cannot be written as UTF-8. Such a page is stored with ASCII escapes, so exactly as GitHub sent
it, and every page is decoded the same way, live or archived: each lone surrogate becomes U+FFFD
and is counted (``surrogates``), so records are valid UTF-8 and live equals replay.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gocoder_assets.storage import atomic_file, key_to_dirname, read_json, write_json

Fetch = Callable[[str | None, int], dict[str, Any]]  # (cursor, page size) -> response data


_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads joins valid pairs, so any left is a lone one
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def replace_surrogates(value: Any) -> tuple[Any, int]:
    """``value`` (parsed JSON) with every lone surrogate replaced by U+FFFD, and how many there were."""
    found = 0

    def clean(v: Any) -> Any:
        nonlocal found
        if isinstance(v, str):
            out, n = _SURROGATE.subn("\ufffd", v)
            found += n
            return out
        if isinstance(v, dict):
            return {clean(k): clean(x) for k, x in v.items()}
        return [clean(x) for x in v] if isinstance(v, list) else v

    return clean(value), found


class ReplayMissing(RuntimeError):
    """Replay mode needs a page the archive does not hold."""


def _dig(data: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for name in path:
        data = data.get(name) or {}
    return data


class ApiArchive:
    """Archived pages of one partition, for one snapshot commit."""

    def __init__(self, cache_dir: Path, key: str, snapshot: str, *, replay: bool) -> None:
        self.dir = Path(cache_dir) / key_to_dirname(key)
        self.replay = replay
        marker = self.dir / "snapshot.json"
        if marker.exists() and read_json(marker).get("commit_sha") != snapshot:
            if replay:
                raise ReplayMissing(f"{key}: the archive holds another snapshot than {snapshot}")
            shutil.rmtree(self.dir)  # the repo moved on: a new snapshot starts a new archive
        if not marker.exists():
            if replay:
                raise ReplayMissing(f"{key}: no API archive in {self.dir} to replay")
            write_json(marker, {"commit_sha": snapshot})
        self._lock = threading.Lock()  # streams are fetched by several threads; the state file is shared
        self._state_file = self.dir / "state.json"
        self.state: dict[str, dict[str, Any]] = read_json(self._state_file) if self._state_file.exists() else {}
        self.surrogates = 0  # lone surrogates replaced by U+FFFD in the pages decoded so far

    def _decode(self, text: str) -> dict[str, Any]:
        data, found = replace_surrogates(json.loads(text)) if _ESCAPED_SURROGATE.search(text) else (json.loads(text), 0)
        with self._lock:
            self.surrogates += found
        return data

    def _page_file(self, stream: str, index: int) -> Path:
        return self.dir / urllib.parse.quote(stream, safe="") / f"{index:05d}.json.gz"

    def read_page(self, stream: str, index: int) -> dict[str, Any]:
        with gzip.open(self._page_file(stream, index), "rt", encoding="utf-8") as f:
            return self._decode(f.read())

    def save_page(
        self, stream: str, index: int, data: dict[str, Any], cursor: str | None, done: bool, count: int
    ) -> dict[str, Any]:
        """Archive one page; return it as ``read_page`` will (so live and replayed runs see the same)."""
        path = self._page_file(stream, index)
        text = json.dumps(data, ensure_ascii=False, sort_keys=True)  # one write: json.dump writes per token
        clean = True
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: keep them as the escapes GitHub sent
            text = json.dumps(data, ensure_ascii=True, sort_keys=True)
            raw, clean = text.encode("ascii"), False
        with atomic_file(path) as tmp, gzip.open(tmp, "wb", compresslevel=6) as f:
            f.write(raw)
        with self._lock:
            self.state[stream] = {"pages": index + 1, "cursor": cursor, "done": done, "count": count}
            write_json(self._state_file, self.state)
        return data if clean else self._decode(text)

    def pages(
        self, stream: str, fetch: Fetch, path: tuple[str, ...], page_size: int, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every page of one cursor-paginated connection: archived ones first, then fetched ones.

        ``path`` leads from the response data to the connection (``pageInfo`` + ``nodes``);
        ``limit`` caps the number of nodes (the last page asks for only what is missing).
        """
        st = self.state.get(stream, {"pages": 0, "cursor": None, "done": False, "count": 0})
        for i in range(st["pages"]):
            yield self.read_page(stream, i)
        if st["done"]:
            return
        if self.replay:
            raise ReplayMissing(f"replay: stream {stream!r} in {self.dir} is incomplete (page {st['pages']})")
        index, cursor, count = st["pages"], st["cursor"], st["count"]
        while limit is None or count < limit:
            size = page_size if limit is None else min(page_size, limit - count)
            data = fetch(cursor, size)
            conn = _dig(data, path)
            count += len(conn.get("nodes") or [])
            info = conn.get("pageInfo") or {}
            cursor = info.get("endCursor")
            done = not info.get("hasNextPage") or (limit is not None and count >= limit)
            yield self.save_page(stream, index, data, cursor, done, count)
            if done:
                return
            index += 1
