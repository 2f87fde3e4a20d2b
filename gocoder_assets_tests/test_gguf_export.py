"""GGUF export: read back with gguf-py, and load with transformers' GGUF loader as an independent check."""

from __future__ import annotations

import random
from pathlib import Path

import gguf
import numpy as np
import pytest
import sentencepiece as spm
import torch
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from gocoder_assets.categorized_records.serialize import MARKERS as SERIALIZED_MARKERS
from gocoder_assets.categorized_records.serialize import render_code
from gocoder_assets.gguf_model.export import (
    BYTE,
    CONTROL,
    NORMAL,
    UNKNOWN,
    USER_DEFINED,
    export_gguf,
    permute,
    piece_types,
    unpermute,
    write_modelfile,
)
from gocoder_assets.tokenizer_model.encode import RecordCodec
from gocoder_assets.tokenizer_model.train import MODEL_FILE, TokenizerOptions, record_chunks, train_tokenizer

MARKERS = list(SERIALIZED_MARKERS)
N_HEAD, N_KV = 4, 2


def _go_records(n_funcs: int = 200) -> list[str]:
    """Stored CODE records (markers as sentinels) of generated Go."""
    rng = random.Random(0)
    names = ["handler", "ctx", "err", "value", "reader", "buf", "conn", "server"]
    out = []
    for i in range(n_funcs):
        a, b = rng.choice(names), rng.choice(names)
        body = [f'package {a}\n\nimport "fmt"\n\n', f"func {a.title()}{i}({b} int) (string, error) {{\n"]
        body.append(f'\tif {b} > {rng.randint(0, 99)} {{\n\t\treturn "", fmt.Errorf("{a}: %d", {b})\n\t}}\n')
        body.append(f'\tfor i := 0; i < {b}; i++ {{\n\t\t{a}Count += i\n\t}}\n\treturn "{a}", nil\n}}\n')
        out.append(render_code(f"example/{a}", f"pkg/{a}_{i}.go", "".join(body)))
    return out


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("spm")
    lines = [line for record in _go_records() for line in record_chunks(record, 1, 16384) if line.strip()]
    train_tokenizer(lines, d, MARKERS, TokenizerOptions(vocab_size=400))
    return d / MODEL_FILE


def _save_model(d: Path, sp: spm.SentencePieceProcessor, *, tied: bool) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=N_HEAD,
        num_key_value_heads=N_KV,
        intermediate_size=128,
        vocab_size=sp.get_piece_size(),
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        bos_token_id=sp.bos_id(),
        eos_token_id=sp.eos_id(),
        pad_token_id=sp.pad_id(),
        tie_word_embeddings=tied,
    )
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # random norms, so a swapped or missing norm tensor changes the logits
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    model.save_pretrained(d, safe_serialization=True)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, spm_model: Path) -> dict:
    d = tmp_path_factory.mktemp("export")
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    model = _save_model(d / "hf", sp, tied=False)
    summary = export_gguf(d / "hf", spm_model, d / "gguf" / "gocoder.gguf", name="gocoder-test")
    return {"dir": d, "model": model, "sp": sp, "summary": summary}


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


def test_tied_f16(tmp_path: Path, spm_model: Path) -> None:
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    model = _save_model(tmp_path / "hf", sp, tied=True)
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
    with pytest.raises(ValueError, match="num_ctx"):
        write_modelfile(gguf_path, out, num_ctx=65)
    sub = gguf_path.parent / "ollama" / "Modelfile"
    assert write_modelfile(gguf_path, sub, num_ctx=32).startswith("FROM ../gocoder.gguf\n")
