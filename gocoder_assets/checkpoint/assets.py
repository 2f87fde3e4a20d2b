"""checkpoint: a LLaMA-architecture model trained on every train shard, in a training process of its own.

The asset is a thin shell: it checks the inputs, writes a job file and launches the worker
(``checkpoint.worker``) through Dagster Pipes — one process, or torchrun with one per device —
which trains, resumes from the last saved state when the settings match, and reports back.
"""

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import dagster as dg

from gocoder_assets import automation
from gocoder_assets.checkpoint.config import TrainConfig
from gocoder_assets.checkpoint.worker import TOKENIZER_FILES, TrainJob, failure_path, launch_command
from gocoder_assets.checks import require_upstream_checks_passed
from gocoder_assets.packed_shards.assets import packed_shards
from gocoder_assets.packed_shards.shard_format import read_header
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.resources import GPUResource, StorageResource
from gocoder_assets.storage import Layout, atomic_file, read_json
from gocoder_assets.tokenizer_model.assets import INFO_FILE, tokenizer_model

_D = TrainConfig()


class CurriculumStage(dg.Config):
    """A token budget (None: until the end; last stage only) and sampling weights over NAT / MIX / CODE
    (None: the corpus's natural mix)."""

    tokens: int | None = None
    weights: dict[str, float] | None = None


class CheckpointConfig(dg.Config):
    """Model preset and optimization; every default is ``TrainConfig``'s (see its docstring for a 125m run)."""

    preset: str = _D.preset
    max_steps: int = _D.max_steps
    total_batch_tokens: int = _D.total_batch_tokens
    micro_batch_size: int = _D.micro_batch_size
    learning_rate: float = _D.learning_rate
    min_lr: float = _D.min_lr
    warmup_steps: int = _D.warmup_steps
    weight_decay: float = _D.weight_decay
    grad_clip: float = _D.grad_clip
    optimizer: str = _D.optimizer
    activation_checkpointing: bool = _D.activation_checkpointing
    eval_interval: int = _D.eval_interval
    eval_tokens: int = _D.eval_tokens
    checkpoint_interval: int = _D.checkpoint_interval
    keep_checkpoints: int = _D.keep_checkpoints
    seed: int = _D.seed
    log_interval: int = _D.log_interval
    stages: list[CurriculumStage] = []

    def train_config(self, compile_model: bool) -> TrainConfig:
        raw = self.model_dump()
        raw["stages"] = [{k: v for k, v in stage.items() if v is not None} for stage in raw["stages"]]
        return TrainConfig(**raw, compile=compile_model)


def shard_splits(layout: Layout, tokenizer_sha: str) -> tuple[list[str], list[str]]:
    """Train and val partition keys, refusing shards that are missing, torn or from another tokenizer."""
    train, val, stale = [], [], []
    for key in read_repo_list(layout.repo_list_file):
        manifest_path, shard = layout.shard_manifest(key), layout.shard_file(key)
        if not manifest_path.exists() or not shard.exists():
            raise FileNotFoundError(f"packed_shards not materialized for partition {key!r}")
        manifest = read_json(manifest_path)
        if manifest["tokenizer_sha256"] != tokenizer_sha:
            stale.append(key)
            continue
        if read_header(shard) != manifest["tokens"]:
            raise ValueError(f"{shard}: token count disagrees with its manifest; re-materialize it")
        (val if manifest["split"] == "val" else train).append(key)
    if stale:
        raise ValueError(
            f"{len(stale)} packed_shards partitions were built with an older tokenizer "
            f"(e.g. {stale[:3]}); re-materialize packed_shards for them first"
        )
    if not train:
        raise ValueError("no train shards: the corpus needs at least one train repository")
    return train, val


