"""The training process: ``python -m gocoder_assets.checkpoint.worker JOB.json``, alone or under torchrun.

Training runs in its own process, not inside the Dagster step, because (1) torchrun must start
one process per device, (2) ROCm settings such as HSA_OVERRIDE_GFX_VERSION only take effect in
an environment set before the HIP runtime starts, and (3) a crash or kill of the trainer must not
take the orchestrator with it — the next launch resumes from the last saved state. The
``checkpoint`` asset starts it through Dagster Pipes; rank 0 alone opens Pipes (every rank
inherits its environment) and reports logs and the materialization. Run by hand (no Pipes), it
prints its log and writes the same result file.

The ``sft_checkpoint`` asset launches the same worker: its job names the base model (``init_from``)
and the encoded instruction pairs (``sft_pairs``) instead of shards, and the same loop fine-tunes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from gocoder_assets.storage import atomic_file, write_json

# Read by the HIP runtime once, at start-up: the asset passes them in the worker's environment (GPUResource).
ROCM_SETTINGS = ("PYTORCH_HIP_ALLOC_CONF", "HSA_OVERRIDE_GFX_VERSION")
# What a Hugging Face directory needs besides the weights for AutoTokenizer to load it (copied in by every job).
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json")


@dataclass
class TrainJob:
    """Everything a training process needs, as JSON: written by the asset (or a test), read by each rank."""

    train_config: dict[str, Any]
    model_config: dict[str, Any]
    train_shards: list[str]
    val_shards: list[str]
    token_bytes: str  # .npy of per-token UTF-8 byte lengths (bits-per-byte)
    out_dir: str  # the Hugging Face directory (rank 0 writes it at the end)
    state_dir: str  # resume points
    tensorboard_dir: str
    result_path: str  # JSON of the TrainResult, losses and evals included
    plot_path: str  # loss-curve PNG
    device: str = "auto"
    precision: str = "auto"
    data_identity: dict[str, Any] | None = None
    extra_files: list[str] = field(default_factory=list)  # copied into out_dir with the weights (tokenizer)
    init_from: str | None = None  # a Hugging Face directory to start from (fine-tuning); None: from scratch
    sft_pairs: str | None = None  # .npz of encoded instruction pairs (sft_checkpoint.data); None: the shards

    def write(self, path: Path) -> Path:
        write_json(path, asdict(self))
        return path

    @classmethod
    def read(cls, path: Path) -> TrainJob:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def run_job(job: TrainJob, log: Any = print) -> dict[str, Any] | None:
    """Train as this process's rank; rank 0 returns the flat metadata and writes result and plot files."""
    import numpy as np  # noqa: PLC0415 - torch and friends load only in the training process
    from transformers import LlamaConfig  # noqa: PLC0415

    from gocoder_assets.checkpoint.corpus import ShardData  # noqa: PLC0415
    from gocoder_assets.checkpoint.device import pick_device  # noqa: PLC0415
    from gocoder_assets.checkpoint.distributed import init_from_env, shutdown  # noqa: PLC0415
    from gocoder_assets.checkpoint.report import loss_curve_png, write_png  # noqa: PLC0415
    from gocoder_assets.checkpoint.train import TrainConfig, fit  # noqa: PLC0415

    for name in ROCM_SETTINGS:  # they only take effect from the environment this process started with
        if name in os.environ:
            log(f"{name}={os.environ[name]}")
    device = pick_device(job.device, job.precision)
    dist = init_from_env(device)
    try:
        cfg = TrainConfig(**job.train_config)
        token_bytes = np.load(job.token_bytes)
        if job.sft_pairs:
            from gocoder_assets.sft_checkpoint.data import PairData  # noqa: PLC0415

            data: Any = PairData.load(Path(job.sft_pairs), token_bytes, job.data_identity)
        else:
            train_shards, val_shards = [Path(p) for p in job.train_shards], [Path(p) for p in job.val_shards]
            data = ShardData(train_shards, val_shards, token_bytes, job.data_identity)
        result = fit(
            cfg,
            LlamaConfig.from_dict(job.model_config),
            data,
            Path(job.out_dir),
            Path(job.state_dir),
            Path(job.tensorboard_dir),
            device,
            log=log if dist.is_main else (lambda _: None),
            dist=dist,
            extra_files=[Path(p) for p in job.extra_files],
            init_from=Path(job.init_from) if job.init_from else None,
        )
    finally:
        shutdown(dist)
    if not dist.is_main:
        return None
    with atomic_file(Path(job.result_path)) as tmp:
        tmp.write_text(json.dumps(asdict(result)), encoding="utf-8")
    title = f"{cfg.preset}: {result.steps} steps, {result.tokens_seen:,} tokens"
    png = loss_curve_png(result.losses, result.evals, title, result.val_unigram.get("val_unigram_loss"))
    write_png(png, Path(job.plot_path))
    metadata = result.as_metadata()
    if job.init_from and result.evals and result.evals[0]["step"] == 0 and "val_loss" in result.val:
        # Fine-tuning: the base model's val loss (scored before the first step) beside the tuned model's.
        metadata["base_val_loss"] = result.evals[0]["val_loss"]
    return metadata


def launch_command(job_path: Path, num_processes: int = 1, torchrun_args: Sequence[str] = ()) -> list[str]:
    """The command line that trains ``job_path``: the worker itself, or torchrun starting one per device.

    ``--standalone`` (a local rendezvous) unless ``torchrun_args`` name a rendezvous for several nodes.
    """
    worker = ["-m", "gocoder_assets.checkpoint.worker", str(job_path)]
    if num_processes < 1:
        raise ValueError(f"num_processes must be at least 1, got {num_processes}")
    if num_processes == 1 and not torchrun_args:
        return [sys.executable, *worker]
    rendezvous = (
        [] if any(a.startswith(("--rdzv", "--nnodes", "--master")) for a in torchrun_args) else ["--standalone"]
    )
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *rendezvous,
        f"--nproc-per-node={num_processes}",
        *torchrun_args,
        *worker,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", type=Path, help="job JSON written by the checkpoint asset")
    args = parser.parse_args(argv)
    job = TrainJob.read(args.job)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, open_dagster_pipes  # noqa: PLC0415

    failure = failure_path(job)
    try:
        if rank0 and DAGSTER_PIPES_CONTEXT_ENV_VAR in os.environ:  # launched by the asset, not by hand
            with open_dagster_pipes() as pipes:
                metadata = run_job(job, log=pipes.log.info)
                pipes.report_asset_materialization(metadata=metadata)
        else:
            run_job(job, log=lambda line: print(line, flush=True))
    except Exception as e:
        if rank0:  # the launcher only sees an exit code; this says what went wrong, for the asset's error
            with atomic_file(failure) as tmp:
                tmp.write_text(f"{type(e).__name__}: {e}", encoding="utf-8")
        raise
    return 0


def failure_path(job: TrainJob) -> Path:
    """Where rank 0 leaves the reason a training process failed (next to the result file)."""
    return Path(job.result_path).with_name("failure.txt")


if __name__ == "__main__":
    sys.exit(main())
