"""The optimizer setup is one small function: AdamW with decay on matrices only, fused where torch can.

Kept apart from the training loop so the memory model and the tests can build exactly the optimizer a
run would use, and so swapping in 8-bit optimizer state is a config change rather than a code edit.
"""

from __future__ import annotations

import torch

from gocoder_assets.checkpoint.device import DeviceChoice, DeviceUnavailableError

KINDS = ("adamw", "adamw8bit")

# Device types with a fused AdamW kernel in torch 2.13 (torch.utils._foreach_utils.
# _get_fused_kernels_supported_devices also lists hpu/mtia/privateuse1, which never reach us). The fused
# kernel does the whole update in one pass over each tensor: fewer launches on GPUs, fewer sweeps over
# memory on CPU.
_FUSED_DEVICES = frozenset({"cuda", "cpu", "mps", "xpu"})


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """Decay for matrices (linear and embedding weights), none for norm gains and biases.

    Decaying a norm gain or a bias pulls it towards zero without any regularising benefit, which is why
    GPT-style recipes exempt every tensor with fewer than two dimensions.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def build_optimizer(
    model: torch.nn.Module,
    *,
    lr: float,
    weight_decay: float,
    device: DeviceChoice,
    kind: str = "adamw",
    betas: tuple[float, float] = (0.9, 0.95),
) -> torch.optim.Optimizer:
    """AdamW over ``model``'s trainable parameters, which must already be on ``device``.

    ``kind="adamw"``: torch's AdamW, fused on CUDA/ROCm, CPU and MPS (foreach elsewhere); it works with
    ``torch.amp.GradScaler``, which hands the fused kernel its scale and inf flag.
    ``kind="adamw8bit"``: bitsandbytes' AdamW8bit, which keeps both moments in 8 bits (about 2 instead of
    8 bytes of state per parameter; tensors under 4096 elements stay 32-bit). bitsandbytes 0.50 supports
    its 8-bit optimizers on NVIDIA (sm60+), AMD ROCm (CDNA gfx908/gfx90a/gfx942/gfx950, RDNA
    gfx101x/gfx103x/gfx110x/gfx115x/gfx120x), Intel XPU and CPU (x86-64 with AVX2, aarch64);
    not on Apple MPS (planned) or Intel Gaudi. It is an optional extra: ``pip install -e ".[bnb]"``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown optimizer {kind!r}; choose one of {KINDS}")
    groups = param_groups(model, weight_decay)
    if kind == "adamw8bit":
        if device.device == "mps":  # bitsandbytes registers no 8-bit optimizer kernel for MPS: fail before step 1
            raise DeviceUnavailableError('bitsandbytes has no 8-bit optimizers on Apple MPS; use optimizer "adamw"')
        try:
            import bitsandbytes as bnb  # noqa: PLC0415  (optional, heavy: only when asked for)
        except ImportError as e:
            raise ImportError(
                'optimizer "adamw8bit" needs bitsandbytes: pip install -e ".[bnb]" (or pick "adamw")'
            ) from e
        return bnb.optim.AdamW8bit(groups, lr=lr, betas=betas)
    fused = device.device in _FUSED_DEVICES
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused, foreach=None if fused else True)
