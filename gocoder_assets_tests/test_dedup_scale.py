"""The dedup index at scale: Redis mode decides exactly what memory mode decides, in any partition order,
without one build's keys leaking into the next, holding a bounded number of partitions in memory.

Corpora are written here as categorized_records would leave them (records.parquet + signatures.npy per
partition), with real MinHash signatures of Go-like text for the planted duplicates; Redis is a real
redis-server on 127.0.0.1 (servers.redis_server).
"""

from __future__ import annotations

import collections
import dataclasses
import gc
import random
import tracemalloc
import weakref
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from gocoder_assets.dedup_index import dedup, index
from gocoder_assets.dedup_index.dedup import Candidate, content_sha, deduplicate, signature
from gocoder_assets.dedup_index.engine import Deduper, Lookups, PartitionView, lsh_params
from gocoder_assets.dedup_index.options import DedupOptions
from gocoder_assets.dedup_index.stores import RedisStore
from gocoder_assets.sources.base import RepoInfo
from gocoder_assets.storage import Layout, file_sha256
from gocoder_assets_tests import servers


def go_file(seed: int, lines: int = 200) -> str:
    rng = random.Random(seed)
    words = [f"w{seed}_{i}" for i in range(400)]
    body = [f"\t{rng.choice(words)} := {rng.choice(words)}({rng.choice(words)}, {i})" for i in range(lines)]
    return "package p\n\nfunc f() {\n" + "\n".join(body) + "\n}\n"


def near(text: str, seed: int) -> str:
    """Three lines of two hundred changed: Jaccard ~0.9, above the 0.7 threshold."""
    lines = text.splitlines()
    for i in (40, 100, 160):
        lines[i] = f"\tedited{seed}_{i} := other{seed}({i})"
    return "\n".join(lines) + "\n"


def repo(key: str, stars: int | None) -> RepoInfo:
    return RepoInfo(key, key, f"https://example.com/{key}", stars, "MIT", "main", "0" * 40, "2026-01-01", "test")


def write_partition(layout: Layout, key: str, files: dict[str, str]) -> None:
    """records.parquet with one record per file plus one record without a signature, and signatures.npy."""
    rows = [
        {"record_id": f"{key}|{path}", "path": path, "content_sha": content_sha(t), "sig_row": i}
        for i, (path, t) in enumerate(files.items())
    ]
    rows.append({"record_id": f"{key}|no-signature", "path": "NOTES", "content_sha": None, "sig_row": None})
    random.Random(key).shuffle(rows)  # stored order is not path order
    pq.write_table(pa.Table.from_pylist(rows), layout.categorized_file(key))
    np.save(layout.signatures_file(key), np.stack([signature(t) for t in files.values()]))


BASE = {n: go_file(n) for n in range(1, 8)}
# stars: zeta/big 500 > alpha/mid 50 = beta/mid 50 (alpha wins on name) > aaa/zero 0 > none/unknown (None)
PLANTED = {
    "beta/mid": (50, {"x.go": BASE[1], "d.go": near(BASE[3], 1), "u.go": go_file(31)}),
    "none/unknown": (None, {"b.go": BASE[2], "e.go": BASE[5], "u.go": go_file(41)}),
    "zeta/big": (500, {"a.go": BASE[1], "z.go": BASE[1], "b.go": BASE[2], "n.go": BASE[6],
                       "m.go": near(BASE[6], 2), "u.go": go_file(11)}),
    "alpha/mid": (50, {"a.go": BASE[1], "c.go": near(BASE[2], 3), "d.go": BASE[3], "u.go": go_file(21)}),
    "aaa/zero": (0, {"e.go": near(BASE[5], 4), "u.go": go_file(51)}),
}  # fmt: skip
EXPECTED = {
    ("zeta/big|z.go", "exact", "zeta/big|a.go"),  # same repo: path decides
    ("zeta/big|n.go", "near", "zeta/big|m.go"),
    ("alpha/mid|a.go", "exact", "zeta/big|a.go"),  # most stars wins
    ("alpha/mid|c.go", "near", "zeta/big|b.go"),
    ("beta/mid|x.go", "exact", "zeta/big|a.go"),
    ("beta/mid|d.go", "near", "alpha/mid|d.go"),  # equal stars: name decides
    ("none/unknown|b.go", "exact", "zeta/big|b.go"),
    ("none/unknown|e.go", "near", "aaa/zero|e.go"),  # unknown stars rank below zero
}


