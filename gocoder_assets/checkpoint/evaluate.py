"""Honest evaluation: fixed windows over every val repository, loss per category, bits per byte.

The old evaluation scored consecutive windows from the start of the val stream, so with a token
budget it only ever saw the first repository or two. Here every val shard (one repository) gets at
least one window and the rest of the budget goes to shards in proportion to their length, windows
evenly spaced inside each shard and never crossing into the next repository. The windows are a pure
function of the stream, ``ctx`` and the budget (no RNG), so every evaluation scores the same tokens
and numbers are comparable across steps and runs.

Besides nats per token, each score reports bits per UTF-8 byte of the scored text, which does not
depend on the tokenizer (a bigger vocabulary lowers loss per token, not per byte), and the same
numbers per record category (NAT / MIX / CODE). A unigram model scored on exactly the same targets
is the floor a trained model must beat.

The scorers take any eval set with this interface: ``categories`` (names; a set with one category,
like the instruction pairs' RESPONSE targets, reports only the overall score), ``batches(rows)``,
the per-category target and byte counts and ``max_target_id``.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np

from gocoder_assets.checkpoint.data import TokenStream
from gocoder_assets.packed_shards.shard_format import CATEGORIES


def _shard_windows(start: int, n: int, k: int, ctx: int) -> list[tuple[int, int]]:
    """``k`` windows (global start, length) inside one shard of ``n`` tokens, targets never overlapping.

    When ``k`` windows cover the shard they tile it (the last one shorter); otherwise the ``S``
    uncovered targets are spread as evenly as integer offsets allow, half a gap before the first
    window and half after the last, so the windows sample the whole repository, not its start.
    """
    if k * ctx >= n - 1:
        return [(start + j * ctx, min(ctx + 1, n - j * ctx)) for j in range(k)]
    slack = n - 1 - k * ctx
    return [(start + j * ctx + slack * (2 * j + 1) // (2 * k), ctx + 1) for j in range(k)]


def plan_windows(spans: Sequence[tuple[int, int]], ctx: int, max_tokens: int) -> list[tuple[int, int]]:
    """Eval windows (global start, length ≤ ctx + 1) for shards given as (global start, length).

    Every shard with a target (≥ 2 tokens) gets one window first, even when that alone exceeds
    ``max_tokens``; then windows are added one at a time to the shard scored least in proportion to
    its length, while the total of scored targets stays within ``max_tokens``.
    """
    shards = [(start, n) for start, n in spans if n >= 2]
    targets = [n - 1 for _, n in shards]
    most = [math.ceil(t / ctx) for t in targets]

    def scored(i: int, k: int) -> int:
        return targets[i] if k >= most[i] else k * ctx

    counts = [1] * len(shards)
    total = sum(scored(i, 1) for i in range(len(shards)))
    heap = [(scored(i, 1) / targets[i], i) for i in range(len(shards)) if most[i] > 1]
    heapq.heapify(heap)
    while heap:
        _, i = heapq.heappop(heap)
        grow = scored(i, counts[i] + 1) - scored(i, counts[i])
        if total + grow > max_tokens:
            continue  # this shard cannot grow; a shard with a shorter last window still might
        counts[i] += 1
        total += grow
        if counts[i] < most[i]:
            heapq.heappush(heap, (scored(i, counts[i]) / targets[i], i))
    return [w for (start, n), k in zip(shards, counts, strict=True) for w in _shard_windows(start, n, k, ctx)]


@dataclass
class EvalBatch:
    """Windows padded on the right to the longest in the batch; ``mask`` marks the real targets.

    Right padding is harmless under a causal mask: padded positions come after every real one.
    """

    inputs: np.ndarray  # (b, L) int64
    targets: np.ndarray  # (b, L) int64
    categories: np.ndarray  # (b, L) uint8, index into the eval set's categories
    mask: np.ndarray  # (b, L) bool


class EvalSet:
    """Fixed eval windows spread over the whole val stream, with their token and byte counts."""

    categories: tuple[str, ...] = CATEGORIES

    def __init__(self, stream: TokenStream, ctx: int, max_tokens: int, token_bytes: np.ndarray) -> None:
        if ctx < 1 or max_tokens < 1:
            raise ValueError(f"ctx ({ctx}) and max_tokens ({max_tokens}) must be at least 1")
        self.stream, self.ctx, self.max_tokens = stream, ctx, max_tokens
        self.windows = plan_windows(stream.shard_spans(), ctx, max_tokens)
        self.num_shards = len(stream.paths)
        self.shards_covered = sum(n >= 2 for _, n in stream.shard_spans())
        self.targets_by_category = np.zeros(len(CATEGORIES), dtype=np.int64)
        self.bytes_by_category = np.zeros(len(CATEGORIES), dtype=np.int64)
        self.max_target_id = -1
        token_bytes = np.asarray(token_bytes, dtype=np.int64)
        for start, n in self.windows:
            tokens = stream.read(start + 1, n - 1)
            self.max_target_id = max(self.max_target_id, int(tokens.max()))
            if self.max_target_id >= len(token_bytes):
                raise ValueError(f"val token id {self.max_target_id} has no byte length ({len(token_bytes)} given)")
            codes = stream.categories_of(np.arange(start + 1, start + n))
            self.targets_by_category += np.bincount(codes, minlength=len(CATEGORIES))
            byte_counts = np.bincount(codes, weights=token_bytes[tokens], minlength=len(CATEGORIES))
            self.bytes_by_category += byte_counts.astype(np.int64)
        self.num_targets = int(self.targets_by_category.sum())
        self.num_bytes = int(self.bytes_by_category.sum())
        # Longest windows first, so full-length windows share batches and padding stays rare.
        self._order = sorted(range(len(self.windows)), key=lambda i: -self.windows[i][1])

    @property
    def over_budget(self) -> bool:
        """True when one window per val shard alone already scores more than ``max_tokens``."""
        return self.num_targets > self.max_tokens

    def describe(self) -> str:
        """One log line; says so when the number of val shards forced the budget to be exceeded."""
        line = (
            f"eval: {self.num_targets:,} targets ({self.num_bytes:,} bytes) in {len(self.windows)} windows "
            f"over {self.shards_covered} of {self.num_shards} val shards"
        )
        if self.over_budget:
            line += f", over the {self.max_tokens:,}-token budget: every val shard gets at least one window"
        return line

    def batches(self, rows: int) -> Iterator[EvalBatch]:
        """The windows in batches of up to ``rows``, read fresh from the memmaps each time (same every eval)."""
        if rows < 1:
            raise ValueError(f"rows must be at least 1, got {rows}")
        for first in range(0, len(self._order), rows):
            group = [self.windows[i] for i in self._order[first : first + rows]]
            width = max(n for _, n in group) - 1
            batch = EvalBatch(
                inputs=np.zeros((len(group), width), dtype=np.int64),
                targets=np.zeros((len(group), width), dtype=np.int64),
                categories=np.zeros((len(group), width), dtype=np.uint8),
                mask=np.zeros((len(group), width), dtype=bool),
            )
            for row, (start, n) in enumerate(group):
                window = self.stream.read(start, n)
                batch.inputs[row, : n - 1] = window[:-1]
                batch.targets[row, : n - 1] = window[1:]
                batch.categories[row, : n - 1] = self.stream.categories_of(np.arange(start + 1, start + n))
                batch.mask[row, : n - 1] = True
            yield batch


@dataclass
class Score:
    """Summed negative log-likelihood over ``tokens`` scored targets whose text is ``bytes`` long."""

    nats: float
    tokens: int
    bytes: int

    @property
    def loss(self) -> float:
        """Nats per token (nan when nothing was scored)."""
        return self.nats / self.tokens if self.tokens else math.nan

    @property
    def ppl(self) -> float:
        return math.exp(self.loss) if self.tokens else math.nan

    @property
    def bpb(self) -> float:
        """Bits per UTF-8 byte of the scored text; EOS targets add nats but no bytes."""
        return self.nats / (math.log(2) * self.bytes) if self.bytes else math.nan


@dataclass
class EvalReport:
    overall: Score
    by_category: dict[str, Score]  # empty when the eval set has a single category (the overall score is it)

    def as_metadata(self, prefix: str) -> dict[str, float | int]:
        """Flat numbers (``val_loss``, ``val_bpb_CODE``, …); categories with no scored tokens are left out."""
        out: dict[str, float | int] = {}
        for suffix, score in [("", self.overall), *((f"_{c}", s) for c, s in self.by_category.items())]:
            if not score.tokens:
                continue
            out[f"{prefix}_loss{suffix}"] = score.loss
            out[f"{prefix}_ppl{suffix}"] = score.ppl
            if score.bytes:
                out[f"{prefix}_bpb{suffix}"] = score.bpb
            out[f"{prefix}_tokens{suffix}"] = score.tokens
        return out


def _report(nats_by_category: np.ndarray, eval_set: EvalSet) -> EvalReport:
    by_category = {
        c: Score(float(nats_by_category[i]), int(eval_set.targets_by_category[i]), int(eval_set.bytes_by_category[i]))
        for i, c in enumerate(eval_set.categories)
    }
    if len(by_category) == 1:
        by_category = {}  # one category is the overall score; repeating it would only double the metadata
    return EvalReport(Score(float(np.sum(nats_by_category)), eval_set.num_targets, eval_set.num_bytes), by_category)


def score_model(
    model: Any,
    eval_set: EvalSet,
    rows: int,
    device: str,
    autocast: Callable[[], AbstractContextManager[Any]],
) -> EvalReport:
    """Score a causal LM on the eval windows: fp32 cross-entropy per token, summed per category on device.

    The model is put in eval mode and restored to its previous mode after. Sums stay on the device
    (float64 where supported) and come back in one host sync at the end, so evaluation does not
    stall the accelerator batch by batch.
    """
    import torch  # noqa: PLC0415 - torch is heavy; only training imports this module's scorer
    import torch.nn.functional as F  # noqa: PLC0415

    on = torch.device(device)
    pinned = on.type == "cuda"

    def upload(array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        return tensor.pin_memory().to(on, non_blocking=True) if pinned else tensor.to(on)

    sums = torch.zeros(len(eval_set.categories), dtype=torch.float32 if on.type == "mps" else torch.float64, device=on)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in eval_set.batches(rows):
                inputs, targets = upload(batch.inputs), upload(batch.targets)
                codes, mask = upload(batch.categories.astype(np.int64)), upload(batch.mask)
                with autocast():
                    logits = model(input_ids=inputs, use_cache=False).logits
                # fp32 even under autocast: a bf16 log-softmax over a large vocabulary loses precision.
                nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
                nll = torch.where(mask.flatten(), nll, torch.zeros_like(nll))
                sums.index_add_(0, codes.flatten(), nll.to(sums.dtype))
    finally:
        model.train(was_training)
    return _report(sums.cpu().numpy(), eval_set)


def unigram_counts(stream: TokenStream, vocab_size: int) -> np.ndarray:
    """How often each id occurs in ``stream`` (int64, ``vocab_size`` long); an out-of-range id is an error."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for path, chunk in stream.chunks():
        if chunk.size and int(chunk.max()) >= vocab_size:
            raise ValueError(f"{path} holds token id {int(chunk.max())}, outside the vocabulary of {vocab_size}")
        counts += np.bincount(chunk, minlength=vocab_size)
    return counts


def score_unigram(counts: np.ndarray, eval_set: EvalSet) -> EvalReport:
    """Add-one-smoothed train frequencies scored on exactly the model's eval targets: the floor to beat.

    A model that does not beat this has learned no context at all, whatever its loss curve says.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if eval_set.max_target_id >= len(counts):
        raise ValueError(f"val token id {eval_set.max_target_id} is outside the {len(counts)} counted ids")
    log_p = np.log(counts + 1.0) - np.log(float(counts.sum() + len(counts)))
    n = len(eval_set.categories)
    nats = np.zeros(n)
    for batch in eval_set.batches(256):
        m = batch.mask
        nats += np.bincount(batch.categories[m], weights=-log_p[batch.targets[m]], minlength=n)
    return _report(nats, eval_set)
