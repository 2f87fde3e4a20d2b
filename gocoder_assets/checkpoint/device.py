"""Where training runs and in which precision, decided once and recorded with the run.

One decision point so a run's metadata can say exactly what hardware and precision produced a
checkpoint, and so asking for a GPU (or a precision) that isn't there fails before any data is touched.

Every hardware question is asked through one tiny module-level probe (``_available``,
``_cpu_native_bf16``, ``_cuda_capability``, ``_rocm_arch``, ...), so tests can stand in for an A100, a
V100 or an RX 6700 XT on a CPU-only machine by monkeypatching the probes alone.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

REQUESTS = ("auto", "cuda", "rocm", "cpu", "mps")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}

# AMD archs whose matrix units take bf16 (ROCm "Data types and precision support" and HIP "Hardware
# features"): CDNA1-4 MFMA (MI100 gfx908, MI200 gfx90a, MI300 gfx940/941/942, MI350 gfx950), and the
# WMMA of RDNA3/3.5 (gfx11xx) and RDNA4 (gfx12xx). RDNA1/2 (gfx101x/gfx103x) and GCN (gfx906 MI50...)
# have none, so bf16 there is converted to fp32 in software and runs slower than fp16.
_ROCM_BF16_ARCHS = frozenset({"gfx908", "gfx90a", "gfx940", "gfx941", "gfx942", "gfx950"})
_ROCM_BF16_FAMILIES = ("gfx11", "gfx12")
_MEMINFO = Path("/proc/meminfo")


class DeviceUnavailableError(RuntimeError):
    """The requested device or precision does not exist on this machine."""


@dataclass(frozen=True)
class DeviceChoice:
    """``device`` is the torch device type ("cuda" also for ROCm); ``backend`` says which stack it really is.

    ``needs_grad_scaler`` is set for fp16 autocast, whose narrow exponent range makes small gradients
    underflow without loss scaling; bf16 has fp32's range and needs none.
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


# --- probes: one hardware question each, nothing else --------------------------------------------