def planted(root: Path, spec: dict[str, tuple[int | None, dict[str, str]]] = PLANTED) -> tuple[Layout, dict]:
    layout = Layout(root)
    for key, (_, files) in spec.items():
        write_partition(layout, key, files)
    return layout, {key: repo(key, stars) for key, (stars, _) in spec.items()}


def triples(layout: Layout) -> set[tuple[str, str, str]]:
    rows = pq.read_table(layout.dedup_file).to_pylist()
    assert [r["record_id"] for r in rows] == sorted(r["record_id"] for r in rows)
    return {(r["record_id"], r["reason"], r["duplicate_of"]) for r in rows}


@pytest.fixture
def redis_url(tmp_path: Path):
    with servers.redis_server(tmp_path / "redis") as url:
        yield url


def test_redis_mode_decides_exactly_what_memory_mode_does(tmp_path: Path, redis_url: str) -> None:
    layout, repos = planted(tmp_path / "data")
    counts = index.build_index(layout, repos, DedupOptions())
    memory_file = file_sha256(layout.dedup_file)
    assert triples(layout) == EXPECTED
    assert counts["zeta/big"] == {"dedup_in": 6, "exact_dups": 1, "near_dups": 1, "kept": 4}
    redis_counts = index.build_index(layout, repos, DedupOptions(lsh_storage="redis", redis_url=redis_url))
    assert file_sha256(layout.dedup_file) == memory_file  # byte for byte
    assert redis_counts == counts
    assert redis.Redis.from_url(redis_url).dbsize() == 0  # the build deleted its keys
    # and the whole-corpus, in-memory function agrees
    candidates = [
        Candidate(r["record_id"], key, r["path"], repos[key].stars, r["content_sha"], r["sig_row"])
        for key in repos
        for r in pq.read_table(layout.categorized_file(key)).to_pylist()
        if r["sig_row"] is not None
    ]
    sigs = {key: np.load(layout.signatures_file(key)) for key in repos}
    decisions, _ = deduplicate(candidates, sigs)
    assert {(d.record_id, d.reason, d.duplicate_of) for d in decisions} == EXPECTED


def test_partition_order_does_not_change_the_verdict(tmp_path: Path, redis_url: str) -> None:
    layout, repos = planted(tmp_path / "data")
    options = DedupOptions(lsh_storage="redis", redis_url=redis_url)
    seen = set()
    for seed in range(4):
        keys = list(repos)
        random.Random(seed).shuffle(keys)
        index.build_index(layout, {k: repos[k] for k in keys}, options)
        seen.add(file_sha256(layout.dedup_file))
    assert len(seen) == 1
    assert triples(layout) == EXPECTED
    # Stars, not listing order, decide: make alpha/mid the best-starred and zeta's copies become the drops.
    repos["alpha/mid"] = repo("alpha/mid", 1000)
    index.build_index(layout, repos, options)
    got = triples(layout)
    assert ("zeta/big|a.go", "exact", "alpha/mid|a.go") in got and ("zeta/big|b.go", "near", "alpha/mid|c.go") in got
    index.build_index(layout, repos, DedupOptions())
    assert triples(layout) == got


