"""Micro-batch, accumulation, memory and throughput per preset and card, from the memory model alone.

    .venv/bin/python benchmarks/memory_table.py [--vocab-size 32768] [--batch-rows 16]
        [--mfu-rdna2 0.30] [--mfu-a100 0.40] [--train-tokens 10e9]

Nothing is allocated: the numbers are ``gocoder_assets.checkpoint.memory``'s estimates, so the table
is a plan to check against a real run (``torch.cuda.max_memory_allocated``), not a measurement.
Throughput is peak dense FLOP/s × an *assumed* MFU / training FLOPs per token; with activation
checkpointing the forward runs twice, so at the same hardware utilisation MFU is 3/4 of it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from gocoder_assets.checkpoint.memory import GIB, plan_batch, tokens_per_second
from gocoder_assets.checkpoint.model import PRESETS, build_model_config, count_params

# Forward = 1/3 of a training step's FLOPs; recomputing it adds 1/3, so model FLOPs/s drop to 3/4.
RECOMPUTE_MFU_FACTOR = 0.75


@dataclass(frozen=True)
class Card:
    """A training device as the memory model and the throughput estimate see it."""

    name: str
    memory_bytes: int
    memory_label: str
    precision: str
    attention_kernel: str
    peak_flops: float  # dense fp16/bf16 matrix FLOP/s, no sparsity
    mfu_flag: str


CARDS = (
    # RX 6700 XT: 2560 shaders × 2 FLOP × 2.581 GHz = 13.21 TFLOP/s fp32, packed fp16 doubles it
    # (26.43); no matrix cores, no bf16. AOTriton has no gfx103x kernels, so SDPA runs the math path.
    Card("12 GB RX 6700 XT (RDNA2: fp16 + GradScaler)", 12 * GIB, "12 GiB", "fp16", "math", 26.43e12, "mfu_rdna2"),
    # A100: 312 TFLOP/s bf16 dense tensor-core (624 with 2:4 sparsity, not used here); flash SDPA.
    Card("80 GB A100 (bf16)", 80 * 10**9, "80 GB = 80·10⁹ B", "bf16", "fused", 312e12, "mfu_a100"),
)


def table(vocab_size: int, batch_rows: int, mfu: dict[str, float], train_tokens: float, headroom: float) -> str:
    """The markdown table: one row per preset × card × activation checkpointing."""
    head = (
        "| preset | params | ctx | card | act. ckpt | micro-batch | accum. steps | est. memory (GiB) "
        f"| est. tokens/s | days for {train_tokens / 1e9:g}B tokens |"
    )
    lines = [head, "|" + "---|" * 10]
    for preset in ("tiny", "125m", "350m"):
        config = build_model_config(preset, vocab_size, 1, 2, 0)
        ctx = PRESETS[preset].context_length
        for card in CARDS:
            for ckpt in (False, True):
                cells = [preset, f"{count_params(config) / 1e6:.0f}M", str(ctx), card.name, "yes" if ckpt else "no"]
                try:
                    plan = plan_batch(
                        config, ctx, batch_rows * ctx, card.memory_bytes, card.precision, ckpt,
                        headroom=headroom, attention_kernel=card.attention_kernel,
                    )  # fmt: skip
                except ValueError:
                    lines.append("| " + " | ".join([*cells, "does not fit", "-", "-", "-", "-"]) + " |")
                    continue
                card_mfu = mfu[card.mfu_flag] * (RECOMPUTE_MFU_FACTOR if ckpt else 1.0)
                rate = tokens_per_second(config, ctx, card.peak_flops, card_mfu)
                cells += [
                    str(plan.micro_batch),
                    str(plan.accumulation),
                    f"{plan.estimate.total / GIB:.2f}",
                    f"{rate:,.0f}",
                    f"{train_tokens / rate / 86400:.1f}",
                ]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab-size", type=int, default=32768)
    parser.add_argument("--batch-rows", type=int, default=16, help="effective batch = rows × the preset's context")
    parser.add_argument("--mfu-rdna2", type=float, default=0.30, help="assumed MFU on the RX 6700 XT")
    parser.add_argument("--mfu-a100", type=float, default=0.40, help="assumed MFU on the A100")
    parser.add_argument("--train-tokens", type=float, default=10e9)
    parser.add_argument("--headroom", type=float, default=0.9, help="fraction of device memory a plan may use")
    args = parser.parse_args()
    mfu = {"mfu_rdna2": args.mfu_rdna2, "mfu_a100": args.mfu_a100}
    print(table(args.vocab_size, args.batch_rows, mfu, args.train_tokens, args.headroom))
    print()
    print(
        f"Assumptions: vocab {args.vocab_size}, effective batch {args.batch_rows} × context tokens, "
        f"plans use ≤ {args.headroom:.0%} of device memory ("
        + "; ".join(f"{c.name}: {c.memory_label}, {c.precision}, {c.attention_kernel} SDPA" for c in CARDS)
        + f"); MFU assumed {args.mfu_rdna2:.2f} (RX 6700 XT, 26.43 TFLOP/s fp16) and {args.mfu_a100:.2f} "
        f"(A100, 312 TFLOP/s bf16), × {RECOMPUTE_MFU_FACTOR} with activation checkpointing."
    )


if __name__ == "__main__":
    main()
