"""Device, precision, launch settings and optimizer setup, for hardware this CPU-only machine doesn't have.

GPUs are faked at torch's own API (``torch.cuda.is_available``, ``get_device_capability``,
``get_device_properties().gcnArchName``, ...), so the probes in device.py run for real; CPUs are faked at
``torch.cpu``'s ISA checks. Each case pins what a real card of that kind must get.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from gocoder_assets.checkpoint import device as device_mod
from gocoder_assets.checkpoint.device import (
    DeviceChoice,
    DeviceUnavailableError,
    device_memory_bytes,
    pick_device,
    rocm_arch_has_bf16,
)
from gocoder_assets.checkpoint.optim import KINDS, build_optimizer, param_groups
from gocoder_assets.definitions import resources_from_env

VOCAB = 128
CPU = DeviceChoice(device="cpu", backend="cpu", autocast_dtype=None, name="test CPU")


def fake_cpu(monkeypatch: pytest.MonkeyPatch, *, avx512_bf16: bool, amx: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


def fake_nvidia(monkeypatch: pytest.MonkeyPatch, name: str, capability: tuple[int, int]) -> None:
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: capability)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def fake_amd(monkeypatch: pytest.MonkeyPatch, name: str, arch: str) -> None:
    monkeypatch.setattr(torch.version, "hip", "6.2.41133")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: name)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index=0: SimpleNamespace(gcnArchName=arch))
    # What ROCm reports as "capability" is the gfx number (gfx1031 → 10.3): >= (8, 0) on every card, so
    # the decision must not lean on it. Report it as ROCm does, to catch code that does.
    gfx = arch.split(":")[0][3:]  # "1031" → (10, 3), "90a" → (9, 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: (int(gfx[:-2]), int(gfx[-2], 16)))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_pick_device() -> None:
    choice = pick_device("cpu")
    assert choice.device == choice.backend == "cpu" and choice.name
    assert pick_device("cpu", "fp32").autocast_dtype is None
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceUnavailableError, match="'cuda' is not available here"):
        pick_device("cuda")


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"),
    [
        pytest.param(True, True, "bf16", id="sapphire-rapids-amx"),
        pytest.param(False, True, "bf16", id="amx-only"),
        pytest.param(True, False, "bf16", id="cooper-lake-or-zen4-avx512bf16"),
        pytest.param(False, False, "fp32", id="avx2-or-plain-avx512"),
    ],
)
def test_cpu_auto_precision(monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool, expected: str) -> None:
    fake_cpu(monkeypatch, avx512_bf16=avx512_bf16, amx=amx)
    # mkldnn's own check says yes on any AVX512 CPU (it counts emulation); it must not sway the decision.
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    choice = pick_device("cpu")
    assert choice.precision == expected
    assert not choice.needs_grad_scaler


def test_cpu_refuses_emulated_precisions(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu(monkeypatch, avx512_bf16=False, amx=False)
    with pytest.raises(DeviceUnavailableError, match=r"no native bf16 .*AVX512-BF16 or AMX.*use fp32"):
        pick_device("cpu", "bf16")
    with pytest.raises(DeviceUnavailableError, match=r"fp16 autocast on CPU .* use fp32$"):
        pick_device("cpu", "fp16")
    fake_cpu(monkeypatch, avx512_bf16=False, amx=True)
    assert pick_device("cpu", "bf16").autocast_dtype is torch.bfloat16
    with pytest.raises(DeviceUnavailableError, match="use bf16 or fp32"):
        pick_device("cpu", "fp16")


@pytest.mark.parametrize(
    ("name", "capability", "expected"),
    [
        ("NVIDIA A100-SXM4-80GB", (8, 0), "bf16"),
        ("NVIDIA H100 80GB HBM3", (9, 0), "bf16"),
        ("Tesla V100-SXM2-32GB", (7, 0), "fp16"),
        ("Tesla T4", (7, 5), "fp16"),
    ],
)
def test_nvidia_auto_precision(
    monkeypatch: pytest.MonkeyPatch, name: str, capability: tuple[int, int], expected: str
) -> None:
    fake_nvidia(monkeypatch, name, capability)
    choice = pick_device()
    assert (choice.device, choice.backend, choice.precision) == ("cuda", "cuda", expected)
    assert choice.needs_grad_scaler == (expected == "fp16")
    assert name in choice.name and f"sm_{capability[0]}{capability[1]}" in choice.name


def test_nvidia_explicit_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvidia(monkeypatch, "Tesla V100-SXM2-32GB", (7, 0))
    with pytest.raises(DeviceUnavailableError, match=r"V100.*no native bf16.*capability 7\.0.*use fp16"):
        pick_device("cuda", "bf16")
    assert pick_device("cuda", "fp32").needs_grad_scaler is False
    fake_nvidia(monkeypatch, "NVIDIA A100-SXM4-80GB", (8, 0))
    fp16 = pick_device("cuda", "fp16")  # allowed where bf16 exists too, but then it needs the scaler
    assert fp16.autocast_dtype is torch.float16 and fp16.needs_grad_scaler


@pytest.mark.parametrize(
    ("name", "arch", "expected"),
    [
        ("AMD Radeon RX 6700 XT", "gfx1031", "fp16"),
        ("AMD Instinct MI250X/MI250", "gfx90a:sramecc+:xnack-", "bf16"),
        ("AMD Radeon RX 7900 XTX", "gfx1100", "bf16"),
    ],
)
def test_rocm_auto_precision(monkeypatch: pytest.MonkeyPatch, name: str, arch: str, expected: str) -> None:
    fake_amd(monkeypatch, name, arch)
    choice = pick_device()
    assert (choice.device, choice.backend, choice.precision) == ("cuda", "rocm", expected)
    assert choice.needs_grad_scaler == (expected == "fp16")
    assert choice.name == f"{name} ({arch.split(':')[0]})"  # the arch without its feature suffixes
    assert pick_device("cuda").backend == "rocm"  # ROCm torch answers to "cuda"; the record says rocm


def test_rocm_rdna2_refuses_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_amd(monkeypatch, "AMD Radeon RX 6700 XT", "gfx1031")
    with pytest.raises(DeviceUnavailableError, match=r"RX 6700 XT \(gfx1031\) has no native bf16.*use fp16"):
        pick_device("rocm", "bf16")
    assert pick_device("rocm", "fp16").needs_grad_scaler


@pytest.mark.parametrize(
    ("arch", "native"),
    [
        ("gfx906", False),  # MI50/MI60: GCN, no bf16 matrix instructions
        ("gfx1010", False),  # RDNA1
        ("gfx1030", False),  # RDNA2 (also what HSA_OVERRIDE_GFX_VERSION=10.3.0 makes a gfx1031 report)
        ("gfx1032", False),
        ("gfx908", True),  # MI100
        ("gfx942:sramecc+:xnack-", True),  # MI300X
        ("gfx950", True),
        ("gfx1151", True),  # RDNA3.5
        ("gfx1201", True),  # RDNA4
        ("GFX90A", True),
    ],
)
def test_rocm_arch_has_bf16(arch: str, native: bool) -> None:
    assert rocm_arch_has_bf16(arch) is native


def test_device_memory_bytes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       65536000 kB\nMemFree:         1000 kB\nMemAvailable:   32768000 kB\n")
    monkeypatch.setattr(device_mod, "_MEMINFO", meminfo)
    assert device_memory_bytes(CPU) == 32768000 * 1024
    monkeypatch.setattr(device_mod, "_MEMINFO", tmp_path / "missing")  # not Linux: ask sysconf
    assert 0 < device_memory_bytes(CPU) <= 1 << 50

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3 << 30, 80 << 30))
    gpu = DeviceChoice(device="cuda", backend="rocm", autocast_dtype=torch.float16, name="fake", needs_grad_scaler=True)
    assert device_memory_bytes(gpu) == 80 << 30  # the total, not what happens to be free right now


def test_launch_settings_from_env() -> None:
    gpu = resources_from_env(
        {
            "PYTORCH_HIP_ALLOC_CONF": "expandable_segments:True,garbage_collection_threshold:0.8",
            "HSA_OVERRIDE_GFX_VERSION": "10.3.0",
            "GOCODER_NPROC": "2",
            "GOCODER_TORCHRUN_ARGS": "--nnodes=2 --node-rank=0 --rdzv-endpoint 'head node:29500'",
        }
    )["gpu"]
    assert gpu.launch_env() == {
        "PYTORCH_HIP_ALLOC_CONF": "expandable_segments:True,garbage_collection_threshold:0.8",
        "HSA_OVERRIDE_GFX_VERSION": "10.3.0",
    }
    assert gpu.num_processes == 2
    assert gpu.torchrun_args == ["--nnodes=2", "--node-rank=0", "--rdzv-endpoint", "head node:29500"]

    plain = resources_from_env({})["gpu"]
    assert plain.launch_env() == {}
    assert (plain.num_processes, plain.torchrun_args, plain.hip_alloc_conf) == (1, [], None)


# --- optimizer ------------------------------------------------------------------------------------


class TinyLM(torch.nn.Module):
    """Every parameter kind a transformer has: embedding, biased linear, norm gain."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, 64)
        self.norm = torch.nn.LayerNorm(64)
        self.proj = torch.nn.Linear(64, VOCAB)  # 8192 weights: big enough for 8-bit optimizer state

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(self.embed(ids)))


