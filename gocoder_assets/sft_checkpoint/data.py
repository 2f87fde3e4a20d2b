"""Instruction pairs as training data for the shared loop: ids, loss masks, a sampler and a val set (numpy only).

A pair is one sequence ``prompt ids + response ids + EOS``, encoded as sft_pairs did it
(``codec.encode([prompt, response])``, so the response starts on a token boundary). The loss counts
the targets that *are* response tokens or the final EOS, never the prompt's: the model is taught to
answer, not to write the question. The EOS teaches it to stop, which a served model needs.

A pair longer than the model's context (``ctx + 1`` tokens, since inputs are the first ``ctx``)
keeps its response and loses the start of its prompt: the end of the prompt (the change's last
lines and the ``### Response:`` header) is what the answer follows from. A response that alone does
not fit keeps its first tokens after one prompt token and no EOS (it did not end there); both cuts
are counted. The training rows are one pair each, right-padded (harmless under the causal mask; the
padding is never a counted target).

``PairData`` is the ``TrainData`` the loop takes (checkpoint/corpus.py): ``PairSampler`` draws rows
epoch by epoch in a seeded order and resumes from a cursor; ``PairEvalSet`` scores a fixed subset of
val pairs' response targets with the ``EvalSet`` interface, as one RESPONSE category.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gocoder_assets.checkpoint.data import MaskedBatch
from gocoder_assets.checkpoint.evaluate import EvalBatch
from gocoder_assets.storage import atomic_file

ENCODE_BATCH = 256  # pairs per batched SentencePiece call


@dataclass
class EncodedPairs:
    """Pairs as one flat id array: pair ``i`` is ``tokens[offsets[i]:offsets[i + 1]]``, its response from
    ``response_starts[i]`` (an index into the pair's own sequence, at least 1)."""

    tokens: np.ndarray  # int32
    offsets: np.ndarray  # int64, len n + 1
    response_starts: np.ndarray  # int64, len n

    def __len__(self) -> int:
        return len(self.response_starts)

    def sequence(self, i: int) -> np.ndarray:
        return self.tokens[int(self.offsets[i]) : int(self.offsets[i + 1])].astype(np.int64)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def masked_targets(self) -> np.ndarray:
        """Counted targets of each pair: its response tokens and EOS (every token from the response's first)."""
        return self.lengths() - self.response_starts

    def sha256(self) -> str:
        """Of the content, not of the .npz (whose zip entries carry timestamps): the resume fingerprint's."""
        h = hashlib.sha256()
        for array in (self.tokens, self.offsets, self.response_starts):
            h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()

    @classmethod
    def build(cls, sequences: Sequence[Sequence[int]], response_starts: Sequence[int]) -> EncodedPairs:
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = np.fromiter((t for s in sequences for t in s), dtype=np.int32, count=int(offsets[-1]))
        return cls(flat, offsets, np.asarray(response_starts, dtype=np.int64).reshape(-1))

    @classmethod
    def concat(cls, parts: Sequence[EncodedPairs]) -> EncodedPairs:
        """One set of pairs from several, in order (the encoder builds them a batch at a time to bound memory)."""
        if not parts:
            return cls.build([], [])
        shifts = np.cumsum([0] + [int(p.offsets[-1]) for p in parts[:-1]])
        offsets = np.concatenate([[0]] + [p.offsets[1:] + s for p, s in zip(parts, shifts, strict=True)])
        tokens = np.concatenate([p.tokens for p in parts]).astype(np.int32)
        starts = np.concatenate([p.response_starts for p in parts]).astype(np.int64)
        return cls(tokens, offsets.astype(np.int64), starts)


def fit_to_context(
    prompt: Sequence[int], response: Sequence[int], eos_id: int, ctx: int
) -> tuple[list[int], int, str | None]:
    """(sequence, response start, cut) for one pair: ``cut`` is None, "prompt" or "response" (see module doc)."""
    if not prompt:
        raise ValueError("a pair needs a prompt: the response's first token must be a target")
    budget = ctx + 1
    if len(prompt) + len(response) + 1 <= budget:
        return [*prompt, *response, eos_id], len(prompt), None
    if len(response) + 2 <= budget:
        keep = budget - len(response) - 1
        return [*prompt[-keep:], *response, eos_id], keep, "prompt"
    return [prompt[-1], *response[: budget - 1]], 1, "response"


def encode_pairs(
    codec: Any, pairs: Iterable[tuple[str, str]], ctx: int, counts: Counter[str] | None = None
) -> EncodedPairs:
    """Encode (prompt, response) texts with ``codec`` (a RecordCodec) to fit ``ctx``; cuts counted into ``counts``.

    A batch at a time, each kept as int32 arrays: memory is the ids themselves, not Python lists of them.
    """
    counts = counts if counts is not None else Counter()
    parts: list[EncodedPairs] = []
    chunk: list[tuple[str, str]] = []

    def flush() -> None:
        ids = codec.encode([text for pair in chunk for text in pair])
        sequences, starts = [], []
        for k in range(len(chunk)):
            seq, start, cut = fit_to_context(ids[2 * k], ids[2 * k + 1], codec.eos_id(), ctx)
            sequences.append(seq)
            starts.append(start)
            if cut:
                counts["pairs_truncated"] += 1
                counts[f"truncated_{cut}"] += 1
        parts.append(EncodedPairs.build(sequences, starts))
        chunk.clear()

    for pair in pairs:
        chunk.append(pair)
        if len(chunk) == ENCODE_BATCH:
            flush()
    if chunk:
        flush()
    return EncodedPairs.concat(parts)


def write_pairs(path: Path, splits: Mapping[str, EncodedPairs], pad_id: int) -> Path:
    """One .npz with each split's three arrays (``train_tokens`` …) and the padding id, written atomically."""
    arrays: dict[str, np.ndarray] = {"pad_id": np.asarray(pad_id, dtype=np.int64)}
    for name, pairs in splits.items():
        arrays.update({f"{name}_tokens": pairs.tokens, f"{name}_offsets": pairs.offsets})
        arrays[f"{name}_response_starts"] = pairs.response_starts
    with atomic_file(Path(path)) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return Path(path)


def read_pairs(path: Path) -> tuple[dict[str, EncodedPairs], int]:
    with np.load(path) as z:
        names = sorted({k.rsplit("_", 1)[0] for k in z.files if k.endswith("_offsets")})
        splits = {n: EncodedPairs(z[f"{n}_tokens"], z[f"{n}_offsets"], z[f"{n}_response_starts"]) for n in names}
        return splits, int(z["pad_id"])


def pad_rows(sequences: Sequence[np.ndarray], starts: Sequence[int], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(windows (rows, longest), target mask (rows, longest - 1)): right-padded, mask on response + EOS targets."""
    width = max(len(s) for s in sequences)
    windows = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width - 1), dtype=bool)
    for row, (seq, start) in enumerate(zip(sequences, starts, strict=True)):
        windows[row, : len(seq)] = seq
        mask[row, int(start) - 1 : len(seq) - 1] = True  # target j is token j + 1
    return windows, mask


class PairSampler:
    """Rows of one pair each, every pair once per epoch in a seeded order; resumes exactly from its cursor."""

    def __init__(self, pairs: EncodedPairs, ctx: int, seed: int, pad_id: int) -> None:
        if not len(pairs):
            raise ValueError("no train pairs to sample from")
        self.pairs, self.ctx, self.seed, self.pad_id = pairs, ctx, seed, pad_id
        self.cursor = 0  # pairs drawn so far, over all epochs
        self._epoch, self._order = -1, np.zeros(0, dtype=np.int64)

    def _index(self, k: int) -> int:
        epoch, n = divmod(k, len(self.pairs))
        if epoch != self._epoch:
            self._epoch = epoch
            self._order = np.random.default_rng([self.seed, epoch]).permutation(len(self.pairs))
        return int(self._order[n])

    def next_batch(self, rows: int, tokens_seen: int) -> MaskedBatch:  # tokens_seen: no curriculum for pairs
        if rows < 1:
            raise ValueError(f"rows must be at least 1, got {rows}")
        picked = [self._index(self.cursor + r) for r in range(rows)]
        self.cursor += rows
        sequences = [self.pairs.sequence(i) for i in picked]
        windows, mask = pad_rows(sequences, [self.pairs.response_starts[i] for i in picked], self.pad_id)
        return MaskedBatch(windows, mask, tokens=sum(len(s) - 1 for s in sequences))

    def state_dict(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "num_pairs": len(self.pairs), "seed": self.seed, "ctx": self.ctx}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        mine = self.state_dict()
        if any(state[k] != mine[k] for k in ("num_pairs", "seed", "ctx")):
            raise ValueError(f"sampler state {dict(state)} is for other pairs than this sampler's {mine}")
        self.cursor = int(state["cursor"])


class PairEvalSet:
    """Fixed val pairs scored on their response + EOS targets only: the ``EvalSet`` interface, one category.

    When the pairs' counted targets exceed ``max_tokens``, a seeded (fixed) subset is taken so every
    evaluation scores the same targets, spread over all repositories rather than the first ones; at
    least one pair is always scored.
    """

    categories = ("RESPONSE",)

    def __init__(self, pairs: EncodedPairs, max_tokens: int, token_bytes: np.ndarray, pad_id: int) -> None:
        if not len(pairs) or max_tokens < 1:
            raise ValueError(f"an eval set needs pairs ({len(pairs)}) and max_tokens ≥ 1 ({max_tokens})")
        self.pairs, self.max_tokens, self.pad_id = pairs, max_tokens, pad_id
        counted = pairs.masked_targets()
        chosen, total = [], 0
        for i in np.random.default_rng(0).permutation(len(pairs)):
            if chosen and total + int(counted[i]) > max_tokens:
                continue
            chosen.append(int(i))
            total += int(counted[i])
        self.chosen = sorted(chosen, key=lambda i: (-int(pairs.lengths()[i]), i))  # longest first: less padding
        token_bytes = np.asarray(token_bytes, dtype=np.int64)
        targets = [pairs.sequence(i)[int(pairs.response_starts[i]) :] for i in self.chosen]
        self.max_target_id = max(int(t.max()) for t in targets)
        if self.max_target_id >= len(token_bytes):
            raise ValueError(f"val token id {self.max_target_id} has no byte length ({len(token_bytes)} given)")
        self.num_targets = total
        self.num_bytes = int(sum(int(token_bytes[t].sum()) for t in targets))
        self.targets_by_category = np.array([self.num_targets], dtype=np.int64)
        self.bytes_by_category = np.array([self.num_bytes], dtype=np.int64)

    @property
    def over_budget(self) -> bool:
        return self.num_targets > self.max_tokens

    def describe(self) -> str:
        return f"eval: {self.num_targets:,} response targets ({self.num_bytes:,} bytes) in {len(self.chosen)} val pairs"

    def batches(self, rows: int) -> Iterator[EvalBatch]:
        if rows < 1:
            raise ValueError(f"rows must be at least 1, got {rows}")
        for first in range(0, len(self.chosen), rows):
            group = self.chosen[first : first + rows]
            windows, mask = pad_rows(
                [self.pairs.sequence(i) for i in group], [self.pairs.response_starts[i] for i in group], self.pad_id
            )
            yield EvalBatch(windows[:, :-1], windows[:, 1:], np.zeros(mask.shape, dtype=np.uint8), mask)


class PairData:
    """The ``TrainData`` of fine-tuning: train pairs to sample, val pairs to score, train responses' unigram."""

    def __init__(
        self,
        train: EncodedPairs,
        val: EncodedPairs,
        token_bytes: np.ndarray,
        pad_id: int,
        identity: dict[str, Any] | None = None,
    ) -> None:
        self.train, self.val, self.token_bytes, self.pad_id = train, val, token_bytes, pad_id
        self._identity = identity

    @classmethod
    def load(cls, path: Path, token_bytes: np.ndarray, identity: dict[str, Any] | None = None) -> PairData:
        splits, pad_id = read_pairs(path)
        empty = EncodedPairs.build([], [])
        return cls(splits.get("train", empty), splits.get("val", empty), token_bytes, pad_id, identity)

    def check_vocab(self, vocab_size: int) -> None:
        if not len(self.train):
            raise ValueError("no train pairs: nothing to fine-tune on")
        for name, pairs in (("train", self.train), ("val", self.val)):
            if pairs.tokens.size and int(pairs.tokens.max()) >= vocab_size:
                raise ValueError(
                    f"{name} pairs hold token id {int(pairs.tokens.max())}, but the model's vocab_size is {vocab_size}"
                )
            if len(pairs) and (pairs.response_starts.min() < 1 or (pairs.response_starts >= pairs.lengths()).any()):
                raise ValueError(f"{name} pairs have a response start outside (0, length): encode them again")
        if not 0 <= self.pad_id < vocab_size:
            raise ValueError(f"pad id {self.pad_id} is outside the vocabulary of {vocab_size}")

    def context(self, max_ctx: int) -> int:
        """The model's own context; pairs were fitted to it when encoded, and a longer one is refused."""
        longest = max(int(p.lengths().max()) for p in (self.train, self.val) if len(p))
        if longest > max_ctx + 1:
            raise ValueError(f"a pair holds {longest} tokens, more than the model's context {max_ctx} + 1")
        return max_ctx

    def sampler(self, ctx: int, stages: Sequence[Mapping[str, Any]], seed: int) -> PairSampler:
        if stages:
            raise ValueError("curriculum stages are for pretraining shards; fine-tuning samples pairs uniformly")
        return PairSampler(self.train, ctx, seed, self.pad_id)

    def eval_set(self, ctx: int, max_tokens: int) -> PairEvalSet | None:  # the pairs already fit ctx
        return PairEvalSet(self.val, max_tokens, self.token_bytes, self.pad_id) if len(self.val) else None

    def unigram_counts(self, vocab_size: int) -> np.ndarray:
        """Id frequencies of the train pairs' counted targets (responses and EOS): the floor on val responses."""
        counts = np.zeros(vocab_size, dtype=np.int64)
        for i in range(len(self.train)):
            counts += np.bincount(self.train.sequence(i)[int(self.train.response_starts[i]) :], minlength=vocab_size)
        return counts

    def identity(self) -> dict[str, Any]:
        return self._identity or {"train": self.train.sha256(), "val": self.val.sha256()}

    def describe(self) -> str:
        return (
            f"{len(self.train):,} train pairs ({int(self.train.masked_targets().sum()):,} response targets) / "
            f"{len(self.val):,} val pairs"
        )
