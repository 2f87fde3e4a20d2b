"""Checks on checkpoint: the training run produced numbers and learned more than unigram statistics."""

import math

import dagster as dg

from gocoder_assets.checkpoint.assets import checkpoint
from gocoder_assets.checks import result


def latest_metadata(context: dg.AssetCheckExecutionContext) -> dict:
    event = context.instance.get_latest_materialization_event(dg.AssetKey("checkpoint"))
    if event is None or event.asset_materialization is None:
        return {}
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


@dg.asset_check(asset=checkpoint, description="Initial, final train and val losses are finite.")
def losses_finite(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    meta = latest_metadata(context)
    rows = [[k, meta.get(k)] for k in ("initial_loss", "final_train_loss", "val_loss")]
    ok = all(isinstance(v, float) and math.isfinite(v) for _, v in rows)
    return result(ok, ["loss", "value"], rows, blocking_failure=False)


@dg.asset_check(asset=checkpoint, description="Val loss below a unigram model's loss on the same val tokens.")
def beats_unigram(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    meta = latest_metadata(context)
    val, unigram = meta.get("val_loss"), meta.get("val_unigram_loss")
    ok = val is not None and unigram is not None and val < unigram
    return result(ok, ["model", "val loss (nats/token)"], [["trained", val], ["unigram", unigram]],
                  blocking_failure=False)  # fmt: skip
