"""eval_report: its numbers equal hand computations on tiny texts, and the asset reports what a person reads."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gocoder_assets.categorized_records.serialize import SENTINELS, render_code, render_doc
from gocoder_assets.checkpoint.device import pick_device
from gocoder_assets.eval_report.perplexity import UNIGRAM, check_tokenizer, score_table
from gocoder_assets.storage import file_sha256
from gocoder_assets.tokenizer_model.encode import RecordCodec
from gocoder_assets_tests.shards import make_shard
from gocoder_assets_tests.tiny_model import build_tiny_model

VAL_RECORDS = [
    ("CODE", render_code("x", "a.go", "func A() {}\n")),
    ("NAT", render_doc("x", "R", "The x.\n")),
]
TRAIN_RECORDS = [("CODE", render_code("acme/y", "b.go", "package b\n\nvar B = 2\n"))] * 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    return build_tiny_model(tmp_path_factory.mktemp("eval_tiny"))


def content_bytes(record: str) -> int:
    """UTF-8 bytes of a stored record's text, markers (sentinels) excluded: what bits per byte divides by."""
    sentinels = set(SENTINELS.values())
    return len("".join(c for c in record if c not in sentinels).encode())


def test_bits_per_byte_equals_a_hand_computation(tiny, tmp_path: Path) -> None:
    """One window covers the val stream; nats summed by hand over every target, divided by the text's bytes."""
    codec = RecordCodec(tiny.sp)
    eos = tiny.sp.eos_id()
    val_ids = [(c, codec.encode_one(t)) for c, t in VAL_RECORDS]
    stream = [i for _, ids in val_ids for i in [*ids, eos]]
    assert len(stream) <= tiny.context + 1, "the hand computation assumes one window"
    val = make_shard(tmp_path / "val" / "tokens.bin", val_ids, eos)
    train_ids = [(c, codec.encode_one(t)) for c, t in TRAIN_RECORDS]
    train = make_shard(tmp_path / "train" / "tokens.bin", train_ids, eos)

    rows, windows = score_table({"tiny": tiny.model}, tiny.hf_dir, [train], [val], 10_000, pick_device("cpu", "fp32"))
    by = {(r.model, r.category): r for r in rows}
    assert windows["windows"] == 1 and windows["targets"] == len(stream) - 1

    with torch.no_grad():
        logits = tiny.model(input_ids=torch.tensor([stream[:-1]])).logits[0].double()
    nll = -torch.log_softmax(logits, dim=-1)[torch.arange(len(stream) - 1), torch.tensor(stream[1:])].numpy()
    # The first token (a category marker, 0 bytes) is no target; every record's text bytes are.
    first_len = len(val_ids[0][1]) + 1
    code_nats, nat_nats = nll[: first_len - 1].sum(), nll[first_len - 1 :].sum()
    code_bytes, nat_bytes = (content_bytes(t) for _, t in VAL_RECORDS)
    assert by[("tiny", "all")].bpb == pytest.approx((code_nats + nat_nats) / math.log(2) / (code_bytes + nat_bytes))
    assert by[("tiny", "CODE")].bpb == pytest.approx(code_nats / math.log(2) / code_bytes, rel=1e-6)
    assert by[("tiny", "NAT")].bpb == pytest.approx(nat_nats / math.log(2) / nat_bytes, rel=1e-6)
    assert by[("tiny", "all")].ppl == pytest.approx(math.exp(nll.mean()), rel=1e-6)

    # The unigram floor: add-one train frequencies over the same targets.
    train_stream = [i for _, t in TRAIN_RECORDS for i in [*codec.encode_one(t), eos]]
    counts = np.bincount(train_stream, minlength=tiny.sp.get_piece_size())
    log_p = np.log(counts + 1.0) - np.log(counts.sum() + len(counts))
    unigram_nats = -log_p[np.array(stream[1:])].sum()
    assert by[(UNIGRAM, "all")].bpb == pytest.approx(unigram_nats / math.log(2) / (code_bytes + nat_bytes), rel=1e-6)


def test_a_model_with_another_tokenizer_is_refused(tiny, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="another tokenizer"):
        check_tokenizer({"tiny": tiny.hf_dir}, "0" * 64)
    check_tokenizer({"tiny": tiny.hf_dir}, file_sha256(tiny.hf_dir / "tokenizer.model"))


