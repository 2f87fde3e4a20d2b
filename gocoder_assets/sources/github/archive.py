"""The raw API archive of one partition: every response page, compressed, plus page cursors.

Layout under ``<cache_dir>/<partition dir>/``: ``snapshot.json`` (the collection rounds: one per
snapshot key, each with the high-water marks it finished with), ``state.json`` (per stream: pages
archived, next cursor, done) and ``<stream>/<n>.json.gz`` (one API response page each). A page file
is written (atomically) before the state that counts it, so a process killed at any point leaves
either the old or the new state, never a state naming a missing page: the next run resumes at the
saved cursor and re-fetches nothing it already holds. The same files serve ``replay`` mode, where no
page may be fetched at all.

A new snapshot does not start over: it opens a new *round* beside the old pages (the source then
fetches only what changed since the previous round's high-water mark), because refetching a whole
repository per head commit costs the API budget nearly all of its pages again. A round that never
finished (the run was killed) is resumed under the new snapshot rather than left half done.

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
Stop = Callable[[dict[str, Any]], bool]  # (connection of the page just fetched) -> nothing more is wanted


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
    """Archived pages of one partition, for every collection round up to the current ``snapshot`` key."""

    def __init__(self, cache_dir: Path, key: str, snapshot: str, *, replay: bool) -> None:
        self.dir = Path(cache_dir) / key_to_dirname(key)
        self.replay = replay
        self._marker = marker = self.dir / "snapshot.json"
        rounds: list[dict[str, Any]] | None = read_json(marker).get("rounds") if marker.exists() else []
        if rounds is None:  # an archive of the layout before rounds: its streams are named differently
            if replay:
                raise ReplayMissing(f"{key}: the archive predates collection rounds; collect it live first")
            shutil.rmtree(self.dir)
            rounds = []
        if not rounds or rounds[-1]["key"] != snapshot:
            if replay:
                held = f"holds another snapshot than {snapshot}" if rounds else f"is missing in {self.dir}"
                raise ReplayMissing(f"{key}: the API archive {held}; nothing to replay")
            if rounds and rounds[-1].get("high_water") is None:
                rounds[-1]["key"] = snapshot  # killed mid-round: finish that round, now for this snapshot
            else:
                rounds.append({"key": snapshot, "high_water": None})
            write_json(marker, {"rounds": rounds})
        self.rounds = rounds
        self.round = len(rounds) - 1
        self._lock = threading.Lock()  # streams are fetched by several threads; the state file is shared
        self._state_file = self.dir / "state.json"
        self.state: dict[str, dict[str, Any]] = read_json(self._state_file) if self._state_file.exists() else {}
        self.surrogates = 0  # lone surrogates replaced by U+FFFD in the pages decoded so far

    def high_water(self, kind: str) -> str | None:
        """The newest ``updatedAt`` of ``kind`` the previous finished round saw (None: no earlier round)."""
        return (self.rounds[self.round - 1].get("high_water") or {}).get(kind) if self.round else None

    def finish_round(self, high_water: dict[str, str | None]) -> None:
        """Mark the current round complete; the next snapshot fetches only what changed after these marks."""
        if self.replay or self.rounds[self.round].get("high_water") is not None:
            return
        self.rounds[self.round]["high_water"] = high_water
        write_json(self._marker, {"rounds": self.rounds})

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
        self,
        stream: str,
        index: int,
        data: dict[str, Any],
        cursor: str | None,
        done: bool,
        count: int,
        end: bool = True,
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
            self.state[stream] = {"pages": index + 1, "cursor": cursor, "done": done, "count": count, "end": end}
            write_json(self._state_file, self.state)
        return data if clean else self._decode(text)

    def pages(
        self,
        stream: str,
        fetch: Fetch,
        path: tuple[str, ...],
        page_size: int,
        limit: int | None = None,
        *,
        stop: Stop | None = None,
        probe: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every page of one cursor-paginated connection: archived ones first, then fetched ones.

        ``path`` leads from the response data to the connection (``pageInfo`` + ``nodes``);
        ``limit`` caps the number of nodes (the last page asks for only what is missing). A stream
        that stopped at an earlier, smaller ``limit`` while GitHub had more is continued from its
        cursor (a larger ``max_prs`` extends it); one that reached its end never is. ``stop`` ends
        the stream after a page (an incremental stream reached what an earlier round holds);
        ``probe`` makes a fresh stream's first page that small, doubling per page, so the common
        "nothing changed" answer costs one small page.
        """
        st = self.state.get(stream, {"pages": 0, "cursor": None, "done": False, "count": 0})
        for i in range(st["pages"]):
            yield self.read_page(stream, i)
        extend = st["done"] and not st.get("end", True) and limit is not None and st["count"] < limit
        if st["done"] and (not extend or self.replay):
            return
        if self.replay:
            raise ReplayMissing(f"replay: stream {stream!r} in {self.dir} is incomplete (page {st['pages']})")
        index, cursor, count = st["pages"], st["cursor"], st["count"]
        while limit is None or count < limit:
            size = page_size if limit is None else min(page_size, limit - count)
            if probe:
                size = min(size, probe << min(index, 16))
            data = fetch(cursor, size)
            conn = _dig(data, path)
            count += len(conn.get("nodes") or [])
            info = conn.get("pageInfo") or {}
            cursor = info.get("endCursor")
            end = not info.get("hasNextPage") or bool(stop and stop(conn))
            done = end or (limit is not None and count >= limit)
            yield self.save_page(stream, index, data, cursor, done, count, end)
            if done:
                return
            index += 1