def test_a_build_never_sees_another_builds_keys(tmp_path: Path, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    options = DedupOptions(lsh_storage="redis", redis_url=redis_url)
    first, first_repos = planted(tmp_path / "first")
    # A build that died without closing: its keys hold every planted original as kept.
    dead = RedisStore(options, lsh_params(options.threshold, dedup.NUM_PERM)[0])
    order = sorted(first_repos, key=lambda k: index.repo_rank(k, first_repos[k]))
    lookups = Lookups(
        lambda o, row: index.RowFile(first.signatures_file(order[o]))[row], lambda o: index.load_ids(first, order[o])
    )
    deduper = Deduper(dead, options.threshold, dedup.NUM_PERM, lookups)
    for ordinal, key in enumerate(order):
        deduper.process(ordinal, index.load_view(first, key))
    assert client.dbsize() > 1
    # A second corpus on the same server, every file a copy of one the dead build kept.
    second_spec = {"other/one": (5, {"p.go": BASE[1], "q.go": near(BASE[2], 9)}), "other/two": (1, {"r.go": BASE[3]})}
    second, second_repos = planted(tmp_path / "second", second_spec)
    index.build_index(second, second_repos, DedupOptions())
    expected = file_sha256(second.dedup_file)
    assert triples(second) == set()  # no copies within the second corpus
    index.build_index(second, second_repos, options)
    assert file_sha256(second.dedup_file) == expected
    assert any(k.startswith(dead.base.encode()) for k in client.scan_iter())  # fresh: left alone
    # Once its heartbeat is stale the next build deletes it.
    stale = DedupOptions(lsh_storage="redis", redis_url=redis_url, stale_after_s=0.0)
    index.build_index(second, second_repos, stale)
    assert client.dbsize() == 0

    # A build that fails mid-way leaves the previous file, no keys and no spill folder.
    def failing(layout: Layout, key: str) -> PartitionView:
        if key == "other/two":
            raise OSError("disk went away")
        return index.load_view(layout, key)

    with pytest.raises(OSError, match="disk went away"):
        index.build_index(second, second_repos, dataclasses.replace(options, spill_rows=1), load=failing)
    assert file_sha256(second.dedup_file) == expected
    assert client.dbsize() == 0
    assert not list(second.dedup_file.parent.glob(".runs.*"))


RECORDS = 200


def synthetic(root: Path, partitions: int, records: int = RECORDS) -> tuple[Layout, dict]:
    """Random signatures (no near copies) with every tenth record an exact copy of one in partition 0."""
    layout, repos = Layout(root), {}
    rng = np.random.default_rng(7)
    for p in range(partitions):
        key = f"org/repo{p:04d}"
        shas = [content_sha(f"{key}/{i}" if i % 10 or p == 0 else f"org/repo0000/{i}") for i in range(records)]
        table = {"record_id": [f"{key}|{i}" for i in range(records)], "path": [f"f{i:05d}.go" for i in range(records)],
                 "content_sha": shas, "sig_row": list(range(records))}  # fmt: skip
        pq.write_table(pa.table(table), layout.categorized_file(key))
        np.save(layout.signatures_file(key), rng.integers(0, 2**32, (records, dedup.NUM_PERM), dtype=np.uint32))
        repos[key] = repo(key, 1000 - p)
    return layout, repos


def traced_build(layout: Layout, repos: dict, options: DedupOptions) -> tuple[int, int]:
    """(tracemalloc peak bytes, most partition views alive at once) over one build."""
    alive, most = [0], [0]

    def counted(layout: Layout, key: str) -> PartitionView:
        view = index.load_view(layout, key)
        alive[0] += 1
        most[0] = max(most[0], alive[0])
        weakref.finalize(view, lambda: alive.__setitem__(0, alive[0] - 1))
        return view

    lsh_params(options.threshold, dedup.NUM_PERM)  # scipy import and parameter search outside the trace
    gc.collect()
    tracemalloc.start()
    try:
        counts = index.build_index(layout, repos, options, load=counted)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sum(c.get("exact_dups", 0) for c in counts.values()) == RECORDS // 10 * (len(repos) - 1)
    return peak, most[0]


def test_redis_build_memory_does_not_grow_with_the_corpus(tmp_path: Path, redis_url: str) -> None:
    """Peak traced memory over 2N partitions stays within 25% of N's in Redis mode; memory mode, holding
    the corpus's buckets, grows by half or more, so the measurement does see corpus-sized state. One
    partition's records are loaded at a time (two at most, while the next one loads)."""
    bounded = DedupOptions(lsh_storage="redis", redis_url=redis_url, spill_rows=64, view_cache=2)
    modes = {"redis": bounded, "memory": dataclasses.replace(bounded, lsh_storage="memory")}
    corpora = {n: synthetic(tmp_path / f"n{n}", n) for n in (8, 16)}
    for options in modes.values():  # first-call allocations (imports, caches, script loading) untraced
        index.build_index(*corpora[8], options)
    peaks: dict[str, list[int]] = collections.defaultdict(list)
    for n, (layout, repos) in corpora.items():
        for name, options in modes.items():
            peak, most = traced_build(layout, repos, options)
            peaks[name].append(peak)
            assert most <= 2, (name, n, most)
    assert peaks["redis"][1] < 1.25 * peaks["redis"][0], peaks
    assert peaks["memory"][1] > 1.5 * peaks["memory"][0], peaks
