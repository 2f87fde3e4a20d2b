"""Bits per byte and perplexity on the held-out repositories: every model, one set of windows, one table.

The windows are the training run's own (``checkpoint.evaluate.EvalSet``: every val repository covered,
the budget spread in proportion to length, no randomness), so with the same budget and context the
report reproduces the checkpoint's last eval exactly, and every model in the table is scored on the
same target tokens. The unigram model of the train tokens is scored on those targets too: the floor
a model must beat. Models must share the shards' tokenizer; bits per byte would survive a tokenizer
change, but the shards (the val token ids) would not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gocoder_assets.packed_shards.shard_format import CATEGORIES
from gocoder_assets.storage import file_sha256

UNIGRAM = "unigram (train tokens)"
EVAL_ROWS = 8  # windows per forward pass: small enough for a 350m model at 1,024 tokens on a 12 GB card


@dataclass(frozen=True)
class ScoreRow:
    """One model on one slice of the val text (``category`` "all", "NAT", "MIX" or "CODE")."""

    model: str
    category: str
    tokens: int
    bytes: int
    loss: float
    ppl: float
    bpb: float


def check_tokenizer(models: Mapping[str, Path], tokenizer_sha256: str) -> None:
    """Every model was trained with the tokenizer the shards were packed with, or a clear error naming it."""
    for name, hf_dir in models.items():
        sha = file_sha256(Path(hf_dir) / "tokenizer.model")
        if sha != tokenizer_sha256:
            raise ValueError(
                f"{name} ({hf_dir}) was trained with another tokenizer (sha256 {sha[:12]}) than the shards "
                f"({tokenizer_sha256[:12]}); re-train it, or re-pack the shards with its tokenizer"
            )


def score_table(
    models: Mapping[str, Any],
    tokenizer_dir: Path,
    train_shards: Sequence[Path],
    val_shards: Sequence[Path],
    eval_tokens: int,
    device: Any,
) -> tuple[list[ScoreRow], dict[str, Any]]:
    """Rows for every model (and the unigram baseline) × (all, NAT, MIX, CODE), plus what the windows were.

    ``models`` are loaded causal LMs on ``device`` (a ``checkpoint.device.DeviceChoice``) — the generators'
    own, so each checkpoint is read once per report — and ``tokenizer_dir`` holds their tokenizer
    (``check_tokenizer``). The context is the shortest of the models', so a window fits every one of them.
    """
    from gocoder_assets.checkpoint.data import TokenStream  # noqa: PLC0415 - heavy imports only when scoring
    from gocoder_assets.checkpoint.device import autocast  # noqa: PLC0415
    from gocoder_assets.checkpoint.evaluate import EvalSet, score_model, score_unigram, unigram_counts  # noqa: PLC0415
    from gocoder_assets.tokenizer_model.train import load_processor, token_byte_lengths  # noqa: PLC0415

    if not models:
        raise ValueError("no model to score")
    if not val_shards:
        raise ValueError("no val shards: the corpus has no held-out repository (raise val_fraction or add repos)")
    sp = load_processor(Path(tokenizer_dir))
    ctx = min(int(m.config.max_position_embeddings) for m in models.values())
    val = TokenStream(list(val_shards))
    eval_set = EvalSet(val, ctx, eval_tokens, token_byte_lengths(sp))
    reports = {}
    for name, model in models.items():
        reports[name] = score_model(model, eval_set, EVAL_ROWS, device.device, lambda: autocast(device))
    reports[UNIGRAM] = score_unigram(unigram_counts(TokenStream(list(train_shards)), sp.get_piece_size()), eval_set)
    rows = []
    for name, report in reports.items():
        for category, score in [("all", report.overall), *((c, report.by_category[c]) for c in CATEGORIES)]:
            if score.tokens:
                rows.append(ScoreRow(name, category, score.tokens, score.bytes, score.loss, score.ppl, score.bpb))
    windows = {
        "context": ctx,
        "eval_tokens": eval_tokens,
        "windows": len(eval_set.windows),
        "targets": eval_set.num_targets,
        "bytes": eval_set.num_bytes,
        "val_shards": len(val_shards),
        "over_budget": eval_set.over_budget,
    }
    return rows, windows


def bpb_by_model(rows: Sequence[ScoreRow]) -> dict[str, dict[str, float]]:
    """model → category → bits per byte (the chart's data)."""
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        out.setdefault(row.model, {})[row.category] = row.bpb
    return out
