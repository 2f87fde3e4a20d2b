"""The training process as users launch it: killed mid-run and restarted, and data-parallel under torchrun.

Both run the real worker (``python -m gocoder_assets.checkpoint.worker JOB``) in subprocesses on CPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gocoder_assets.checkpoint.config import TrainConfig
from gocoder_assets.checkpoint.model import build_model_config
from gocoder_assets.checkpoint.worker import TrainJob, launch_command
from gocoder_assets_tests.test_train import BOS, EOS, PAD, TOKEN_BYTES, VOCAB, planted_shard

# One torch thread per process: two ranks on two cores, and identical kernels in every run compared.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("corpus")
    token_bytes = d / "token_bytes.npy"
    np.save(token_bytes, TOKEN_BYTES)
    return {
        "train_shards": [str(planted_shard(d / f"t{i}" / "tokens.bin", 9_000, i)) for i in range(2)],
        "val_shards": [str(planted_shard(d / "v" / "tokens.bin", 2_000, 9))],
        "token_bytes": str(token_bytes),
    }


def write_job(corpus: dict[str, object], out: Path, **overrides) -> Path:
    cfg = TrainConfig(
        **{
            "preset": "test",
            "max_steps": 60,
            "total_batch_tokens": 8 * 64,
            "learning_rate": 3e-3,
            "warmup_steps": 5,
            "eval_interval": 30,
            "eval_tokens": 1_000,
            "log_interval": 5,
            "checkpoint_interval": 10,
            "seed": 3,
            **overrides,
        }
    )
    job = TrainJob(
        train_config=asdict(cfg),
        model_config=build_model_config("test", VOCAB, BOS, EOS, PAD).to_dict(),
        out_dir=str(out / "model"),
        state_dir=str(out / "state"),
        tensorboard_dir=str(out / "tb"),
        result_path=str(out / "result.json"),
        plot_path=str(out / "loss.png"),
        device="cpu",
        precision="fp32",
        **corpus,
    )
    return job.write(out / "job.json")


def run_to_end(job: Path, processes: int = 1) -> dict:
    done = subprocess.run(launch_command(job, processes), env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((job.parent / "result.json").read_text())


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "model" / "model.safetensors")


def test_sigkill_mid_run_then_restart_is_bitwise_identical(corpus, tmp_path: Path) -> None:
    reference = run_to_end(write_job(corpus, tmp_path / "whole"))
    job = write_job(corpus, tmp_path / "killed")
    proc = subprocess.Popen(launch_command(job), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    deadline = time.monotonic() + 240
    for line in proc.stdout:  # kill -9 right after the second save: no chance to clean up
        seen.append(line)
        if "saved training state step_00000020" in line:
            proc.send_signal(signal.SIGKILL)
            break
        assert time.monotonic() < deadline, "".join(seen[-20:])
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-20:])
    assert not (tmp_path / "killed" / "result.json").exists() and not (tmp_path / "killed" / "model").exists()

    resumed = run_to_end(job)
    assert resumed["resumed_from_step"] >= 20
    assert resumed["losses"] == reference["losses"]  # the logged losses, step for step
    assert resumed["evals"] == reference["evals"]
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bitwise


def test_two_gloo_ranks_equal_one_process(corpus, tmp_path: Path) -> None:
    """torchrun with 2 CPU ranks trains what 1 process trains on the same global batch (float tolerance)."""
    settings = {"max_steps": 12, "eval_interval": 12, "checkpoint_interval": 6}
    single = run_to_end(write_job(corpus, tmp_path / "one", **settings))
    double = run_to_end(write_job(corpus, tmp_path / "two", **settings), processes=2)
    assert double["world_size"] == 2 and double["micro_batch"] * double["accumulation"] == 4
    np.testing.assert_allclose(double["losses"], single["losses"], rtol=1e-4)
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-4, worst
    assert double["val"]["val_loss"] == pytest.approx(single["val"]["val_loss"], rel=1e-4)


def test_launch_command() -> None:
    assert launch_command(Path("j.json")) == [sys.executable, "-m", "gocoder_assets.checkpoint.worker", "j.json"]
    multi = launch_command(Path("j.json"), 4, ["--nnodes=2", "--rdzv-endpoint=head:29500"])
    assert multi[:3] == [sys.executable, "-m", "torch.distributed.run"] and "--standalone" not in multi
    assert "--nproc-per-node=4" in multi and multi[-3:] == ["-m", "gocoder_assets.checkpoint.worker", "j.json"]
    assert "--standalone" in launch_command(Path("j.json"), 2)
