"""Training memory model: pick the largest micro-batch that fits a device, and the accumulation that
reaches the design's effective batch (``total_batch_tokens``), before any memory is allocated.

What is counted, per piece of :class:`MemoryEstimate` (bytes, for the train loop in ``train.py``:
fp32 weights, autocast forward + loss, backward outside autocast, AdamW, ``zero_grad(set_to_none)``):

* ``weights`` / ``grads``: fp32 master weights and fp32 ``.grad``. Grads are counted whole because with
  gradient accumulation they live across micro-batches; at the peak moment the fresh weight gradient
  being accumulated into ``.grad`` (e.g. lm_head's, or the embedding's dense one) is added. Under DDP
  (``ddp=True``; ``plan_batch`` sets it for ``world_size > 1``) the reducer's flat gradient buckets are
  a second fp32 copy, unless the model is wrapped with ``gradient_as_bucket_view=True``.
* ``optimizer``: AdamW's two fp32 states, or bitsandbytes 8-bit AdamW: two uint8 states plus one fp32
  absmax per 256-value block per state; tensors under 4096 values keep fp32 states
  (``bitsandbytes/optim/optimizer.py``, ``init_state``).
* ``autocast_copies``: autocast's cached half casts of the linear weights (the embedding lookup is not
  cast). Without checkpointing they are saved for backward; with it they live in autocast's cache until
  the autocast region ends, then only the layer being recomputed has its casts.
* ``activations``: what autograd saves, counted op by op from transformers 5's ``modeling_llama.py``
  with ``attn_implementation="sdpa"`` and checked against ``saved_tensors_hooks`` in the tests. Per
  layer and token: RMSNorm upcasts to fp32 and saves its fp32 input, ``rsqrt`` and normalised product;
  under autocast each projection saves its own half cast of the norm output (3 for q/k/v, 2 for
  gate/up); RoPE saves only cos/sin (q, k need no saving); SDPA saves q, k, v, output and an fp32
  logsumexp; the SwiGLU MLP saves gate, silu(gate), up and their product. The residual stream stays
  fp32 under autocast (fp32 + half promotes), so checkpointing stores an fp32 ``ctx × hidden`` input
  per layer and recomputes one layer's activations during backward.
* ``logits``: at the start of backward the fp32 log-probs cross-entropy saved, their gradient and the
  logits' fp32 gradient coexist: 12 bytes per token per vocab entry, more than the forward's
  half logits + fp32 upcast + log-probs (10). Plus the int64 targets.
* ``overhead``: a fixed GPU context (CUDA/HIP runtime, BLAS workspaces, kernel images; none on CPU)
  plus a fraction of the tensor bytes for caching-allocator fragmentation.

The peak is the largest of several moments (end of forward, log-softmax backward, lm_head backward,
a layer's backward or recompute, embedding backward); each field reports its bytes *at* that moment,
so ``total`` is a peak, not a sum of per-piece maxima.

Attention kernels: the fused SDPA kernels (CUDA flash / memory-efficient, and the CPU flash kernel
``_scaled_dot_product_flash_attention_for_cpu``, measured here) keep no ``ctx²`` matrix. The math
fallback does, in fp32 (``allow_fp16_bf16_reduction_math_sdp`` defaults to False, so half inputs are
upcast). ROCm's fused kernels come from AOTriton, which is built for gfx90a/gfx942/gfx950 and a few
RDNA3/4 parts (``ROCm/aotriton`` ``v2python/gpu_targets.py``; PyTorch's ``sdp_utils.cpp`` falls back
when ``aotriton::v2::flash::check_gpu`` fails), so an RDNA2 card (RX 6700 XT, gfx1031) runs the math
path: pass ``attention_kernel="math"`` or use :func:`attention_kernel_for`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial

from transformers import LlamaConfig

from gocoder_assets.checkpoint.model import count_params

GIB = 1024**3
PRECISIONS = ("bf16", "fp16", "fp32")
OPTIMIZERS = ("adamw", "adamw8bit")
DEVICE_TYPES = ("cuda", "cpu", "mps")
ATTENTION_KERNELS = ("fused", "math")
# CUDA/HIP context + cuBLAS/hipBLAS workspaces + loaded kernels: 300-600 MiB in practice; take the top.
GPU_CONTEXT_BYTES = 600 * 1024**2
# Caching-allocator fragmentation (reserved − allocated) on GPUs; glibc frees big blocks on CPU.
FRAGMENTATION = {"cuda": 0.10, "mps": 0.10, "cpu": 0.05}
BNB_BLOCK = 256
BNB_MIN_8BIT_SIZE = 4096
# AOTriton's fully supported (non-experimental) targets; everything else on ROCm is assumed to hit math.
AOTRITON_ARCHS = ("gfx90a", "gfx942", "gfx950")


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes alive at the training step's peak, by piece (see the module docstring for each)."""

    weights: int
    grads: int
    optimizer: int
    autocast_copies: int
    activations: int
    logits: int
    overhead: int

    @property
    def total(self) -> int:
        return sum(asdict(self).values())

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


