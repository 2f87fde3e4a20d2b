"""Training settings: one dataclass, one default per setting (Dagster's config takes its defaults from it).

Torch-free on purpose, so loading the Dagster definitions does not import torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from gocoder_assets.checkpoint.data import parse_stages

# Settings that change bookkeeping, not the numbers a run computes: changing them still resumes.
# (micro-batch and compile change float summation order only; world size is covered by the
# global-batch sampling, so a run can resume on a different number of GPUs.)
NOT_IN_FINGERPRINT = (
    "log_interval",
    "eval_interval",
    "eval_tokens",
    "checkpoint_interval",
    "keep_checkpoints",
    "micro_batch_size",
    "compile",
)


@dataclass
class TrainConfig:
    """Every training setting and its one default; the Dagster config takes its defaults from here.

    The defaults train ``tiny`` for a few CPU minutes. The design's 125m run: preset "125m",
    total_batch_tokens 16384 (16 × 1024), learning_rate 6e-4, min_lr 6e-5, warmup 2000, max_steps
    ≈ 600k for 10B tokens, checkpoint_interval 1000.
    """

    preset: str = "tiny"
    max_steps: int = 400
    total_batch_tokens: int = 2048  # tokens per optimizer step over all ranks and micro-batches
    micro_batch_size: int = 0  # rows per forward/backward; 0 = the largest the memory model fits
    learning_rate: float = 1e-3  # 3e-4..1e-3 suits tiny; lower it as models grow
    min_lr: float = 1e-4  # cosine floor, nanoGPT's lr/10
    warmup_steps: int = 40
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    optimizer: str = "adamw"  # or "adamw8bit" (bitsandbytes, the [bnb] extra)
    activation_checkpointing: bool = False  # recompute each layer in backward: less memory, ≈ 1.3× compute
    compile: bool = False  # torch.compile; a GPU win, on CPU 1.0–1.6×; the first step compiles
    eval_interval: int = 100
    eval_tokens: int = 65_536  # val tokens per evaluation, spread over every val repository
    checkpoint_interval: int = 100  # steps between saved training states (resume points)
    keep_checkpoints: int = 3
    seed: int = 1337
    log_interval: int = 20
    # Curriculum: [{"tokens": N, "weights": {"NAT": .., "MIX": .., "CODE": ..}}, ...]; the last stage may
    # omit "tokens" (runs to the end). Empty: one stage with the corpus's natural mix.
    stages: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in (
            "max_steps",
            "total_batch_tokens",
            "eval_interval",
            "eval_tokens",
            "log_interval",
            "checkpoint_interval",
            "keep_checkpoints",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.micro_batch_size < 0:
            raise ValueError(f"micro_batch_size must be 0 (auto) or positive, got {self.micro_batch_size}")
        if not 0 <= self.min_lr <= self.learning_rate:
            raise ValueError(f"need 0 <= min_lr ({self.min_lr}) <= learning_rate ({self.learning_rate})")
        if self.warmup_steps < 0 or self.grad_clip <= 0 or self.weight_decay < 0:
            raise ValueError("warmup_steps and weight_decay must be >= 0 and grad_clip > 0")
        parse_stages(self.stages)  # fail on a bad curriculum before any data is read

    def fingerprint_settings(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in NOT_IN_FINGERPRINT}
