"""sft_checkpoint: the checkpoint fine-tuned on the instruction pairs, loss on the responses, through the same loop.

A thin shell like ``checkpoint``: it checks the inputs and encodes the pairs (job.py), writes a job
file and launches the same training worker through Dagster Pipes, which starts from the checkpoint's
weights, scores them on the val responses before the first step, fine-tunes, resumes from the last
saved state when the settings, base weights and pairs match, and reports back.
"""

from pathlib import Path
from typing import Any

import dagster as dg

from gocoder_assets.checkpoint.assets import checkpoint, launch_training
from gocoder_assets.checks import require_upstream_checks_passed
from gocoder_assets.config import with_config
from gocoder_assets.metadata import markdown_table
from gocoder_assets.resources import GPUResource, StorageResource
from gocoder_assets.sft_checkpoint.config import SFTTrainOptions
from gocoder_assets.sft_checkpoint.job import NoTrainPairsError, write_job
from gocoder_assets.sft_pairs.assets import sft_pairs

_D = SFTTrainOptions()


class SFTCheckpointConfig(dg.Config):
    """Fine-tuning settings; every default is ``SFTTrainOptions``'s (see its docstring for why they differ from
    pretraining's)."""

    max_steps: int = _D.max_steps
    batch_pairs: int = _D.batch_pairs
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

    def options(self) -> SFTTrainOptions:
        return with_config(_D, self.model_dump())


@dg.asset(
    deps=[checkpoint, sft_pairs],
    code_version="1",
    group_name="sft",
    kinds={"pytorch"},
    pool="gpu",
)
def sft_checkpoint(
    context: dg.AssetExecutionContext, config: SFTCheckpointConfig, storage: StorageResource, gpu: GPUResource
) -> dg.MaterializeResult:
    """Hugging Face directory (weights, config, tokenizer, sft_format.json); base vs tuned val response loss."""
    from gocoder_assets.checkpoint.report import markdown_image  # noqa: PLC0415

    require_upstream_checks_passed(context)
    layout = storage.layout()
    try:
        options = config.options()
        job_path, summary = write_job(layout, options, context.run.run_id, gpu.device, gpu.precision, gpu.compile)
    except NoTrainPairsError as e:
        raise dg.Failure(description=str(e)) from e
    note = (
        f"{summary['train_pairs']} train / {summary['val_pairs']} val pairs, {summary['pairs_truncated']} cut to the "
        "model's context; "
    )
    job, reported = launch_training(context, job_path, gpu, "fine-tuning", note)
    reported_meta = {k: getattr(v, "value", v) for k, v in (reported.metadata or {}).items()}
    picture = markdown_image(Path(job.plot_path).read_bytes(), "loss curve")
    # The picture and the base-vs-tuned comparison first: the UI lists metadata in this order.
    metadata: dict[str, Any] = {"loss_curve": dg.MetadataValue.md(picture)}
    base, tuned = reported_meta.pop("base_val_loss", None), reported_meta.get("val_loss")
    if base is not None and tuned is not None:  # the val set is the val pairs' response + EOS targets only
        rows = [["base (checkpoint)", f"{base:.4f}"], ["fine-tuned", f"{tuned:.4f}"]]
        metadata["val_response_loss_table"] = dg.MetadataValue.md(markdown_table(["model", "val response loss"], rows))
        metadata["base_val_response_loss"] = base
    if tuned is not None:
        metadata["val_response_loss"] = tuned
    metadata.update({k: v for k, v in (reported.metadata or {}).items() if k != "base_val_loss"})
    metadata.update(summary)
    metadata.update(
        job=dg.MetadataValue.path(str(job_path)),
        path=dg.MetadataValue.path(job.out_dir),
        tensorboard=dg.MetadataValue.path(job.tensorboard_dir),
    )
    return dg.MaterializeResult(metadata=metadata)
