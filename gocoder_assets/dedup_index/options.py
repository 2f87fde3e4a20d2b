"""The dedup index's settings, Dagster-free: `DedupConfig` takes its defaults from here.

``lsh_storage`` picks where the corpus-wide state lives while the index is built: "memory" (in this
process; fine for a few hundred repositories) or "redis" (a Redis server, so the building process holds
one partition at a time whatever the corpus size). Results are identical in both modes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Literal

LshStorage = Literal["memory", "redis"]
STORAGES: tuple[str, ...] = ("memory", "redis")


@dataclasses.dataclass(frozen=True)
class DedupOptions:
    """How duplicates are found, and where the index keeps its state while it is built.

    GOCODER_LSH_STORAGE overrides ``lsh_storage``; GOCODER_LSH_REDIS gives the Redis URL
    (``redis://host:port/db``), kept out of run config because it may carry a password.
    """

    threshold: float = 0.7  # Jaccard similarity (The Stack v2: 0.7)
    # The dedup_rates check stops a corpus whose exact + near duplicate share is above this. The Stack v1
    # found ~70% of Go bytes near-duplicated across GitHub; far above that means a broken source (the same
    # repository listed under many names, say).
    max_dup_rate: float = 0.9
    lsh_storage: LshStorage = "memory"
    redis_url: str = ""
    # Every build writes under "<key_prefix>:<build id>:" and deletes its keys when done; a build that
    # died without cleaning up is deleted by the next build once older than stale_after_s.
    key_prefix: str = "gocoder:dedup"
    stale_after_s: float = 24 * 3600
    # Redis hashes per LSH band. Every hash a partition touches costs one command per round trip
    # (redis-py spends ~100 us on each), so the default is one hash per band; more keep each hash smaller.
    bucket_shards: int = 1
    # Drop decisions held before a sorted run is spilled to disk (about 100 bytes each).
    spill_rows: int = 100_000
    # Partitions whose record ids and (memory-mapped) signatures stay open for checking LSH candidates.
    view_cache: int = 64

    def __post_init__(self) -> None:
        if self.lsh_storage not in STORAGES:
            msg = f"lsh_storage must be one of {STORAGES}, not {self.lsh_storage!r}"
            raise ValueError(msg)
        if not 0.0 < self.threshold <= 1.0:
            msg = f"threshold must be in (0, 1], not {self.threshold}"
            raise ValueError(msg)
        if self.bucket_shards < 1 or self.spill_rows < 1 or self.view_cache < 1:
            msg = "bucket_shards, spill_rows and view_cache must be at least 1"
            raise ValueError(msg)

    def require_redis_url(self) -> str:
        """Checked when a Redis build starts, not at import: definitions load without the server."""
        if not self.redis_url:
            msg = "lsh_storage='redis' needs a Redis URL: set GOCODER_LSH_REDIS=redis://host:port/db"
            raise ValueError(msg)
        return self.redis_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> DedupOptions:
        env = os.environ if env is None else env
        values: dict[str, object] = {"redis_url": env.get("GOCODER_LSH_REDIS", "")}
        if env.get("GOCODER_LSH_STORAGE"):
            values["lsh_storage"] = env["GOCODER_LSH_STORAGE"]
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
