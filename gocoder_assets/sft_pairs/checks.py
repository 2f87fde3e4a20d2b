"""Checks on sft_pairs: every pair trains something, its loss mask points at its response, nothing secret is left.

Blocking: a fine-tune sees each pair many epochs, so a secret or a mask on the wrong span must stop
``sft_checkpoint`` rather than be noted beside it.
"""

from __future__ import annotations

import collections
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from gocoder_assets.categorized_records.residual import residual_findings
from gocoder_assets.checks import partition_check, result
from gocoder_assets.sft_pairs.assets import sft_pairs
from gocoder_assets.sft_pairs.pairs import RESPONSE_HEADER
from gocoder_assets.storage import Layout

REQUIRED = ("repo", "commit_sha", "license", "url", "record_id")


def pair_problems(path: Path) -> tuple[collections.Counter[str], list[list[str]]]:
    """Problem counts over a partition's pairs, and ``[record_id, problem]`` rows for the report."""
    problems: collections.Counter[str] = collections.Counter()
    rows: list[list[str]] = []
    for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
        for pair in batch.to_pylist():
            found = []
            if not pair["response"].strip():
                found.append("empty_response")
            start = pair["response_start"]
            if pair["text"][start:] != pair["response"] or not pair["text"][:start].endswith(RESPONSE_HEADER):
                found.append("response_start_misplaced")
            if not 0 < pair["response_token_start"] < pair["tokens"]:
                found.append("response_tokens_misplaced")
            if any(not pair[f] for f in REQUIRED):
                found.append("missing_provenance")
            found += [f"secret: {kind}" for kind in sorted(set(residual_findings(pair["text"])))]
            problems.update(found)
            rows += [[pair["record_id"], p] for p in found]
    return problems, rows


@partition_check(
    asset=sft_pairs,
    blocking=True,
    description="No empty response, the response offsets point at the response, provenance, no residual secret.",
)
def sft_pairs_valid(layout: Layout, key: str) -> dg.AssetCheckResult:
    problems, rows = pair_problems(layout.sft_pairs_file(key))
    return result(not rows, ["pair (record_id)", "problem"], rows, problems=sum(problems.values()))
