"""Training data: shards as one token stream with record boundaries and categories, and a curriculum sampler.

Numpy only (no torch), and only memmaps of the shards are held, so a corpus larger than RAM is fine;
the record index (``records.parquet`` beside each shard) costs 17 bytes per record in memory.

The loop (train.py ``fit``) trains on a ``TrainData``: ``ShardData`` here for pretraining, or the
instruction pairs of ``sft_checkpoint.data``, whose sampler returns a ``MaskedBatch`` (a loss mask
on the targets) instead of bare windows.

Two ways to draw a window of ``ctx + 1`` tokens:

* the *natural mix*: a uniform offset in the concatenation of all shards (windows may cross
  record and shard ends; every record ends in EOS, so the model sees where one stops), which
  picks each category in proportion to its share of the corpus;
* a *weighted* stage: the row's category is drawn from the stage's weights, then a uniform
  offset in that category's own virtual stream (its records concatenated, each still ending in
  EOS). Every token of such a window belongs to the category, so the realised token mix equals
  the weights in expectation whatever the categories' sizes; a small category is repeated more.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gocoder_assets.packed_shards.shard_format import CATEGORIES, open_shard, read_index

CHUNK_TOKENS = 1 << 22  # 8 MiB of uint16 per piece from chunks(): bounded RAM for any corpus size


class TokenStream:
    """Shards (one per repository) read as one virtual stream, with each token's record and category."""

    def __init__(self, shards: Sequence[Path]) -> None:
        self.paths = [Path(p) for p in shards]
        self._shards = [open_shard(p) for p in self.paths]
        self._offsets = np.concatenate([[0], np.cumsum([len(s) for s in self._shards], dtype=np.int64)])
        starts, lengths, codes = [], [], []
        for offset, path in zip(self._offsets[:-1], self.paths, strict=True):
            s, n, c = read_index(path)  # validated: contiguous, sums to the shard, known categories
            starts.append(s + offset)
            lengths.append(n)
            codes.append(c)
        self._record_starts = np.concatenate([np.zeros(0, np.int64), *starts])
        self._record_lengths = np.concatenate([np.zeros(0, np.int64), *lengths])
        self._record_codes = np.concatenate([np.zeros(0, np.uint8), *codes])
        self.num_tokens = int(self._offsets[-1])
        per_code = np.bincount(self._record_codes, weights=self._record_lengths, minlength=len(CATEGORIES))
        self.tokens_by_category = {c: int(n) for c, n in zip(CATEGORIES, per_code, strict=True)}
        self._runs = [self._category_runs(code) for code in range(len(CATEGORIES))]

    def _category_runs(self, code: int) -> tuple[np.ndarray, np.ndarray]:
        """(global starts, cumulative offsets) of maximal runs of adjacent records of one category.

        Merging adjacent records keeps category reads to a few slices even when records are short.
        """
        mine = np.flatnonzero(self._record_codes == code)
        if not mine.size:
            return np.zeros(0, np.int64), np.zeros(1, np.int64)
        new_run = np.concatenate([[True], np.diff(mine) != 1])
        run_of = np.cumsum(new_run) - 1
        run_starts = self._record_starts[mine[new_run]]
        run_lengths = np.bincount(run_of, weights=self._record_lengths[mine]).astype(np.int64)
        return run_starts, np.concatenate([[0], np.cumsum(run_lengths)])

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens ``[start, start + length)`` of the concatenation, as int64 (what embeddings index with)."""
        if start < 0 or length < 0 or start + length > self.num_tokens:
            raise IndexError(f"tokens [{start}, {start + length}) outside a stream of {self.num_tokens}")
        out = np.empty(length, dtype=np.int64)
        i, pos = int(np.searchsorted(self._offsets, start, side="right")) - 1, 0
        while pos < length:
            offset = start + pos - int(self._offsets[i])
            take = min(length - pos, len(self._shards[i]) - offset)
            out[pos : pos + take] = self._shards[i][offset : offset + take]
            pos, i = pos + take, i + 1
        return out

    def read_category(self, category: str, start: int, length: int) -> np.ndarray:
        """Tokens ``[start, start + length)`` of one category's virtual stream (its records concatenated)."""
        run_starts, cum = self._runs[CATEGORIES.index(category)]
        if start < 0 or length < 0 or start + length > int(cum[-1]):
            raise IndexError(f"tokens [{start}, {start + length}) outside {category}'s {int(cum[-1])} tokens")
        out = np.empty(length, dtype=np.int64)
        i, pos = int(np.searchsorted(cum, start, side="right")) - 1, 0
        while pos < length:
            offset = start + pos - int(cum[i])
            take = min(length - pos, int(cum[i + 1] - cum[i]) - offset)
            out[pos : pos + take] = self.read(int(run_starts[i]) + offset, take)
            pos, i = pos + take, i + 1
        return out

    def categories_of(self, positions: np.ndarray) -> np.ndarray:
        """uint8 category code (index into ``CATEGORIES``) of each global token position."""
        positions = np.asarray(positions, dtype=np.int64)
        if positions.size and (int(positions.min()) < 0 or int(positions.max()) >= self.num_tokens):
            raise IndexError(f"positions outside a stream of {self.num_tokens} tokens")
        record = np.searchsorted(self._record_starts, positions, side="right") - 1
        return self._record_codes[record]

    def shard_spans(self) -> list[tuple[int, int]]:
        """(global start, length) of each shard, in ``paths`` order: eval keeps windows inside one."""
        return [(int(self._offsets[i]), len(s)) for i, s in enumerate(self._shards)]

    def chunks(self) -> Iterator[tuple[Path, np.ndarray]]:
        """Every token once, shard by shard, in bounded pieces (vocabulary checks, unigram counts)."""
        for path, shard in zip(self.paths, self._shards, strict=True):
            for start in range(0, len(shard), CHUNK_TOKENS):
                yield path, np.asarray(shard[start : start + CHUNK_TOKENS])


