"""Checks on checkpoint: the training run produced numbers and learned more than unigram statistics."""

import math

import dagster as dg

from gocoder_assets.checkpoint.assets import checkpoint
from gocoder_assets.checks import asset_check, latest_metadata, result


@asset_check(
    asset=checkpoint,
    blocking=True,
    description="Initial and final train loss and every val metric are finite; gguf_model refuses a checkpoint "
    "that fails this.",
)
def losses_finite(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    meta = latest_metadata(context, checkpoint.key)
    val_keys = sorted(k for k in meta if k.startswith(("val_loss", "val_bpb")) and not k.startswith("val_unigram"))
    keys = ["initial_loss", "final_train_loss", *val_keys]
    rows = [[k, meta.get(k)] for k in keys]
    measured = "val_loss" in meta or meta.get("val_shards") == 0  # a one-repo corpus has no val split
    ok = measured and all(isinstance(v, float) and math.isfinite(v) for _, v in rows)
    return result(ok, ["metric", "value"], rows)


@asset_check(
    asset=checkpoint, description="Val loss below a unigram model's loss on exactly the same val target tokens."
)
def beats_unigram(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    meta = latest_metadata(context, checkpoint.key)
    val, unigram = meta.get("val_loss"), meta.get("val_unigram_loss")
    ok = val is not None and unigram is not None and val < unigram
    return result(
        ok, ["model", "val loss (nats/token)"], [["trained", val], ["unigram", unigram]], blocking_failure=False
    )
