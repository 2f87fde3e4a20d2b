"""GGUF export: read back with gguf-py, and load with transformers' GGUF loader as an independent check."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import dagster as dg
import gguf
import numpy as np
import pytest
import sentencepiece as spm
import torch
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from gocoder_assets.categorized_records.serialize import MARKERS as SERIALIZED_MARKERS
from gocoder_assets.categorized_records.serialize import render_code
from gocoder_assets.gguf_model.checks import gguf_llama_cpp
from gocoder_assets.gguf_model.export import (
    BYTE,
    CONTROL,
    F16_ABOVE_PARAMS,
    NORMAL,
    UNKNOWN,
    USER_DEFINED,
    export_gguf,
    export_variants,
    permute,
    piece_types,
    resolve_dtype,
    tensor_type,
    unpermute,
    write_modelfile,
)
from gocoder_assets.gguf_model.verify import Report
from gocoder_assets.resources import StorageResource
from gocoder_assets.tokenizer_model.encode import RecordCodec
from gocoder_assets_tests.tiny_model import N_HEAD, N_KV

MARKERS = list(SERIALIZED_MARKERS)


@pytest.fixture(scope="module")
def spm_model(tiny_spm_model: Path) -> Path:
    return tiny_spm_model


@pytest.fixture(scope="module")
def exported(tiny_gguf: dict) -> dict:
    """The conftest's tiny model; ``summary`` is its full-precision (F32: it is tiny) file."""
    return {**tiny_gguf, "summary": tiny_gguf["variants"]["full"]}


def _field(reader: gguf.GGUFReader, key: str):
    field = reader.get_field(key)
    assert field is not None, key
    return field.contents()


def test_summary_and_atomic_write(exported: dict) -> None:
    s = exported["summary"]
    out = Path(s["path"])
    assert out.is_file() and s["bytes"] == out.stat().st_size
    assert s["n_tensors"] == 3 + 2 * 9 and s["vocab_size"] == 400
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]  # no temp file left behind