# --- The asset on the session's whole-graph build (a held-out Go package, the checkpoint trained there) ---


def test_eval_report_reproduces_the_checkpoints_own_val_numbers(built) -> None:
    """Same windows, same weights: the report's bits per byte is the training run's last eval (eval_tokens 0)."""
    report = built.metadata("eval_report")
    trained = built.metadata("checkpoint")
    assert report["val_bpb"] == pytest.approx(trained["val_bpb"], rel=2e-3)
    for category in ("CODE", "NAT", "MIX"):
        if f"val_bpb_{category}" in trained:
            assert report[f"val_bpb_{category}"] == pytest.approx(trained[f"val_bpb_{category}"], rel=2e-3)
    assert report["val_bpb_unigram_train_tokens"] == pytest.approx(trained["val_unigram_bpb"], rel=1e-6)


def test_eval_report_shows_tables_samples_and_a_sound_harness(built) -> None:
    from gocoder_assets.eval_report.code_eval import REFERENCE  # noqa: PLC0415
    from gocoder_assets.eval_report.run import REPORT_FILE  # noqa: PLC0415
    from gocoder_assets.storage import read_json  # noqa: PLC0415

    meta = built.metadata("eval_report")
    assert meta["bpb_by_category"].startswith("![bits per byte by category](data:image/png;base64,")
    assert "| unigram (train tokens) |" in meta["perplexity"] and "| checkpoint |" in meta["perplexity"]
    assert "parse (gofmt -e)" in meta["code"] and REFERENCE in meta["code"] and "≈ 0" in meta["code"]
    assert meta["samples"].count("#### ") == 5
    report = read_json(built.layout.eval_report_dir / REPORT_FILE)
    reference = report["code"]["models"][REFERENCE]
    assert reference["prompts"] >= 1 and reference["parse_rate"] == reference["compile_rate"] == 1.0
    if reference.get("test_tasks"):
        assert reference["pass_at_1"] == 1.0
    checkpoint_row = report["code"]["models"]["checkpoint"]
    assert checkpoint_row["completions"] == checkpoint_row["prompts"] * report["settings"]["samples"]
    assert report["settings"]["eval_tokens"] == 8192  # the training run's budget, read from its job file
    assert report["held_out_repos"] == ["golang/go/src/unicode"]
    (harness,) = [
        e for r in built.results for e in r.get_asset_check_evaluations() if e.check_name == "eval_harness_sound"
    ]
    assert harness.passed


def test_the_report_compares_with_the_other_model_a_path_or_nothing(tmp_path: Path) -> None:
    from gocoder_assets.eval_report.held_out import model_dirs  # noqa: PLC0415
    from gocoder_assets.eval_report.options import EvalOptions  # noqa: PLC0415
    from gocoder_assets.storage import Layout  # noqa: PLC0415

    layout = Layout(tmp_path / "data")
    with pytest.raises(FileNotFoundError, match="checkpoint is not materialized"):
        model_dirs(layout, EvalOptions())
    for hf in (layout.checkpoint_dir, tmp_path / "last_week"):
        hf.mkdir(parents=True)
        (hf / "config.json").write_text("{}")
    assert model_dirs(layout, EvalOptions()) == {"checkpoint": layout.checkpoint_dir}  # auto: no sft model yet
    layout.sft_checkpoint_dir.mkdir(parents=True)
    (layout.sft_checkpoint_dir / "config.json").write_text("{}")
    assert list(model_dirs(layout, EvalOptions())) == ["checkpoint", "sft_checkpoint"]
    assert list(model_dirs(layout, EvalOptions(model="sft_checkpoint"))) == ["sft_checkpoint", "checkpoint"]
    assert list(model_dirs(layout, EvalOptions(compare="none"))) == ["checkpoint"]
    older = model_dirs(layout, EvalOptions(compare=str(tmp_path / "last_week")))
    assert older == {"checkpoint": layout.checkpoint_dir, "compare (last_week)": tmp_path / "last_week"}
    with pytest.raises(FileNotFoundError, match="not a checkpoint directory"):
        model_dirs(layout, EvalOptions(compare=str(tmp_path / "nowhere")))
    with pytest.raises(ValueError, match="model must be one of"):
        EvalOptions(model="gguf")
