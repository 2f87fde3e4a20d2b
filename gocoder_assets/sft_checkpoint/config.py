"""Fine-tuning settings: one frozen dataclass, one default per setting (the Dagster config takes its defaults here).

Dagster-free and torch-free, so loading the definitions imports neither. The defaults fine-tune the
CPU-sized base model in a few minutes: a learning rate ten times below pretraining's (the weights
already know Go; a large step would overwrite that), a short warmup because AdamW's moments start
empty, and a few hundred steps at most, since the pairs are few and repeat each epoch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from gocoder_assets.checkpoint.config import TrainConfig


@dataclass(frozen=True)
class SFTTrainOptions:
    """Every fine-tuning setting and its one default; ``train_config`` turns them into the loop's settings.

    ``batch_pairs`` rows (one pair each, padded) per optimizer step; the loop sizes micro-batches
    for the device unless ``micro_batch_size`` is set. ``eval_tokens`` bounds the val response
    targets scored per evaluation. Weight decay is off by default: it pulls weights toward zero, not
    toward the base model, and a short fine-tune does not need the regularisation.
    """

    max_steps: int = 200
    batch_pairs: int = 8
    micro_batch_size: int = 0
    learning_rate: float = 1e-4
    min_lr: float = 1e-5
    warmup_steps: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    optimizer: str = "adamw"
    activation_checkpointing: bool = False
    eval_interval: int = 50
    eval_tokens: int = 65_536
    checkpoint_interval: int = 50
    keep_checkpoints: int = 2
    seed: int = 1337
    log_interval: int = 10

    def __post_init__(self) -> None:
        if self.batch_pairs < 1:
            raise ValueError(f"batch_pairs must be at least 1, got {self.batch_pairs}")
        self.train_config(ctx=1)  # TrainConfig validates the rest before any data is read

    def train_config(self, ctx: int, preset: str = "sft", compile_model: bool = False) -> TrainConfig:
        """The loop's settings for a base model of context ``ctx``: ``batch_pairs`` rows of up to ``ctx`` tokens."""
        raw: dict[str, Any] = asdict(self)
        rows = raw.pop("batch_pairs")
        return TrainConfig(**raw, preset=preset, total_batch_tokens=rows * ctx, compile=compile_model)
