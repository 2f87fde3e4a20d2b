"""The memory model against what torch really keeps, and the batch planner's arithmetic.

The validation tests run a small ``LlamaForCausalLM`` (sdpa) on CPU and measure two things:

* saved activations: every tensor autograd saves during forward, via ``saved_tensors_hooks``,
  deduplicated by storage, split into parameters (excluded: counted as weights), autocast's casts of
  parameters (compared with ``autocast_copies``), the cross-entropy's saved tensors, and the rest;
* the peak: a ``TorchDispatchMode`` records every storage an op creates during one forward + backward
  (grads already exist, as under gradient accumulation) and drops it when torch frees it, so its
  running total is the real live-bytes curve of everything except weights and ``.grad``.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from transformers import LlamaConfig, LlamaForCausalLM

from gocoder_assets.checkpoint.memory import (
    GIB,
    GPU_CONTEXT_BYTES,
    attention_kernel_for,
    estimate_memory,
    flops_per_token,
    param_tensor_sizes,
    plan_batch,
    saved_activation_bytes,
    tokens_per_second,
)
from gocoder_assets.checkpoint.model import PRESETS, build_model_config, count_params

BATCH, CTX, VOCAB = 2, 128, 1024
# The brief's bar is ±20%; the model does better (the saved count is op by op, peaks are within 6%),
# so tighter bars make a real regression (e.g. RMSNorm's fp32 copies forgotten) fail the tests.
SAVED_TOLERANCE = 0.02
PEAK_TOLERANCE = 0.10
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def small_config(kv_heads: int = 4, vocab: int = VOCAB) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab, hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=kv_heads, max_position_embeddings=CTX, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, attn_implementation="sdpa",
    )  # fmt: skip


def make_model(config: LlamaConfig, checkpointing: bool) -> LlamaForCausalLM:
    torch.manual_seed(0)
    model = LlamaForCausalLM._from_config(config, attn_implementation="sdpa", dtype=torch.float32).train()
    if checkpointing:
        model.activation_checkpointing_enable()  # transformers 5: non-reentrant torch.utils.checkpoint
    return model


def loss_of(model: torch.nn.Module, windows: torch.Tensor) -> torch.Tensor:
    """train.py's ``_loss``: logits die with this frame, as in the real step."""
    logits = model(input_ids=windows[:, :-1], use_cache=False).logits
    return F.cross_entropy(logits.float().flatten(0, 1), windows[:, 1:].flatten())


def autocast(precision: str) -> torch.autocast:
    dtype = DTYPES[precision]
    return torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None)


def kernel_context(kernel: str) -> AbstractContextManager[None]:
    return sdpa_kernel(SDPBackend.MATH) if kernel == "math" else nullcontext()


VIEWS = ("TBackward0", "ViewBackward0", "TransposeBackward0", "UnsafeViewBackward0")


def is_param_cast(t: torch.Tensor) -> bool:
    """Autocast's cast of a parameter (or a view of one, e.g. linear's ``weight.t()``): a ``_to_copy``
    whose input is a leaf that accumulates grad."""
    fn = t.grad_fn
    while fn is not None and type(fn).__name__ in VIEWS:
        fn = fn.next_functions[0][0]
    return (
        fn is not None
        and type(fn).__name__ == "ToCopyBackward0"
        and type(fn.next_functions[0][0]).__name__ == "AccumulateGrad"
    )


def measure_saved(model: LlamaForCausalLM, precision: str, kernel: str) -> dict[str, int]:
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, tuple[int, str]] = {}
    tokens, vocab = BATCH * CTX, model.config.vocab_size

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr in params or ptr in seen:
            return t
        if is_param_cast(t):
            kind = "copies"
        elif (t.dtype == torch.float32 and tuple(t.shape) == (tokens, vocab)) or t.shape == (tokens,) or t.dim() == 0:
            kind = "loss"  # log-softmax output, nll targets, total_weight
        else:
            kind = "activations"
        seen[ptr] = (t.untyped_storage().nbytes(), kind)
        if t.dim() == 4 and tuple(t.shape[-2:]) == (CTX, CTX):  # (batch, heads, ctx, ctx)
            seen[-ptr] = (t.untyped_storage().nbytes(), "ctx_squared")  # also counted in its kind above
        return t

    windows = torch.randint(0, vocab, (BATCH, CTX + 1), generator=torch.Generator().manual_seed(1))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), kernel_context(kernel), autocast(precision):
        loss_of(model, windows)
    totals = dict.fromkeys(("activations", "copies", "loss", "ctx_squared"), 0)
    for nbytes, kind in seen.values():
        totals[kind] += nbytes
    return totals


