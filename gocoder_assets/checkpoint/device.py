"""Where training runs and in which precision, decided once and recorded with the run.

One decision point so a run's metadata can say exactly what hardware and precision produced a
checkpoint, and so asking for a GPU that isn't there fails before any data is touched.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass

import torch

REQUESTS = ("auto", "cuda", "rocm", "cpu", "mps")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


class DeviceUnavailableError(RuntimeError):
    """The requested device or precision does not exist on this machine."""


@dataclass(frozen=True)
class DeviceChoice:
    """``device`` is the torch device type ("cuda" also for ROCm); ``backend`` says which stack it really is.

    ``needs_grad_scaler`` is set for fp16 autocast (GPUs only), whose narrow exponent range makes
    small gradients underflow without loss scaling; bf16 has fp32's range and needs none.
    """

    device: str
    backend: str
    autocast_dtype: torch.dtype | None
    name: str
    needs_grad_scaler: bool = False

    @property
    def precision(self) -> str:
        """ "bf16", "fp16" or "fp32": the name recorded in run metadata."""
        return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[self.autocast_dtype]


def _cpu_name() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    threads = torch.get_num_threads()
    return f"{model} ({threads} torch threads of {os.cpu_count()} CPUs)"


def _cuda_bf16() -> bool:
    # Without including_emulation=False, pre-Ampere GPUs report True and run bf16 at a crawl.
    return torch.cuda.is_bf16_supported(including_emulation=False)


def _cpu_bf16() -> bool:
    # oneDNN runs bf16 natively with AVX512-BF16/AMX and emulates it (slower than fp32) otherwise.
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private op: absent in some builds
        return False


def _available() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found.insert(0, "rocm" if torch.version.hip else "cuda")
    if torch.backends.mps.is_available():
        found.insert(0, "mps")
    return found


def _resolve_device(requested: str) -> tuple[str, str]:
    """(torch device type, backend) for a request, or a clear error naming what exists here."""
    available = _available()
    if requested == "auto":
        backend = available[0]
    elif requested in available:
        backend = requested
    elif requested == "cuda" and "rocm" in available:
        backend = "rocm"  # ROCm builds of torch answer to "cuda"; accept it and record the truth.
    else:
        build = f"torch {torch.__version__}"
        if requested in ("cuda", "rocm") and not (torch.version.cuda or torch.version.hip):
            build += " is a CPU-only build"
        raise DeviceUnavailableError(
            f"device {requested!r} is not available here ({build}); available: {', '.join(available)}"
        )
    return ("cuda" if backend in ("cuda", "rocm") else backend), backend


def _auto_precision(backend: str) -> str:
    if backend in ("cuda", "rocm"):
        return "bf16" if _cuda_bf16() else "fp16"
    if backend == "cpu":
        return "bf16" if _cpu_bf16() else "fp32"
    return "fp32"  # MPS: autocast coverage is still partial, so don't pick it silently.


def pick_device(requested: str = "auto", precision: str = "auto") -> DeviceChoice:
    """Pick the device and autocast dtype. "auto" prefers an accelerator, and bf16 where it is native."""
    if requested not in REQUESTS:
        raise ValueError(f"unknown device {requested!r}; choose one of {REQUESTS}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    device, backend = _resolve_device(requested)
    if precision == "auto":
        precision = _auto_precision(backend)
    elif precision == "fp16" and backend == "cpu":
        raise DeviceUnavailableError("fp16 autocast on CPU is emulated and slow; use bf16 or fp32")
    elif precision == "bf16" and backend in ("cuda", "rocm") and not _cuda_bf16():
        raise DeviceUnavailableError(f"{torch.cuda.get_device_name(0)} has no native bf16; use fp16 or fp32")
    if backend in ("cuda", "rocm"):
        name = torch.cuda.get_device_name(0)
    elif backend == "mps":
        name = f"Apple MPS ({platform.machine()})"
    else:
        name = _cpu_name()
    return DeviceChoice(
        device=device,
        backend=backend,
        autocast_dtype=_DTYPES[precision],
        name=name,
        needs_grad_scaler=precision == "fp16",
    )


@contextlib.contextmanager
def autocast(choice: DeviceChoice) -> Iterator[None]:
    """Mixed precision for forward passes; a no-op for fp32. Weights and optimizer state stay fp32."""
    if choice.autocast_dtype is None:
        yield
        return
    with torch.autocast(device_type=choice.device, dtype=choice.autocast_dtype):
        yield
