"""The corpus a training run reads, behind one small interface: pretraining shards (``ShardData``) or the
instruction pairs (``sft_checkpoint.data.PairData``).

Apart from data.py so that the samplers and streams (data.py) and the eval sets (evaluate.py) stay
independent of each other: this module sits above both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from gocoder_assets.checkpoint.data import MaskedBatch, TokenStream, WindowSampler, parse_stages
from gocoder_assets.checkpoint.evaluate import EvalSet, unigram_counts
from gocoder_assets.packed_shards.shard_format import MAX_VOCAB


class Sampler(Protocol):
    """What the loop draws batches from and saves with its state (``WindowSampler`` or the pairs' sampler)."""

    def next_batch(self, rows: int, tokens_seen: int) -> np.ndarray | MaskedBatch: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class TrainData(Protocol):
    """The corpus one training run reads: a sampler of train batches, a fixed val set and a unigram floor."""

    def check_vocab(self, vocab_size: int) -> None: ...

    def context(self, max_ctx: int) -> int: ...

    def sampler(self, ctx: int, stages: Sequence[Mapping[str, Any]], seed: int) -> Sampler: ...

    def eval_set(self, ctx: int, max_tokens: int) -> EvalSet | None: ...

    def unigram_counts(self, vocab_size: int) -> np.ndarray: ...

    def identity(self) -> dict[str, Any]: ...

    def describe(self) -> str: ...


def check_vocab(vocab_size: int, **streams: TokenStream) -> None:
    """Fail early and by name: an out-of-range id is otherwise a CUDA device-side assert mid-run."""
    if vocab_size > MAX_VOCAB:
        raise ValueError(f"vocab_size {vocab_size} does not fit uint16 shards (at most {MAX_VOCAB} ids)")
    for kind, stream in streams.items():
        for path, chunk in stream.chunks():
            if chunk.size and int(chunk.max()) >= vocab_size:
                raise ValueError(
                    f"{kind} shard {path} holds token id {int(chunk.max())}, but the model's vocab_size "
                    f"is {vocab_size}: shards and tokenizer disagree"
                )


class ShardData:
    """Pretraining: random windows over the train shards, eval windows spread over every val shard."""

    def __init__(
        self,
        train_shards: Sequence[Path],
        val_shards: Sequence[Path],
        token_bytes: np.ndarray,
        identity: dict[str, Any] | None = None,
    ) -> None:
        self.train, self.val = TokenStream(train_shards), TokenStream(val_shards)
        self.token_bytes, self._identity = token_bytes, identity

    def check_vocab(self, vocab_size: int) -> None:
        check_vocab(vocab_size, train=self.train, val=self.val)
        if self.train.num_tokens < 2:
            raise ValueError(f"train shards hold {self.train.num_tokens} tokens; at least 2 are needed")

    def context(self, max_ctx: int) -> int:
        return min(max_ctx, self.train.num_tokens - 1)

    def sampler(self, ctx: int, stages: Sequence[Mapping[str, Any]], seed: int) -> WindowSampler:
        return WindowSampler(self.train, ctx, parse_stages(stages), seed)

    def eval_set(self, ctx: int, max_tokens: int) -> EvalSet | None:
        return EvalSet(self.val, ctx, max_tokens, self.token_bytes) if self.val.num_tokens else None

    def unigram_counts(self, vocab_size: int) -> np.ndarray:
        return unigram_counts(self.train, vocab_size)

    def identity(self) -> dict[str, Any]:
        """The corpus in the resume fingerprint (default: the train shard paths and sizes)."""
        return self._identity or {"train": [[str(p), p.stat().st_size] for p in self.train.paths]}

    def describe(self) -> str:
        return f"{self.train.num_tokens:,} train / {self.val.num_tokens:,} val tokens"