@dataclass(frozen=True)
class Stage:
    """One curriculum stage: a token budget and the category mix to sample during it.

    ``tokens`` None means "until training ends" (last stage only); the last stage also runs on past
    its budget, since the run's length is set by the train loop, not by the curriculum. ``weights``
    None is the natural mix of the corpus; otherwise one non-negative weight per category (missing
    ones are 0), normalised to sum to 1 by ``parse_stages``.
    """

    tokens: int | None = None
    weights: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if self.tokens is not None and (
            not isinstance(self.tokens, int) or isinstance(self.tokens, bool) or self.tokens <= 0
        ):
            raise ValueError(f"stage tokens must be a positive number of tokens or None, got {self.tokens!r}")
        if self.weights is None:
            return
        unknown = sorted(set(self.weights) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"unknown categories {unknown} in stage weights; known: {list(CATEGORIES)}")
        bad = {c: w for c, w in self.weights.items() if not (math.isfinite(w) and w >= 0)}
        if bad:
            raise ValueError(f"stage weights must be finite and >= 0, got {bad}")
        if sum(self.weights.values()) <= 0:
            raise ValueError(f"stage weights {self.weights} are all zero: nothing to sample")

    def probabilities(self) -> np.ndarray | None:
        """Per-category sampling probabilities in ``CATEGORIES`` order; None for the natural mix."""
        if self.weights is None:
            return None
        p = np.array([float(self.weights.get(c, 0.0)) for c in CATEGORIES])
        return p / p.sum()


DEFAULT_STAGES = (Stage(tokens=None, weights=None),)


def parse_stages(raw: Sequence[Mapping[str, Any]]) -> list[Stage]:
    """Stages from Dagster config dicts, e.g. ``[{"tokens": 10**6, "weights": {"NAT": 1, "CODE": 1}}, {}]``.

    Weights come back normalised with every category present. An empty list is the default single
    natural-mix stage. Errors name the stage, so a typo in run config fails before any training.
    """
    if not raw:
        return list(DEFAULT_STAGES)
    stages = []
    for i, entry in enumerate(raw):
        extra = sorted(set(entry) - {"tokens", "weights"})
        if extra:
            raise ValueError(f"stage {i}: unknown keys {extra}; a stage has 'tokens' and 'weights'")
        try:
            stage = Stage(tokens=entry.get("tokens"), weights=entry.get("weights"))
        except ValueError as e:
            raise ValueError(f"stage {i}: {e}") from e
        if stage.tokens is None and i < len(raw) - 1:
            raise ValueError(f"stage {i} has no token budget, but only the last stage may run until the end")
        p = stage.probabilities()
        weights = None if p is None else {c: float(w) for c, w in zip(CATEGORIES, p, strict=True)}
        stages.append(Stage(tokens=stage.tokens, weights=weights))
    return stages


