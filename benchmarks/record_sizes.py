"""Record sizes in tokens per kind and category, with change records rendered as today (changed regions)
beside the old rendering (every touched file whole, before and after), on the same raw records.

    .venv/bin/python benchmarks/record_sizes.py --clones /path/to/clones [--max-commits 1000]
    .venv/bin/python benchmarks/record_sizes.py --goroot-packages net,fmt,strings

A folder of git clones (each subfolder one repository, bare or not) gives change records; the Go
distribution has files only. A tokenizer (default vocabulary, multi-line runs) is trained on the
train-split records of the current rendering, as tokenizer_model does, so the token figures are
those the pipeline would give; bytes per token are measured on the val-split repositories (or on
all records when there is only one repository, and then said so).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from gocoder_assets.categorized_records.categorize import Categorizer
from gocoder_assets.categorized_records.changes import ChangeOptions
from gocoder_assets.categorized_records.filters import FilterOptions
from gocoder_assets.categorized_records.serialize import MARKERS
from gocoder_assets.packed_shards.pack import assign_splits
from gocoder_assets.sources.base import RepoInfo
from gocoder_assets.tokenizer_model.encode import RecordCodec
from gocoder_assets.tokenizer_model.train import (
    TokenizerOptions,
    load_processor,
    record_chunks,
    round_trip_report,
    train_tokenizer,
)

BIG = 10**9
# The old rendering: every touched file whole on both sides, no per-file or per-record caps.
WHOLE_FILES = (
    dataclasses.replace(FilterOptions(), max_change_chars=BIG, max_change_files=BIG),
    ChangeOptions(function_context_lines=0, context_lines=BIG, max_file_lines=BIG, max_added_lines=BIG),
)


def source(args: argparse.Namespace) -> Any:
    if args.clones:
        from gocoder_assets.sources.git_clones import GitClonesSource  # noqa: PLC0415

        return GitClonesSource(Path(args.clones), max_commits=args.max_commits)
    from gocoder_assets.sources.goroot import GoRootSource, default_goroot  # noqa: PLC0415

    return GoRootSource(goroot=default_goroot(), packages=args.goroot_packages.split(","))


def categorize(repo: RepoInfo, raw: list[dict], options: tuple[FilterOptions, ChangeOptions] | None) -> tuple:
    cat = Categorizer(repo, *(options or ()))
    rows = list(cat.run(raw))
    return rows, cat.counts


def percentiles(values: list[int]) -> str:
    v = np.asarray(values)
    return f"{int(np.median(v)):>7,} {int(np.percentile(v, 99)):>8,} {int(v.max()):>8,}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clones", help="folder of git clones")
    parser.add_argument("--max-commits", type=int, default=1000)
    parser.add_argument("--goroot-packages", default="net,fmt,strings,encoding")
    args = parser.parse_args()
    src = source(args)
    rendered: dict[str, dict[str, list[dict]]] = {"regions": {}, "whole files": {}}
    counts: dict[str, collections.Counter[str]] = {name: collections.Counter() for name in rendered}
    for repo in src.list_repos():
        t0 = time.perf_counter()
        raw = list(src.collect(repo))
        t1 = time.perf_counter()
        rendered["regions"][repo.partition_key], c = categorize(repo, raw, None)
        t2 = time.perf_counter()
        counts["regions"].update(c)
        if args.clones:
            rendered["whole files"][repo.partition_key], c = categorize(repo, raw, WHOLE_FILES)
            counts["whole files"].update(c)
        print(f"{repo.partition_key}: collect {t1 - t0:.1f} s, categorize {t2 - t1:.1f} s, "
              f"{len(rendered['regions'][repo.partition_key])} records")  # fmt: skip

    rows = rendered["regions"]
    splits = assign_splits(list(rows))
    train = [r["text"] for k, rs in rows.items() if splits[k] == "train" for r in rs]
    val = [r["text"] for k, rs in rows.items() if splits[k] == "val" for r in rs]
    if not val:
        val, train = train, train
    options = TokenizerOptions()
    with tempfile.TemporaryDirectory() as tmp:
        sentences = (s for t in train for s in record_chunks(t, options.chunk_lines, options.max_sentence_length))
        train_tokenizer(sentences, Path(tmp), MARKERS, options)
        codec = RecordCodec(load_processor(Path(tmp)), MARKERS)
    report = round_trip_report(codec, val)
    held_out = "val repositories" if len(rows) > 1 and splits and "val" in splits.values() else "the training records"
    print(f"\ntokenizer: vocab {options.vocab_size}, bytes/token {report['bytes_per_token']:.2f} on {held_out}, "
          f"round trip exact {report['round_trip_exact_pct']:.1f}%")  # fmt: skip

    print(
        f"\n{'rendering':<12} {'kind':<9} {'category':<8} {'records':>7} {'p50 tok':>7} {'p99 tok':>8} {'max tok':>8}"
    )
    medians: dict[str, int] = {}
    for name, by_repo in rendered.items():
        groups: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
        records = [r for rs in by_repo.values() for r in rs]
        for r, ids in zip(records, codec.encode([r["text"] for r in records]), strict=True):
            groups[(r["kind"], r["category"])].append(len(ids))
            if r["kind"] == "change":
                groups[("change", "all")].append(len(ids))
        for (kind, category), values in sorted(groups.items()):
            print(f"{name:<12} {kind:<9} {category:<8} {len(values):>7} {percentiles(values)}")
        if groups.get(("change", "MIX")):
            medians[name] = int(np.median(groups[("change", "MIX")]))
    if len(medians) == 2:
        print(f"\nmedian MIX record: {medians['regions']:,} tokens vs {medians['whole files']:,} with whole files "
              f"(ratio {medians['whole files'] / medians['regions']:.1f}x)")  # fmt: skip
    for name, c in counts.items():
        total, copied = c["change_chars:total"], c["change_chars:in_code_records"]
        if not total:
            continue
        complete = c["change_records:complete"] / (c["change_records:complete"] + c["change_records:cut"])
        print(f"{name}: MIX change text on lines that repeat a CODE record {copied / total:.1%}; "
              f"changed lines shown {c['change_lines:shown']:,} of {c['change_lines:changed']:,} (deleted files "
              f"excluded); change records with every changed line {complete:.1%} ({c['cut:change_file_lines']} "
              f"files cut, {c['cut:change_files']} files past the record cap)")  # fmt: skip
    counts = counts["regions"]
    print("records by kind and category: " + ", ".join(f"{k.split(':', 1)[1]}={v}" for k, v in sorted(counts.items())
                                                       if k.startswith("records:")))  # fmt: skip
    print("code rules fired (records): " + ", ".join(f"{k.split(':', 1)[1]}={v}" for k, v in sorted(counts.items())
                                                     if k.startswith("code_rule:")))  # fmt: skip


if __name__ == "__main__":
    main()