@dataclass(frozen=True)
class _Shape:
    """The config's numbers under one precision; ``a`` is the autocast dtype's size (4 for fp32)."""

    d: int
    f: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    a: int

    @property
    def fp32(self) -> bool:
        return self.a == 4


def _shape(config: LlamaConfig, precision: str) -> _Shape:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    return _Shape(
        d=config.hidden_size,
        f=config.intermediate_size,
        layers=config.num_hidden_layers,
        heads=config.num_attention_heads,
        kv_heads=config.num_key_value_heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
        vocab=config.vocab_size,
        tied=bool(config.tie_word_embeddings),
        a=4 if precision == "fp32" else 2,
    )


def _layer_tensor_sizes(config: LlamaConfig) -> list[int]:
    s = _shape(config, "fp32")
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    layer = [s.d * q, s.d * kv, s.d * kv, q * s.d, s.d * s.f, s.d * s.f, s.f * s.d]
    if config.attention_bias:
        layer += [q, kv, kv, s.d]
    if config.mlp_bias:
        layer += [s.f, s.f, s.d]
    return layer  # + two RMSNorm weights, which autocast never casts


def param_tensor_sizes(config: LlamaConfig) -> list[int]:
    """Element count of every parameter tensor, as ``LlamaForCausalLM`` creates them.

    Per tensor, not just the total, because bitsandbytes decides 8-bit vs fp32 state per tensor.
    """
    s = _shape(config, "fp32")
    layer = [*_layer_tensor_sizes(config), s.d, s.d]
    head = [] if s.tied else [s.vocab * s.d]
    return [s.vocab * s.d, *(layer * s.layers), s.d, *head]


