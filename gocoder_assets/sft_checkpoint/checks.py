"""Checks on sft_checkpoint: the fine-tune produced finite numbers, and it answers the val pairs better than its base.

Both judge the latest materialization's metadata, i.e. what that run measured: the val response
loss of the base model (scored before the first step) and of the tuned one, on the same targets.
"""

import math

import dagster as dg

from gocoder_assets.checks import asset_check, latest_metadata, result
from gocoder_assets.sft_checkpoint.assets import sft_checkpoint


@asset_check(
    asset=sft_checkpoint,
    blocking=True,
    description="Initial and final train loss and the base and tuned val response losses are finite.",
)
def sft_losses_finite(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    meta = latest_metadata(context, sft_checkpoint.key)
    keys = ["initial_loss", "final_train_loss"]
    if meta.get("val_pairs"):
        keys += ["base_val_response_loss", "val_response_loss"]
    rows = [[k, meta.get(k)] for k in keys]
    ok = bool(meta) and all(isinstance(v, float) and math.isfinite(v) for _, v in rows)
    return result(ok, ["metric", "value"], rows)


@asset_check(
    asset=sft_checkpoint,
    description="The tuned model's val response loss is below the base model's on the same val targets "
    "(passes with a note when there are no val pairs to measure).",
)
def sft_beats_base(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    meta = latest_metadata(context, sft_checkpoint.key)
    if meta and meta.get("val_pairs") == 0:
        return result(
            True,
            ["note"],
            [["no val pairs (every repository with pairs is a train repository): the improvement is not measured"]],
            blocking_failure=False,
        )
    base, tuned = meta.get("base_val_response_loss"), meta.get("val_response_loss")
    ok = base is not None and tuned is not None and tuned < base
    rows = [["base (checkpoint)", base], ["fine-tuned", tuned]]
    return result(ok, ["model", "val response loss (nats/token)"], rows, blocking_failure=False)