def write_job(layout: Layout, cfg: TrainConfig, gpu: GPUResource, run_id: str) -> Path:
    """Everything the training process needs, under ``checkpoint/run/``; returns the job file."""
    import numpy as np  # noqa: PLC0415

    from gocoder_assets.checkpoint.model import build_model_config  # noqa: PLC0415 - transformers is heavy
    from gocoder_assets.tokenizer_model.train import load_processor, token_byte_lengths  # noqa: PLC0415

    info = read_json(layout.tokenizer_dir / INFO_FILE)
    train_keys, val_keys = shard_splits(layout, info["sha256"])
    model_config = build_model_config(cfg.preset, info["vocab_size"], info["bos_id"], info["eos_id"], info["pad_id"])
    run_dir = layout.train_run_dir
    token_bytes = run_dir / "token_bytes.npy"
    with atomic_file(token_bytes) as tmp, open(tmp, "wb") as f:
        np.save(f, token_byte_lengths(load_processor(layout.tokenizer_dir)))
    manifests = {k: read_json(layout.shard_manifest(k))["tokens"] for k in train_keys}
    job = TrainJob(
        train_config=asdict(cfg),
        model_config=model_config.to_dict(),
        train_shards=[str(layout.shard_file(k)) for k in train_keys],
        val_shards=[str(layout.shard_file(k)) for k in val_keys],
        token_bytes=str(token_bytes),
        out_dir=str(layout.checkpoint_dir),
        state_dir=str(layout.train_state_dir),
        tensorboard_dir=str(layout.tensorboard_dir / run_id[:8]),
        result_path=str(run_dir / "result.json"),
        plot_path=str(run_dir / "loss_curve.png"),
        device=gpu.device,
        precision=gpu.precision,
        # The corpus as the resume fingerprint sees it: same tokenizer, same shards with the same sizes.
        data_identity={"tokenizer_sha256": info["sha256"], "train": manifests, "val": sorted(val_keys)},
        extra_files=[str(layout.tokenizer_dir / name) for name in TOKENIZER_FILES],
    )
    return job.write(run_dir / "job.json")


def automated_settings(context: dg.AssetExecutionContext, layout: Layout, compile_model: bool) -> TrainConfig | None:
    """For a run the automation sensor started: the settings of the last training run, not the defaults.

    The sensor launches with no run config, and a 125m model trained for days with its own settings must
    not be retrained as ``tiny`` because the tokenizer changed. None for runs launched by hand, or when
    nothing was trained yet (then the defaults apply).
    """
    last = layout.train_run_dir / "job.json"
    if context.run.tags.get(automation.AUTOMATION_TAG) != "true" or not last.exists():
        return None
    known = {f.name for f in fields(TrainConfig)}
    raw = {k: v for k, v in TrainJob.read(last).train_config.items() if k in known}
    cfg = TrainConfig(**{**raw, "compile": compile_model})
    context.log.info(
        f"automated run: training with the last run's settings (preset {cfg.preset}, {cfg.max_steps} steps)"
    )
    return cfg


def launch_training(
    context: dg.AssetExecutionContext, job_path: Path, gpu: GPUResource, what: str, note: str = ""
) -> tuple[TrainJob, dg.MaterializeResult]:
    """Run the training process of ``job_path`` through Pipes (one process, or torchrun): the job and what it reported.

    Shared by ``checkpoint`` and ``sft_checkpoint``. A failing process becomes a ``dg.Failure`` with the reason
    the worker left beside its result file, not Pipes' bare exit status.
    """
    job = TrainJob.read(job_path)
    command = launch_command(job_path, gpu.num_processes, gpu.torchrun_args)
    context.log.info(f"{note}launching {' '.join(command)}")
    failure = failure_path(job)
    failure.unlink(missing_ok=True)
    pipes = dg.PipesSubprocessClient(env=gpu.launch_env())
    try:
        reported = pipes.run(command=command, context=context).get_materialize_result()
    except Exception as e:  # Pipes' own error type is not public API; the worker's reason is what users need
        if not failure.exists():
            raise
        raise dg.Failure(description=f"{what} process failed: {failure.read_text(encoding='utf-8')}") from e
    return job, reported


@dg.asset(
    deps=[packed_shards, tokenizer_model],
    code_version="2",
    group_name="train",
    kinds={"pytorch"},
    pool="gpu",
    automation_condition=automation.CHECKPOINT,
)
def checkpoint(
    context: dg.AssetExecutionContext, config: CheckpointConfig, storage: StorageResource, gpu: GPUResource
) -> dg.MaterializeResult:
    """Hugging Face directory (safetensors, config, tokenizer); losses, eval per category, loss curve."""
    from gocoder_assets.checkpoint.report import markdown_image  # noqa: PLC0415

    require_upstream_checks_passed(context)
    layout = storage.layout()
    cfg = automated_settings(context, layout, gpu.compile) or config.train_config(gpu.compile)
    job_path = write_job(layout, cfg, gpu, context.run.run_id)
    job, reported = launch_training(context, job_path, gpu, "training")
    # The picture first: the UI lists metadata in this order, and the curve is what a person looks for.
    picture = markdown_image(Path(job.plot_path).read_bytes(), "loss curve")
    metadata: dict[str, Any] = {"loss_curve": dg.MetadataValue.md(picture), **(reported.metadata or {})}
    metadata.update(
        train_shards=len(job.train_shards),
        val_shards=len(job.val_shards),
        path=dg.MetadataValue.path(job.out_dir),
        tensorboard=dg.MetadataValue.path(job.tensorboard_dir),
    )
    return dg.MaterializeResult(metadata=metadata)