def _optimizer_bytes(config: LlamaConfig, optimizer: str) -> int:
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}")
    sizes = param_tensor_sizes(config)
    if optimizer == "adamw":
        return 8 * sum(sizes)
    blocks = sum(-(-n // BNB_BLOCK) for n in sizes if n >= BNB_MIN_8BIT_SIZE)
    small = sum(n for n in sizes if n < BNB_MIN_8BIT_SIZE)
    return 2 * sum(n for n in sizes if n >= BNB_MIN_8BIT_SIZE) + 2 * 4 * blocks + 8 * small


def _resolve_kernel(device_type: str, attention_kernel: str | None) -> str:
    if device_type not in DEVICE_TYPES:
        raise ValueError(f"unknown device_type {device_type!r}; choose one of {DEVICE_TYPES}")
    if attention_kernel is None:
        # MPS: no fused SDPA backward assumed (conservative, not measured here).
        return "math" if device_type == "mps" else "fused"
    if attention_kernel not in ATTENTION_KERNELS:
        raise ValueError(f"unknown attention_kernel {attention_kernel!r}; choose one of {ATTENTION_KERNELS}")
    return attention_kernel


def attention_kernel_for(backend: str, gcn_arch: str | None = None) -> str:
    """The SDPA kernel family a training run will get: "math" on ROCm GPUs AOTriton doesn't cover.

    ``backend`` is ``DeviceChoice.backend``; ``gcn_arch`` is ``torch.cuda.get_device_properties(0)
    .gcnArchName`` on ROCm (e.g. "gfx1030" for an RDNA2 card run with HSA_OVERRIDE_GFX_VERSION=10.3.0).
    """
    if backend == "mps":
        return "math"
    if backend == "rocm":
        arch = (gcn_arch or "").split(":", 1)[0]
        return "fused" if arch in AOTRITON_ARCHS else "math"
    return "fused"


def _layer_saved_per_token(s: _Shape, ctx: int, kernel: str) -> int:
    """Bytes autograd saves per token in one decoder layer (see the module docstring for the list)."""
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim

    def norm(consumers: int) -> int:  # fp32 input, rsqrt, x·rsqrt; then what the projections save
        return 8 * s.d + 4 + (4 * s.d if s.fp32 else consumers * s.a * s.d)

    # fused: q, k, v, output (also o_proj's input) and an fp32 logsumexp per head;
    # math: fp32 scaled q, GQA-repeated k and v, the fp32 ctx² probabilities, and o_proj's input.
    fused = s.a * (2 * q + 2 * kv) + 4 * s.heads
    attention = fused if kernel == "fused" else 4 * 3 * q + 4 * s.heads * ctx + s.a * q
    return norm(3) + attention + norm(2) + 4 * s.a * s.f


def _final_saved_per_token(s: _Shape) -> int:
    """Final RMSNorm (fp32) and the lm_head input (cast under autocast)."""
    return 8 * s.d + 4 + s.a * s.d


def _fixed_bytes(s: _Shape, micro_batch: int, ctx: int) -> int:
    """The int64 input windows (ctx + 1 ids a row; the embedding saves them) and RoPE's fp32 cos/sin."""
    return 8 * micro_batch * (ctx + 1) + 2 * 4 * ctx * s.head_dim


def saved_activation_bytes(
    config: LlamaConfig,
    micro_batch: int,
    ctx: int,
    precision: str,
    activation_checkpointing: bool,
    device_type: str = "cuda",
    attention_kernel: str | None = None,
) -> int:
    """What autograd holds right after forward, without weights, autocast copies or the loss tensors.

    The quantity ``saved_tensors_hooks`` sees, so the op-by-op count can be checked against torch;
    with checkpointing it is the stored layer inputs plus the un-checkpointed tail.
    """
    s, kernel = _shape(config, precision), _resolve_kernel(device_type, attention_kernel)
    tokens = micro_batch * ctx
    fixed = _fixed_bytes(s, micro_batch, ctx)
    per_layer = 4 * s.d if activation_checkpointing else _layer_saved_per_token(s, ctx, kernel)
    return tokens * (s.layers * per_layer + _final_saved_per_token(s)) + fixed


def estimate_memory(
    config: LlamaConfig,
    micro_batch: int,
    ctx: int,
    precision: str,
    activation_checkpointing: bool,
    optimizer: str = "adamw",
    device_type: str = "cuda",
    *,
    attention_kernel: str | None = None,
    ddp: bool = False,
) -> MemoryEstimate:
    """Peak training memory for one micro-batch of ``micro_batch × ctx`` tokens.

    ``precision`` is the autocast dtype; weights, grads and optimizer states stay fp32 regardless.
    ``attention_kernel`` ("fused" | "math") defaults from ``device_type`` (see the module docstring).
    """
    if micro_batch < 1 or ctx < 1:
        raise ValueError(f"micro_batch and ctx must be at least 1, got {micro_batch} and {ctx}")
    s, kernel = _shape(config, precision), _resolve_kernel(device_type, attention_kernel)
    n_params = sum(param_tensor_sizes(config))
    tokens, v, a = micro_batch * ctx, s.vocab, s.a
    head_copy = 0 if s.fp32 else a * v * s.d  # lm_head's cast (the tied embedding's, if tied)
    layer_copy = 0 if s.fp32 else a * sum(_layer_tensor_sizes(config))
    all_copies = head_copy + s.layers * layer_copy
    fixed = _fixed_bytes(s, micro_batch, ctx)
    layer = tokens * _layer_saved_per_token(s, ctx, kernel)
    saved = saved_activation_bytes(config, micro_batch, ctx, precision, activation_checkpointing, device_type, kernel)
    targets = 8 * tokens
    grad_cast = 4 if s.fp32 else a + 4  # a weight's gradient in the compute dtype, then its fp32 cast
    # Backward through one layer, on top of its saved tensors (measured op by op): during the MLP's mul
    # backward the fp32 hidden-state grad and two f-wide grads; during down_proj's, an f-wide grad and
    # the weight grad; for math attention, the ctx² grads of probabilities and scores once the MLP's
    # saved tensors are freed.
    mlp = max(tokens * (4 * s.d + 2 * a * s.f), tokens * a * s.f + a * s.d * s.f)
    attn = tokens * (4 * s.d + 2 * 4 * s.heads * ctx - 4 * a * s.f) if kernel == "math" else 0
    layer_backward = max(mlp, attn)
    if activation_checkpointing:
        in_layer = saved - tokens * _final_saved_per_token(s) + layer + layer_backward
        copies_after_forward, copies_in_layer = head_copy, layer_copy
    else:
        in_layer = saved - tokens * _final_saved_per_token(s) + layer_backward
        copies_after_forward, copies_in_layer = all_copies, s.layers * layer_copy
    # (name, activations, logits, autocast copies, transient weight gradient)
    moments = [
        # logits in the compute dtype + their fp32 upcast (none under fp32) + fp32 log-probs
        ("end of forward", saved, tokens * v * (a + 4 + (0 if s.fp32 else 4)) + targets, all_copies, 0),
        ("log-softmax backward", saved, tokens * v * 12 + targets, copies_after_forward, 0),
        ("lm_head backward", saved, tokens * v * a, copies_after_forward, grad_cast * v * s.d),
        ("layer backward", in_layer, 0, copies_in_layer, 0),
        ("embedding backward", fixed, 0, 0, 4 * v * s.d),
    ]
    _, activations, logits, copies, grad_transient = max(moments, key=lambda m: sum(m[1:]))
    weights, opt = 4 * n_params, _optimizer_bytes(config, optimizer)
    grads = 4 * n_params * (2 if ddp else 1) + grad_transient
    tensors = weights + grads + opt + copies + activations + logits
    context = 0 if device_type == "cpu" else GPU_CONTEXT_BYTES
    overhead = context + round(FRAGMENTATION[device_type] * tensors)
    return MemoryEstimate(weights, grads, opt, copies, activations, logits, overhead)


@dataclass(frozen=True)
class BatchPlan:
    """How one optimizer step's ``rows_per_step`` windows are split: ``micro × accumulation × world``."""

    micro_batch: int
    accumulation: int
    world_size: int
    rows_per_step: int
    tokens_per_step: int
    estimate: MemoryEstimate
    device_bytes: int

    def as_metadata(self) -> dict[str, int | float]:
        """Flat and JSON-safe for Dagster metadata: the split, the device, and every estimate piece."""
        pieces = {f"memory_{k}_bytes": val for k, val in self.estimate.as_dict().items()}
        return {
            "micro_batch": self.micro_batch,
            "accumulation": self.accumulation,
            "world_size": self.world_size,
            "rows_per_step": self.rows_per_step,
            "tokens_per_step": self.tokens_per_step,
            "device_bytes": self.device_bytes,
            **pieces,
            "memory_total_gib": round(self.estimate.total / GIB, 3),
            "memory_fraction_of_device": round(self.estimate.total / self.device_bytes, 4),
        }


def plan_batch(
    config: LlamaConfig,
    ctx: int,
    total_batch_tokens: int,
    device_bytes: int,
    precision: str,
    activation_checkpointing: bool,
    optimizer: str = "adamw",
    world_size: int = 1,
    micro_batch: int | None = None,
    headroom: float = 0.9,
    device_type: str = "cuda",
    *,
    attention_kernel: str | None = None,
) -> BatchPlan:
    """The largest micro-batch whose estimate fits ``headroom × device_bytes``, and the accumulation
    steps that keep the effective batch at ``total_batch_tokens`` whatever the device.

    A given ``micro_batch`` is used as is (it only has to divide the per-rank rows) so a run can pin
    what it measured; its estimate is still reported.
    """
    if ctx < 1 or total_batch_tokens < 1 or world_size < 1 or device_bytes < 1:
        raise ValueError("ctx, total_batch_tokens, world_size and device_bytes must all be at least 1")
    if not 0 < headroom <= 1:
        raise ValueError(f"headroom must be in (0, 1], got {headroom}")
    if total_batch_tokens % ctx:
        raise ValueError(
            f"total_batch_tokens {total_batch_tokens} is not a multiple of the context {ctx}: "
            f"use {total_batch_tokens // ctx * ctx or ctx} or {(total_batch_tokens // ctx + 1) * ctx}"
        )
    rows = total_batch_tokens // ctx
    if rows % world_size:
        raise ValueError(
            f"{rows} rows per step ({total_batch_tokens} tokens / ctx {ctx}) do not split over world_size {world_size}"
        )
    per_rank = rows // world_size

    estimate = partial(
        estimate_memory, config, ctx=ctx, precision=precision, activation_checkpointing=activation_checkpointing,
        optimizer=optimizer, device_type=device_type, attention_kernel=attention_kernel, ddp=world_size > 1,
    )  # fmt: skip

    def plan(micro: int, est: MemoryEstimate) -> BatchPlan:
        return BatchPlan(micro, per_rank // micro, world_size, rows, rows * ctx, est, device_bytes)

    if micro_batch is not None:
        if micro_batch < 1 or per_rank % micro_batch:
            raise ValueError(f"micro_batch {micro_batch} does not divide the {per_rank} rows per rank and step")
        return plan(micro_batch, estimate(micro_batch))
    budget = headroom * device_bytes
    for micro in sorted((m for m in range(1, per_rank + 1) if per_rank % m == 0), reverse=True):
        est = estimate(micro)
        if est.total <= budget:
            return plan(micro, est)
    smallest = estimate(1)
    hints = [] if activation_checkpointing else ["activation checkpointing"]
    hints += [] if optimizer == "adamw8bit" else ["optimizer='adamw8bit'"]
    raise ValueError(
        f"even micro_batch 1 needs an estimated {smallest.total / GIB:.2f} GiB "
        f"({', '.join(f'{k} {val / GIB:.2f}' for k, val in asdict(smallest).items())}), more than "
        f"{headroom:.0%} of the device's {device_bytes / GIB:.2f} GiB; try "
        + ", ".join([*hints, "a smaller preset", f"a shorter context than {ctx}"])
    )


def flops_per_token(config: LlamaConfig, ctx: int) -> float:
    """Training FLOPs per token: ``6·N + 12·L·n_head·head_dim·ctx``.

    N counts every matmul weight, lm_head included, but not the input embedding (a lookup, no FLOPs);
    6 = forward 2 + backward 4 per weight and token. The second term is the attention scores and
    their product with V over the full ``ctx`` (PaLM, Chowdhery et al. 2022, appendix B; nanoGPT's
    ``estimate_mfu``), so causal masking's skipped half is still counted, as MFU conventionally does.
    Activation-checkpointing recompute is *not* included: MFU excludes rematerialisation.
    """
    s = _shape(config, "fp32")
    n = count_params(config) - (0 if s.tied else s.vocab * s.d)
    return 6.0 * n + 12.0 * s.layers * s.heads * s.head_dim * ctx


def tokens_per_second(config: LlamaConfig, ctx: int, peak_flops: float, mfu: float) -> float:
    """Training throughput implied by a device's peak FLOP/s and an assumed model FLOPs utilisation."""
    if peak_flops <= 0 or not 0 < mfu <= 1:
        raise ValueError(f"need peak_flops > 0 and 0 < mfu <= 1, got {peak_flops} and {mfu}")
    return peak_flops * mfu / flops_per_token(config, ctx)
