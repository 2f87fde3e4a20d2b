"""The real assets, checks, conditions and automation sensor, minus training and what depends on it.

For the daemon tests (``dagster-webserver`` / ``dagster-daemon -m gocoder_assets_tests.automation_defs``):
checkpoint's condition would start a training run with its default config (400 steps of the tiny preset,
minutes on CPU) after the shards; the test asserts which shard partitions re-run, so the assets after the
shards are left out here, and checkpoint's condition is tested without the daemon (test_refresh.py).
Runs execute in one process (``in_process_executor``): a run of one asset and its checks gains nothing from
a subprocess per step, and on a 2-core test machine each costs seconds.
"""

import os
import time
from pathlib import Path

import dagster as dg

from gocoder_assets.automation import automation_sensor
from gocoder_assets.definitions import ASSETS, CHECKS, resources_from_env
from gocoder_assets.partitions import per_repo_asset

LEFT_OUT = {dg.AssetKey(k) for k in ("checkpoint", "gguf_model", "model_card")}


def _keys(definition: dg.AssetsDefinition | dg.AssetChecksDefinition) -> set[dg.AssetKey]:
    if isinstance(definition, dg.AssetChecksDefinition):
        return {key.asset_key for key in definition.check_keys}
    return set(definition.keys)


ASSETS_UNDER_TEST = [a for a in ASSETS if not _keys(a) & LEFT_OUT]
CHECKS_UNDER_TEST = [c for c in CHECKS if not _keys(c) & LEFT_OUT]


@per_repo_asset(group_name="test")
def rendezvous(context: dg.AssetExecutionContext) -> None:
    """Test-only: waits until GOCODER_TEST_BARRIER_COUNT runs are inside it at once (each leaves a file in
    GOCODER_TEST_BARRIER_DIR), so a backfill that includes it proves the run queue ran that many runs
    concurrently; if the queue ran fewer at a time, the runs fail here instead of passing by luck."""
    barrier = Path(os.environ["GOCODER_TEST_BARRIER_DIR"])
    want = int(os.environ["GOCODER_TEST_BARRIER_COUNT"])
    barrier.mkdir(parents=True, exist_ok=True)
    (barrier / context.run.run_id).write_text(",".join(context.partition_keys))
    deadline = time.monotonic() + 300
    while (here := len(list(barrier.iterdir()))) < want:
        if time.monotonic() > deadline:
            raise dg.Failure(f"only {here} of {want} runs were running at the same time")
        time.sleep(0.2)


defs = dg.Definitions(
    assets=[*ASSETS_UNDER_TEST, rendezvous],
    asset_checks=CHECKS_UNDER_TEST,
    resources=resources_from_env(),
    sensors=[automation_sensor()],
    executor=dg.in_process_executor,
)
