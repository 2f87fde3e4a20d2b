"""Pretraining from scratch: random windows from memory-mapped token shards, AdamW, cosine LR, one file.

nanoGPT's recipe (random-offset windows over a uint16 stream, AdamW with betas (0.9, 0.95) and
decay on matrices only, warmup + cosine to ``min_lr``, grad clipping, bf16 autocast, optional
torch.compile) on transformers' ``LlamaForCausalLM``, so the checkpoint is a standard HF directory.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from transformers import LlamaConfig, LlamaForCausalLM

from gocoder_assets.checkpoint.device import DeviceChoice, autocast
from gocoder_assets.packed_shards.shard_format import MAX_VOCAB, open_shard
from gocoder_assets.storage import atomic_dir

CHUNK_TOKENS = 1 << 22  # 8 MiB of uint16 per read: bounded RAM for any corpus size
FINAL_LOSS_STEPS = 10  # "final train loss" averages this many last steps; one batch is too noisy


@dataclass
class TrainConfig:
    """Optimization settings; the model's shape lives in the ``LlamaConfig`` passed to ``train``."""

    preset: str = "tiny"
    max_steps: int = 2000
    batch_size: int = 8
    learning_rate: float = 6e-4  # 3e-4..1e-3 suits the tiny preset; lower it as models grow
    min_lr: float = 6e-5  # cosine floor, nanoGPT's lr/10
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_tokens: int = 65_536  # val tokens per evaluation: a fixed budget keeps evals cheap and comparable
    seed: int = 1337
    compile: bool = False  # a GPU win; on CPU 1.0× (AMD EPYC here) to 1.6× (Xeon AMX); first step compiles
    log_interval: int = 10

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "eval_interval", "eval_tokens", "log_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.min_lr <= self.learning_rate:
            raise ValueError(f"need 0 <= min_lr ({self.min_lr}) <= learning_rate ({self.learning_rate})")
        if self.warmup_steps < 0 or self.grad_clip <= 0 or self.weight_decay < 0:
            raise ValueError("warmup_steps and weight_decay must be >= 0 and grad_clip > 0")


class ShardSet:
    """Shards read as one virtual token stream, so windows may cross shard ends (each record ends in EOS).

    Only memmaps are held; pages are read on demand, so corpora larger than RAM are fine. Sampling
    a uniform offset in the concatenation picks each shard with probability ∝ its length, and
    shards shorter than a window still contribute.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = [Path(p) for p in paths]
        self._shards = [open_shard(p) for p in self.paths]
        self._starts = np.concatenate([[0], np.cumsum([len(s) for s in self._shards], dtype=np.int64)])

    @property
    def num_tokens(self) -> int:
        return int(self._starts[-1])

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens ``[start, start + length)`` of the concatenation, as int64 (what embeddings index with)."""
        if start < 0 or start + length > self.num_tokens:
            raise IndexError(f"tokens [{start}, {start + length}) outside a stream of {self.num_tokens}")
        out = np.empty(length, dtype=np.int64)
        i, pos = int(np.searchsorted(self._starts, start, side="right")) - 1, 0
        while pos < length:
            offset = start + pos - int(self._starts[i])
            take = min(length - pos, len(self._shards[i]) - offset)
            out[pos : pos + take] = self._shards[i][offset : offset + take]
            pos, i = pos + take, i + 1
        return out

    def sample(self, rng: np.random.Generator, batch: int, ctx: int) -> np.ndarray:
        """``(batch, ctx + 1)`` windows at uniform offsets: inputs ``[:, :-1]``, targets ``[:, 1:]``."""
        starts = rng.integers(0, self.num_tokens - ctx, size=batch)
        return np.stack([self.read(int(s), ctx + 1) for s in starts])

    def eval_windows(self, ctx: int, batch: int, max_tokens: int) -> Iterator[np.ndarray]:
        """Consecutive windows from the start, predicting up to ``max_tokens`` tokens, the same every eval.

        Full windows come in batches of ``batch``; a shorter last window (or a val set shorter than
        ``ctx``) comes alone, so every budgeted token is scored exactly once.
        """
        n = max(0, min(self.num_tokens - 1, max_tokens))
        starts = range(0, n - n % ctx, ctx)
        for i in range(0, len(starts), batch):
            yield np.stack([self.read(s, ctx + 1) for s in starts[i : i + batch]])
        if n % ctx:
            yield self.read(n - n % ctx, n % ctx + 1)[None]

    def chunks(self) -> Iterator[tuple[Path, np.ndarray]]:
        """Every token once, shard by shard, in bounded-size pieces."""
        for path, shard in zip(self.paths, self._shards, strict=True):
            for start in range(0, len(shard), CHUNK_TOKENS):
                yield path, np.asarray(shard[start : start + CHUNK_TOKENS])