class LiveBytes(TorchDispatchMode):
    """Running total of storages created by ops under this mode, decremented when torch frees them."""

    def __init__(self, ignore: set[int]) -> None:
        super().__init__()
        self.ignore, self.live, self.current, self.peak = ignore, {}, 0, 0

    def _freed(self, ptr: int) -> None:
        self.current -= self.live.pop(ptr)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                ptr = storage.data_ptr()
                if ptr and ptr not in self.ignore and ptr not in self.live:
                    self.live[ptr] = storage.nbytes()
                    self.current += storage.nbytes()
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(storage, self._freed, ptr)  # storages keep their PyObject while alive
        return out


def measure_peak(model: LlamaForCausalLM, precision: str, kernel: str) -> int:
    def step() -> None:
        gen = torch.Generator().manual_seed(2)
        windows = torch.randint(0, model.config.vocab_size, (BATCH, CTX + 1), generator=gen)
        with kernel_context(kernel):
            with autocast(precision):
                loss = loss_of(model, windows)
            loss.backward()

    for p in model.parameters():  # grads exist: the step accumulates into them like micro-batch 2 of N
        p.grad = torch.zeros_like(p)
    ignore = {p.untyped_storage().data_ptr() for p in model.parameters()}
    ignore |= {p.grad.untyped_storage().data_ptr() for p in model.parameters()}
    mode = LiveBytes(ignore)
    with mode:
        step()
    model.zero_grad(set_to_none=True)
    return mode.peak


def close(measured: int, estimated: int, what: str, tolerance: float = PEAK_TOLERANCE) -> None:
    ratio = estimated / measured
    assert abs(ratio - 1) <= tolerance, f"{what}: measured {measured:,} B, estimated {estimated:,} B ({ratio:.3f}×)"


CASES = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny ops on a shared 2-core machine: one intra-op thread is faster and steadier; restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models() -> Iterator[dict[bool, LlamaForCausalLM]]:
    yield {ckpt: make_model(small_config(), ckpt) for ckpt in (False, True)}


