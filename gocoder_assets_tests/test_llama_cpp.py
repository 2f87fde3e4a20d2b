"""The exported GGUFs in real llama.cpp (llama-cpp-python): tokenization, logits, generation, perplexity.

Skipped when llama_cpp is not installed, unless GOCODER_REQUIRE_LLAMA_CPP=1 (CI sets it): then a
missing package fails, so CI can never pass without having run these.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from gocoder_assets.categorized_records.serialize import render_code
from gocoder_assets.gguf_model import verify
from gocoder_assets.tokenizer_model.encode import RecordCodec
from gocoder_assets_tests.shards import make_shard

if os.environ.get("GOCODER_REQUIRE_LLAMA_CPP") == "1":
    import llama_cpp  # an ImportError here fails the module: CI requires llama.cpp
else:
    llama_cpp = pytest.importorskip("llama_cpp")

N_CTX = 64  # the tiny model's max_position_embeddings

# Held out: the tokenizer never saw these (tabs, unicode identifiers, CJK, emoji, byte-fallback pieces).
HELD_OUT = [
    render_code("acme/ünï", "pkg/größe.go", "package größe\n\n// Fläche 面积 🚀\nfunc Fläche(a, b float64) float64 {\n"
                "\tif a < 0 {\n\t\treturn 0 // ½\n\t}\n\treturn a * b\n}\n"),
    render_code("acme/srv", "cmd/srv/main.go", 'package main\n\nimport (\n\t"net/http"\n\t"log"\n)\n\nfunc main() {\n'
                '\thttp.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {\n\t\tw.Write([]byte("héllo"))\n'
                "\t})\n\tlog.Fatal(http.ListenAndServe(\":8080\", nil))\n}\n"),
    render_code("acme/tbl", "tbl.go", "package tbl\n\nvar table = map[string]int{\n\t\"α\":  1,\n\t\"β\":  2,\n"
                "\t\"日本\": 3,\n}\n\n\n   \t// odd   spacing\t\n"),
]  # fmt: skip


@pytest.fixture(scope="module")
def codec(tiny_gguf: dict) -> RecordCodec:
    return RecordCodec(tiny_gguf["sp"])


@pytest.fixture(scope="module")
def val_shard(tmp_path_factory: pytest.TempPathFactory, codec: RecordCodec) -> Path:
    """A planted val shard: the held-out records, repeated until there are 4+ windows of N_CTX tokens."""
    records = [("CODE", codec.encode_one(r)) for r in HELD_OUT] * 4
    path = make_shard(tmp_path_factory.mktemp("val") / "acme%2Fval" / "tokens.bin", records, codec.eos_id())
    assert verify.val_windows([path], N_CTX, 10)[3].size == N_CTX
    return path


@pytest.fixture(scope="module")
def paths(tiny_gguf: dict) -> dict[str, Path]:
    v = tiny_gguf["variants"]
    assert v["full"]["dtype"] == "f32"
    return {"f32": Path(v["full"]["path"]), "q8_0": Path(v["q8_0"]["path"]), "q4_0": Path(v["q4_0"]["path"])}


def test_tokenization_equals_sentencepiece(tiny_gguf: dict, paths: dict, codec: RecordCodec, val_shard: Path) -> None:
    records = verify.val_records([val_shard], codec, 100)
    assert records[: len(HELD_OUT)] == HELD_OUT  # the shard decodes back to the stored records
    texts = [*verify.PROBE_TEXTS, *(run for r in records for run in verify.content_runs(r))]
    assert any("\t" in t for t in texts) and any("🚀" in t for t in texts) and any("面积" in t for t in texts)
    for path in paths.values():  # every variant carries the same vocabulary
        llm = verify.load(path, vocab_only=True)
        assert verify.tokenization_mismatches(llm, tiny_gguf["sp"], texts) == [], path.name
        prompt, want = verify.marker_prompt(codec)
        assert set(codec.marker_ids.values()) <= set(want)
        assert list(llm.tokenize(prompt.encode(), add_bos=False, special=True)) == want
        # Without special parsing a spelled marker is plain text, as in training: no marker id.
        plain = llm.tokenize(prompt.encode(), add_bos=False, special=False)
        assert not set(plain) & set(codec.marker_ids.values())


def test_f32_logits_match_torch(tiny_gguf: dict, paths: dict, codec: RecordCodec, val_shard: Path) -> None:
    tokens = verify.val_windows([val_shard], N_CTX, 1)[0]
    assert tokens.size >= 32
    got = verify.logits(verify.load(paths["f32"], n_ctx=N_CTX), tokens)
    want = verify.torch_logits(tiny_gguf["hf_dir"], tokens)
    diff = float(np.abs(got - want).max())
    print(f"max |Δlogit| F32 llama.cpp vs torch over {tokens.size} tokens: {diff:.3g}")
    assert got.shape == want.shape and diff <= verify.MAX_ABS_LOGIT_DIFF


def test_generation_returns_text(paths: dict) -> None:
    llm = verify.load(paths["q8_0"], n_ctx=N_CTX)
    text = verify.generate(llm, "package main\n\nfunc main() {\n\t", max_tokens=16)
    assert isinstance(text, str) and text


def test_verify_report_and_perplexity(tiny_gguf: dict, paths: dict, codec: RecordCodec, val_shard: Path) -> None:
    started = time.monotonic()
    report = verify.verify(paths, tiny_gguf["hf_dir"], tiny_gguf["sp"], codec, val_shards=[val_shard], n_ctx=N_CTX)
    print(
        f"verify: {time.monotonic() - started:.1f}s, Δlogit {report.max_abs_logit_diff:.3g}, ppl "
        + ", ".join(f"{k} {v:.4f}" for k, v in report.ppl.items())
        + f" over {report.ppl_tokens} tokens; generated {report.generated!r}"
    )
    assert report.failures() == [] and report.passed
    assert set(report.ppl) == {"f32", "q8_0", "q4_0"} and report.ppl_tokens == 4 * (N_CTX - 1)
    assert abs(report.ppl["q8_0"] / report.ppl["f32"] - 1) <= 0.01
    assert all(np.isfinite(v) and v > 1 for v in report.ppl.values())
    rows = report.rows()
    assert [r[0] for r in rows][:4] == [
        "tokenization (plain)",
        "marker ids (special=True)",
        "max abs Δlogit F32 vs torch",
        "greedy generation",
    ]


def test_f32_perplexity_equals_torch_perplexity(tiny_gguf: dict, paths: dict, val_shard: Path) -> None:
    """The perplexity the check judges is the model's own: llama.cpp F32 and torch agree on the same windows."""
    windows = verify.val_windows([val_shard], N_CTX, 4)
    want = float(
        np.exp(np.concatenate([verify.nll(verify.torch_logits(tiny_gguf["hf_dir"], w), w) for w in windows]).mean())
    )
    got = verify.perplexity(verify.load(paths["f32"], n_ctx=N_CTX), windows)
    assert got == pytest.approx(want, rel=1e-4)