def check_vocab(vocab_size: int, **sets: ShardSet) -> None:
    """Fail early and by name: an out-of-range id is otherwise a CUDA device-side assert mid-run."""
    if vocab_size > MAX_VOCAB:
        raise ValueError(f"vocab_size {vocab_size} does not fit uint16 shards (at most {MAX_VOCAB} ids)")
    for kind, shard_set in sets.items():
        for path, chunk in shard_set.chunks():
            if chunk.size and int(chunk.max()) >= vocab_size:
                raise ValueError(
                    f"{kind} shard {path} holds token id {int(chunk.max())}, but the model's vocab_size "
                    f"is {vocab_size}: shards and tokenizer disagree"
                )


def unigram_loss(train_shards: Sequence[Path], val_shards: Sequence[Path], vocab_size: int) -> float:
    """Val cross-entropy (nats/token) of add-one-smoothed train token frequencies: the floor to beat.

    A model that does not beat this has learned no context at all, whatever its loss curve says.
    """
    train_set, val_set = ShardSet(train_shards), ShardSet(val_shards)
    check_vocab(vocab_size, train=train_set, val=val_set)
    if val_set.num_tokens == 0:
        raise ValueError("no val tokens to score the unigram baseline on")
    counts = np.zeros(vocab_size, dtype=np.int64)
    for _, chunk in train_set.chunks():
        counts += np.bincount(chunk, minlength=vocab_size)
    log_p = np.log(counts + 1.0) - np.log(float(counts.sum() + vocab_size))
    total = sum(float(-log_p[chunk].sum()) for _, chunk in val_set.chunks())
    return total / val_set.num_tokens


@dataclass
class TrainResult:
    """What a run did, for asset metadata and for checking the run learned something."""

    preset: str
    params: int
    context_length: int
    batch_size: int
    steps: int
    tokens_seen: int
    initial_loss: float
    final_train_loss: float
    val_loss: float | None
    val_tokens: int
    tokens_per_s: float  # steady state: excludes the first step (compile/warm-up) and evaluations
    wall_time_s: float
    device: str
    backend: str
    precision: str
    device_name: str
    compiled: bool

    def as_metadata(self) -> dict[str, float | int | str]:
        """Flat and JSON-safe; ``val_loss`` is left out, not None, when there were no val tokens."""
        return {k: (str(v) if isinstance(v, bool) else v) for k, v in asdict(self).items() if v is not None}


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``learning_rate``, then cosine decay to ``min_lr`` at ``max_steps``."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.learning_rate - cfg.min_lr)


def _loss(model: torch.nn.Module, windows: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    logits = model(input_ids=windows[:, :-1], use_cache=False).logits
    # Cross-entropy in fp32 even under autocast: bf16 log-softmax over a large vocab loses precision.
    return F.cross_entropy(logits.float().flatten(0, 1), windows[:, 1:].flatten(), reduction=reduction)


def _sync(device: DeviceChoice) -> None:
    if device.device == "cuda":
        torch.cuda.synchronize()
    elif device.device == "mps":
        torch.mps.synchronize()


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, val_set: ShardSet, ctx: int, cfg: TrainConfig, device: DeviceChoice
) -> tuple[float | None, int]:
    """Mean val loss over the fixed eval windows and the number of tokens scored (None, 0 when empty)."""
    model.eval()
    total, n = torch.zeros((), device=device.device), 0
    for windows in val_set.eval_windows(ctx, cfg.batch_size, cfg.eval_tokens):
        batch = torch.from_numpy(windows).to(device.device)
        with autocast(device):
            total += _loss(model, batch, reduction="sum")
        n += windows.shape[0] * (windows.shape[1] - 1)
    model.train()
    return (total.item() / n if n else None), n


def save_atomically(model: LlamaForCausalLM, out_dir: Path) -> None:
    """``out_dir`` is the old checkpoint or the new one, never half (transformers 5 always writes
    safetensors; weights are fp32)."""
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)


