"""The training loop on CPU: it learns, accumulates exactly, evaluates per category, guards against divergence.

The planted stream repeats a fixed 23-token pattern with 10% noise in records of 97 tokens (the
last one EOS), cycling through the three categories, so a model that uses context beats token
frequencies (the unigram baseline) within 40 steps.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from gocoder_assets.checkpoint import train as train_module
from gocoder_assets.checkpoint.config import TrainConfig
from gocoder_assets.checkpoint.device import pick_device
from gocoder_assets.checkpoint.model import PRESETS, build_model_config, count_params
from gocoder_assets.checkpoint.train import TrainingDivergedError, TrainResult, accumulate_gradients, train
from gocoder_assets_tests.shards import make_shard

VOCAB, BOS, EOS, PAD = 300, 1, 2, 0
STEPS = 40
RECORD = 97
TOKEN_BYTES = np.r_[np.zeros(3, np.int32), np.full(VOCAB - 3, 3, np.int32)]  # 3 bytes a token, specials 0
CYCLE = ("CODE", "CODE", "NAT", "MIX")


def learnable_stream(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tokens = np.resize(rng.choice(np.arange(3, VOCAB), size=23, replace=False), n)
    noisy = rng.random(n) < 0.1
    tokens[noisy] = rng.integers(3, VOCAB, size=int(noisy.sum()))
    return tokens


def planted_shard(path: Path, n: int, seed: int = 0) -> Path:
    """``n`` tokens of the stream cut into records of RECORD tokens (EOS appended by make_shard)."""
    stream = learnable_stream(n, seed)
    cut = [stream[i : i + RECORD - 1] for i in range(0, n, RECORD - 1)]
    return make_shard(path, [(CYCLE[i % len(CYCLE)], r.tolist()) for i, r in enumerate(cut)], EOS)


def small_config(**overrides) -> TrainConfig:
    values = dict(
        preset="test",
        max_steps=STEPS,
        total_batch_tokens=8 * 64,
        learning_rate=3e-3,
        min_lr=1e-4,
        warmup_steps=5,
        eval_interval=20,
        eval_tokens=2_000,
        log_interval=10,
        checkpoint_interval=10,
        seed=0,
    )
    return TrainConfig(**{**values, **overrides})


def run_train(cfg: TrainConfig, shards, out: Path, **kwargs) -> TrainResult:
    return train(
        cfg,
        build_model_config("test", VOCAB, BOS, EOS, PAD),
        *shards,
        TOKEN_BYTES,
        out / "model",
        out / "state",
        out / "tb",
        pick_device("cpu", "fp32"),
        **kwargs,
    )


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[Path]]:
    d = tmp_path_factory.mktemp("shards")
    # The 30-token middle shard is shorter than a window: it must still be usable, not crash sampling.
    train_shards = [
        planted_shard(d / "t0" / "tokens.bin", 12_000, 0),
        planted_shard(d / "t1" / "tokens.bin", 30, 0),
        planted_shard(d / "t2" / "tokens.bin", 14_000, 0),
    ]
    val_shards = [planted_shard(d / "v0" / "tokens.bin", 3_000, 0), planted_shard(d / "v1" / "tokens.bin", 40, 0)]
    return train_shards, val_shards


@pytest.fixture(scope="module")
def run(shards, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, Path, list[str]]:
    out = tmp_path_factory.mktemp("run")
    lines: list[str] = []
    return run_train(small_config(), shards, out, log=lines.append), out, lines


def test_training_learns_the_stream_and_reports_per_category(run) -> None:
    result, _, lines = run
    assert result.steps == STEPS and result.tokens_seen == STEPS * 8 * 64 and result.resumed_from_step == 0
    assert len(result.losses) == STEPS and result.final_train_loss < result.initial_loss
    assert math.isclose(result.initial_loss, math.log(VOCAB), rel_tol=0.1)  # a fresh model is ~uniform
    val, unigram = result.val, result.val_unigram
    assert math.isfinite(val["val_loss"]) and val["val_loss"] < unigram["val_unigram_loss"], (val, unigram)
    # Both scored on exactly the same targets, which include the short second val repository.
    assert val["val_tokens"] == unigram["val_unigram_tokens"] <= 2_000 + 64
    for category in ("NAT", "MIX", "CODE"):
        assert val[f"val_loss_{category}"] < unigram[f"val_unigram_loss_{category}"]
    # bits per byte: nats / (ln 2 × bytes), with 3 bytes a token except EOS (0).
    assert val["val_bpb"] < val["val_loss"] / (math.log(2) * 3) * 1.05
    assert [e["step"] for e in result.evals] == [20, 40]
    assert any("val loss" in line for line in lines) and any("saved training state" in line for line in lines)
    meta = result.as_metadata()
    assert all(isinstance(v, (int, float, str)) for v in meta.values())
    assert meta["params"] == count_params(build_model_config("test", VOCAB, BOS, EOS, PAD))
    assert meta["micro_batch"] * meta["accumulation"] == 8 and meta["memory_estimated_total_bytes"] > 0


def test_checkpoint_is_a_loadable_hf_directory(run) -> None:
    _, out, _ = run
    model_dir = out / "model"
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "config.json").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp/old dirs left behind
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert next(model.parameters()).dtype == torch.float32
    assert model.config.num_key_value_heads == 2 and model.config.max_position_embeddings == 64
    logits = model(input_ids=torch.tensor([[BOS, 5, 6, 7]])).logits
    assert logits.shape == (1, 4, VOCAB) and torch.isfinite(logits).all()


def test_training_state_saved_every_interval_keeping_the_last(run) -> None:
    _, out, _ = run
    # Saves at 10, 20, 30 (the end is the HF directory itself); keep_checkpoints=3 keeps all three.
    assert sorted(p.name for p in (out / "state").glob("step_*")) == [f"step_{s:08d}" for s in (10, 20, 30)]


def test_tensorboard_events_per_category(run) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: PLC0415

    _, out, _ = run
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "train/loss",
        "train/lr",
        "train/grad_norm",
        "train/tokens_per_s",
        "train/mfu",
        "val/loss",
        "val/bpb",
        "val/loss_CODE",
        "val/bpb_NAT",
    } <= tags, tags


def test_resume_after_completion_and_config_change(shards, tmp_path: Path) -> None:
    """Same settings resume from the newest save; another learning rate starts fresh and says why."""
    cfg = small_config(max_steps=12, checkpoint_interval=5, eval_interval=100)
    first = run_train(cfg, shards, tmp_path)
    lines: list[str] = []
    again = run_train(cfg, shards, tmp_path, log=lines.append)
    assert again.resumed_from_step == 10 and again.losses == first.losses
    assert any("resumed from step 10" in line for line in lines)
    lines.clear()
    changed = run_train(
        small_config(max_steps=12, checkpoint_interval=5, learning_rate=1e-3), shards, tmp_path, log=lines.append
    )
    assert changed.resumed_from_step == 0
    assert any("settings changed (train.learning_rate): starting fresh" in line for line in lines), lines


def test_gradient_accumulation_equals_one_batch() -> None:
    """4 micro-batches of 2 rows give the gradients of one batch of 8 (≤ 1e-6)."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(build_model_config("test", VOCAB, BOS, EOS, PAD))
    windows = torch.from_numpy(np.stack([learnable_stream(65, seed) for seed in range(8)]))
    device = pick_device("cpu", "fp32")
    whole = accumulate_gradients(model, windows, 8, device)
    one = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    parts = accumulate_gradients(model, windows, 2, device)
    assert math.isclose(whole.item(), parts.item(), rel_tol=1e-6)
    worst = max(float((p.grad - g).abs().max()) for p, g in zip(model.parameters(), one, strict=True))
    assert worst <= 1e-6, worst


