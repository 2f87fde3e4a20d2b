"""Pretraining from scratch, built to survive and scale a multi-day run.

nanoGPT's recipe (random windows over memory-mapped uint16 shards, AdamW with betas (0.9, 0.95)
and decay on matrices only, warmup + cosine to ``min_lr``, grad clipping, autocast, optional
torch.compile) on transformers' ``LlamaForCausalLM``, plus what a long run needs:

- an effective batch of ``total_batch_tokens`` reached by gradient accumulation over
  micro-batches that the memory model sizes for the device;
- data parallelism (one process per device under torchrun): every rank draws the same global
  batch and trains on its slice, so N ranks compute what one process would;
- a full training state saved every ``checkpoint_interval`` steps and resumed automatically;
- a divergence guard that stops at the first non-finite loss or gradient norm, naming the step;
- evaluation on fixed windows spread over every val repository, in nats, perplexity and bits
  per byte, per category, beside a unigram baseline scored on the same tokens.

The same loop (``fit``) fine-tunes (sft_checkpoint): it then starts from pretrained weights
(``init_from``, scored on the val set before the first step: the baseline a fine-tune must beat),
and its ``TrainData`` yields ``MaskedBatch`` rows whose loss counts only the masked targets (the
response and its EOS). ``train`` is pretraining on shards, the loop's first user.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from transformers import LlamaConfig, LlamaForCausalLM

from gocoder_assets.checkpoint.config import TrainConfig
from gocoder_assets.checkpoint.corpus import ShardData, TrainData
from gocoder_assets.checkpoint.data import MaskedBatch
from gocoder_assets.checkpoint.device import DeviceChoice, autocast, device_memory_bytes, gpu_arch, synchronize
from gocoder_assets.checkpoint.distributed import Dist
from gocoder_assets.checkpoint.evaluate import score_model, score_unigram
from gocoder_assets.checkpoint.memory import attention_kernel_for, flops_per_token, plan_batch
from gocoder_assets.checkpoint.optim import build_optimizer
from gocoder_assets.checkpoint.perf import matmul_peak_flops
from gocoder_assets.checkpoint.report import Progress, TrainResult
from gocoder_assets.checkpoint.state import StateStore, restore_rng, rng_state
from gocoder_assets.storage import atomic_dir, weights_identity

FINAL_LOSS_STEPS = 10  # "final train loss" averages this many last steps; one batch is too noisy


class TrainingDivergedError(RuntimeError):
    """A non-finite loss or gradient norm: the run stops instead of training on garbage."""


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``learning_rate``, then cosine decay to ``min_lr`` at ``max_steps``."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.learning_rate - cfg.min_lr)


def batch_loss(model: torch.nn.Module, windows: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of ``(rows, ctx + 1)`` windows."""
    logits = model(input_ids=windows[:, :-1], use_cache=False).logits
    # Cross-entropy in fp32 even under autocast: bf16 log-softmax over a large vocab loses precision.
    return F.cross_entropy(logits.float().flatten(0, 1), windows[:, 1:].flatten())