@pytest.mark.parametrize(("precision", "ckpt"), CASES)
def test_saved_activations_match_torch(models: dict, precision: str, ckpt: bool) -> None:
    config = small_config()
    measured = measure_saved(models[ckpt], precision, "fused")
    held = measured["activations"]
    if ckpt:  # RoPE's cos/sin reach checkpointed layers as bound kwargs: alive, but not via saved tensors
        held += 2 * 4 * CTX * (config.hidden_size // config.num_attention_heads)
    est = estimate_memory(config, BATCH, CTX, precision, ckpt, device_type="cpu")
    saved = saved_activation_bytes(config, BATCH, CTX, precision, ckpt, device_type="cpu")
    close(held, saved, f"{precision} ckpt={ckpt} saved activations", SAVED_TOLERANCE)
    if not ckpt:  # the peak is at log-softmax backward, when everything forward saved is still alive
        close(held, est.activations, f"{precision} estimate.activations", SAVED_TOLERANCE)
    if precision != "fp32" and not ckpt:  # with checkpointing only lm_head's cast is saved; the rest is cached
        close(measured["copies"], est.autocast_copies, f"{precision} autocast copies", SAVED_TOLERANCE)
    if precision == "fp32":
        assert measured["copies"] == 0 and est.autocast_copies == 0
    # fp32 log-probs + int64 targets: the part of ``logits`` cross-entropy keeps for backward
    close(measured["loss"], 4 * BATCH * CTX * VOCAB + 8 * BATCH * CTX, "cross-entropy saved", SAVED_TOLERANCE)


@pytest.mark.parametrize(("precision", "ckpt"), CASES)
def test_peak_matches_torch(models: dict, precision: str, ckpt: bool) -> None:
    measured = measure_peak(models[ckpt], precision, "fused")
    est = estimate_memory(small_config(), BATCH, CTX, precision, ckpt, device_type="cpu")
    transient_grads = est.grads - 4 * count_params(small_config())
    close(
        measured, est.activations + est.logits + est.autocast_copies + transient_grads, f"{precision} ckpt={ckpt} peak"
    )


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_recompute_peak_matches_torch(precision: str) -> None:
    """With a tiny vocabulary the logits are negligible and the peak is backward through a recomputed layer."""
    config = small_config(vocab=128)
    measured = measure_peak(make_model(config, checkpointing=True), precision, "fused")
    est = estimate_memory(config, BATCH, CTX, precision, True, device_type="cpu")
    assert est.logits == 0, "expected the layer-backward moment to be the peak"
    close(measured, est.activations + est.autocast_copies + est.grads - 4 * count_params(config), "recompute peak")


def test_math_attention_keeps_ctx_squared_and_is_estimated() -> None:
    """The math SDPA fallback (what RDNA2 gets) saves fp32 probabilities; CPU's default kernel does not."""
    config = small_config(kv_heads=2)  # GQA: math repeats k/v to every head
    model = make_model(config, checkpointing=False)
    fused_saved, math_saved = measure_saved(model, "bf16", "fused"), measure_saved(model, "bf16", "math")
    fused, math = fused_saved["activations"], math_saved["activations"]
    probs = 4 * BATCH * config.num_attention_heads * CTX * CTX * config.num_hidden_layers
    assert fused_saved["ctx_squared"] == 0, "CPU's default SDPA kernel (flash for CPU) saved a ctx × ctx tensor"
    assert math_saved["ctx_squared"] == probs, (math_saved["ctx_squared"], probs)
    assert math - fused >= probs, f"math saved only {math - fused:,} B more than fused; probabilities are {probs:,}"
    close(fused, saved_activation_bytes(config, BATCH, CTX, "bf16", False, "cpu"), "GQA fused saved", SAVED_TOLERANCE)
    math_estimate = saved_activation_bytes(config, BATCH, CTX, "bf16", False, "cpu", "math")
    close(math, math_estimate, "bf16 GQA math saved", SAVED_TOLERANCE)
    peak = measure_peak(model, "bf16", "math")
    est = estimate_memory(config, BATCH, CTX, "bf16", False, device_type="cpu", attention_kernel="math")
    close(peak, est.activations + est.logits + est.autocast_copies + est.grads - 4 * count_params(config), "math peak")


def preset(name: str, vocab: int = 32768) -> LlamaConfig:
    return build_model_config(name, vocab, 1, 2, 0)


def test_plan_is_monotone_in_device_memory_and_splits_exactly() -> None:
    config, ctx = preset("125m"), 1024
    micros = []
    for gib in (6, 8, 12, 16, 24, 40, 80):
        plan = plan_batch(config, ctx, 16 * ctx, gib * GIB, "fp16", False, world_size=2)
        assert plan.micro_batch * plan.accumulation * plan.world_size == plan.rows_per_step == 16
        assert plan.tokens_per_step == 16 * ctx and plan.estimate.total <= 0.9 * gib * GIB
        micros.append(plan.micro_batch)
        # DDP's gradient buckets: a second fp32 copy of every gradient on each rank
        assert plan.estimate.grads >= 8 * count_params(config)
    assert micros == sorted(micros) and micros[0] < micros[-1] == 8, micros
    bigger = plan_batch(config, ctx, 16 * ctx, 80 * GIB, "bf16", False, micro_batch=2)
    assert (bigger.micro_batch, bigger.accumulation) == (2, 8)


def test_plan_picks_the_largest_fitting_divisor() -> None:
    config, ctx = preset("125m"), 1024
    plan = plan_batch(config, ctx, 16 * ctx, 12 * GIB, "fp16", False)
    assert plan.micro_batch < 16 and plan.micro_batch * plan.accumulation == 16
    next_up = min(m for m in (2, 4, 8, 16) if m > plan.micro_batch)
    assert estimate_memory(config, next_up, ctx, "fp16", False).total > 0.9 * 12 * GIB
    pinned = plan_batch(config, ctx, 16 * ctx, 1 * GIB, "fp16", False, micro_batch=16)  # used, not checked
    assert (pinned.micro_batch, pinned.accumulation) == (16, 1) and pinned.estimate.total > pinned.device_bytes


def test_plan_errors_name_the_problem() -> None:
    config = preset("350m")
    with pytest.raises(ValueError, match="not a multiple of the context 1024"):
        plan_batch(config, 1024, 16 * 1024 + 1, 80 * GIB, "bf16", False)
    with pytest.raises(ValueError, match="do not split over world_size 3"):
        plan_batch(config, 1024, 16 * 1024, 80 * GIB, "bf16", False, world_size=3)
    with pytest.raises(ValueError, match="micro_batch 3 does not divide"):
        plan_batch(config, 1024, 16 * 1024, 80 * GIB, "bf16", False, micro_batch=3)
    with pytest.raises(ValueError, match=r"(?s)GiB.*activation checkpointing.*adamw8bit.*smaller preset"):
        plan_batch(config, 1024, 16 * 1024, 2 * GIB, "fp16", False)


def test_metadata_is_flat_and_json_safe() -> None:
    plan = plan_batch(preset("tiny"), 256, 16 * 256, 8 * GIB, "fp32", False, device_type="cpu")
    meta = plan.as_metadata()
    assert json.loads(json.dumps(meta)) == meta
    assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in meta.values())
    assert meta["memory_total_bytes"] == plan.estimate.total and meta["accumulation"] == plan.accumulation


