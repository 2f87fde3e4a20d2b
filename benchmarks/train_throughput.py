"""Training throughput of this project's loop next to Hugging Face's Trainer and a minimal PyTorch loop.

    .venv/bin/python benchmarks/train_throughput.py --preset tiny --steps 30

All three train the same ``LlamaForCausalLM`` shape on the same micro-batch for ``--steps`` steps;
the minimal loop ("reference") is the yardstick the other two are divided by. A square-matmul
microbenchmark in the same process (once per round, best kept) gives the device's achievable peak
for the training dtype, so each implementation's model FLOP/s reads as a fraction of what the
hardware does on big matmuls (MFU on a GPU). Implementations alternate order across ``--repeats``
so that frequency drift or a noisy neighbour does not favour whichever runs first; medians are
reported. Timings on a shared machine are noise: publish only runs from an idle one.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from gocoder_assets.checkpoint.config import TrainConfig
from gocoder_assets.checkpoint.device import (
    DeviceChoice,
    DeviceUnavailableError,
    autocast,
    pick_device,
    synchronize,
)
from gocoder_assets.checkpoint.memory import flops_per_token
from gocoder_assets.checkpoint.model import PRESETS, build_model_config, count_params
from gocoder_assets.checkpoint.perf import matmul_peak
from gocoder_assets.packed_shards.shard_format import write_index, write_shard

IMPLS = ("gocoder", "hf-trainer", "reference")
SYNTHETIC_TOKENS = 1 << 20  # 2 MiB of uint16: random windows rarely repeat, and writing it takes no time
# Passed to every implementation (train()'s defaults, and the betas it hard-codes), so a difference in
# tokens/s is never a difference in optimizer work.
LR, BETAS, WEIGHT_DECAY, GRAD_CLIP = 6e-4, (0.9, 0.95), 0.1, 1.0


@dataclass(frozen=True)
class Shape:
    """The model every implementation builds: a preset's ``LlamaConfig`` and the context it trains on."""

    preset: str
    config: LlamaConfig

    @property
    def ctx(self) -> int:
        return self.config.max_position_embeddings


def peak_dtypes(device: DeviceChoice) -> dict[str, torch.dtype]:
    """fp32 always (the fallback yardstick), plus the training dtype (``pick_device`` only picks native ones)."""
    dtypes = {"fp32": torch.float32}
    if device.autocast_dtype is not None:
        dtypes[device.precision] = device.autocast_dtype
    return dtypes


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def synthetic_tokens(vocab_size: int, seed: int) -> np.ndarray:
    """Uniform random ids: throughput does not depend on what the tokens say, only on the shapes."""
    return np.random.default_rng(seed).integers(0, vocab_size, SYNTHETIC_TOKENS, dtype=np.uint16)


def run_gocoder(
    shape: Shape, batch: int, steps: int, workdir: Path, device: DeviceChoice, *, compile: bool = False
) -> float:
    """This project's ``train()`` on synthetic shards; steady tokens/s as it reports them.

    ``TrainResult.tokens_per_s`` excludes the first step (where compilation happens), evaluations and
    the final save. The per-step divergence check stays in; periodic training-state saves do not
    happen in so short a run (a real run pays one every ``checkpoint_interval`` steps, amortized).
    """
    from gocoder_assets.checkpoint.train import train  # noqa: PLC0415 - torch-heavy, only for this impl

    tokens = synthetic_tokens(shape.config.vocab_size, seed=0)
    shards = []
    for name, part in (("train", tokens), ("val", tokens[: shape.ctx + 1])):
        path = workdir / name / "tokens.bin"
        path.parent.mkdir()
        write_shard(path, part)
        write_index(path, ["r0"], ["CODE"], [0], [len(part)])  # one record: categories don't matter here
        shards.append([path])
    cfg = TrainConfig(
        preset=shape.preset,
        max_steps=steps,
        total_batch_tokens=batch * shape.ctx,
        micro_batch_size=batch,
        learning_rate=LR,
        min_lr=LR,
        warmup_steps=0,
        weight_decay=WEIGHT_DECAY,
        grad_clip=GRAD_CLIP,
        eval_interval=steps,
        eval_tokens=shape.ctx,
        checkpoint_interval=steps,
        compile=compile,
        log_interval=steps,
    )
    token_bytes = np.ones(shape.config.vocab_size, dtype=np.int32)
    result = train(
        cfg,
        shape.config,
        *shards,
        token_bytes,
        workdir / "out",
        workdir / "state",
        workdir / "tb",
        device,
        log=lambda _: None,
    )
    return result.tokens_per_s


def _adamw(params: list[torch.nn.Parameter], fused: bool) -> torch.optim.AdamW:
    """Decay on matrices only, as ``train()`` does; ``fused=False`` is torch's default foreach path."""
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=LR, betas=BETAS, fused=fused, foreach=None if fused else True)


