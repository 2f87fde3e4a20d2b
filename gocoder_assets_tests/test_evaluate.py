"""Evaluation: window planning over every val repository, bits per byte, unigram floor, model scoring."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from gocoder_assets.categorized_records.serialize import MARKERS, RESERVED, file_block, mark, render_change, render_code
from gocoder_assets.checkpoint.data import TokenStream
from gocoder_assets.checkpoint.evaluate import (
    EvalReport,
    EvalSet,
    Score,
    plan_windows,
    score_model,
    score_unigram,
    unigram_counts,
)
from gocoder_assets.packed_shards.shard_format import CATEGORIES
from gocoder_assets.tokenizer_model.encode import RecordCodec
from gocoder_assets.tokenizer_model.train import (
    TokenizerOptions,
    load_processor,
    record_chunks,
    token_byte_lengths,
    train_tokenizer,
)
from gocoder_assets_tests.shards import make_shard

EOS, VOCAB, CTX = 2, 64, 16
# Shard lengths (EOS included): one shorter than a window, the others long and unequal.
SHARDS = {
    "short": [("NAT", 5)],
    "mid": [("CODE", 60), ("NAT", 40), ("CODE", 200)],
    "long": [("CODE", 700), ("NAT", 300)],
}


def go_lines(n: int = 150) -> list[str]:
    """Training lines from Go-like stored records (content runs only), enough for a small BPE vocabulary."""
    names = ["reader", "writer", "buf", "err", "conn", "value"]
    out = []
    for i in range(n):
        a, b = names[i % len(names)], names[(i * 7) % len(names)]
        body = f"func {a.title()}{i}({b} int) error {{\n\tif {b} > {i} {{\n"
        body += f'\t\treturn fmt.Errorf("{a}: %d", {b})\n\t}}\n\treturn nil\n}}\n'
        out += record_chunks(render_code(f"acme/{a}", f"pkg/{a}.go", body), 1, 16384)
    return out


@pytest.fixture(scope="module")
def sp(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(go_lines(), out, MARKERS, TokenizerOptions(vocab_size=400))
    return load_processor(out)


def test_token_bytes_add_up_to_the_utf8_length(sp) -> None:
    lengths = token_byte_lengths(sp)
    assert lengths.dtype == np.int32 and len(lengths) == sp.get_piece_size()
    assert [lengths[i] for i in (sp.bos_id(), sp.eos_id(), sp.pad_id(), sp.unk_id())] == [0, 0, 0, 0]
    assert lengths[sp.piece_to_id("<0xF0>")] == 1
    codec = RecordCodec(sp, MARKERS)
    # Markers are control ids: structure, not text, so they count no bytes (sp.encode("<REPO>") is text).
    assert all(lengths[i] == 0 for i in codec.marker_ids.values())
    assert int(lengths[sp.encode("<REPO>")].sum()) == len("<REPO>")
    change = f'{mark("<FILE")} path="a b.go">\n{mark("<BEFORE>")}\nold\n{mark("<AFTER>")}\n{mark("</FILE>")}\n'
    body = '\tx := "tab\\t"\n\n  \t // 日本語 emoji 🦫\r\n\treturn   nil <REPO>\n'
    texts = [
        render_change("MIX", "acme/widget", {"title": "Grow ünïcödé widgets"}, [change]),
        render_code("acme/widget", "w.go", body),
        "  leading spaces and a trailing one ",
        file_block("x.go", '  <FILE path="y"> </FILE>'),
    ]
    for text in texts:
        ids = codec.encode_one(text)
        assert int(lengths[ids].sum()) == len(RESERVED.sub("", text).encode("utf-8")), text  # content bytes
    assert any(sp.is_byte(i) for i in codec.encode_one(texts[1]))  # the emoji takes the byte-fallback path


def make_stream(root: Path, shards: dict[str, list[tuple[str, int]]] = SHARDS, seed: int = 0):
    """Val shards of random tokens; returns the stream and each position's expected category code."""
    rng = np.random.default_rng(seed)
    paths, codes = [], []
    for name, records in shards.items():
        planted = [(c, rng.integers(4, VOCAB, size=n - 1).tolist()) for c, n in records]
        paths.append(make_shard(root / name / "tokens.bin", planted, EOS))
        codes += [CATEGORIES.index(c) for c, n in records for _ in range(n)]
    return TokenStream(paths), np.array(codes, dtype=np.uint8)


def scored_positions(eval_set: EvalSet) -> np.ndarray:
    return np.concatenate([np.arange(s + 1, s + n) for s, n in eval_set.windows])


def test_every_val_shard_is_covered_within_budget(tmp_path: Path) -> None:
    stream, _ = make_stream(tmp_path)
    spans = dict(zip(SHARDS, stream.shard_spans(), strict=True))
    eval_set = EvalSet(stream, CTX, 200, np.ones(VOCAB))
    assert eval_set.shards_covered == 3 and not eval_set.over_budget
    assert eval_set.num_targets == sum(n - 1 for _, n in eval_set.windows) <= 200
    assert eval_set.num_targets > 200 - CTX  # the budget is used, not wasted
    windows_in = {name: [w for w in eval_set.windows if a <= w[0] < a + n] for name, (a, n) in spans.items()}
    for name, (a, n) in spans.items():
        assert windows_in[name], name
        assert all(s + length <= a + n and length <= CTX + 1 for s, length in windows_in[name])  # inside the shard
    assert windows_in["short"] == [(spans["short"][0], 5)]  # its whole content
    assert len(windows_in["long"]) > len(windows_in["mid"]) > 1  # the rest follows shard length
    # Evenly spaced: the long shard's windows reach its end, not just its start.
    long_start, long_n = spans["long"]
    assert windows_in["long"][-1][0] > long_start + long_n * 0.75
    positions = scored_positions(eval_set)
    assert len(np.unique(positions)) == len(positions)  # no target is scored twice
    assert EvalSet(stream, CTX, 200, np.ones(VOCAB)).windows == eval_set.windows  # the same every time


