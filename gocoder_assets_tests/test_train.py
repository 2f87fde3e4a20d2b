"""The training stage end to end on CPU: a tiny model on a learnable synthetic stream must learn it.

The stream repeats a fixed 23-token pattern with 10% noise and an EOS every 97 tokens, so a model that
uses context predicts far better than token frequencies can (the unigram baseline), within 40 steps.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from gocoder_assets.checkpoint.device import DeviceUnavailableError, pick_device
from gocoder_assets.checkpoint.model import PRESETS, build_model_config, count_params
from gocoder_assets.checkpoint.train import ShardSet, TrainConfig, TrainResult, train, unigram_loss
from gocoder_assets.packed_shards.shard_format import write_shard

VOCAB, BOS, EOS, PAD = 300, 1, 2, 0
STEPS = 40


def learnable_stream(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tokens = np.resize(rng.choice(np.arange(3, VOCAB), size=23, replace=False), n)
    noisy = rng.random(n) < 0.1
    tokens[noisy] = rng.integers(3, VOCAB, size=int(noisy.sum()))
    tokens[::97] = EOS
    return tokens.astype(np.uint16)


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[Path]]:
    d = tmp_path_factory.mktemp("shards")
    stream = learnable_stream(30_000)
    # The 30-token middle shard is shorter than a window: it must still be usable, not crash sampling.
    parts = {
        "train_0.bin": stream[:12_000],
        "train_1.bin": stream[12_000:12_030],
        "train_2.bin": stream[12_030:26_000],
    }
    for name, tokens in {**parts, "val_0.bin": stream[26_000:]}.items():
        write_shard(d / name, tokens)
    return [d / name for name in parts], [d / "val_0.bin"]


@pytest.fixture(scope="module")
def run(shards: tuple[list[Path], list[Path]], tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(
        preset="test", max_steps=STEPS, batch_size=8, learning_rate=3e-3, min_lr=1e-4, warmup_steps=5,
        eval_interval=20, eval_tokens=2_000, log_interval=10, seed=0,
    )  # fmt: skip
    lines: list[str] = []
    result = train(
        cfg, build_model_config("test", VOCAB, BOS, EOS, PAD), *shards, out / "model", out / "tb",
        pick_device("cpu"), log=lines.append,
    )  # fmt: skip
    return result, out, lines


def test_training_learns_the_stream(run: tuple[TrainResult, Path, list[str]], shards) -> None:
    result, _, lines = run
    assert result.steps == STEPS and result.tokens_seen == STEPS * 8 * 64
    assert result.final_train_loss < result.initial_loss
    assert math.isclose(result.initial_loss, math.log(VOCAB), rel_tol=0.1)  # a fresh model is ~uniform
    baseline = unigram_loss(*shards, VOCAB)
    assert result.val_loss is not None and math.isfinite(result.val_loss)
    assert result.val_loss < baseline, (result.val_loss, baseline)
    assert result.val_tokens == 2_000 and result.tokens_per_s > 0
    assert any("val loss" in line for line in lines)
    meta = result.as_metadata()
    assert all(isinstance(v, (int, float, str)) for v in meta.values())
    assert meta["params"] == count_params(build_model_config("test", VOCAB, BOS, EOS, PAD))


def test_checkpoint_is_a_loadable_hf_directory(run: tuple[TrainResult, Path, list[str]]) -> None:
    _, out, _ = run
    model_dir = out / "model"
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "config.json").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp/old dirs left behind
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert next(model.parameters()).dtype == torch.float32
    assert model.config.num_key_value_heads == 2 and model.config.max_position_embeddings == 64
    logits = model(input_ids=torch.tensor([[BOS, 5, 6, 7]])).logits
    assert logits.shape == (1, 4, VOCAB) and torch.isfinite(logits).all()


def test_tensorboard_events_written(run: tuple[TrainResult, Path, list[str]]) -> None:
    _, out, _ = run
    assert list((out / "tb").glob("events.out.tfevents.*"))


def test_short_shards_no_val_and_overwrite(tmp_path: Path) -> None:
    """Context shrinks to what the shards hold, no val means val_loss None, and re-saving swaps cleanly."""
    write_shard(tmp_path / "t.bin", learnable_stream(41))
    out = tmp_path / "out"
    (out / "stale").mkdir(parents=True)
    cfg = TrainConfig(preset="test", max_steps=2, warmup_steps=1, eval_interval=1, log_interval=1)
    config = build_model_config("test", VOCAB, BOS, EOS, PAD)
    result = train(cfg, config, [tmp_path / "t.bin"], [], out, tmp_path / "tb", pick_device("cpu"), log=print)
    assert result.context_length == 40 and result.val_loss is None and "val_loss" not in result.as_metadata()
    assert config.max_position_embeddings == 64  # the caller's config is not mutated
    assert not (out / "stale").exists() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "t.bin", "tb"]


def test_rejects_vocab_mismatch(tmp_path: Path) -> None:
    write_shard(tmp_path / "t.bin", np.array([3, 4, 299, 300, 5], dtype=np.uint16))
    cfg = TrainConfig(preset="test", max_steps=1)
    with pytest.raises(ValueError, match="token id 300"):
        train(cfg, build_model_config("test", VOCAB, BOS, EOS, PAD), [tmp_path / "t.bin"], [],
              tmp_path / "o", tmp_path / "tb", pick_device("cpu"))  # fmt: skip
    with pytest.raises(ValueError, match="does not fit uint16"):
        train(cfg, build_model_config("test", 70_000, BOS, EOS, PAD), [tmp_path / "t.bin"], [],
              tmp_path / "o", tmp_path / "tb", pick_device("cpu"))  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_shard_set_reads_across_shards(tmp_path: Path) -> None:
    stream = np.arange(100, dtype=np.uint16)
    for i, (a, b) in enumerate([(0, 10), (10, 10), (10, 13), (13, 100)]):  # includes an empty shard
        write_shard(tmp_path / f"{i}.bin", stream[a:b])
    s = ShardSet(sorted(tmp_path.glob("*.bin")))
    assert s.num_tokens == 100
    np.testing.assert_array_equal(s.read(5, 20), np.arange(5, 25))
    windows = s.sample(np.random.default_rng(0), 16, 31)
    assert windows.shape == (16, 32) and (np.diff(windows, axis=1) == 1).all()
    evals = list(s.eval_windows(ctx=16, batch=2, max_tokens=50))
    assert [w.shape for w in evals] == [(2, 17), (1, 17), (1, 3)]  # 16 + 16 + 16 + 2 = 50 targets
    np.testing.assert_array_equal(evals[-1][0], [48, 49, 50])


def test_unigram_loss_matches_hand_computation(tmp_path: Path) -> None:
    write_shard(tmp_path / "t.bin", np.array([3, 3, 3, 4], dtype=np.uint16))
    write_shard(tmp_path / "v.bin", np.array([3, 5], dtype=np.uint16))
    expected = -(math.log(4 / 14) + math.log(1 / 14)) / 2  # add-one: (count + 1) / (4 + vocab 10)
    assert math.isclose(unigram_loss([tmp_path / "t.bin"], [tmp_path / "v.bin"], 10), expected)


def test_presets_and_param_count() -> None:
    for preset in PRESETS.values():
        assert preset.hidden_size % 32 == 0 and preset.intermediate_size % 64 == 0
        assert preset.intermediate_size >= 8 * preset.hidden_size / 3
    config = build_model_config("test", VOCAB, BOS, EOS, None)
    assert not config.tie_word_embeddings and config.rope_parameters["rope_theta"] == 10000.0
    assert count_params(config) == sum(p.numel() for p in LlamaForCausalLM(config).parameters())
    with pytest.raises(ValueError, match="unknown model preset"):
        build_model_config("huge", VOCAB, BOS, EOS, PAD)


def test_pick_device() -> None:
    choice = pick_device("cpu")
    assert choice.device == choice.backend == "cpu" and choice.name
    assert pick_device("cpu", "fp32").autocast_dtype is None
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceUnavailableError, match="'cuda' is not available here"):
        pick_device("cuda")