def test_activation_checkpointing_and_8bit_adamw_train_the_same_model(shards, tmp_path: Path) -> None:
    """Recomputing activations in backward changes memory, not the math; 8-bit AdamW still learns."""
    cfg = small_config(max_steps=6, eval_interval=100, checkpoint_interval=100)
    plain = run_train(cfg, shards, tmp_path / "plain")
    recomputed = run_train(
        small_config(max_steps=6, eval_interval=100, checkpoint_interval=100, activation_checkpointing=True),
        shards,
        tmp_path / "ckpt",
    )
    np.testing.assert_allclose(recomputed.losses, plain.losses, rtol=1e-5)
    assert recomputed.memory["estimated_activations"] < plain.memory["estimated_activations"]
    pytest.importorskip("bitsandbytes", reason="the [bnb] extra is not installed")
    eight = run_train(
        small_config(max_steps=20, eval_interval=100, checkpoint_interval=100, optimizer="adamw8bit"),
        shards,
        tmp_path / "bnb",
    )
    assert eight.optimizer == "adamw8bit" and eight.final_train_loss < eight.initial_loss - 0.5
    assert eight.memory["estimated_optimizer"] < plain.memory["estimated_optimizer"]


def test_divergence_stops_at_the_step(shards, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A NaN loss at step 7 stops the run there, naming the step and the last good save; no model is written."""
    real, calls = train_module.batch_loss, {"n": 0}

    def poisoned(model, windows):
        calls["n"] += 1
        loss = real(model, windows)
        return loss * float("nan") if calls["n"] == 7 else loss

    monkeypatch.setattr(train_module, "batch_loss", poisoned)
    with pytest.raises(TrainingDivergedError, match=r"diverged at step 7: loss nan.*last saved state is step_00000005"):
        run_train(small_config(max_steps=20, checkpoint_interval=5), shards, tmp_path)
    assert not (tmp_path / "model").exists()


def test_short_shards_no_val_and_overwrite(tmp_path: Path) -> None:
    """Context shrinks to what the shards hold, no val means no val metrics, and re-saving swaps cleanly."""
    shard = planted_shard(tmp_path / "t" / "tokens.bin", 40)
    out = tmp_path / "out"
    (out / "model" / "stale").mkdir(parents=True)
    cfg = TrainConfig(
        preset="test", max_steps=2, warmup_steps=1, eval_interval=1, log_interval=1, total_batch_tokens=80
    )
    config = build_model_config("test", VOCAB, BOS, EOS, PAD)
    result = train(
        cfg, config, [shard], [], TOKEN_BYTES, out / "model", out / "state", out / "tb", pick_device("cpu"), log=print
    )
    assert result.context_length == 40 and result.val == {} and "val_loss" not in result.as_metadata()
    assert config.max_position_embeddings == 64  # the caller's config is not mutated
    assert not (out / "model" / "stale").exists() and (out / "model" / "model.safetensors").is_file()


def test_rejects_vocab_mismatch(tmp_path: Path) -> None:
    shard = make_shard(tmp_path / "t" / "tokens.bin", [("CODE", [3, 4, 299, 300, 5])], EOS)
    cfg = TrainConfig(preset="test", max_steps=1)
    for vocab, message in ((VOCAB, "token id 300"), (70_000, "does not fit uint16")):
        with pytest.raises(ValueError, match=message):
            train(
                cfg,
                build_model_config("test", vocab, BOS, EOS, PAD),
                [shard],
                [],
                TOKEN_BYTES,
                tmp_path / "o",
                tmp_path / "s",
                tmp_path / "tb",
                pick_device("cpu"),
            )
    assert not (tmp_path / "o").exists()


def test_bad_settings_fail_before_training() -> None:
    with pytest.raises(ValueError, match="min_lr"):
        TrainConfig(min_lr=1.0, learning_rate=0.1)
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig(stages=[{"weights": {"PROSE": 1.0}}])


def test_presets_and_param_count() -> None:
    for preset in PRESETS.values():
        assert preset.hidden_size % 32 == 0 and preset.intermediate_size % 256 == 0  # K-quant super-blocks
        if preset.hidden_size >= 256:  # every row of every matrix: llama-quantize can make Q4_K_M
            assert preset.hidden_size % 256 == 0
        assert preset.intermediate_size >= 8 * preset.hidden_size / 3
    config = build_model_config("test", VOCAB, BOS, EOS, None)
    assert not config.tie_word_embeddings and config.rope_parameters["rope_theta"] == 10000.0
    assert count_params(config) == sum(p.numel() for p in LlamaForCausalLM(config).parameters())
    with pytest.raises(ValueError, match="unknown model preset"):
        build_model_config("huge", VOCAB, BOS, EOS, PAD)