def test_eight_bit_optimizer_and_checkpointing_save_memory() -> None:
    config = preset("125m")
    adamw = estimate_memory(config, 4, 1024, "fp16", False)
    eight = estimate_memory(config, 4, 1024, "fp16", False, optimizer="adamw8bit")
    assert eight.optimizer < adamw.optimizer / 3.9 and eight.total < adamw.total
    assert eight.optimizer > 2 * count_params(config)  # quantization state and fp32 states for small tensors
    long_ctx = estimate_memory(config, 4, 4096, "fp16", True)
    assert long_ctx.total < estimate_memory(config, 4, 4096, "fp16", False).total
    no_ckpt = estimate_memory(config, 4, 4096, "bf16", False)
    assert estimate_memory(config, 4, 4096, "bf16", True).activations < no_ckpt.activations / 5


def test_math_attention_and_devices_change_the_estimate() -> None:
    config = preset("125m")
    fused = estimate_memory(config, 4, 1024, "fp16", False)
    math = estimate_memory(config, 4, 1024, "fp16", False, attention_kernel="math")
    assert math.activations - fused.activations >= 4 * 4 * 12 * 1024 * 1024 * 12  # fp32 probs, 12 layers
    cpu = estimate_memory(config, 4, 1024, "fp32", False, device_type="cpu")
    gpu = estimate_memory(config, 4, 1024, "fp32", False, device_type="cuda")
    assert cpu.overhead < GPU_CONTEXT_BYTES < gpu.overhead
    assert (
        attention_kernel_for("rocm", "gfx1030") == "math" and attention_kernel_for("rocm", "gfx942:sramecc+") == "fused"
    )
    assert attention_kernel_for("cuda") == attention_kernel_for("cpu") == "fused"
    with pytest.raises(ValueError, match="unknown precision"):
        estimate_memory(config, 1, 1024, "int8", False)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_param_tensors_add_up(name: str) -> None:
    for tied in (False, True):
        config = preset(name, 8192)
        config.tie_word_embeddings = tied
        assert sum(param_tensor_sizes(config)) == count_params(config)


def test_flops_per_token_is_the_palm_estimate() -> None:
    config = preset("125m")
    n = count_params(config) - 32768 * 768  # no input embedding; lm_head counted
    assert flops_per_token(config, 1024) == 6 * n + 12 * 12 * 12 * 64 * 1024
    assert tokens_per_second(config, 1024, 312e12, 0.4) == pytest.approx(312e12 * 0.4 / flops_per_token(config, 1024))