def _fresh_model(shape: Shape, device: DeviceChoice) -> LlamaForCausalLM:
    torch.manual_seed(0)
    model = LlamaForCausalLM._from_config(shape.config, attn_implementation="sdpa", dtype=torch.float32)
    return model.to(device.device).train()


def run_reference(
    shape: Shape, batch: int, steps: int, warmup: int, device: DeviceChoice, *, compile: bool, fused: bool
) -> float:
    """The yardstick: forward under our autocast, fp32 cross-entropy, backward, clip, AdamW, nothing else."""
    tokens = synthetic_tokens(shape.config.vocab_size, seed=0)
    rng = np.random.default_rng(0)
    model = _fresh_model(shape, device)
    step_model = torch.compile(model) if compile else model
    optimizer = _adamw(list(model.parameters()), fused)
    scaler = torch.amp.GradScaler(device.device, enabled=device.needs_grad_scaler)  # fp16 only, as in train()
    started = time.perf_counter()
    for step in range(steps):
        if step == warmup:
            synchronize(device.device)
            started = time.perf_counter()
        starts = rng.integers(0, len(tokens) - shape.ctx - 1, size=batch)
        windows = np.stack([tokens[s : s + shape.ctx + 1] for s in starts]).astype(np.int64)
        x = torch.from_numpy(windows).to(device.device)
        with autocast(device):
            logits = step_model(input_ids=x[:, :-1], use_cache=False).logits
            loss = F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten())
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    synchronize(device.device)
    return (steps - warmup) * batch * shape.ctx / (time.perf_counter() - started)


class _Windows(torch.utils.data.Dataset):
    """``ctx``-token windows at fixed random offsets; HF shifts ``labels`` itself."""

    def __init__(self, tokens: np.ndarray, ctx: int, n: int) -> None:
        self.tokens, self.ctx = tokens, ctx
        self.starts = np.random.default_rng(0).integers(0, len(tokens) - ctx, size=n)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = torch.from_numpy(self.tokens[self.starts[i] : self.starts[i] + self.ctx].astype(np.int64))
        return {"input_ids": ids, "labels": ids}


class _StepClock(TrainerCallback):
    """Timestamps each optimizer step's end, so warm-up steps can be dropped from the rate."""

    def __init__(self, device: DeviceChoice) -> None:
        self.device, self.times = device, []

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> None:
        synchronize(self.device.device)
        self.times.append(time.perf_counter())


def run_hf_trainer(
    shape: Shape, batch: int, steps: int, warmup: int, device: DeviceChoice, workdir: Path, *, fused: bool
) -> float:
    """``transformers.Trainer`` configured like our loop: what a stock HF run would get on this shape."""
    clock = _StepClock(device)
    args = TrainingArguments(
        output_dir=str(workdir / "hf"),
        per_device_train_batch_size=batch,
        max_steps=steps,
        learning_rate=LR,
        lr_scheduler_type="constant",
        adam_beta1=BETAS[0],
        adam_beta2=BETAS[1],
        weight_decay=WEIGHT_DECAY,
        max_grad_norm=GRAD_CLIP,
        optim="adamw_torch_fused" if fused else "adamw_torch",
        bf16=device.precision == "bf16",
        fp16=device.precision == "fp16",
        use_cpu=device.device == "cpu",
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    dataset = _Windows(synthetic_tokens(shape.config.vocab_size, seed=0), shape.ctx, steps * batch)
    trainer = Trainer(model=_fresh_model(shape, device), args=args, train_dataset=dataset, callbacks=[clock])
    trainer.remove_callback(PrinterCallback)  # its end-of-run metrics dict would interleave with our table
    trainer.train()
    t = clock.times  # t[i] is the end of step i + 1, so warm-up >= 1 is needed to have a start time
    return (len(t) - warmup) * batch * shape.ctx / (t[-1] - t[warmup - 1])


def environment(device: DeviceChoice) -> list[str]:
    """What a reader needs to judge the numbers: hardware, threads, precision, library versions, date."""
    if device.device == "cuda":
        hardware = f"GPU {device.name}"
    else:
        flags = ", ".join(
            name
            for name, present in (
                ("avx512_bf16", torch.cpu._is_avx512_bf16_supported()),
                ("amx_tile", torch.cpu._is_amx_tile_supported()),
            )
            if present
        )
        hardware = f"CPU {cpu_model()} ({os.cpu_count()} CPUs; bf16 units: {flags or 'none'})"
    return [
        f"date       {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"hardware   {hardware}",
        f"threads    torch {torch.get_num_threads()} (capability {torch.backends.cpu.get_cpu_capability()})",
        f"precision  {device.precision} on {device.backend}",
        f"versions   torch {torch.__version__}, transformers {transformers.__version__}, python "
        f"{platform.python_version()}",
    ]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of hf-trainer/reference timing")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    parser.add_argument("--compile", action="store_true", help="torch.compile for gocoder and reference")
    parser.add_argument("--impl", nargs="+", default=list(IMPLS), choices=IMPLS)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=2, help="rounds; odd rounds run the impls in reverse")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads before anything runs")
    parser.add_argument(
        "--adamw", default="fused", choices=("fused", "foreach"), help="AdamW kernel for reference and hf-trainer"
    )
    args = parser.parse_args()
    if not 1 <= args.warmup < args.steps:
        parser.error(f"need 1 <= --warmup ({args.warmup}) < --steps ({args.steps})")
    if args.batch < 1 or args.repeats < 1:
        parser.error("--batch and --repeats must be at least 1")
    if not 2 <= args.vocab_size <= 1 << 16:
        parser.error(f"--vocab-size {args.vocab_size} does not fit uint16 token shards (2..65536)")
    return args


