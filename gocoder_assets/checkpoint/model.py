"""The model: a plain LLaMA architecture (RMSNorm, RoPE, SwiGLU, optional GQA) in a few named sizes.

We use transformers' ``LlamaForCausalLM`` rather than our own module because every downstream
consumer (``save_pretrained``/``from_pretrained``, the GGUF converter, llama.cpp/Ollama) already
speaks LLaMA; the only choices left to us are the shapes below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from transformers import LlamaConfig

ROPE_THETA = 10000.0
RMS_NORM_EPS = 1e-5
# GGUF block quantization (Q4_0, Q8_0, ...) packs rows in blocks of 32 values.
QUANT_BLOCK = 32


# llama.cpp's K-quants (Q4_K_M, Q6_K …) pack rows in super-blocks of 256 values: an FFN width that is a
# multiple of 256 lets users re-quantize the exported GGUF with `llama-quantize` (704 did not).
K_QUANT_BLOCK = 256


def swiglu_intermediate(hidden_size: int, multiple_of: int = K_QUANT_BLOCK) -> int:
    """8/3·d rounded up: SwiGLU has three matrices, so this keeps the MLP at GPT's 4·d·2 parameter cost;
    rounded to ``multiple_of`` (K-quant super-blocks)."""
    return multiple_of * math.ceil(8 * hidden_size / 3 / multiple_of)


@dataclass(frozen=True)
class ModelPreset:
    """A model shape. Validated up front so a bad shape fails here, not deep inside a training run."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    context_length: int

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for RoPE")
        dims = {
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "kv width": self.num_kv_heads * self.head_dim,
        }
        for name, value in dims.items():
            if value % QUANT_BLOCK:
                raise ValueError(f"{name} {value} is not a multiple of {QUANT_BLOCK} (GGUF quantization blocks)")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def _preset(d: int, layers: int, heads: int, ctx: int, kv_heads: int | None = None) -> ModelPreset:
    return ModelPreset(d, layers, heads, kv_heads or heads, swiglu_intermediate(d), ctx)


PRESETS: dict[str, ModelPreset] = {
    # Test suite only: grouped-query attention on purpose, so GQA paths (e.g. the GGUF k permutation) get run.
    "test": _preset(64, 2, 4, 64, kv_heads=2),
    # Trains in CPU minutes (≈ 7.6M parameters with an 8k vocabulary, untied).
    "tiny": _preset(256, 4, 4, 256),
    # GPT-2 small's shape (≈ 98M with an 8k vocabulary, ≈ 134M with 32k).
    "125m": _preset(768, 12, 12, 1024),
    # ≈ 222M with an 8k vocabulary, ≈ 273M with 32k: the names are size classes, not exact counts.
    "350m": _preset(1024, 16, 16, 1024),
}


def build_model_config(preset: str, vocab_size: int, bos_id: int, eos_id: int, pad_id: int | None) -> LlamaConfig:
    """A ``LlamaConfig`` for a preset and a tokenizer's special ids (untied embeddings, no biases, SDPA)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(PRESETS)}")
    for name, token_id in {"bos_id": bos_id, "eos_id": eos_id, "pad_id": pad_id}.items():
        if token_id is not None and not 0 <= token_id < vocab_size:
            raise ValueError(f"{name} {token_id} is outside the vocabulary of {vocab_size}")
    p = PRESETS[preset]
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=p.hidden_size,
        intermediate_size=p.intermediate_size,
        num_hidden_layers=p.num_layers,
        num_attention_heads=p.num_heads,
        num_key_value_heads=p.num_kv_heads,
        max_position_embeddings=p.context_length,
        hidden_act="silu",
        rms_norm_eps=RMS_NORM_EPS,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        attn_implementation="sdpa",
    )


def count_params(config: LlamaConfig) -> int:
    """Parameter count from the config alone, so a 350m run can be sized without allocating it."""
    d, v, f = config.hidden_size, config.vocab_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or d // config.num_attention_heads
    q_width = config.num_attention_heads * head_dim
    kv_width = config.num_key_value_heads * head_dim
    attention = d * q_width + 2 * d * kv_width + q_width * d
    if config.attention_bias:
        attention += q_width + 2 * kv_width + d
    mlp = 3 * d * f + (2 * f + d if config.mlp_bias else 0)
    per_layer = attention + mlp + 2 * d  # + two RMSNorm weights
    embeddings = v * d * (1 if config.tie_word_embeddings else 2)
    return config.num_hidden_layers * per_layer + embeddings + d  # + final norm
