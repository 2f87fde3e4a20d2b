"""sft_checkpoint: the pretraining loop fine-tunes with the loss on the responses only, resumes, starts from the base
weights and improves on them; the asset runs end to end under Dagster and refuses when there is nothing to tune on.

The planted pairs are learnable from context: a prompt of noise tokens ends in a class token and a header
token, and the response is the class's fixed six-token pattern, so a model that reads the prompt answers
it and the response loss falls far below the base model's.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import LlamaForCausalLM

from gocoder_assets.checkpoint.config import TrainConfig
from gocoder_assets.checkpoint.device import pick_device
from gocoder_assets.checkpoint.model import build_model_config
from gocoder_assets.checkpoint.train import TrainResult, accumulate_gradients, fit, masked_nll_sum
from gocoder_assets.checkpoint.worker import TrainJob, launch_command
from gocoder_assets.dagster_internal import range_tags
from gocoder_assets.partitions import REPOS
from gocoder_assets.sft_checkpoint.assets import sft_checkpoint
from gocoder_assets.sft_checkpoint.checks import sft_beats_base, sft_losses_finite
from gocoder_assets.sft_checkpoint.data import (
    ENCODE_BATCH,
    EncodedPairs,
    PairData,
    PairEvalSet,
    PairSampler,
    encode_pairs,
    fit_to_context,
    pad_rows,
    write_pairs,
)
from gocoder_assets.sft_pairs.assets import PAIR_SCHEMA
from gocoder_assets.sft_pairs.filters import SFTOptions
from gocoder_assets.sft_pairs.pairs import PROMPT_TEMPLATE
from gocoder_assets.storage import Layout, read_json, write_json, write_parquet
from gocoder_assets_tests.conftest import make_widget_repo
from gocoder_assets_tests.test_sft_pairs import make_gears_repo

VOCAB, BOS, EOS, PAD = 300, 1, 2, 0
HEADER = 7
CLASSES = (3, 4, 5, 6)
TOKEN_BYTES = np.r_[np.zeros(3, np.int32), np.full(VOCAB - 3, 3, np.int32)]  # 3 bytes a token, specials 0
DEVICE = pick_device("cpu", "fp32")


def planted_pairs(n: int, seed: int) -> EncodedPairs:
    """``n`` pairs: noise prompt + class + header → the class's pattern + EOS (all within ctx 64).

    Patterns have different lengths, so rows (and a rank's share of a batch) count different numbers of targets.
    """
    patterns = [np.random.default_rng(99 + c).integers(10, VOCAB, size=3 + 2 * c) for c in range(len(CLASSES))]
    rng = np.random.default_rng(seed)
    sequences, starts = [], []
    for _ in range(n):
        c = int(rng.integers(len(CLASSES)))
        prompt = [*rng.integers(10, VOCAB, size=int(rng.integers(8, 30))).tolist(), CLASSES[c], HEADER]
        seq, start, cut = fit_to_context(prompt, patterns[c].tolist(), EOS, 64)
        assert cut is None
        sequences.append(seq)
        starts.append(start)
    return EncodedPairs.build(sequences, starts)


def cfg_for(**overrides) -> TrainConfig:
    values = dict(preset="test", max_steps=12, total_batch_tokens=8 * 64, learning_rate=3e-3, min_lr=1e-4,
                  warmup_steps=3, weight_decay=0.0, eval_interval=6, eval_tokens=10_000, log_interval=4,
                  checkpoint_interval=5, seed=0)  # fmt: skip
    return TrainConfig(**{**values, **overrides})


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread (and one per launched worker): as fast for these tiny models, and a busy machine's other
    processes cannot stall OpenMP's thread barriers (measured: 20× slower steps under load with two threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMP_NUM_THREADS", "1")
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A "pretrained" base: a seeded test-preset model saved as a Hugging Face directory."""
    torch.manual_seed(123)
    path = tmp_path_factory.mktemp("base") / "hf"
    LlamaForCausalLM(build_model_config("test", VOCAB, BOS, EOS, PAD)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def data() -> PairData:
    return PairData(planted_pairs(96, 0), planted_pairs(16, 1), TOKEN_BYTES, pad_id=EOS)


def run_fit(cfg: TrainConfig, data: PairData, out: Path, base: Path, **kwargs) -> TrainResult:
    config = build_model_config("test", VOCAB, BOS, EOS, PAD)
    return fit(cfg, config, data, out / "model", out / "state", out / "tb", DEVICE, init_from=base, **kwargs)


# -- the mask ----------------------------------------------------------------------------------------------------
def test_fit_to_context_keeps_the_response() -> None:
    assert fit_to_context([5, 6, 7], [8, 9], EOS, 8) == ([5, 6, 7, 8, 9, EOS], 3, None)
    assert fit_to_context(list(range(10, 20)), [8, 9], EOS, 4) == ([18, 19, 8, 9, EOS], 2, "prompt")
    assert fit_to_context([5, 6, 7], list(range(20, 30)), EOS, 4) == ([7, 20, 21, 22, 23], 1, "response")


def test_encoding_matches_sft_pairs_and_fits_the_context(tiny_spm_model: Path) -> None:
    """Pairs encoded in batches (across a batch boundary) are each exactly ``encode([prompt, response]) + EOS``,
    cut to the context the way fit_to_context says, every cut counted."""
    import sentencepiece as spm  # noqa: PLC0415

    from gocoder_assets.categorized_records.serialize import MARKERS, mark  # noqa: PLC0415
    from gocoder_assets.tokenizer_model.encode import RecordCodec  # noqa: PLC0415

    codec = RecordCodec(spm.SentencePieceProcessor(model_file=str(tiny_spm_model)), MARKERS)
    inputs = [mark("<PR_TITLE>") + f"Fix the gear {i}\n" + "x" * (i % 40) for i in range(ENCODE_BATCH + 9)]
    why = "Because the ratio was wrong. "
    texts = [(PROMPT_TEMPLATE.format(instruction="Explain why", input=text), why * (1 + i % 7))
             for i, text in enumerate(inputs)]  # fmt: skip
    counts: Counter[str] = Counter()
    encoded = encode_pairs(codec, texts, 48, counts)
    assert len(encoded) == len(texts) and encoded.lengths().max() <= 49
    cuts = Counter()
    for i, (prompt, response) in enumerate(texts):
        p_ids, r_ids = codec.encode([prompt, response])
        seq, start, cut = fit_to_context(p_ids, r_ids, codec.eos_id(), 48)
        assert encoded.sequence(i).tolist() == seq and encoded.response_starts[i] == start
        cuts[cut] += 1
    assert cuts["prompt"] and cuts["response"]  # both cuts happen in this set, and are counted
    assert counts == {"pairs_truncated": cuts["prompt"] + cuts["response"], "truncated_prompt": cuts["prompt"],
                      "truncated_response": cuts["response"]}  # fmt: skip
    halves = EncodedPairs.concat([encode_pairs(codec, texts[:100], 48), encode_pairs(codec, texts[100:], 48)])
    assert halves.sha256() == encoded.sha256()


def test_loss_counts_only_response_and_eos_targets(base_dir: Path) -> None:
    """A hand check on a 2-pair batch: prompt targets never reach the loss, response targets always do."""
    seqs = [np.array([11, 12, 13, 14, 20, 21, EOS]), np.array([15, 16, 22, 23, 24, EOS])]
    windows, mask = pad_rows(seqs, [4, 2], pad_id=EOS)
    # Target j is token j + 1: row 0's counted targets are 20, 21, EOS; row 1's 22, 23, 24, EOS; padding never.
    expected = np.zeros((2, 6), dtype=bool)
    expected[0, 3:6] = True
    expected[1, 1:5] = True
    assert windows.shape == (2, 7) and (mask == expected).all() and windows[1, 6] == EOS
    model = LlamaForCausalLM.from_pretrained(base_dir)
    inputs, targets, m = torch.from_numpy(windows[:, :-1]), torch.from_numpy(windows[:, 1:]), torch.from_numpy(mask)
    with torch.no_grad():
        logits = model(input_ids=inputs).logits
    loss = masked_nll_sum(logits, targets, m) / m.sum()
    log_p = F.log_softmax(logits.double(), dim=-1)
    by_hand = -np.mean([float(log_p[r, j, targets[r, j]]) for r in range(2) for j in range(6) if mask[r, j]])
    assert math.isclose(float(loss), by_hand, rel_tol=1e-6)
    prompt_changed = targets.clone()
    prompt_changed[0, :3] = torch.tensor([40, 41, 42])
    prompt_changed[1, 0] = 43
    prompt_changed[1, 5] = 44  # a padding target
    assert float(masked_nll_sum(logits, prompt_changed, m)) == float(masked_nll_sum(logits, targets, m))
    for r, j in ((0, 3), (1, 4)):  # a response token, an EOS
        response_changed = targets.clone()
        response_changed[r, j] = 45
        assert float(masked_nll_sum(logits, response_changed, m)) != float(masked_nll_sum(logits, targets, m))
    # Through the training step: micro-batches of one row give the loss and gradients of the whole batch.
    whole = accumulate_gradients(model, torch.from_numpy(windows), 2, DEVICE, mask=m, denominator=float(m.sum()))
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    parts = accumulate_gradients(model, torch.from_numpy(windows), 1, DEVICE, mask=m, denominator=float(m.sum()))
    assert math.isclose(float(whole), by_hand, rel_tol=1e-5) and math.isclose(float(parts), float(whole), rel_tol=1e-6)
    worst = max(float((p.grad - g).abs().max()) for p, g in zip(model.parameters(), grads, strict=True))
    assert worst <= 1e-6, worst


# -- the loop ----------------------------------------------------------------------------------------------------
def test_fine_tuning_starts_from_the_base_and_lowers_the_val_response_loss(
    base_dir: Path, data: PairData, tmp_path: Path
) -> None:
    cfg = cfg_for(max_steps=40, eval_interval=20, checkpoint_interval=100)
    result = run_fit(cfg, data, tmp_path, base_dir)
    # Step 0 is the base model on the val responses, computed here independently of the loop's scorer.
    model = LlamaForCausalLM.from_pretrained(base_dir).eval()
    nats, count = 0.0, 0
    with torch.no_grad():
        for i in range(len(data.val)):
            seq, start = data.val.sequence(i), int(data.val.response_starts[i])
            log_p = F.log_softmax(model(input_ids=torch.from_numpy(seq[None, :-1])).logits[0].double(), dim=-1)
            nats -= sum(float(log_p[j, seq[j + 1]]) for j in range(start - 1, len(seq) - 1))
            count += len(seq) - start
    assert [e["step"] for e in result.evals] == [0, 20, 40]
    base = result.evals[0]
    assert base["val_tokens"] == count and math.isclose(base["val_loss"], nats / count, rel_tol=1e-5)
    assert "val_loss_RESPONSE" not in base and "val_loss_CODE" not in base  # one overall score, no breakdown
    assert result.val["val_loss"] < 0.5 * base["val_loss"], (result.val, base)
    assert result.val["val_loss"] < result.val_unigram["val_unigram_loss"]
    # Throughput counts the real tokens of the padded rows, not the rows' capacity.
    sampler = PairSampler(data.train, 64, cfg.seed, EOS)
    assert result.tokens_seen == sum(sampler.next_batch(8, 0).tokens for _ in range(40)) < 40 * 8 * 64
    tuned = LlamaForCausalLM.from_pretrained(tmp_path / "model")
    assert tuned.config.max_position_embeddings == 64


def test_a_stopped_fine_tune_resumes_to_the_same_weights(base_dir: Path, data: PairData, tmp_path: Path) -> None:
    cfg = cfg_for()
    whole = run_fit(cfg, data, tmp_path / "whole", base_dir)

    def stop_after_first_save(line: str) -> None:
        if "saved training state step_00000005" in line:
            raise KeyboardInterrupt("stopped")  # the process dies right after its first resume point

    with pytest.raises(KeyboardInterrupt):
        run_fit(cfg, data, tmp_path / "cut", base_dir, log=stop_after_first_save)
    assert not (tmp_path / "cut" / "model").exists()
    lines: list[str] = []
    resumed = run_fit(cfg, data, tmp_path / "cut", base_dir, log=lines.append)
    assert resumed.resumed_from_step == 5 and any("resumed from step 5" in line for line in lines)
    assert resumed.losses == whole.losses and resumed.evals == whole.evals
    a, b = (
        load_file(tmp_path / "whole" / "model" / "model.safetensors"),
        load_file(tmp_path / "cut" / "model" / "model.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # Other pairs, or another base model, are another run: it starts fresh and says why.
    other = PairData(planted_pairs(96, 5), data.val, TOKEN_BYTES, pad_id=EOS)
    lines.clear()
    fresh = run_fit(cfg_for(max_steps=6), other, tmp_path / "cut", base_dir, log=lines.append)
    assert fresh.resumed_from_step == 0 and any("settings changed (" in line and "data.train" in line for line in lines)


def test_eval_budget_and_bad_pairs(data: PairData) -> None:
    small = PairEvalSet(data.val, 20, TOKEN_BYTES, EOS)
    assert 0 < small.num_targets <= 20 and len(small.chosen) < len(data.val)
    one = PairEvalSet(data.val, 1, TOKEN_BYTES, EOS)  # at least one pair, over the budget
    assert len(one.chosen) == 1 and one.over_budget and one.num_targets == data.val.masked_targets()[one.chosen[0]]
    assert one.num_bytes == 3 * (one.num_targets - 1)  # 3 bytes a token, the EOS none
    with pytest.raises(ValueError, match="token id 400"):
        PairData(EncodedPairs.build([[5, 400, EOS]], [1]), data.val, TOKEN_BYTES, EOS).check_vocab(VOCAB)
    with pytest.raises(ValueError, match="no train pairs"):
        PairData(EncodedPairs.build([], []), data.val, TOKEN_BYTES, EOS).check_vocab(VOCAB)
    with pytest.raises(ValueError, match="more than the model's context"):
        PairData(EncodedPairs.build([list(range(3, 80))], [1]), data.val, TOKEN_BYTES, EOS).context(64)


# -- the worker process, data-parallel ---------------------------------------------------------------------------
def test_the_worker_fine_tunes_and_two_gloo_ranks_equal_one(base_dir: Path, data: PairData, tmp_path: Path) -> None:
    """The job the asset writes, run by the real worker under torchrun: 2 ranks (whose rows count different
    numbers of targets) train what one process trains on the same global batch."""
    cfg = cfg_for(max_steps=6, eval_interval=6, checkpoint_interval=100)
    one = run_fit(cfg, data, tmp_path / "p1", base_dir)
    pairs = write_pairs(tmp_path / "pairs.npz", {"train": data.train, "val": data.val}, pad_id=EOS)
    np.save(tmp_path / "token_bytes.npy", TOKEN_BYTES)
    out = tmp_path / "p2"
    job = TrainJob(
        train_config=asdict(cfg), model_config=read_json(base_dir / "config.json"), train_shards=[], val_shards=[],
        token_bytes=str(tmp_path / "token_bytes.npy"), out_dir=str(out / "model"), state_dir=str(out / "state"),
        tensorboard_dir=str(out / "tb"), result_path=str(out / "result.json"), plot_path=str(out / "loss.png"),
        device="cpu", precision="fp32", init_from=str(base_dir), sft_pairs=str(pairs),
    ).write(out / "job.json")  # fmt: skip
    done = subprocess.run(launch_command(job, 2), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    two = read_json(out / "result.json")
    assert two["world_size"] == 2 and [e["step"] for e in two["evals"]] == [0, 6]
    np.testing.assert_allclose(two["losses"], one.losses, rtol=1e-4)
    assert two["val"]["val_loss"] == pytest.approx(one.val["val_loss"], rel=1e-4)
    a, b = load_file(tmp_path / "p1" / "model" / "model.safetensors"), load_file(out / "model" / "model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4


# -- through Dagster ---------------------------------------------------------------------------------------------
TRAIN = {"preset": "test", "max_steps": 4, "warmup_steps": 1, "eval_interval": 4, "eval_tokens": 1024,
         "log_interval": 2, "checkpoint_interval": 4}  # fmt: skip
RUN_CONFIG = {"ops": {"tokenizer_model": {"config": {"vocab_size": 600, "holdout_fraction": 0.05}}}}
SFT = {"max_steps": 10, "batch_pairs": 4, "learning_rate": 3e-3, "warmup_steps": 2, "eval_interval": 5,
       "checkpoint_interval": 5, "log_interval": 5}  # fmt: skip


@pytest.fixture(scope="module")
def graph(
    one_thread: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dg.DagsterInstance, dict, Layout]]:
    """acme/gears (val: its two pairs) + acme/widget (train, no pairs): tokenizer, shards, a 4-step checkpoint,
    sft_pairs."""
    from gocoder_assets.definitions import ASSETS, CHECKS, resources_from_env  # noqa: PLC0415
    from gocoder_assets.pipeline import materialize_all  # noqa: PLC0415

    tmp = tmp_path_factory.mktemp("sftck")
    clones = make_widget_repo(tmp / "clones")
    make_gears_repo(clones)
    env = {"GOCODER_DATA_DIR": str(tmp / "data"), "GOCODER_CLONES_DIR": str(clones), "GOCODER_DEVICE": "cpu",
           "GOCODER_PRECISION": "fp32", "GOCODER_WORKERS": "inline"}  # fmt: skip
    resources = resources_from_env(env)
    with dg.instance_for_test() as instance:
        materialize_all(instance, resources, RUN_CONFIG, log=lambda _: None, until="tokenizer_model")
        keys = instance.get_dynamic_partitions(REPOS)
        for selection in ("packed_shards", "sft_pairs"):
            done = dg.materialize(
                [*ASSETS, *CHECKS], selection=[selection], instance=instance, resources=resources,
                tags=range_tags(keys[0], keys[-1]),
            )  # fmt: skip
            assert done.success
        done = dg.materialize([*ASSETS, *CHECKS], selection=["checkpoint"], instance=instance, resources=resources,
                              run_config={"ops": {"checkpoint": {"config": TRAIN}}})  # fmt: skip
        assert done.success
        yield instance, resources, Layout(tmp / "data")


def materialize_sft(instance: dg.DagsterInstance, resources: dict) -> dg.ExecuteInProcessResult:
    from gocoder_assets.definitions import ASSETS, CHECKS  # noqa: PLC0415

    # The asset and its checks, unless the project's definitions already hold them.
    known = {k for a in ASSETS for k in a.keys} | {k for c in CHECKS for k in c.check_keys}
    mine = [sft_checkpoint, sft_losses_finite, sft_beats_base]
    extra = [d for d in mine if not set(getattr(d, "check_keys", None) or d.keys) & known]
    return dg.materialize(
        [*ASSETS, *CHECKS, *extra],
        selection=dg.AssetSelection.assets(sft_checkpoint) | dg.AssetSelection.checks_for_assets(sft_checkpoint),
        instance=instance,
        resources=resources,
        run_config={"ops": {"sft_checkpoint": {"config": SFT}}},
        raise_on_error=False,
    )


def failure_of(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    return str(next(e for e in result.all_events if e.is_step_failure).step_failure_data.error)


def test_sft_checkpoint_asset_end_to_end(graph) -> None:
    instance, resources, layout = graph
    # The real pairs: both from acme/gears, the val repository, so there is nothing to train on.
    assert [r["split"] for r in pq.read_table(layout.sft_pairs_file("acme/gears")).to_pylist()] == ["val", "val"]
    message = failure_of(materialize_sft(instance, resources))
    assert "no train pairs (2 val pairs over 2 repositories)" in message and "GOCODER_CLONES_DIR" in message
    assert not layout.sft_checkpoint_dir.exists()
    # Plant train pairs in acme/widget: the gears pairs again, as train rows (as if widget had such changes).
    rows = pq.read_table(layout.sft_pairs_file("acme/gears")).to_pylist()
    planted = [{**r, "record_id": f"{r['record_id']}-{k}", "repo": "acme/widget", "split": "train"}
               for k in range(3) for r in rows]  # fmt: skip
    write_parquet(iter(planted), layout.sft_pairs_file("acme/widget"), PAIR_SCHEMA)
    result = materialize_sft(instance, resources)
    assert result.success
    meta = {k: v.value for k, v in result.asset_materializations_for_node("sft_checkpoint")[0].metadata.items()}
    assert meta["train_pairs"] == 6 and meta["val_pairs"] == 2 and meta["steps"] == 10
    ctx = read_json(layout.checkpoint_dir / "config.json")["max_position_embeddings"]
    # sft_pairs' token counts are the same tokenizer's (prompt + response + EOS); each text is 3 train + 1 val pair.
    assert meta["pairs_truncated"] == sum(4 for r in rows if r["tokens"] > ctx + 1) > 0  # a change is long
    assert meta["context_length"] == ctx
    assert math.isfinite(meta["base_val_response_loss"]) and math.isfinite(meta["val_response_loss"])
    assert meta["val_response_loss"] < meta["base_val_response_loss"]  # val = the train texts: it must learn them
    assert "fine-tuned" in meta["val_response_loss_table"] and "base_val_loss" not in meta
    assert meta["loss_curve"].startswith("![loss curve](data:image/png;base64,") and meta["tokens_per_s"] > 0
    assert "val_loss_CODE" not in meta and Path(meta["tensorboard"]).is_dir()
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["sft_losses_finite"].passed and checks["sft_beats_base"].passed
    out = layout.sft_checkpoint_dir
    assert LlamaForCausalLM.from_pretrained(out).config.vocab_size == 600
    for name in ("tokenizer.model", "tokenizer.json", "sft_format.json", "sft_settings.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "sft_format.json").read_text()) == {
        "instruction": SFTOptions().instruction,
        "prompt_template": PROMPT_TEMPLATE,
    }
    assert read_json(out / "sft_settings.json")["options"]["max_steps"] == 10
    assert read_json(Path(meta["job"]))["init_from"] == str(layout.checkpoint_dir)
    # Again with the same settings: it resumes from the last resume point instead of starting over.
    again = materialize_sft(instance, resources)
    assert again.success
    assert again.asset_materializations_for_node("sft_checkpoint")[0].metadata["resumed_from_step"].value == 5
    # A checkpoint trained with another tokenizer than the pairs were measured with is refused before training.
    info_path = layout.tokenizer_dir / "tokenizer_info.json"
    info = read_json(info_path)
    shutil.copy2(info_path, info_path.with_suffix(".bak"))
    write_json(info_path, {**info, "sha256": "0" * 64})
    try:
        assert "is not tokenizer_model's" in failure_of(materialize_sft(instance, resources))
    finally:
        shutil.move(info_path.with_suffix(".bak"), info_path)