def test_tensors_round_trip(exported: dict) -> None:
    hf = load_file(exported["dir"] / "hf" / "model.safetensors")
    reader = gguf.GGUFReader(exported["summary"]["path"])
    got = {t.name: np.asarray(t.data) for t in reader.tensors}
    expected = {
        "token_embd.weight": "model.embed_tokens.weight",
        "output_norm.weight": "model.norm.weight",
        "output.weight": "lm_head.weight",
    }
    hf_parts = {
        "attn_norm": "input_layernorm",
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_norm": "post_attention_layernorm",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }
    for layer in range(2):
        for g, h in hf_parts.items():
            expected[f"blk.{layer}.{g}.weight"] = f"model.layers.{layer}.{h}.weight"
    assert set(got) == set(expected)
    for gname, hname in expected.items():
        t = got[gname]
        assert t.dtype == np.float32 and t.shape == hf[hname].shape, gname
        if ".attn_q." in gname:
            t = unpermute(t, N_HEAD)
        elif ".attn_k." in gname:
            t = unpermute(t, N_KV)
        np.testing.assert_array_equal(t, hf[hname], err_msg=gname)
    # The permutation is real (not the identity) and k really uses the KV head count.
    q = hf["model.layers.0.self_attn.q_proj.weight"]
    assert not np.array_equal(permute(q, N_HEAD), q)
    assert not np.array_equal(permute(hf["model.layers.0.self_attn.k_proj.weight"], N_HEAD), got["blk.0.attn_k.weight"])


def test_metadata_and_vocab(exported: dict) -> None:
    sp: spm.SentencePieceProcessor = exported["sp"]
    reader = gguf.GGUFReader(exported["summary"]["path"])
    expected = {
        "general.architecture": "llama",
        "general.name": "gocoder-test",
        "general.file_type": int(gguf.LlamaFileType.ALL_F32),
        "llama.vocab_size": 400,
        "llama.context_length": 64,
        "llama.embedding_length": 64,
        "llama.block_count": 2,
        "llama.feed_forward_length": 128,
        "llama.attention.head_count": N_HEAD,
        "llama.attention.head_count_kv": N_KV,
        "llama.rope.dimension_count": 16,
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.bos_token_id": sp.bos_id(),
        "tokenizer.ggml.eos_token_id": sp.eos_id(),
        "tokenizer.ggml.unknown_token_id": sp.unk_id(),
        "tokenizer.ggml.padding_token_id": 3,
        "tokenizer.ggml.add_bos_token": False,
        "tokenizer.ggml.add_space_prefix": False,
    }
    for key, value in expected.items():
        assert _field(reader, key) == value, key
    assert _field(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-5)
    assert _field(reader, "llama.rope.freq_base") == pytest.approx(10000.0)

    n = sp.get_piece_size()
    assert _field(reader, "tokenizer.ggml.tokens") == [sp.id_to_piece(i) for i in range(n)]
    assert _field(reader, "tokenizer.ggml.scores") == pytest.approx([sp.get_score(i) for i in range(n)])

    def expected_type(i: int) -> int:  # derived independently of the exporter's proto reader
        if sp.is_unknown(i):
            return UNKNOWN
        if sp.is_control(i):
            return CONTROL
        if sp.is_byte(i):
            return BYTE
        return NORMAL

    types = _field(reader, "tokenizer.ggml.token_type")
    assert types == [expected_type(i) for i in range(n)]
    # Markers are SentencePiece control symbols, so CONTROL like <s> </s> <pad>; nothing is USER_DEFINED.
    assert [sp.id_to_piece(i) for i in range(n) if types[i] == CONTROL] == ["<s>", "</s>", "<pad>", *MARKERS]
    assert USER_DEFINED not in types
    assert "<0x0A>" in _field(reader, "tokenizer.ggml.tokens")  # llama.cpp looks newline up by this piece


def test_marker_strings_map_to_marker_ids_in_the_gguf(exported: dict) -> None:
    """For prompting: each marker string is one CONTROL token whose id is the marker id of the training data.

    llama.cpp matches CONTROL token text only when asked to parse special tokens, which a prompt
    writing ``<CODE><REPO>acme/x`` does; text without that flag is plain text, as in training.
    """
    sp: spm.SentencePieceProcessor = exported["sp"]
    codec = RecordCodec(sp, MARKERS)
    reader = gguf.GGUFReader(exported["summary"]["path"])
    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")
    for m, i in codec.marker_ids.items():
        assert tokens.index(m) == i and types[i] == CONTROL, m
    record = render_code("acme/x", "a.go", "func F() {}\n")
    ids = codec.encode_one(record)
    assert ids[:2] == [codec.marker_ids["<CODE>"], codec.marker_ids["<REPO>"]]
    structure = [codec.marker_ids[m] for m in ("<CODE>", "<REPO>", "<FILE", "</FILE>")]
    assert [i for i in ids if types[i] == CONTROL] == structure
    # transformers' GGUF tokenizer loader (as a llama.cpp prompt with special parsing) reads marker strings
    # as the marker ids. It registers every CONTROL token as a special added token, so unlike our tokenizer.json
    # it also reads a literal "<s>" as BOS; that is the converter's choice, and no training text goes through it.
    path = Path(exported["summary"]["path"])
    auto = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    for m, i in codec.marker_ids.items():
        assert auto.encode(m, add_special_tokens=False) == [i] and auto.decode([i]) == m, m
    prompt = "<CODE><REPO>acme/x\n"
    assert auto.encode(prompt, add_special_tokens=False)[:2] == ids[:2]
    assert auto.decode(auto.encode(prompt, add_special_tokens=False)) == prompt


def test_score_heuristic_would_fail(spm_model: Path) -> None:
    """Why piece types come from the proto: a learned BPE piece scores 0 like the markers do."""
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    types = piece_types(sp)
    zero_normal = [i for i in range(sp.get_piece_size()) if types[i] == NORMAL and sp.get_score(i) == 0]
    assert zero_normal, "expected the first BPE merge to score -0.0"


def test_transformers_gguf_loader_matches(exported: dict) -> None:
    path = Path(exported["summary"]["path"])
    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    codec = RecordCodec(exported["sp"], MARKERS)
    ids = torch.tensor([codec.encode_one(render_code("x/y", "a.go", "func F() error {\n\treturn nil\n}"))])
    assert ids.shape[1] > 8
    with torch.no_grad():
        want = exported["model"](ids).logits
        got = loaded(ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_tied_f16(tmp_path: Path, spm_model: Path, save_tiny_llama) -> None:
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    model = save_tiny_llama(tmp_path / "hf", sp, tied=True)
    summary = export_gguf(tmp_path / "hf", spm_model, tmp_path / "m.gguf", dtype="f16")
    reader = gguf.GGUFReader(summary["path"])
    dtypes = {t.name: t.tensor_type for t in reader.tensors}
    assert "output.weight" not in dtypes and summary["n_tensors"] == 2 + 2 * 9
    assert dtypes["token_embd.weight"] == gguf.GGMLQuantizationType.F16
    assert dtypes["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32
    assert _field(reader, "general.file_type") == int(gguf.LlamaFileType.MOSTLY_F16)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf", dtype=torch.float32).eval()
    ids = torch.tensor([sp.encode("func main() {\n\tfmt.Println(1)\n}")])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=5e-3, rtol=0)


def test_rejects_bad_inputs(tmp_path: Path, exported: dict, spm_model: Path) -> None:
    with pytest.raises(ValueError, match="dtype"):
        export_gguf(exported["dir"] / "hf", spm_model, tmp_path / "x.gguf", dtype="q4")
    assert not list(tmp_path.iterdir())


def test_modelfile(exported: dict) -> None:
    gguf_path = Path(exported["summary"]["path"])
    out = gguf_path.parent / "Modelfile"
    text = write_modelfile(gguf_path, out, num_ctx=64)
    assert out.read_text() == text
    lines = text.splitlines()
    assert lines[0] == "FROM ./gocoder.gguf"
    assert "PARAMETER num_ctx 64" in lines
    assert 'PARAMETER stop "</s>"' in lines
    assert any(line.startswith("PARAMETER temperature ") for line in lines)
    assert lines[-1] == 'TEMPLATE "{{ .Prompt }}"'  # plain completion, not a chat template
    with pytest.raises(ValueError, match="num_ctx"):
        write_modelfile(gguf_path, out, num_ctx=65)
    sub = gguf_path.parent / "ollama" / "Modelfile"
    assert write_modelfile(gguf_path, sub, num_ctx=32).startswith("FROM ../gocoder.gguf\n")


def _weights(path: str) -> dict[str, tuple[gguf.GGMLQuantizationType, np.ndarray]]:
    """Each tensor's type and its values dequantized to float32 in numpy's (out, in) order."""
    reader = gguf.GGUFReader(path)
    out = {}
    for t in reader.tensors:
        values = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        out[t.name] = (t.tensor_type, values.reshape(tuple(int(d) for d in reversed(t.shape))))
    return out


@pytest.mark.parametrize(
    ("variant", "file_type", "matrix_type", "rel_err"),
    [
        ("q8_0", gguf.LlamaFileType.MOSTLY_Q8_0, gguf.GGMLQuantizationType.Q8_0, 0.01),
        ("q4_0", gguf.LlamaFileType.MOSTLY_Q4_0, gguf.GGMLQuantizationType.Q4_0, 0.15),
    ],
)
def test_quantized_variants(exported: dict, variant: str, file_type, matrix_type, rel_err: float) -> None:
    full, summary = exported["variants"]["full"], exported["variants"][variant]
    assert Path(summary["path"]).name == f"gocoder.{variant.upper()}.gguf"
    assert summary["bytes"] == Path(summary["path"]).stat().st_size < full["bytes"]
    reader = gguf.GGUFReader(summary["path"])
    assert _field(reader, "general.file_type") == int(file_type)
    # The complete llama + tokenizer metadata, identical to the full-precision file's except the file type.
    ref = gguf.GGUFReader(full["path"])
    keys = {k for k in ref.fields if not k.startswith("GGUF.")} - {"general.file_type"}
    assert keys == {k for k in reader.fields if not k.startswith("GGUF.")} - {"general.file_type"}
    for key in keys:
        assert _field(reader, key) == _field(ref, key), key
    want, got = _weights(full["path"]), _weights(summary["path"])
    assert set(got) == set(want)
    for name, (qtype, values) in got.items():
        expected_type = gguf.GGMLQuantizationType.F32 if values.ndim == 1 else matrix_type
        if variant == "q4_0" and name == "output.weight":  # kept at Q8_0, like llama-quantize keeps it higher
            expected_type = gguf.GGMLQuantizationType.Q8_0
        assert qtype == expected_type, name
        reference = want[name][1]
        assert values.shape == reference.shape, name
        assert np.abs(values - reference).max() <= rel_err * np.abs(reference).max(), name
    assert summary["unquantized_matrices"] == 0  # every tiny-model row is a multiple of 32


def test_sizes_shrink_and_files_are_readable_by_others(exported: dict) -> None:
    v = exported["variants"]
    assert v["full"]["dtype"] == "f32" and v["full"]["n_params"] < 1_000_000  # tiny: auto picks F32
    assert v["q4_0"]["bytes"] < v["q8_0"]["bytes"] < v["full"]["bytes"]
    assert v["q8_0"]["bytes"] < 0.35 * v["full"]["bytes"]  # 8.5 bits/weight vs 32, plus the shared vocabulary
    # Ollama / llama.cpp often run as another user: what the fixture wrote under umask 022 is world-readable.
    for path in [*(Path(s["path"]) for s in v.values()), exported["hf_dir"] / "model.safetensors"]:
        mode = path.stat().st_mode
        assert mode & stat.S_IROTH and stat.S_IMODE(mode) == 0o644, path
    assert not [p for p in Path(v["full"]["path"]).parent.iterdir() if p.name.endswith(".tmp")]


def test_rows_not_multiple_of_block_stay_unquantized(tmp_path: Path) -> None:
    odd = np.ones((8, 40), dtype=np.float32)
    assert tensor_type("blk.0.ffn_down.weight", odd, "q8_0", tied=False) == gguf.GGMLQuantizationType.F16
    assert tensor_type("blk.0.ffn_down.weight", odd, "q4_0", tied=False) == gguf.GGMLQuantizationType.F16
    assert tensor_type("blk.0.ffn_down.weight", odd, "f32", tied=False) == gguf.GGMLQuantizationType.F32
    assert tensor_type("blk.0.attn_norm.weight", np.ones(64), "q4_0", tied=False) == gguf.GGMLQuantizationType.F32
    even = np.ones((8, 64), dtype=np.float32)
    assert tensor_type("token_embd.weight", even, "q4_0", tied=True) == gguf.GGMLQuantizationType.Q8_0
    assert tensor_type("token_embd.weight", even, "q4_0", tied=False) == gguf.GGMLQuantizationType.Q4_0


def test_auto_dtype_picks_f16_for_large_models(tmp_path: Path, exported: dict, spm_model: Path, monkeypatch) -> None:
    assert resolve_dtype("auto", F16_ABOVE_PARAMS) == "f32" and resolve_dtype("auto", F16_ABOVE_PARAMS + 1) == "f16"
    assert resolve_dtype("f32", 10**12) == "f32"
    monkeypatch.setattr("gocoder_assets.gguf_model.export.F16_ABOVE_PARAMS", 1000)
    out = export_variants(exported["hf_dir"], spm_model, tmp_path, stem="m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.Q4_0.gguf", "m.Q8_0.gguf", "m.gguf"]
    assert out["full"]["dtype"] == "f16"
    assert _field(gguf.GGUFReader(out["full"]["path"]), "general.file_type") == int(gguf.LlamaFileType.MOSTLY_F16)
    with pytest.raises(ValueError, match="dtype"):
        export_variants(exported["hf_dir"], spm_model, tmp_path / "x", dtype="q8")


def test_report_fails_on_a_broken_rule() -> None:
    """The pass/fail rules, without llama.cpp: Q8_0 off by more than 1% fails, Q4_0 is never judged."""
    ok = Report(texts_checked=3, markers_ok=True, max_abs_logit_diff=1e-4, generated="x")
    ok.ppl = {"f32": 10.0, "q8_0": 10.09, "q4_0": 30.0}
    assert ok.passed
    ok.ppl["q8_0"] = 10.2
    assert [f for f in ok.failures() if "Q8_0" in f]
    assert not Report().passed


def test_llama_cpp_check_warns_without_llama_cpp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the package the check fails with WARN and names the install command: it never pretends to pass."""
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` raise ImportError
    result = gguf_llama_cpp(storage=StorageResource(root=str(tmp_path)))
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert 'pip install -e ".[serve]"' in result.description