class WindowSampler:
    """Random ``ctx + 1``-token training windows following a curriculum, reproducible from its state.

    The train loop passes ``tokens_seen`` (tokens trained on before this batch); the whole batch
    comes from the stage that count falls in, so a stage boundary takes effect at the next batch.
    """

    def __init__(self, stream: TokenStream, ctx: int, stages: Sequence[Stage], seed: int) -> None:
        if ctx < 1:
            raise ValueError(f"ctx must be at least 1, got {ctx}")
        if not stages:
            raise ValueError("no curriculum stages: pass at least one (DEFAULT_STAGES is the natural mix)")
        if any(s.tokens is None for s in stages[:-1]):
            raise ValueError("only the last curriculum stage may have no token budget")
        self.stream, self.ctx, self.stages = stream, ctx, list(stages)
        self._ends = np.cumsum([s.tokens or 0 for s in self.stages[:-1]], dtype=np.int64)
        self._probs = [s.probabilities() for s in self.stages]
        self._highs = np.array([stream.tokens_by_category[c] - ctx for c in CATEGORIES], dtype=np.int64)
        for i, p in enumerate(self._probs):
            if p is None and stream.num_tokens < ctx + 1:
                raise ValueError(f"stage {i}: the stream holds {stream.num_tokens} tokens, fewer than ctx + 1")
            for code in np.flatnonzero(p if p is not None else []):
                if self._highs[code] < 1:
                    name = CATEGORIES[code]
                    raise ValueError(
                        f"stage {i} gives weight to {name}, which has {stream.tokens_by_category[name]} tokens: "
                        f"fewer than a window of ctx + 1 = {ctx + 1}; drop it from the weights or lower ctx"
                    )
        self._rng = np.random.default_rng(seed)

    def stage_index(self, tokens_seen: int) -> int:
        """The stage a batch starting after ``tokens_seen`` training tokens comes from."""
        return int(np.searchsorted(self._ends, tokens_seen, side="right"))

    def next_batch(self, rows: int, tokens_seen: int) -> np.ndarray:
        """``(rows, ctx + 1)`` int64 windows: inputs ``[:, :-1]``, targets ``[:, 1:]``."""
        if rows < 1:
            raise ValueError(f"rows must be at least 1, got {rows}")
        width = self.ctx + 1
        p = self._probs[self.stage_index(tokens_seen)]
        if p is None:
            starts = self._rng.integers(0, self.stream.num_tokens - self.ctx, size=rows)
            return np.stack([self.stream.read(int(s), width) for s in starts]).reshape(rows, width)
        codes = self._rng.choice(len(CATEGORIES), size=rows, p=p)
        starts = self._rng.integers(0, self._highs[codes])
        windows = [self.stream.read_category(CATEGORIES[c], int(s), width) for c, s in zip(codes, starts, strict=True)]
        return np.stack(windows).reshape(rows, width)

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: the generator's, plus what it must be resumed against."""
        return {"bit_generator": self._rng.bit_generator.state, "ctx": self.ctx, "num_tokens": self.stream.num_tokens}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue exactly where ``state`` was taken; refuse if the windows would mean something else."""
        if state["ctx"] != self.ctx or state["num_tokens"] != self.stream.num_tokens:
            raise ValueError(
                f"sampler state is for ctx {state['ctx']} over {state['num_tokens']} tokens, "
                f"this sampler has ctx {self.ctx} over {self.stream.num_tokens}: resuming would not reproduce it"
            )
        self._rng.bit_generator.state = dict(state["bit_generator"])


@dataclass
class MaskedBatch:
    """Rows of ``ctx + 1`` or fewer tokens, right-padded, and which targets (``windows[:, 1:]``) count in the loss.

    ``tokens`` is the number of real (unpadded) input tokens, for honest throughput numbers.
    """

    windows: np.ndarray  # (rows, width) int64
    mask: np.ndarray  # (rows, width - 1) bool
    tokens: int