def masked_nll_sum(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Summed fp32 cross-entropy of the targets where ``mask`` is set; the others add exactly nothing."""
    nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    return torch.where(mask.flatten(), nll, torch.zeros_like(nll)).sum()


def masked_batch_loss(
    model: torch.nn.Module, windows: torch.Tensor, mask: torch.Tensor, denominator: float
) -> torch.Tensor:
    """Masked targets' summed loss over ``denominator``: the batch's mean when it is the batch's masked count."""
    logits = model(input_ids=windows[:, :-1], use_cache=False).logits
    return masked_nll_sum(logits, windows[:, 1:], mask) / denominator


def accumulate_gradients(
    model: torch.nn.Module,
    windows: torch.Tensor,
    micro_batch: int,
    device: DeviceChoice,
    scaler: torch.amp.GradScaler | None = None,
    mask: torch.Tensor | None = None,
    denominator: float | None = None,
) -> torch.Tensor:
    """Forward/backward ``windows`` in micro-batches; gradients equal one batch of all rows.

    Each micro-batch's mean loss is divided by the number of micro-batches (all have the same
    token count), so the summed gradients are those of the mean over every row. Under DDP the
    gradient all-reduce runs once, on the last micro-batch. Returns the mean loss (detached).

    With a target ``mask`` micro-batches hold different numbers of counted targets, so each one's
    *summed* loss is divided by ``denominator`` (the whole batch's masked count, over the ranks'
    number under DDP, whose all-reduce averages): the mean over every masked target of the batch.
    """
    chunks = windows.split(micro_batch)
    masks = mask.split(micro_batch) if mask is not None else [None] * len(chunks)
    total = torch.zeros((), device=windows.device)
    for i, (chunk, chunk_mask) in enumerate(zip(chunks, masks, strict=True)):
        last = i == len(chunks) - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast(device):
                if chunk_mask is None:
                    loss = batch_loss(model, chunk) / len(chunks)
                else:
                    loss = masked_batch_loss(model, chunk, chunk_mask, denominator or float(mask.sum()))
            (scaler.scale(loss) if scaler is not None else loss).backward()
        total += loss.detach()
    return total


def _to_device(windows: np.ndarray, device: DeviceChoice) -> torch.Tensor:
    """Pinned, non-blocking host→device copy on GPUs, so the copy overlaps the previous step's kernels."""
    batch = torch.from_numpy(windows)
    if device.device == "cuda":
        return batch.pin_memory().to(device.device, non_blocking=True)
    return batch.to(device.device)


def train(
    cfg: TrainConfig,
    model_config: LlamaConfig,
    train_shards: Sequence[Path],
    val_shards: Sequence[Path],
    token_bytes: np.ndarray,
    out_dir: Path,
    state_dir: Path,
    tensorboard_dir: Path,
    device: DeviceChoice,
    log: Callable[[str], None] = print,
    dist: Dist | None = None,
    data_identity: dict[str, Any] | None = None,
    extra_files: Sequence[Path] = (),
) -> TrainResult:
    """Pretrain (or resume) on token shards: ``fit`` on ``ShardData``.

    ``token_bytes[id]`` is the UTF-8 length of each token's text (bits per byte); ``data_identity``
    names the corpus in the resume fingerprint (default: the shard paths and sizes).
    """
    data = ShardData(train_shards, val_shards, token_bytes, data_identity)
    return fit(cfg, model_config, data, out_dir, state_dir, tensorboard_dir, device, log, dist, extra_files)


def fit(
    cfg: TrainConfig,
    model_config: LlamaConfig,
    data: TrainData,
    out_dir: Path,
    state_dir: Path,
    tensorboard_dir: Path,
    device: DeviceChoice,
    log: Callable[[str], None] = print,
    dist: Dist | None = None,
    extra_files: Sequence[Path] = (),
    init_from: Path | None = None,
) -> TrainResult:
    """Train (or resume) a model on ``data``, save it to ``out_dir`` (rank 0) and report what happened.

    ``init_from``: a Hugging Face directory whose weights the run starts from (``model_config`` must be
    its config); its weights' hashes join the resume fingerprint. ``extra_files`` (the tokenizer) are
    copied into ``out_dir`` inside the same atomic swap as the weights.
    """
    started = time.perf_counter()
    dist = dist or Dist()
    data.check_vocab(model_config.vocab_size)
    ctx = data.context(model_config.max_position_embeddings)
    config = copy.deepcopy(model_config)
    config.max_position_embeddings = ctx  # the checkpoint declares the context it was actually trained on
    if ctx < model_config.max_position_embeddings:
        log(f"context cut from {model_config.max_position_embeddings} to {ctx}: train shards are that short")
    rows = max(dist.world_size, cfg.total_batch_tokens // ctx // dist.world_size * dist.world_size)
    if rows * ctx != cfg.total_batch_tokens:
        log(
            f"total_batch_tokens {cfg.total_batch_tokens} is not {dist.world_size} × a multiple of ctx {ctx}: "
            f"using {rows} rows = {rows * ctx} tokens per step"
        )
    plan = plan_batch(
        config,
        ctx,
        rows * ctx,
        device_memory_bytes(device),
        device.precision,
        cfg.activation_checkpointing,
        optimizer=cfg.optimizer,
        world_size=dist.world_size,
        micro_batch=cfg.micro_batch_size or None,
        device_type=device.device,
        attention_kernel=attention_kernel_for(device.backend, gpu_arch(device)),
    )
    sampler = data.sampler(ctx, cfg.stages, cfg.seed)

    torch.manual_seed(cfg.seed)
    if device.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 leftovers outside autocast: TF32 is enough
    if init_from is None:
        model = LlamaForCausalLM._from_config(config, attn_implementation="sdpa", dtype=torch.float32)
    else:
        model = LlamaForCausalLM.from_pretrained(
            init_from, config=config, attn_implementation="sdpa", dtype=torch.float32
        )
    model.to(device.device).train()
    if cfg.activation_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    params = sum(p.numel() for p in model.parameters())
    optimizer = build_optimizer(
        model, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, device=device, kind=cfg.optimizer
    )
    scaler = torch.amp.GradScaler(device.device, enabled=device.needs_grad_scaler)  # disabled: a pass-through

    settings = {"train": cfg.fingerprint_settings(), "model": config.to_dict(), "data": data.identity()}
    if init_from is not None:  # absent for pretraining from scratch, so its fingerprints stay what they were
        settings["init"] = weights_identity(init_from)
    settings["model"].pop("transformers_version", None)
    store = StateStore(state_dir, settings, keep=cfg.keep_checkpoints)
    reason = store.prepare() if dist.is_main else None
    dist.barrier()
    if reason:
        log(reason)
    start_step, tokens_seen, history, evals = 0, 0, [], []
    resumed = store.latest(map_location=device.device)
    if resumed is not None:
        p = resumed.payload
        model.load_state_dict(p["model"])
        optimizer.load_state_dict(p["optimizer"])
        scaler.load_state_dict(p["scaler"])
        sampler.load_state_dict(p["sampler"])
        restore_rng(p["rng"])
        start_step, tokens_seen, history, evals = p["step"], p["tokens_seen"], p["losses"], p["evals"]
        log(f"resumed from step {start_step} ({resumed.path})")

    step_model: torch.nn.Module = torch.compile(model) if cfg.compile else model  # eval uses `model`
    step_model = dist.wrap(step_model, device)
    eval_set = data.eval_set(ctx, cfg.eval_tokens) if dist.is_main else None
    flops = flops_per_token(config, ctx)
    peak = matmul_peak_flops(device)
    log(
        f"training {params / 1e6:.2f}M params ({cfg.preset}), ctx {ctx}, {plan.rows_per_step} rows/step = "
        f"{dist.world_size} rank(s) × {plan.accumulation} × micro-batch {plan.micro_batch}, {cfg.max_steps} steps "
        f"on {device.backend}/{device.precision} ({device.name}); {data.describe()}; "
        f"memory estimate {plan.estimate.total / 2**30:.2f} GiB"
    )
    tokens_per_step = plan.rows_per_step * ctx
    writer = SummaryWriter(log_dir=str(tensorboard_dir)) if dist.is_main else None
    if writer:
        writer.add_text("train_config", json.dumps(asdict(cfg)))
    progress = Progress(writer, log, tokens_per_step, flops, peak)
    progress.losses, progress.evals = list(history), list(evals)

    def evaluate(done: int) -> None:
        progress.eval(done, score_model(model, eval_set, plan.micro_batch, device.device, lambda: autocast(device)))

    if eval_set is not None and init_from is not None and start_step == 0:
        evaluate(0)  # the base model on the same val targets: what fine-tuning has to improve on
    lo, hi = dist.rank * plan.rows_per_step // dist.world_size, (dist.rank + 1) * plan.rows_per_step // dist.world_size
    skipped, eval_time = 0, 0.0
    steady_start = loop_start = time.perf_counter()
    steady_tokens = loop_tokens = tokens_seen
    try:
        for step in range(start_step, cfg.max_steps):
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = sampler.next_batch(plan.rows_per_step, tokens_seen)
            if isinstance(batch, MaskedBatch):  # every rank draws the whole batch, so all agree on the count
                step_tokens, denominator = batch.tokens, float(batch.mask.sum()) / dist.world_size
                windows, mask = _to_device(batch.windows[lo:hi], device), _to_device(batch.mask[lo:hi], device)
            else:
                step_tokens, denominator, windows, mask = tokens_per_step, None, _to_device(batch[lo:hi], device), None
            loss = accumulate_gradients(step_model, windows, plan.micro_batch, device, scaler, mask, denominator)
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            loss = dist.mean(loss)
            loss_value, norm_value = torch.stack([loss, grad_norm.float()]).tolist()  # one host sync per step
            done = step + 1
            if not math.isfinite(loss_value) or (not math.isfinite(norm_value) and not scaler.is_enabled()):
                last = store.steps()
                raise TrainingDivergedError(
                    f"training diverged at step {done}: loss {loss_value}, grad norm {norm_value}; the last saved "
                    f"state is {last[-1].name if last else 'none'}. Lower learning_rate or raise warmup_steps "
                    "(a config change starts a fresh run)"
                )
            scale = scaler.get_scale() if scaler.is_enabled() else 1.0
            scaler.step(optimizer)
            scaler.update()
            skipped += int(scaler.is_enabled() and scaler.get_scale() < scale)
            optimizer.zero_grad(set_to_none=True)
            tokens_seen += step_tokens
            log_now = done % cfg.log_interval == 0 or done == cfg.max_steps
            progress.step(done, cfg.max_steps, loss_value, lr, norm_value, log_now, step_tokens)
            if step == start_step:  # steady-state timing starts after compilation and allocator warm-up
                synchronize(device.device)
                steady_start, steady_tokens = time.perf_counter(), tokens_seen
            if eval_set is not None and (done % cfg.eval_interval == 0 or done == cfg.max_steps):
                eval_started = time.perf_counter()
                evaluate(done)
                eval_time += time.perf_counter() - eval_started
                progress.interval_start += time.perf_counter() - eval_started
            if dist.is_main and (done % cfg.checkpoint_interval == 0 and done < cfg.max_steps):
                payload = {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "sampler": sampler.state_dict(),
                    "rng": rng_state(device.device),
                    "step": done,
                    "lr": lr,
                    "tokens_seen": tokens_seen,
                    "losses": progress.losses,
                    "evals": progress.evals,
                }
                log(f"saved training state {store.save(done, payload).name}")
        synchronize(device.device)
        steady_time = time.perf_counter() - steady_start - eval_time
        if cfg.max_steps - start_step < 2:  # a single step in this process: all we have is the warm-up step itself
            steady_tokens, steady_time = loop_tokens, steady_start - loop_start
        tokens_per_s = (tokens_seen - steady_tokens) / max(steady_time, 1e-9)
    finally:
        if writer:
            writer.close()
    val_report: dict[str, float | int] = {}
    unigram_report: dict[str, float | int] = {}
    if eval_set is not None and progress.evals:
        val_report = {k: v for k, v in progress.evals[-1].items() if k != "step"}
        unigram = score_unigram(data.unigram_counts(model_config.vocab_size), eval_set)
        unigram_report = unigram.as_metadata("val_unigram")
    elif dist.is_main:
        log("no val data: val loss not measured")
    # The memory model's estimate beside what the allocator really peaked at (GPUs; CPUs have no such counter).
    memory = {f"estimated_{k}": v for k, v in plan.estimate.as_dict().items()}
    memory.update(estimated_total=plan.estimate.total, device_total=plan.device_bytes)
    if device.device == "cuda":
        memory["measured_max_allocated"] = int(torch.cuda.max_memory_allocated())
    result = TrainResult(
        preset=cfg.preset,
        params=params,
        context_length=ctx,
        steps=cfg.max_steps,
        resumed_from_step=start_step,
        tokens_seen=tokens_seen,
        total_batch_tokens=tokens_per_step,
        micro_batch=plan.micro_batch,
        accumulation=plan.accumulation,
        world_size=dist.world_size,
        initial_loss=progress.losses[0],
        final_train_loss=float(np.mean(progress.losses[-FINAL_LOSS_STEPS:])),
        tokens_per_s=tokens_per_s,
        mfu=tokens_per_s * flops / peak,
        wall_time_s=time.perf_counter() - started,
        device=device.device,
        backend=device.backend,
        precision=device.precision,
        device_name=device.name,
        compiled=cfg.compile,
        activation_checkpointing=cfg.activation_checkpointing,
        optimizer=cfg.optimizer,
        skipped_steps=skipped,
        memory={k: int(v) for k, v in memory.items()},
        val=val_report,
        val_unigram=unigram_report,
        losses=progress.losses,
        evals=progress.evals,
    )
    if dist.is_main:
        if cfg.activation_checkpointing:
            model.activation_checkpointing_disable()
        with atomic_dir(out_dir) as tmp:  # old checkpoint or new one, never half
            model.save_pretrained(tmp)
            for path in extra_files:
                shutil.copy2(path, tmp / Path(path).name)
        log(
            f"saved {out_dir}: loss {result.initial_loss:.3f} → {result.final_train_loss:.3f}, "
            f"{tokens_per_s:,.0f} tok/s"
        )
    return result