def step_once(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    ids = torch.randint(0, VOCAB, (4, 16), generator=torch.Generator().manual_seed(0))
    loss = torch.nn.functional.cross_entropy(model(ids).flatten(0, 1), ids.flatten())
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def test_param_groups_decay_matrices_only() -> None:
    model = TinyLM()
    decay, no_decay = param_groups(model, weight_decay=0.1)
    assert {id(p) for p in decay["params"]} == {id(model.embed.weight), id(model.proj.weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model.norm.weight), id(model.norm.bias), id(model.proj.bias)}
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)


def test_adamw_fused_on_cpu_and_decays_only_matrices() -> None:
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices  # noqa: PLC0415

    assert set(device_mod.REQUESTS) - {"auto", "rocm"} <= set(_get_fused_kernels_supported_devices())
    torch.manual_seed(0)
    model = TinyLM()
    optimizer = build_optimizer(model, lr=0.1, weight_decay=0.5, device=CPU)
    assert all(g["fused"] is True and not g["foreach"] for g in optimizer.param_groups)
    assert optimizer.defaults["betas"] == (0.9, 0.95)

    # With zero gradients Adam's step is 0/(0+eps) = 0, so only decoupled weight decay moves anything:
    # matrices shrink by exactly (1 - lr * wd), norms and biases stay put.
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for n, p in model.named_parameters():
        expected = before[n] * (1 - 0.1 * 0.5) if p.dim() >= 2 else before[n]
        torch.testing.assert_close(p.detach(), expected, msg=n)

    step_once(model, optimizer)
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters())