def _available() -> list[str]:
    """Backends present here, best first; "cpu" is always last."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found.insert(0, "rocm" if torch.version.hip else "cuda")
    if torch.backends.mps.is_available():
        found.insert(0, "mps")
    return found


def _cpu_native_bf16() -> bool:
    """AVX512-BF16 or AMX: the only x86 CPUs where oneDNN runs bf16 faster than fp32.

    Deliberately not ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``: it is also true on plain AVX512
    CPUs, where oneDNN only emulates bf16 and a bf16 run is slower than fp32.
    """
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def _cuda_capability() -> tuple[int, int]:
    """NVIDIA compute capability of the training GPU, e.g. (8, 0) for an A100."""
    major, minor = torch.cuda.get_device_capability(0)
    return major, minor


def _rocm_arch() -> str:
    """The AMD arch as ROCm reports it, e.g. "gfx90a:sramecc+:xnack-" on an MI250."""
    return str(torch.cuda.get_device_properties(0).gcnArchName)


def _gpu_name() -> str:
    return torch.cuda.get_device_name(0)


def _cpu_name() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    threads = torch.get_num_threads()
    return f"{model} ({threads} torch threads of {os.cpu_count()} CPUs)"


def _gpu_total_memory() -> int:
    return int(torch.cuda.mem_get_info()[1])


def _mps_memory() -> int:
    return int(torch.mps.recommended_max_memory())


def _host_available_memory() -> int:
    """MemAvailable (what can be allocated without swapping), else free pages, else physical RAM."""
    with contextlib.suppress(OSError, ValueError), _MEMINFO.open(encoding="ascii") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the kernel writes kB
    page = os.sysconf("SC_PAGE_SIZE")
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):  # macOS has no SC_AVPHYS_PAGES
        with contextlib.suppress(ValueError, OSError):
            return int(os.sysconf(pages)) * page
    raise DeviceUnavailableError("cannot tell how much host memory this machine has")


# --- decisions ------------------------------------------------------------------------------------


def gpu_arch(choice: DeviceChoice) -> str | None:
    """The AMD arch name on ROCm (which kernels exist depends on it: bf16, fused attention); None elsewhere."""
    return _rocm_arch() if choice.backend == "rocm" else None


def rocm_arch_has_bf16(arch: str) -> bool:
    """Whether an AMD arch ("gfx1031", "gfx90a:sramecc+:xnack-") has bf16 matrix instructions.

    Asked by arch name because on ROCm ``torch.cuda.is_bf16_supported()`` says True on RDNA2 (bf16 is
    emulated there) and the reported "compute capability" is just the gfx number (gfx1031 → 10.3).
    """
    base = arch.split(":", 1)[0].strip().lower()
    return base in _ROCM_BF16_ARCHS or base.startswith(_ROCM_BF16_FAMILIES)


def _native_half(backend: str) -> tuple[str | None, str]:
    """The 16-bit format this hardware runs natively ("bf16", "fp16" or None) and a short why."""
    if backend == "cuda":
        major, minor = _cuda_capability()
        why = f"compute capability {major}.{minor}; bf16 needs 8.0+ (Ampere or newer)"
        return ("bf16" if (major, minor) >= (8, 0) else "fp16"), why
    if backend == "rocm":
        arch = _rocm_arch().split(":", 1)[0]
        why = f"{arch} is neither CDNA (gfx908/gfx90a/gfx94x/gfx950), RDNA3 (gfx11xx) nor RDNA4 (gfx12xx)"
        return ("bf16" if rocm_arch_has_bf16(arch) else "fp16"), why
    if backend == "cpu":
        if _cpu_native_bf16():
            return "bf16", "AVX512-BF16/AMX"
        return None, "no AVX512-BF16 or AMX, so oneDNN would emulate bf16, slower than fp32"
    return None, "autocast coverage on MPS is still partial"


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


def _device_name(backend: str) -> str:
    if backend == "cuda":
        major, minor = _cuda_capability()
        return f"{_gpu_name()} (sm_{major}{minor})"
    if backend == "rocm":
        return f"{_gpu_name()} ({_rocm_arch().split(':', 1)[0]})"
    if backend == "mps":
        return f"Apple MPS ({platform.machine()})"
    return _cpu_name()


def _check_precision(precision: str, backend: str, name: str) -> None:
    """Refuse an explicit precision the hardware would only emulate, and say what to use instead."""
    if backend == "mps" or precision == "fp32":
        return  # MPS: an explicit 16-bit request is the user's call; fp32 runs everywhere.
    native, why = _native_half(backend)
    if precision == "fp16" and backend == "cpu":
        instead = "bf16 or fp32" if native == "bf16" else "fp32"
        raise DeviceUnavailableError(f"fp16 autocast on CPU ({name}) is emulated and slow; use {instead}")
    if precision == "bf16" and native != "bf16":
        instead = "fp16 (with loss scaling) or fp32" if backend in ("cuda", "rocm") else "fp32"
        raise DeviceUnavailableError(f"{name} has no native bf16 ({why}); use {instead}, or precision 'auto'")


def pick_device(requested: str = "auto", precision: str = "auto") -> DeviceChoice:
    """Pick the device and autocast dtype.

    "auto" prefers an accelerator, and bf16 where the hardware runs it natively: fp16 plus a
    GradScaler on GPUs without it (pre-Ampere NVIDIA, RDNA2 and older AMD), fp32 on CPUs without it.
    """
    if requested not in REQUESTS:
        raise ValueError(f"unknown device {requested!r}; choose one of {REQUESTS}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    device, backend = _resolve_device(requested)
    name = _device_name(backend)
    if precision == "auto":
        precision = _native_half(backend)[0] or "fp32"
    else:
        _check_precision(precision, backend, name)
    return DeviceChoice(
        device=device,
        backend=backend,
        autocast_dtype=_DTYPES[precision],
        name=name,
        needs_grad_scaler=precision == "fp16",
    )


def device_memory_bytes(choice: DeviceChoice) -> int:
    """Memory a run on ``choice`` may fill: the GPU's total, or on CPU what the OS can give without swapping.

    GPU: the device's total (``mem_get_info()[1]``), not its momentary free memory, because the run owns
    the GPU and the allocator's own cache would otherwise count against it. CPU: MemAvailable, because
    the host is shared with everything else on it. MPS: Metal's recommended working-set size.
    """
    if choice.device == "cuda":
        return _gpu_total_memory()
    if choice.device == "mps":
        return _mps_memory()
    return _host_available_memory()


def synchronize(device_type: str) -> None:
    """Wait for queued kernels, so wall-clock timings measure work done (a no-op on CPU)."""
    if device_type == "cuda":
        torch.cuda.synchronize()
    elif device_type == "mps":
        torch.mps.synchronize()


@contextlib.contextmanager
def autocast(choice: DeviceChoice) -> Iterator[None]:
    """Mixed precision for forward passes; a no-op for fp32. Weights and optimizer state stay fp32."""
    if choice.autocast_dtype is None:
        yield
        return
    with torch.autocast(device_type=choice.device, dtype=choice.autocast_dtype):
        yield
