"""The device's achievable matmul throughput, measured, so utilization figures have an honest denominator.

Datasheet peaks overstate what a given card, driver, clock and thermal state deliver; a dense
matmul in the training dtype measured in the same process is the ceiling the training step can
approach. MFU here is model FLOP/s (``memory.flops_per_token`` × tokens/s) over this figure.
"""

from __future__ import annotations

import functools
import time

import torch

from gocoder_assets.checkpoint.device import DeviceChoice


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@functools.cache
def _peak(device: str, dtype: torch.dtype, size: int, reps: int) -> float:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):  # warm-up: kernel selection, allocator, CPU frequency ramp
        a @ b
    _sync(device)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def matmul_peak_flops(choice: DeviceChoice, size: int | None = None, reps: int = 5) -> float:
    """Best-of-``reps`` FLOP/s of a square matmul in the training compute dtype (cached per process)."""
    dtype = choice.autocast_dtype or torch.float32
    if size is None:
        size = 4096 if choice.device == "cuda" else 1024
    return _peak(choice.device, dtype, size, reps)