def main() -> None:
    args = parse_args()
    transformers.utils.logging.disable_progress_bar()  # save_pretrained's shard bar is noise here
    if args.threads:
        torch.set_num_threads(args.threads)  # before pick_device, which records the thread count
    try:
        device = pick_device(args.device, args.precision)
    except DeviceUnavailableError as e:  # a missing GPU is a usage error here, not a crash
        raise SystemExit(f"train_throughput: {e}") from None
    if device.device == "cuda" and torch.cuda.device_count() > 1:
        # Trainer would wrap the model in DataParallel and split each batch over every GPU.
        raise SystemExit("train_throughput: expose one GPU (e.g. CUDA_VISIBLE_DEVICES=0) so all three use one")
    if device.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # what train() sets, so fp32 peak and runs agree
    config = build_model_config(args.preset, args.vocab_size, bos_id=1, eos_id=2, pad_id=0)
    shape = Shape(args.preset, config)
    fused = args.adamw == "fused"
    for line in environment(device):
        print(line)

    fpt = flops_per_token(config, shape.ctx)
    print(
        f"model      {args.preset}: {count_params(config) / 1e6:.2f}M params, ctx {shape.ctx}, batch {args.batch}, "
        f"{fpt / 1e6:.1f} MFLOP/token; {args.steps} steps, warm-up {args.warmup} (gocoder: its own, 1 step), "
        f"compile {args.compile}, AdamW {args.adamw} (gocoder: its own)"
    )

    runners: dict[str, Callable[[Path], float]] = {
        "gocoder": lambda wd: run_gocoder(shape, args.batch, args.steps, wd, device, compile=args.compile),
        "hf-trainer": lambda wd: run_hf_trainer(shape, args.batch, args.steps, args.warmup, device, wd, fused=fused),
        "reference": lambda _: run_reference(
            shape, args.batch, args.steps, args.warmup, device, compile=args.compile, fused=fused
        ),
    }
    impls = [name for name in IMPLS if name in args.impl]
    rates: dict[str, list[float]] = {name: [] for name in impls}
    sizes, min_s = ((4096, 8192), 1.0) if device.device == "cuda" else ((1024, 2048, 3072, 4096), 0.5)
    peaks = dict.fromkeys(peak_dtypes(device), 0.0)
    for round_ in range(args.repeats):
        # Once per round, keeping the best: a busy neighbour can only lower a matmul rate, and an
        # underestimated peak would flatter every implementation.
        for name, dtype in peak_dtypes(device).items():
            peaks[name] = max(peaks[name], matmul_peak(device.device, dtype, sizes, min_s))
        for name in impls if round_ % 2 == 0 else impls[::-1]:
            with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as workdir:
                rate = runners[name](Path(workdir))
            rates[name].append(rate)
            print(f"round {round_ + 1} {name:<11} {rate:>10,.0f} tok/s")

    peak_name = device.precision if device.precision in peaks else "fp32"
    peak = peaks[peak_name]
    print("\npeak       " + ", ".join(f"{k} {v / 1e9:,.0f} GFLOP/s" for k, v in peaks.items()) + f" (n = {sizes})")
    print(f"{'impl':<11} {'tok/s':>10} {'min..max':>19} {'vs ref':>7} {'GFLOP/s':>8} {'of peak':>8}")
    ref = statistics.median(rates["reference"]) if "reference" in rates else None
    for name in impls:
        median = statistics.median(rates[name])
        spread = f"{min(rates[name]):,.0f}..{max(rates[name]):,.0f}"
        vs_ref = f"{median / ref:.3f}" if ref else "-"
        print(
            f"{name:<11} {median:>10,.0f} {spread:>19} {vs_ref:>7} "
            f"{median * fpt / 1e9:>8.1f} {median * fpt / peak:>8.3f}"
        )
    print(f"\n'of peak' = model FLOP/s / best measured {peak_name} matmul rate")


if __name__ == "__main__":
    main()