def test_adamw_foreach_where_no_fused_kernel() -> None:
    xla = DeviceChoice(device="xla", backend="xla", autocast_dtype=None, name="no fused kernel here")
    model = TinyLM()
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.1, device=xla)
    assert all(g["foreach"] is True and not g["fused"] for g in optimizer.param_groups)
    before = [p.detach().clone() for p in model.parameters()]
    step_once(model, optimizer)
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def test_unknown_optimizer_kind() -> None:
    with pytest.raises(ValueError, match=r"'sgd'.*adamw.*adamw8bit"):
        build_optimizer(TinyLM(), lr=1e-3, weight_decay=0.1, device=CPU, kind="sgd")
    assert KINDS == ("adamw", "adamw8bit")


def test_adamw8bit_without_bitsandbytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` raise ImportError
    with pytest.raises(ImportError, match=r'pip install -e "\.\[bnb\]"'):
        build_optimizer(TinyLM(), lr=1e-3, weight_decay=0.1, device=CPU, kind="adamw8bit")
    mps = DeviceChoice(device="mps", backend="mps", autocast_dtype=None, name="Apple MPS")
    with pytest.raises(DeviceUnavailableError, match="MPS"):
        build_optimizer(TinyLM(), lr=1e-3, weight_decay=0.1, device=mps, kind="adamw8bit")


def test_adamw8bit_steps_on_cpu() -> None:
    bnb = pytest.importorskip("bitsandbytes", reason='optional extra, not installed: pip install -e ".[bnb]"')
    torch.manual_seed(0)
    model = TinyLM()
    optimizer = build_optimizer(model, lr=1e-2, weight_decay=0.1, device=CPU, kind="adamw8bit")
    assert isinstance(optimizer, bnb.optim.AdamW8bit)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    before = [p.detach().clone() for p in model.parameters()]
    step_once(model, optimizer)
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    # The point of it: tensors of 4096+ elements keep their moments in 8 bits.
    assert optimizer.state[model.proj.weight]["state1"].dtype == torch.uint8
