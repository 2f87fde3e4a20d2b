"""Verify the GGUF files with llama.cpp itself (llama-cpp-python), the runtime Ollama embeds.

transformers' GGUF loader (the in-process check in the tests) dequantizes into torch and re-implements
the tokenizer, so it cannot catch what only llama.cpp does: its own SPM tokenizer (CONTROL markers,
byte fallback, no space prefix), its rope layout, its quantized kernels. These functions load the
files the way a user's llama.cpp would and compare against the ground truths we have: SentencePiece
ids, the HF checkpoint's torch logits, and perplexity on held-out (val) tokens.

Dagster-free, so tests call them directly; ``checks.py`` wraps :func:`verify` as an asset check.
``llama_cpp`` and ``torch`` are imported inside functions: the package is optional (``.[serve]``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gocoder_assets.categorized_records.serialize import SENTINELS
from gocoder_assets.packed_shards.shard_format import open_shard, read_index
from gocoder_assets.tokenizer_model.encode import RecordCodec
from gocoder_assets.tokenizer_model.train import content_runs

# Held-out text always checked, whatever the val split holds: tabs, CRLF, runs of spaces, digits, non-ASCII
# identifiers and strings (byte-fallback pieces), an emoji outside the BMP, text that spells a marker.
PROBE_TEXTS = (
    'package main\n\nimport "fmt"\n\nfunc main() {\n\tfor i := 0; i < 10; i++ {\n\t\tfmt.Println(i)\n\t}\n}\n',
    "// Größe berechnet die Fläche. 面积 = 长 × 宽 🚀\nfunc Größe(länge, breite float64) float64 {\r\n"
    '\treturn länge * breite // ½ · π ≈ 1.5708\n}\n\tvar s = "naïve café — “quoted”"\n',
    "   leading spaces\t\ttabs\n\n\n  trailing  \t\n<REPO>not a marker</FILE> <s></s>",
    "x := []byte{0x0A, 0xFF}\n\tswitch {\n\tcase x == nil:\n\t\tpanic(`raw\\string`)\n\t}\n",
)
GENERATE_PROMPT = "package main\n\nfunc main() {\n\t"  # what the base model's check completes
MAX_PPL_RATIO_Q8 = 1.01
MAX_ABS_LOGIT_DIFF = 1e-3


def require_llama_cpp() -> Any:
    """``llama_cpp`` or ImportError naming the extra that installs it."""
    try:
        import llama_cpp  # noqa: PLC0415
    except ImportError as e:
        raise ImportError(f'llama-cpp-python is not installed ({e}); pip install -e ".[serve]"') from e
    return llama_cpp


class VocabOnly:
    """llama.cpp's tokenizer of a GGUF without its weights.

    ``Llama(path, vocab_only=True)`` fails in llama-cpp-python 0.3.36 ("Failed to create llama_context":
    it builds a context even then), so this holds the lower-level model wrapper, which needs none.
    """

    def __init__(self, model_path: Path) -> None:
        llama_cpp = require_llama_cpp()
        from llama_cpp._internals import LlamaModel  # noqa: PLC0415

        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        self._model = LlamaModel(path_model=str(model_path), params=params, verbose=False)

    def tokenize(self, text: bytes, add_bos: bool = False, special: bool = False) -> list[int]:
        return list(self._model.tokenize(text, add_bos, special))

    def close(self) -> None:
        self._model.close()


def load(model_path: Path, *, n_ctx: int = 0, vocab_only: bool = False) -> Any:
    """A ``Llama`` that keeps every position's logits (``scores``), two threads, quiet; or a :class:`VocabOnly`.

    The KV cache is F32: llama.cpp's default F16 cache rounds keys and values, which alone moved the
    trained tiny model's logits by 1.6e-3 against torch (1.1e-5 with an F32 cache), so an F32 file is
    judged in F32 throughout; the perplexities compare the weights' quantization, not the cache's.
    """
    if vocab_only:
        return VocabOnly(model_path)
    llama_cpp = require_llama_cpp()
    return llama_cpp.Llama(
        model_path=str(model_path),
        n_ctx=n_ctx,
        type_k=llama_cpp.GGML_TYPE_F32,
        type_v=llama_cpp.GGML_TYPE_F32,
        logits_all=True,
        n_threads=2,
        n_threads_batch=2,
        seed=0,
        verbose=False,
    )


def val_records(shards: Sequence[Path], codec: RecordCodec, max_records: int) -> list[str]:
    """Up to ``max_records`` stored records (sentinel form) of the shards, decoded from their tokens."""
    out: list[str] = []
    for shard in shards:
        tokens = open_shard(Path(shard))
        starts, lengths, _ = read_index(Path(shard))
        for start, length in zip(starts, lengths, strict=True):
            if len(out) >= max_records:
                return out
            out.append(codec.decode(tokens[int(start) : int(start + length) - 1]))  # drop the trailing EOS
    return out


def val_windows(shards: Sequence[Path], n_ctx: int, max_windows: int) -> list[np.ndarray]:
    """Consecutive ``n_ctx``-token windows of the shards (as training eval reads them), at most ``max_windows``."""
    out: list[np.ndarray] = []
    for shard in shards:
        tokens = open_shard(Path(shard))
        for start in range(0, tokens.size - n_ctx + 1, n_ctx):
            if len(out) >= max_windows:
                return out
            out.append(np.asarray(tokens[start : start + n_ctx], dtype=np.int64))
    return out


def tokenization_mismatches(llm: Any, sp: Any, texts: Sequence[str]) -> list[tuple[str, list[int], list[int]]]:
    """(text, SentencePiece ids, llama.cpp ids) for every text where they differ; plain text, no special parsing."""
    bad = []
    for text in texts:
        want = list(sp.encode(text))
        got = list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
        if got != want:
            bad.append((text, want, got))
    return bad


def marker_prompt(codec: RecordCodec) -> tuple[str, list[int]]:
    """A prompt spelling every marker, and the ids it must give with special parsing (the codec's)."""
    parts = [(m, f"x{i}\t") for i, m in enumerate(codec.marker_ids)]
    prompt = "".join(m + text for m, text in parts)
    stored = "".join(SENTINELS[m] + text for m, text in parts)
    return prompt, codec.encode_one(stored)


def logits(llm: Any, tokens: Sequence[int]) -> np.ndarray:
    """(len(tokens), vocab) float32 logits of one fresh evaluation (``Llama.scores`` needs ``logits_all``)."""
    llm.reset()
    llm.eval([int(t) for t in tokens])
    return np.array(llm.scores[: len(tokens)], dtype=np.float32)


def torch_logits(checkpoint_dir: Path, tokens: Sequence[int]) -> np.ndarray:
    """The HF checkpoint's float32 logits, the reference llama.cpp's F32 file is held to."""
    import torch  # noqa: PLC0415
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    model = AutoModelForCausalLM.from_pretrained(checkpoint_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([list(tokens)])).logits[0].numpy()


def nll(scores: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Next-token negative log-likelihoods (nats) of ``tokens[1:]`` given the logits at each position."""
    x = scores[:-1].astype(np.float64)
    x -= x.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(x).sum(axis=1))
    return log_z - x[np.arange(len(x)), tokens[1:]]


def perplexity(llm: Any, windows: Sequence[np.ndarray]) -> float:
    """exp(mean NLL) over all windows, each evaluated from an empty KV cache."""
    losses = np.concatenate([nll(logits(llm, w), np.asarray(w)) for w in windows])
    return float(math.exp(losses.mean()))


def generate(llm: Any, prompt: str, max_tokens: int = 16) -> str:
    """Greedy completion text (plain completion, no chat template)."""
    out = llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0)
    return str(out["choices"][0]["text"])


@dataclass
class Report:
    """All numbers of one verification; ``passed`` applies the rules in the module constants."""

    texts_checked: int = 0
    mismatches: list[tuple[str, list[int], list[int]]] = field(default_factory=list)
    markers_ok: bool = False
    logit_tokens: int = 0
    max_abs_logit_diff: float = math.inf
    generated: str = ""
    ppl: dict[str, float] = field(default_factory=dict)
    ppl_tokens: int = 0

    @property
    def q8_ratio(self) -> float:
        return self.ppl.get("q8_0", math.inf) / self.ppl.get("f32", math.nan)

    def failures(self) -> list[str]:
        out = []
        if self.mismatches:
            out.append(f"{len(self.mismatches)} of {self.texts_checked} texts tokenize differently")
        if not self.markers_ok:
            out.append("marker prompt (special=True) does not give the marker ids")
        if not self.max_abs_logit_diff <= MAX_ABS_LOGIT_DIFF:
            out.append(f"max |Δlogit| {self.max_abs_logit_diff:.3g} > {MAX_ABS_LOGIT_DIFF}")
        if not self.generated:
            out.append("greedy generation returned no text")
        if not self.q8_ratio <= MAX_PPL_RATIO_Q8:
            out.append(f"Q8_0 perplexity {self.q8_ratio:.4f}× F32's (limit {MAX_PPL_RATIO_Q8})")
        return out

    @property
    def passed(self) -> bool:
        return not self.failures()

    def rows(self) -> list[list[Any]]:
        """[measure, value, rule, ok] for the check's markdown table."""

        def mark(good: bool) -> str:
            return "✅" if good else "❌"

        tok = f"{self.texts_checked - len(self.mismatches)}/{self.texts_checked} equal"
        dlogit = f"{self.max_abs_logit_diff:.3g} ({self.logit_tokens} tokens)"
        rows = [
            ["tokenization (plain)", tok, "all", mark(not self.mismatches)],
            ["marker ids (special=True)", self.markers_ok, "equal", mark(self.markers_ok)],
            [
                "max abs Δlogit F32 vs torch",
                dlogit,
                f"≤ {MAX_ABS_LOGIT_DIFF}",
                mark(self.max_abs_logit_diff <= MAX_ABS_LOGIT_DIFF),
            ],
            ["greedy generation", repr(self.generated), "non-empty", mark(bool(self.generated))],
        ]
        for variant, value in self.ppl.items():
            rule, good = "reference", True
            if variant == "q8_0":
                rule, good = f"≤ {MAX_PPL_RATIO_Q8} × F32", self.q8_ratio <= MAX_PPL_RATIO_Q8
            elif variant != "f32":
                rule = "reported only"
            rows.append([f"perplexity {variant} ({self.ppl_tokens} tokens)", f"{value:.4f}", rule, mark(good)])
        return rows


def _chunks(texts: Sequence[str]) -> Iterator[str]:
    """Content runs of stored records (markers cut out: plain-text tokenization never meets them)."""
    for text in texts:
        yield from content_runs(text)


def verify(
    variants: Mapping[str, Path],
    checkpoint_dir: Path,
    sp: Any,
    codec: RecordCodec,
    *,
    val_shards: Sequence[Path] = (),
    n_ctx: int,
    max_windows: int = 4,
    max_records: int = 200,
    logit_tokens: int = 64,
    extra_texts: Sequence[str] = (),
    generate_prompt: str = GENERATE_PROMPT,
) -> Report:
    """Run every verification; ``variants`` maps ``f32`` (required), ``q8_0``, ``q4_0`` … to GGUF paths.

    Perplexity windows come from ``val_shards``; without val shards (a one-repo corpus) the probe texts
    are the held-out tokens. The logit prompt is the start of the first window (≥ 32 tokens).
    ``extra_texts`` are tokenized too and ``generate_prompt`` is completed: the fine-tuned model's check
    passes prompts in its instruction format there, the text that model is actually sent.
    """
    report = Report()
    texts = [*PROBE_TEXTS, *extra_texts, *_chunks(val_records(val_shards, codec, max_records))]
    vocab = load(variants["f32"], vocab_only=True)
    report.texts_checked = len(texts)
    report.mismatches = tokenization_mismatches(vocab, sp, texts)
    prompt, want = marker_prompt(codec)
    report.markers_ok = list(vocab.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)) == want
    del vocab

    windows = val_windows(val_shards, n_ctx, max_windows)
    if not windows:
        ids = np.asarray([t for text in PROBE_TEXTS for t in [*codec.encode_one(text), codec.eos_id()]])
        windows = [ids[i : i + n_ctx] for i in range(0, ids.size - n_ctx + 1, n_ctx)][:max_windows] or [ids[:n_ctx]]
    report.ppl_tokens = sum(w.size - 1 for w in windows)
    first = windows[0][: min(logit_tokens, windows[0].size)]
    if first.size < 32:
        raise ValueError(f"logit prompt has {first.size} tokens; need ≥ 32 (n_ctx {n_ctx} too small?)")
    report.logit_tokens = int(first.size)
    for variant, path in variants.items():
        llm = load(path, n_ctx=n_ctx)
        if variant == "f32":
            report.max_abs_logit_diff = float(np.abs(logits(llm, first) - torch_logits(checkpoint_dir, first)).max())
            llm.reset()
            report.generated = generate(llm, generate_prompt)
        report.ppl[variant] = perplexity(llm, windows)
        del llm
    return report
