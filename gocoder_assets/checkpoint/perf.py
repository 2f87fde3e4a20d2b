"""The device's achievable matmul throughput, measured, so utilization figures have an honest denominator.

Datasheet peaks overstate what a given card, driver, clock and thermal state deliver; a dense
matmul in the training dtype measured in the same process is the ceiling the training step can
approach. MFU here is model FLOP/s (``memory.flops_per_token`` × tokens/s) over this figure, in the
training loop's metadata and in ``benchmarks/train_throughput.py`` alike.
"""

from __future__ import annotations

import functools
import time

import torch

from gocoder_assets.checkpoint.device import DeviceChoice, synchronize

# Sizes a training run measures at start-up: about a second on a 2-core CPU, milliseconds on a GPU.
STARTUP_SIZES = {"cpu": (1024, 2048), "cuda": (4096, 8192), "mps": (2048, 4096)}


def matmul_peak(device: str, dtype: torch.dtype, sizes: tuple[int, ...], min_s: float = 0.2) -> float:
    """Best FLOP/s over square matmuls of ``sizes``, each run for at least ``min_s`` after an untimed call
    (oneDNN / cuBLAS / hipBLASLt pick their kernels on the first)."""
    best = 0.0
    for n in sizes:
        a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        c = torch.mm(a, b)
        synchronize(device)
        calls, started = 0, time.perf_counter()
        while True:
            torch.mm(a, b, out=c)
            calls += 1
            if calls % 4 == 0 or device == "cpu":
                synchronize(device)
                if (elapsed := time.perf_counter() - started) >= min_s:
                    break
        best = max(best, 2 * n**3 * calls / elapsed)
    return best


@functools.cache
def _startup_peak(device: str, dtype: torch.dtype) -> float:
    return matmul_peak(device, dtype, STARTUP_SIZES.get(device, (2048,)))


def matmul_peak_flops(choice: DeviceChoice) -> float:
    """The peak in the training compute dtype (bf16/fp16 under autocast, else fp32), cached per process."""
    return _startup_peak(choice.device, choice.autocast_dtype or torch.float32)