def train(
    cfg: TrainConfig,
    model_config: LlamaConfig,
    train_shards: list[Path],
    val_shards: list[Path],
    out_dir: Path,
    tensorboard_dir: Path,
    device: DeviceChoice,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train a fresh model, save it to ``out_dir`` and report what happened."""
    started = time.perf_counter()
    train_set, val_set = ShardSet(train_shards), ShardSet(val_shards)
    check_vocab(model_config.vocab_size, train=train_set, val=val_set)
    if train_set.num_tokens < 2:
        raise ValueError(f"train shards hold {train_set.num_tokens} tokens; at least 2 are needed")
    ctx = min(model_config.max_position_embeddings, train_set.num_tokens - 1)
    config = copy.deepcopy(model_config)
    config.max_position_embeddings = ctx  # the checkpoint declares the context it was actually trained on

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if device.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 leftovers outside autocast: TF32 is enough
    model = LlamaForCausalLM._from_config(config, attn_implementation="sdpa", dtype=torch.float32)
    model.to(device.device).train()
    params = sum(p.numel() for p in model.parameters())
    step_model = torch.compile(model) if cfg.compile else model  # eval uses `model`: no recompiles
    groups = [
        {"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0},  # norms
    ]
    fused = device.device == "cuda"
    optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(0.9, 0.95), fused=fused)
    scaler = torch.amp.GradScaler(device.device, enabled=device.needs_grad_scaler)  # disabled: a pass-through
    log(
        f"training {params / 1e6:.2f}M params ({cfg.preset}), ctx {ctx}, batch {cfg.batch_size}, "
        f"{cfg.max_steps} steps on {device.backend}/{device.precision} ({device.name}); "
        f"{train_set.num_tokens:,} train / {val_set.num_tokens:,} val tokens"
    )
    if ctx < model_config.max_position_embeddings:
        log(f"context cut from {model_config.max_position_embeddings} to {ctx}: train shards are that short")

    tokens_per_step = cfg.batch_size * ctx
    writer = SummaryWriter(log_dir=str(tensorboard_dir))
    writer.add_text("train_config", json.dumps(asdict(cfg)))
    recent: deque[torch.Tensor] = deque(maxlen=FINAL_LOSS_STEPS)
    interval: list[torch.Tensor] = []
    initial_loss, val_loss, val_tokens = math.nan, None, 0
    eval_time = 0.0
    loop_start = steady_start = interval_start = time.perf_counter()
    try:
        for step in range(cfg.max_steps):
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = torch.from_numpy(train_set.sample(rng, cfg.batch_size, ctx)).to(device.device)
            with autocast(device):
                loss = _loss(step_model, batch)
            initial_loss = loss.item() if step == 0 else initial_loss
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            recent.append(loss.detach())
            interval.append(loss.detach())
            done = step + 1
            if step == 0:  # steady-state timing starts after compilation and allocator warm-up
                _sync(device)
                steady_start = time.perf_counter()
            if done % cfg.log_interval == 0 or done == cfg.max_steps:
                mean_loss = torch.stack(interval).mean().item()  # the only per-interval host sync
                now = time.perf_counter()
                rate = len(interval) * tokens_per_step / max(now - interval_start, 1e-9)
                scalars = {"loss": mean_loss, "lr": lr, "grad_norm": float(grad_norm), "tokens_per_s": rate}
                for tag, value in scalars.items():
                    writer.add_scalar(f"train/{tag}", value, done)
                log(f"step {done}/{cfg.max_steps} loss {mean_loss:.4f} lr {lr:.2e} {rate:,.0f} tok/s")
                interval, interval_start = [], time.perf_counter()
            if done % cfg.eval_interval == 0 or done == cfg.max_steps:
                eval_started = time.perf_counter()
                val_loss, val_tokens = evaluate(model, val_set, ctx, cfg, device)
                if val_loss is not None:
                    writer.add_scalar("val/loss", val_loss, done)
                    log(f"step {done} val loss {val_loss:.4f} over {val_tokens:,} tokens")
                eval_time += time.perf_counter() - eval_started
                interval_start += time.perf_counter() - eval_started
        _sync(device)
        steady_time = time.perf_counter() - steady_start - eval_time
        steady_steps = cfg.max_steps - 1
        if not steady_steps:  # a single step: all we have is the warm-up step itself
            steady_steps, steady_time = 1, steady_start - loop_start
        tokens_per_s = steady_steps * tokens_per_step / steady_time
        final_train_loss = torch.stack(list(recent)).mean().item()
        writer.add_scalar("train/tokens_per_s_steady", tokens_per_s, cfg.max_steps)
    finally:
        writer.close()
    if val_loss is None:
        log("no val tokens: val loss not measured")
    save_atomically(model, out_dir)
    result = TrainResult(
        preset=cfg.preset, params=params, context_length=ctx, batch_size=cfg.batch_size, steps=cfg.max_steps,
        tokens_seen=cfg.max_steps * tokens_per_step, initial_loss=initial_loss,
        final_train_loss=final_train_loss, val_loss=val_loss, val_tokens=val_tokens,
        tokens_per_s=tokens_per_s, wall_time_s=time.perf_counter() - started, device=device.device,
        backend=device.backend,
        precision=device.precision, device_name=device.name, compiled=cfg.compile,
    )  # fmt: skip
    log(f"saved {out_dir}: " + ", ".join(f"{k}={v}" for k, v in result.as_metadata().items()))
    return result