def test_windows_tile_shards_when_the_budget_allows_and_report_forced_overruns(tmp_path: Path) -> None:
    stream, _ = make_stream(tmp_path)
    everything = EvalSet(stream, CTX, 10**6, np.ones(VOCAB))
    firsts = {a for a, _ in stream.shard_spans()}
    assert set(scored_positions(everything)) == set(range(stream.num_tokens)) - firsts
    tight = EvalSet(stream, CTX, 10, np.ones(VOCAB))
    assert len(tight.windows) == 3 and tight.num_targets == 4 + 2 * CTX
    assert tight.over_budget and "over the 10-token budget" in tight.describe()
    assert plan_windows([(0, 0), (0, 1), (0, 3)], CTX, 100) == [(0, 3)]  # nothing to score in the first two


def test_score_and_report_by_hand() -> None:
    score = Score(nats=3.0, tokens=3, bytes=5)  # three targets, 5 bytes of text
    assert score.loss == 1.0 and score.ppl == pytest.approx(math.e)
    assert score.bpb == pytest.approx(3.0 / (math.log(2) * 5))
    report = EvalReport(score, {"NAT": Score(1.0, 1, 2), "MIX": Score(0.0, 0, 0), "CODE": Score(2.0, 2, 3)})
    meta = report.as_metadata("val")
    assert meta["val_bpb"] == pytest.approx(3.0 / (math.log(2) * 5)) and meta["val_tokens"] == 3
    assert meta["val_loss_CODE"] == 1.0 and meta["val_bpb_NAT"] == pytest.approx(1 / math.log(2) / 2)
    assert not any(k.endswith("_MIX") for k in meta)
    assert set(meta) == {f"val_{m}{s}" for m in ("loss", "ppl", "bpb", "tokens") for s in ("", "_NAT", "_CODE")}


def test_unigram_report_equals_a_hand_computation(tmp_path: Path) -> None:
    stream, codes = make_stream(tmp_path / "val")
    train, _ = make_stream(tmp_path / "train", {"t": [("CODE", 300), ("MIX", 100)]}, seed=1)
    token_bytes = np.arange(VOCAB) % 4  # 0..3 bytes per id, EOS (2) counted as 2 to catch mix-ups
    eval_set = EvalSet(stream, CTX, 300, token_bytes)
    counts = unigram_counts(train, VOCAB)
    report = score_unigram(counts, eval_set)

    all_train = train.read(0, train.num_tokens)
    freq = np.array([(all_train == i).sum() for i in range(VOCAB)])
    everything = stream.read(0, stream.num_tokens)
    nats, tokens, nbytes = np.zeros(3), np.zeros(3, int), np.zeros(3, int)
    for s, n in eval_set.windows:
        for pos in range(s + 1, s + n):
            token, code = everything[pos], codes[pos]
            nats[code] -= math.log((freq[token] + 1) / (len(all_train) + VOCAB))
            tokens[code] += 1
            nbytes[code] += token_bytes[token]
    for i, c in enumerate(CATEGORIES):
        got = report.by_category[c]
        assert (got.tokens, got.bytes) == (tokens[i], nbytes[i]) and got.nats == pytest.approx(nats[i]), c
    assert report.overall.bpb == pytest.approx(nats.sum() / (math.log(2) * nbytes.sum()))
    assert eval_set.num_bytes == nbytes.sum() and eval_set.num_targets == tokens.sum()
    assert report.by_category["MIX"].tokens == 0 and "val_loss_MIX" not in report.as_metadata("val")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        unigram_counts(train, 10)


def test_score_model_equals_a_direct_per_window_computation(tmp_path: Path) -> None:
    stream, codes = make_stream(tmp_path)
    eval_set = EvalSet(stream, CTX, 400, np.ones(VOCAB))
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
        vocab_size=VOCAB, max_position_embeddings=64, bos_token_id=1, eos_token_id=EOS, pad_token_id=0,
    )  # fmt: skip
    model = LlamaForCausalLM(config).train()
    rows = len(eval_set.windows)  # one batch: the short shard's window is padded beside full ones
    assert not next(eval_set.batches(rows)).mask.all()
    report = score_model(model, eval_set, rows=rows, device="cpu", autocast=contextlib.nullcontext)
    assert model.training  # train mode restored

    model.eval()
    nats = np.zeros(3)
    with torch.no_grad():
        for s, n in eval_set.windows:  # one unpadded window at a time
            window = torch.from_numpy(stream.read(s, n))
            nll = F.cross_entropy(model(input_ids=window[None, :-1]).logits[0].float(), window[1:], reduction="none")
            np.add.at(nats, codes[s + 1 : s + n], nll.double().numpy())
    for i, c in enumerate(CATEGORIES):
        assert report.by_category[c].nats == pytest.approx(nats[i], rel=1e-5, abs=1e-4), c
    assert report.overall.tokens == eval_set.num_targets and report.overall.nats == pytest.approx(nats.sum(), rel=1e-5)
    assert report.overall.loss == pytest.approx(math.log(VOCAB), rel=0.1)  # untrained: about uniform
    again = score_model(model, eval_set, rows=2, device="cpu", autocast=contextlib.nullcontext)
    assert not model.training  # eval mode is restored too
    assert again.overall.nats == pytest.approx(report.overall.nats, rel=1e-5)  # batching does not matter
