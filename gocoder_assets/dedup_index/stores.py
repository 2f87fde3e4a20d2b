"""Where the index keeps its corpus-wide state while it is built: LSH buckets and first-seen content hashes.

Both stores hold the same things, so both modes decide identically: bucket keys (band, 64-bit hash of the
band's values) mapping to the members kept in them, and content sha -> the first member seen with it.
A member is an int, ``partition ordinal << 32 | position in the partition's rank order``, so the smallest
member of a bucket is the best-ranked copy, and members stay 8 bytes in Redis.

Why not datasketch's own Redis storage (``MinHashLSH(storage_config={"type": "redis", ...})``): its
``query`` costs one round trip per band (25 at our threshold), so 10 million records would be 250 million
round trips. Here a whole partition's lookups go in one pipelined round trip, and its inserts in another.
Buckets live in ``bucket_shards`` Redis hashes per band rather than one key per bucket, so the keys of a
build are a known, short list that is deleted when the build ends.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
import uuid

import numpy as np

from gocoder_assets.dedup_index.options import DedupOptions

SHA_SHARDS = 16  # content-sha hashes, by first hex digit
_UNLINK = 1_000  # keys per UNLINK


class MemoryStore:
    """Everything in this process: O(corpus) memory, no server. The default for small corpora and tests."""

    def __init__(self) -> None:
        self._buckets: dict[int, int | list[int]] = {}  # most buckets hold one member: no list for those
        self._first: dict[str, int] = {}

    def first_members(self, shas: list[str], members: list[int]) -> list[int | None]:
        """For each sha in order, the member registered first with it (None: this one, now registered)."""
        out: list[int | None] = []
        for sha, member in zip(shas, members, strict=True):
            first = self._first.setdefault(sha, member)
            out.append(None if first == member else first)
        return out

    def buckets(self, keys: np.ndarray) -> dict[int, list[int]]:
        """Members of the buckets that hold any, by key."""
        found = {}
        for k in keys.tolist():
            v = self._buckets.get(k)
            if v is not None:
                found[k] = [v] if isinstance(v, int) else v
        return found

    def add(self, keys: np.ndarray, members: np.ndarray) -> None:
        """Put member i in bucket keys[i]."""
        table = self._buckets
        for k, m in zip(keys.tolist(), members.tolist(), strict=True):
            v = table.get(k)
            if v is None:
                table[k] = m
            elif isinstance(v, int):
                table[k] = [v, m]
            else:
                v.append(m)

    def heartbeat(self) -> None:
        pass

    def close(self) -> None:
        self._buckets.clear()
        self._first.clear()


# Each partition's lookups and writes are a few Lua calls (in chunks): redis-py spends microseconds on
# every argument and reply element, and a script spends microseconds on every redis.call, so fields go
# in one packed string, grouped by hash, one HMGET / HSET per group. A group is a 2-byte key index and a
# 4-byte count, then count 8-byte fields (and, for HSET, count 8-byte values).
_GET = """
local blob, off, out, base = ARGV[1], 1, {}, 0
while off <= #blob do
  local k, n = struct.unpack('>I2I4', blob, off)
  local fields = {}
  for i = 1, n do fields[i] = string.sub(blob, off + 6 + (i - 1) * 8, off + 13 + (i - 1) * 8) end
  local values = redis.call('HMGET', KEYS[k + 1], unpack(fields))
  for i = 1, n do
    local v = values[i]
    if v then out[#out + 1] = struct.pack('>I4I4', base + i - 1, #v) .. v end
  end
  off, base = off + 6 + n * 8, base + n
end
return table.concat(out)
"""
_SET = """
local blob, off = ARGV[1], 1
while off <= #blob do
  local k, n = struct.unpack('>I2I4', blob, off)
  local args = {}
  for i = 1, n do
    local at = off + 6 + (i - 1) * 16
    args[2 * i - 1], args[2 * i] = string.sub(blob, at, at + 7), string.sub(blob, at + 8, at + 15)
  end
  redis.call('HSET', KEYS[k + 1], unpack(args))
  off = off + 6 + n * 16
end
return 1
"""
_FIRST = """
local blob, out = ARGV[1], {}
for off = 1, #blob, 42 do
  local key, field = KEYS[struct.unpack('>I2', blob, off) + 1], string.sub(blob, off + 2, off + 33)
  local member = string.sub(blob, off + 34, off + 41)
  if redis.call('HSETNX', key, field, member) == 1 then out[#out + 1] = '\\0' .. member
  else out[#out + 1] = '\\1' .. redis.call('HGET', key, field) end
end
return table.concat(out)
"""
_APPEND = """
local blob = ARGV[1]
for off = 1, #blob, 18 do
  local key, field = KEYS[struct.unpack('>I2', blob, off) + 1], string.sub(blob, off + 2, off + 9)
  local old = redis.call('HGET', key, field) or ''
  redis.call('HSET', key, field, old .. string.sub(blob, off + 10, off + 17))
end
return 1
"""
_CHUNK = 20_000  # entries per Lua call: each call blocks the server for tens of milliseconds at most
_GROUP = 3_000  # fields per HMGET / HSET inside a script (unpack() is limited to ~8,000 values)
_MEMBER = np.dtype([("key", ">u2"), ("field", ">u8"), ("member", ">u8")])


class RedisStore:
    """Buckets and first-seen hashes in Redis under ``<key_prefix>:<build id>:``, deleted on close.

    Bucket key k (a 64-bit hash of band and values) lives in hash number ``k % (bands * bucket_shards)``,
    field = k's 8 bytes, value = its members as 8-byte big-endian ints; a content sha lives in
    ``sha:<its first hex digit>``, value = the first member seen with it.
    """

    def __init__(self, options: DedupOptions, bands: int) -> None:
        import redis  # noqa: PLC0415 - only the Redis mode needs the client

        self.options = options
        self.bands = bands
        self.client = redis.Redis.from_url(options.require_redis_url())
        self.build_id = uuid.uuid4().hex[:16]
        self.base = f"{options.key_prefix}:{self.build_id}"
        self._registry = f"{options.key_prefix}:builds"
        self._keys = self.key_names(self.base, bands, options.bucket_shards)
        if len(self._keys) > 1 << 16:
            msg = f"bucket_shards={options.bucket_shards} gives {len(self._keys)} keys; at most 65,536 fit"
            raise ValueError(msg)
        scripts = (_GET, _SET, _FIRST, _APPEND)
        self._get, self._set, self._first, self._append = (self.client.register_script(s) for s in scripts)
        self._seen: dict[int, bytes] = {}
        self._reap_stale()
        self.heartbeat()

    # -- keys ------------------------------------------------------------------------------------
    @staticmethod
    def key_names(base: str, bands: int, shards: int) -> list[str]:
        """Every key a build can write: the bucket hashes, band by band, then the sha hashes."""
        return [f"{base}:b{b}:{s}" for b in range(bands) for s in range(shards)] + [
            f"{base}:sha:{s:x}" for s in range(SHA_SHARDS)
        ]

    def _grouped(
        self, keys: np.ndarray, values: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[tuple[bytes, int]]]:
        """Keys (and 8-byte values) packed as groups by Redis hash in chunks of (bytes, fields); and the
        order the keys went in."""
        index = keys % np.uint64(self.bands * self.options.bucket_shards)
        order = np.argsort(index, kind="stable")
        index, fields = index[order], keys[order].astype(">u8")
        payload = fields
        if values is not None:  # np.stack would go back to native byte order
            payload = np.empty((len(keys), 2), dtype=">u8")
            payload[:, 0], payload[:, 1] = fields, values[order]
        chunks, parts, size = [], [], 0
        bounds = np.flatnonzero(np.diff(index)) + 1
        for group_start, group_end in zip([0, *bounds.tolist()], [*bounds.tolist(), len(index)], strict=True):
            for start in range(group_start, group_end, _GROUP):
                end = min(start + _GROUP, group_end)
                parts += [struct.pack(">HI", int(index[start]), end - start), payload[start:end].tobytes()]
                size += end - start
                if size >= _CHUNK:
                    chunks.append((b"".join(parts), size))
                    parts, size = [], 0
        if parts:
            chunks.append((b"".join(parts), size))
        return order, chunks

    def _unlink(self, names: list[str]) -> None:
        for i in range(0, len(names), _UNLINK):
            self.client.unlink(*names[i : i + _UNLINK])

    def _reap_stale(self) -> None:
        """Delete the keys of builds that died without closing (no heartbeat for stale_after_s)."""
        now = time.time()
        for build_id, raw in self.client.hgetall(self._registry).items():
            info = json.loads(raw)
            if now - info["seen"] > self.options.stale_after_s:
                base = f"{self.options.key_prefix}:{build_id.decode()}"
                self._unlink(self.key_names(base, info["bands"], info["shards"]))
                self.client.hdel(self._registry, build_id)

    def heartbeat(self) -> None:
        info = {"seen": time.time(), "bands": self.bands, "shards": self.options.bucket_shards,
                "host": socket.gethostname(), "pid": os.getpid()}  # fmt: skip
        self.client.hset(self._registry, self.build_id, json.dumps(info))

    # -- the store ---------------------------------------------------------------------------------
    def first_members(self, shas: list[str], members: list[int]) -> list[int | None]:
        """HSETNX in order, server-side, so a sha repeated within this partition resolves to its first copy."""
        sha_key0 = self.bands * self.options.bucket_shards
        entry = np.dtype([("key", ">u2"), ("field", "S32"), ("member", ">u8")])
        entries = np.empty(len(shas), dtype=entry)
        entries["key"] = [sha_key0 + int(sha[0], 16) for sha in shas]
        entries["field"] = [bytes.fromhex(sha) for sha in shas]
        entries["member"] = members
        out: list[int | None] = []
        reply_dtype = np.dtype([("known", "u1"), ("member", ">u8")])
        for i in range(0, len(entries), _CHUNK):
            reply = np.frombuffer(self._first(keys=self._keys, args=[entries[i : i + _CHUNK].tobytes()]), reply_dtype)
            out += [int(m) if known else None for known, m in reply.tolist()]
        return out

    def buckets(self, keys: np.ndarray) -> dict[int, list[int]]:
        """Members of the buckets that hold any, by key (the script returns only those); remembered, as
        `add` writes whole values."""
        order, chunks = self._grouped(keys)
        found: dict[int, list[int]] = {}
        self._seen = {}
        position = 0
        for chunk, size in chunks:
            reply, off = self._get(keys=self._keys, args=[chunk]), 0
            while off < len(reply):
                i, n = struct.unpack_from(">II", reply, off)
                key = int(keys[order[position + i]])
                found[key] = np.frombuffer(reply, ">u8", n // 8, off + 8).tolist()
                self._seen[key] = reply[off + 8 : off + 8 + n]
                off += 8 + n
            position += size
        return found

    def add(self, keys: np.ndarray, members: np.ndarray) -> None:
        """Put member i in bucket keys[i]: buckets new to this build (nearly all) in grouped HSETs; the
        few that already held members, or get several here, appended one by one."""
        unique, counts = np.unique(keys, return_counts=True)
        repeated = set(unique[counts > 1].tolist()) | set(self._seen)
        simple = ~np.isin(keys, np.fromiter(repeated, dtype=np.uint64, count=len(repeated))) if repeated else None
        plain_keys, plain_members = (keys, members) if simple is None else (keys[simple], members[simple])
        for chunk, _ in self._grouped(plain_keys, plain_members)[1]:
            self._set(keys=self._keys, args=[chunk])
        if simple is not None and not simple.all():
            entries = np.empty(int((~simple).sum()), dtype=_MEMBER)
            entries["key"] = keys[~simple] % np.uint64(self.bands * self.options.bucket_shards)
            entries["field"], entries["member"] = keys[~simple], members[~simple]
            for start in range(0, len(entries), _CHUNK):
                self._append(keys=self._keys, args=[entries[start : start + _CHUNK].tobytes()])
        self._seen = {}

    def close(self) -> None:
        self._unlink(self._keys)
        self.client.hdel(self._registry, self.build_id)
        self.client.close()


def open_store(options: DedupOptions, bands: int) -> MemoryStore | RedisStore:
    return RedisStore(options, bands) if options.lsh_storage == "redis" else MemoryStore()
