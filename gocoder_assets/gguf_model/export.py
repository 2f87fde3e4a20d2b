"""Export a Hugging Face ``LlamaForCausalLM`` checkpoint plus its SentencePiece model to GGUF.

GGUF is what llama.cpp, and therefore Ollama, loads. The export reads the checkpoint with safetensors
and ``config.json`` as plain JSON, so it needs neither the model class nor a GPU, and it does not depend
on how a given transformers release names config attributes (transformers 5 keeps rope theta in
``rope_parameters["rope_theta"]``; older checkpoints have a top-level ``rope_theta``).

The vocabulary comes from ``SentencePieceProcessor``, not ``sentencepiece_model_pb2``, which fails to
import next to protobuf 6. The processor exposes no "is user defined" query and a score heuristic is
wrong for BPE (the first learned merge scores -0.0, the same as control pieces), so piece types are
read from the serialized model proto with a minimal wire-format reader and cross-checked against the
processor's ``is_unknown``/``is_control``/``is_byte``/``is_unused``.

The markers (``<REPO>``, ``<FILE`` …) are SentencePiece control symbols, so they are CONTROL (3) here
with no special casing, like ``<s>``/``</s>``/``<pad>``; nothing is USER_DEFINED. llama.cpp matches a
CONTROL token's text only when asked to parse special tokens (``llama_tokenize(..., parse_special=true)``,
what a prompt with ``<CODE><REPO>acme/x`` needs); without it the text is tokenized as plain text, as
the training data was: there a marker id only ever stood for structure, never for text.

Variants (:func:`export_variants`): the full-precision file plus Q8_0 and Q4_0, all quantized here with
gguf-py's pure-Python quantizers, so no llama.cpp build is needed to export. Every variant goes through
one writer (:func:`_write`), so metadata and tokenizer can never differ between them. :func:`export_model`
adds the Ollama Modelfile (``modelfile.py``); both the base and the fine-tuned model are published by it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import sentencepiece as spm
from safetensors import safe_open

from gocoder_assets.gguf_model.modelfile import InstructionFormat, write_modelfile
from gocoder_assets.gguf_model.options import GGUFOptions
from gocoder_assets.storage import atomic_file

# SentencePiece ModelProto.SentencePiece.Type, which GGUF's token_type reuses.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

_GLOBAL_NAMES = {
    "model.embed_tokens": "token_embd",
    "model.norm": "output_norm",
    "lm_head": "output",
}
_LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_LAYER_RE = re.compile(r"model\.layers\.(\d+)\.(.+)\.(weight|bias)")


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder q/k rows from HF's half-split rotary layout to llama.cpp's interleaved one.

    Same operation as ``permute`` in llama.cpp's convert_hf_to_gguf.py; k uses the KV head count.
    """
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of :func:`permute`, to compare GGUF q/k tensors with the HF checkpoint."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Yield (field number, value) of a protobuf message; enough wire format for ModelProto."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        wire = key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield key >> 3, value
            continue
        if wire == 2:
            size, pos = _varint(buf, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield key >> 3, buf[pos : pos + size]
        pos += size


def piece_types(sp: spm.SentencePieceProcessor) -> list[int]:
    """Return the SentencePiece type of every id as the proto stores it (see the module docstring).

    USER_DEFINED is kept should a model have such pieces; this project's markers are CONTROL.
    """
    types = []
    for field, piece in _proto_fields(sp.serialized_model_proto()):
        if field == 1:  # ModelProto.pieces
            kind = NORMAL  # proto2 default when the field is absent
            for sub, value in _proto_fields(piece):  # type: ignore[arg-type]
                if sub == 3:
                    kind = int(value)  # type: ignore[arg-type]
            types.append(kind)
    if len(types) != sp.get_piece_size():
        raise ValueError(f"model proto has {len(types)} pieces, processor {sp.get_piece_size()}")
    checks = ((UNKNOWN, sp.is_unknown), (CONTROL, sp.is_control), (BYTE, sp.is_byte), (UNUSED, sp.is_unused))
    for i, kind in enumerate(types):
        for expected, query in checks:
            if (kind == expected) != bool(query(i)):
                raise ValueError(f"piece {i} {sp.id_to_piece(i)!r}: proto type {kind} disagrees with processor")
    return types


def _rope_theta(cfg: dict[str, Any]) -> float:
    params = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type != "default":
        # llama3/linear/yarn scaling need extra GGUF keys or a rope_freqs tensor; refuse, don't mis-export.
        raise NotImplementedError(f"rope_type {rope_type!r} is not supported by this exporter")
    return float(params.get("rope_theta", cfg.get("rope_theta", 10000.0)))


def gguf_name(hf_name: str) -> str | None:
    """Map an HF tensor name to llama.cpp's; None means "not exported" (derived buffers)."""
    if hf_name.endswith("rotary_emb.inv_freq"):
        return None
    base, _, suffix = hf_name.rpartition(".")
    if base in _GLOBAL_NAMES:
        return f"{_GLOBAL_NAMES[base]}.{suffix}"
    m = _LAYER_RE.fullmatch(hf_name)
    if m and m.group(2) in _LAYER_NAMES:
        return f"blk.{m.group(1)}.{_LAYER_NAMES[m.group(2)]}.{m.group(3)}"
    raise ValueError(f"no GGUF name for checkpoint tensor {hf_name!r}")  # never drop weights silently


def _read_tensors(hf_dir: Path) -> dict[str, np.ndarray]:
    files = sorted(hf_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors file in {hf_dir}")
    out: dict[str, np.ndarray] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:  # "pt" so bf16 checkpoints load too
            for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                out[key] = f.get_tensor(key).float().numpy()
    return out


Q = gguf.GGMLQuantizationType
# Variant → (file name suffix, general.file_type, type of 2-D matrices). "" is the full-precision file.
VARIANTS: dict[str, tuple[str, gguf.LlamaFileType, Q]] = {
    "f32": ("", gguf.LlamaFileType.ALL_F32, Q.F32),
    "f16": ("", gguf.LlamaFileType.MOSTLY_F16, Q.F16),
    "q8_0": (".Q8_0", gguf.LlamaFileType.MOSTLY_Q8_0, Q.Q8_0),
    "q4_0": (".Q4_0", gguf.LlamaFileType.MOSTLY_Q4_0, Q.Q4_0),
}
# Above this many parameters the full-precision file is F16: F32 doubles the size of a file that only
# reference checks need, while for small models F32 keeps llama.cpp's logits within 1e-3 of torch's.
F16_ABOVE_PARAMS = 50_000_000


@dataclass
class LoadedCheckpoint:
    """Everything a GGUF needs, read once and shared by all variants (no duplicated writer code)."""

    cfg: dict[str, Any]
    sp: spm.SentencePieceProcessor
    tensors: dict[str, np.ndarray]  # GGUF names, float32, q/k already permuted for llama.cpp
    n_params: int

    @property
    def tied(self) -> bool:
        return "output.weight" not in self.tensors


def load_checkpoint(hf_dir: Path, spm_model: Path) -> LoadedCheckpoint:
    """Read config, tokenizer and weights; validate what llama.cpp's llama architecture can express."""
    hf_dir = Path(hf_dir)
    cfg = json.loads((hf_dir / "config.json").read_text())
    if cfg.get("model_type") != "llama" or cfg.get("hidden_act", "silu") != "silu":
        raise ValueError("only llama checkpoints with SiLU MLPs are supported")
    n_head = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads") or n_head
    tied = bool(cfg.get("tie_word_embeddings", False))
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    if sp.get_piece_size() != cfg["vocab_size"]:
        raise ValueError(f"tokenizer has {sp.get_piece_size()} pieces, model vocab_size is {cfg['vocab_size']}")
    tensors: dict[str, np.ndarray] = {}
    for hf_name, w in _read_tensors(hf_dir).items():
        gname = gguf_name(hf_name)
        if gname is None or (tied and gname == "output.weight"):
            continue
        if gname.split(".")[-2] in ("attn_q", "attn_k"):
            w = permute(w, n_head if ".attn_q." in gname else n_kv)
        tensors[gname] = np.ascontiguousarray(w, dtype=np.float32)
    if not tied and "output.weight" not in tensors:
        raise ValueError("untied checkpoint without lm_head.weight")
    return LoadedCheckpoint(cfg, sp, tensors, sum(w.size for w in tensors.values()))


def resolve_dtype(dtype: str, n_params: int) -> str:
    """``auto`` → F16 above :data:`F16_ABOVE_PARAMS` parameters, else F32; ``f32``/``f16`` as given."""
    if dtype == "auto":
        return "f16" if n_params > F16_ABOVE_PARAMS else "f32"
    if dtype not in ("f32", "f16"):
        raise ValueError(f"dtype must be 'auto', 'f32' or 'f16', not {dtype!r}")
    return dtype


def tensor_type(name: str, w: np.ndarray, variant: str, tied: bool) -> Q:
    """The GGML type of one tensor in ``variant``.

    1-D tensors (norms) stay F32: ggml's norm kernels want F32, as llama.cpp's converter keeps them.
    A block type needs rows (ggml's ne[0], numpy's last axis) in multiples of 32; other matrices stay F16
    (F32 in the f32 file) and are counted in the summary. In Q4_0 the output projection (the embedding
    when tied) is Q8_0, like llama-quantize, which keeps it at higher precision (Q6_K, which gguf-py
    cannot write) because 4-bit logits cost the most quality per byte saved.
    """
    wanted = VARIANTS[variant][2]
    if w.ndim < 2:
        return Q.F32
    if wanted == Q.Q4_0 and name == ("token_embd.weight" if tied else "output.weight"):
        wanted = Q.Q8_0
    block = gguf.GGML_QUANT_SIZES[wanted][0]
    if w.shape[-1] % block:
        return Q.F32 if variant == "f32" else Q.F16
    return wanted


def _write(ckpt: LoadedCheckpoint, out_path: Path, name: str, variant: str) -> dict[str, Any]:
    """Write one variant atomically: identical llama + tokenizer metadata, tensors in the variant's types."""
    cfg, sp = ckpt.cfg, ckpt.sp
    n_vocab = sp.get_piece_size()
    n_head = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    types: dict[str, int] = {}
    kept = 0
    with atomic_file(out_path) as tmp:
        writer = gguf.GGUFWriter(tmp, "llama")
        writer.add_name(name)
        writer.add_file_type(VARIANTS[variant][1])
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_vocab_size(n_vocab)
        writer.add_context_length(cfg["max_position_embeddings"])
        writer.add_embedding_length(cfg["hidden_size"])
        writer.add_block_count(cfg["num_hidden_layers"])
        writer.add_feed_forward_length(cfg["intermediate_size"])
        writer.add_head_count(n_head)
        writer.add_head_count_kv(cfg.get("num_key_value_heads") or n_head)
        writer.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))
        writer.add_rope_freq_base(_rope_theta(cfg))
        writer.add_rope_dimension_count(head_dim)
        if head_dim != cfg["hidden_size"] // n_head:
            writer.add_key_length(head_dim)
            writer.add_value_length(head_dim)

        writer.add_tokenizer_model("llama")
        writer.add_token_list([sp.id_to_piece(i) for i in range(n_vocab)])
        writer.add_token_scores([float(sp.get_score(i)) for i in range(n_vocab)])
        writer.add_token_types(piece_types(sp))
        for setter, token_id in (
            (writer.add_bos_token_id, sp.bos_id()),
            (writer.add_eos_token_id, sp.eos_id()),
            (writer.add_unk_token_id, sp.unk_id()),
            (writer.add_pad_token_id, sp.pad_id()),
        ):
            if token_id >= 0:  # SentencePiece uses -1 for "disabled"
                setter(token_id)
        # The training data was encoded without BOS and without a dummy "▁" prefix; match it.
        writer.add_add_bos_token(False)
        writer.add_add_eos_token(False)
        writer.add_add_space_prefix(False)

        for gname, w in ckpt.tensors.items():
            qtype = tensor_type(gname, w, variant, ckpt.tied)
            types[qtype.name] = types.get(qtype.name, 0) + 1
            kept += w.ndim == 2 and qtype != VARIANTS[variant][2] and qtype != Q.Q8_0
            if qtype in (Q.F32, Q.F16):
                writer.add_tensor(gname, gguf.quants.quantize(w, qtype))
            else:  # uint8 blocks: gguf-py derives the element shape from the byte shape and raw_dtype
                writer.add_tensor(gname, gguf.quants.quantize(w, qtype), raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return {
        "path": str(out_path),
        "n_tensors": len(ckpt.tensors),
        "bytes": out_path.stat().st_size,
        "vocab_size": n_vocab,
        "dtype": variant,
        "file_type": VARIANTS[variant][1].name,
        "tensor_types": types,
        "unquantized_matrices": int(kept),
        "n_params": ckpt.n_params,
    }


def export_gguf(
    hf_dir: Path, spm_model: Path, out_path: Path, *, name: str = "gocoder", dtype: str = "f32"
) -> dict[str, Any]:
    """Write one GGUF (``dtype``: auto, f32, f16, q8_0 or q4_0) atomically and return its summary."""
    if dtype not in ("auto", *VARIANTS):
        raise ValueError(f"dtype must be 'auto' or one of {list(VARIANTS)}, not {dtype!r}")
    ckpt = load_checkpoint(hf_dir, spm_model)
    variant = dtype if dtype in ("q8_0", "q4_0") else resolve_dtype(dtype, ckpt.n_params)
    return _write(ckpt, Path(out_path), name, variant)


def export_variants(
    hf_dir: Path,
    spm_model: Path,
    out_dir: Path,
    *,
    stem: str = "gocoder",
    name: str = "gocoder",
    dtype: str = GGUFOptions.dtype,
) -> dict[str, dict[str, Any]]:
    """Write ``<stem>.gguf`` (full precision, see :func:`resolve_dtype`), ``<stem>.Q8_0.gguf`` and
    ``<stem>.Q4_0.gguf``; the checkpoint is read once. Keys: ``full``, ``q8_0``, ``q4_0``.
    """
    if dtype != "auto":
        resolve_dtype(dtype, 0)  # validate before reading anything
    ckpt = load_checkpoint(hf_dir, spm_model)
    full = resolve_dtype(dtype, ckpt.n_params)
    out: dict[str, dict[str, Any]] = {}
    for key, variant in (("full", full), ("q8_0", "q8_0"), ("q4_0", "q4_0")):
        out[key] = _write(ckpt, Path(out_dir) / f"{stem}{VARIANTS[variant][0]}.gguf", name, variant)
    return out


def export_model(
    hf_dir: Path,
    out_dir: Path,
    *,
    stem: str,
    served_variant: str,
    dtype: str = GGUFOptions.dtype,
    instruction: InstructionFormat | None = None,
) -> dict[str, Any]:
    """Everything ``gguf_model`` and ``sft_gguf_model`` publish: the variants and a Modelfile serving one.

    One path for both models, so a fix to either reaches both. ``instruction`` None is the base model
    (plain-completion Modelfile); otherwise the Modelfile's TEMPLATE is that instruction format and
    generation also stops where a new pair would begin. Keys: variants, modelfile, modelfile_text, template.
    """
    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    if served_variant not in ("full", "q8_0", "q4_0"):
        raise ValueError(f"served_variant must be full, q8_0 or q4_0, not {served_variant!r}")
    template = instruction.go_template() if instruction else None  # fail before writing anything
    stops = [s for s in [instruction.stop()] if s] if instruction else []
    summaries = export_variants(hf_dir, hf_dir / "tokenizer.model", out_dir, stem=stem, name=stem, dtype=dtype)
    num_ctx = json.loads((hf_dir / "config.json").read_text())["max_position_embeddings"]
    modelfile = out_dir / "Modelfile"
    text = write_modelfile(summaries[served_variant]["path"], modelfile, num_ctx, template=template, stops=stops)
    return {"variants": summaries, "modelfile": str(modelfile), "modelfile_text": text, "template": template}
