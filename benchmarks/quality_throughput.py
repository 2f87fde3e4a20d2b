"""Throughput of the data-quality blocks (filter + redact + dedup signature) on the Go
standard library, next to plain reading of the same files; the ratio is the figure.

    .venv/bin/python benchmarks/quality_throughput.py [--limit-mb 20]

Each measurement runs in a fresh subprocess so peak RSS (ru_maxrss) is its own. `dedup_old` is the
signature path before vectorised shingle hashing (one crc32 call per shingle, then datasketch's
`update_batch`), kept here so the speed-up is measured on the same data in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import zlib
from functools import cache
from pathlib import Path

import numpy as np

from gocoder_assets.categorized_records.filters import FilterOptions, content_drop_reason, path_drop_reason
from gocoder_assets.categorized_records.redact import redact
from gocoder_assets.dedup_index.dedup import NUM_PERM, SCHEME, SEED, SHINGLE, TOKEN, signature
from gocoder_assets.sources.goroot import default_goroot


@cache
def _old_template():  # -> datasketch.MinHash
    from datasketch import MinHash  # noqa: PLC0415 - as the old path did, off the import-time clock

    return MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME, hashfunc=zlib.crc32)


def old_signature(text: str) -> np.ndarray:
    """The previous `dedup.signature`: a Python set of joined 5-gram strings, each crc32-hashed."""
    tokens = TOKEN.findall(text)
    grams = {" ".join(tokens[i : i + SHINGLE]).encode() for i in range(max(1, len(tokens) - SHINGLE + 1))}
    t = _old_template()
    m = type(t)(num_perm=NUM_PERM, seed=SEED, permutations=t.permutations, scheme=SCHEME, hashfunc=zlib.crc32)
    m.update_batch(list(grams))
    return m.hashvalues.astype(np.uint32)


def corpus(limit_mb: float) -> list[Path]:
    root = default_goroot()
    files, total = [], 0
    for path in sorted((root / "src").rglob("*.go")):
        if path_drop_reason(path.relative_to(root).as_posix(), FilterOptions()) is None:
            files.append(path)
            total += path.stat().st_size
            if total > limit_mb * 1e6:
                break
    return files


def run(mode: str, limit_mb: float) -> dict:
    files = corpus(limit_mb)
    options = FilterOptions()
    signature(""), old_signature("")  # permutation tables and lazy imports, not per-file work
    started, nbytes = time.perf_counter(), 0
    for path in files:
        text = path.read_text(encoding="utf-8", errors="strict")
        nbytes += len(text.encode())
        if mode == "read":
            continue
        if mode in ("filter", "all") and content_drop_reason(text, options):
            continue
        if mode in ("redact", "all"):
            text, _ = redact(text)
        if mode in ("dedup", "all"):
            signature(text)
        if mode == "dedup_old":
            old_signature(text)
    seconds = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mb = nbytes / 1e6
    return {"mode": mode, "files": len(files), "MB": mb, "s": seconds, "MB_s": mb / seconds, "rss_MB": rss_mb}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit-mb", type=float, default=20.0)
    parser.add_argument("--mode")
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run(args.mode, args.limit_mb)))
        return
    results = []
    for mode in ("read", "filter", "redact", "dedup_old", "dedup", "all"):
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--limit-mb", str(args.limit_mb)],
                             check=True, capture_output=True, text=True).stdout  # fmt: skip
        results.append(json.loads(out.strip().splitlines()[-1]))
    base = results[0]["MB_s"]
    print(f"{'stage':<9} {'files':>6} {'MB':>7} {'MB/s':>8} {'vs read':>8} {'peak RSS MB':>12}")
    for r in results:
        ratio = r["MB_s"] / base
        print(f"{r['mode']:<9} {r['files']:>6} {r['MB']:>7.1f} {r['MB_s']:>8.2f} {ratio:>8.3f} {r['rss_MB']:>12.0f}")
    by_mode = {r["mode"]: r for r in results}
    speedup = by_mode["dedup"]["MB_s"] / by_mode["dedup_old"]["MB_s"]
    print(f"dedup signature speed-up, new vs old path: {speedup:.2f}x")


if __name__ == "__main__":
    main()
