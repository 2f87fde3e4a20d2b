"""Stale partitions the Dagster way, with the daemon running: a real ``dagster-webserver`` + ``dagster-daemon`` on
a DAGSTER_HOME holding this repo's dagster.yaml, the real assets, checks and automation sensor
(``automation_defs``: the graph up to the shards).

Materialize the graph, retrain the tokenizer with another vocabulary size: every shard partition is
re-materialized exactly once, by backfill runs of at most GOCODER_PARTITIONS_PER_RUN partitions, and nothing
else runs. Then change one repository's input and re-materialize its records: only its shard re-runs.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest

from gocoder_assets.automation import AUTOMATION_TAG, SENSOR_NAME
from gocoder_assets.dagster_internal import run_partition_range
from gocoder_assets.definitions import ASSETS, CHECKS, resources_from_env
from gocoder_assets.pipeline import materialize_all
from gocoder_assets.resources import LocalSourceResource
from gocoder_assets_tests.conftest import make_widget_repo
from gocoder_assets_tests.gitrepo import commit
from gocoder_assets_tests.servers import Deployment, dagster_deployment

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["cmp", "errors", "maps"]
WIDGET = "acme/widget"
PER_RUN = 2
MODULE = "gocoder_assets_tests.automation_defs"
WATCHED = ["raw_prs", "categorized_records", "dedup_index", "tokenizer_model", "packed_shards", "license_manifest"]
SENSOR_TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status ticks(limit: 50) { id status timestamp error { message } } } }
  }
}"""


def instance_home(home: Path, yaml_text: str | None = None) -> Path:
    """A DAGSTER_HOME holding this repo's dagster.yaml (or the given text), as .ci/setup makes it."""
    home.mkdir(parents=True, exist_ok=True)
    if yaml_text is None:
        shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    else:
        (home / "dagster.yaml").write_text(yaml_text)
    return home


def wait_for(what: str, done: Callable[[], bool], deployment: Deployment, timeout: float = 240) -> None:
    """Poll until ``done()``; on timeout fail with the daemon's log (the condition is what is asserted, the
    timeout only bounds a hang)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            log = (deployment.home / "daemon.log").read_text(errors="replace")[-4000:]
            pytest.fail(f"timed out waiting for {what}; daemon log tail:\n{log}")
        time.sleep(1)


def sensor_ticks(deployment: Deployment, location: str) -> list[dict]:
    selector = {"repositoryLocationName": location, "repositoryName": "__repository__", "sensorName": SENSOR_NAME}
    found = deployment.graphql(SENSOR_TICKS, {"selector": selector})["sensorOrError"]
    assert found["__typename"] == "Sensor", found
    assert found["sensorState"]["status"] == "RUNNING"  # default_status=RUNNING: no click in the UI needed
    return found["sensorState"]["ticks"]


def wait_ticks(deployment: Deployment, location: str, after: float, n: int) -> None:
    """Wait until the sensor finished ``n`` evaluations that started after ``after`` (a timestamp)."""

    def done() -> bool:
        ticks = [t for t in sensor_ticks(deployment, location) if t["timestamp"] > after]
        errors = [t["error"] for t in ticks if t["status"] == "FAILURE"]
        assert not errors, errors
        return sum(t["status"] in ("SUCCESS", "SKIPPED") for t in ticks) >= n

    wait_for(f"{n} sensor ticks", done, deployment)


def materialization_counts(instance: dg.DagsterInstance, asset: str) -> Counter:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset)), limit=10_000)
    return Counter(r.partition_key for r in records.records)


def counts(instance: dg.DagsterInstance) -> dict[str, Counter]:
    return {asset: materialization_counts(instance, asset) for asset in WATCHED}


BACKFILLS = "{ partitionBackfillsOrError { ... on PartitionBackfills { results { id status } } } }"
UNFINISHED = ("REQUESTED", "CANCELING", "FAILING")


def idle(instance: dg.DagsterInstance, deployment: Deployment) -> bool:
    """No run queued or in progress, and no backfill unfinished (as the UI's Runs page lists them)."""
    busy = instance.get_runs(filters=dg.RunsFilter(statuses=[
        dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING,
    ]))  # fmt: skip
    backfills = deployment.graphql(BACKFILLS)["partitionBackfillsOrError"]["results"]
    return not busy and all(b["status"] not in UNFINISHED for b in backfills)


def automated_runs(instance: dg.DagsterInstance, since: float) -> list[dg.DagsterRun]:
    records = instance.get_run_records(filters=dg.RunsFilter(tags={AUTOMATION_TAG: "true"}))
    return [r.dagster_run for r in records if r.create_timestamp.timestamp() > since]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict, dict]]:
    tmp = tmp_path_factory.mktemp("automation")
    clones = make_widget_repo(tmp / "clones")
    home = instance_home(tmp / "dagster_home")
    env = {
        "GOCODER_DATA_DIR": str(tmp / "data"),
        "GOCODER_PARTITIONS_PER_RUN": str(PER_RUN),
        "GOCODER_AUTOMATION_INTERVAL": "5",
        # Ours first, so the subprocesses import this checkout's modules.
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    # resources_from_env on our own env (a resource added there is here too); the source also reads the clones.
    resources = {
        **resources_from_env({"GOCODER_DATA_DIR": env["GOCODER_DATA_DIR"]}),
        "source": LocalSourceResource(clones_dir=str(clones), packages=PACKAGES, include_go=True),
    }
    yield home, env, resources


def retrain_tokenizer(instance: dg.DagsterInstance, resources: dict, vocab_size: int) -> None:
    config = {"ops": {"tokenizer_model": {"config": {"vocab_size": vocab_size}}}}
    dg.materialize([*ASSETS, *CHECKS], selection=["tokenizer_model"], instance=instance, resources=resources,
                   run_config=config)  # fmt: skip


def test_daemon_rematerializes_exactly_the_stale_shards(setup) -> None:
    home, env, resources = setup
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run_config = {"ops": {"tokenizer_model": {"config": {"vocab_size": 600}}}}
        materialize_all(instance, resources, run_config, log=lambda _: None, until="packed_shards")
        keys = instance.get_dynamic_partitions("repos")
        assert WIDGET in keys and len(keys) == len(PACKAGES) + 1
        base = counts(instance)
        assert base["packed_shards"] == dict.fromkeys(keys, 1)

        with dagster_deployment(home, env, module=MODULE, daemon=True) as deployment:
            location = MODULE
            wait_ticks(deployment, location, after=0, n=1)  # the sensor has seen the graph as it is

            # 1. Another vocabulary: every shard partition is stale.
            changed = time.time()
            retrain_tokenizer(instance, resources, 700)
            expected = {k: 2 for k in keys}
            packed = lambda: materialization_counts(instance, "packed_shards")  # noqa: E731
            wait_for("every shard re-packed", lambda: all(packed()[k] >= 2 for k in keys), deployment)
            wait_for("the queue to drain", lambda: idle(instance, deployment), deployment)
            wait_ticks(deployment, location, after=time.time(), n=2)  # and nothing more is requested

            after = counts(instance)
            assert after["packed_shards"] == expected  # each exactly once more
            assert after["tokenizer_model"][None] == base["tokenizer_model"][None] + 1  # ours
            for asset in ("raw_prs", "categorized_records", "dedup_index", "license_manifest"):
                assert after[asset] == base[asset], asset  # nothing else ran
            runs = automated_runs(instance, changed)
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [r.status for r in runs]
            assert all(r.asset_selection == {dg.AssetKey("packed_shards")} for r in runs)
            assert all("dagster/backfill" in r.tags for r in runs)  # one backfill, cut by the backfill policy
            assert len({r.tags["dagster/backfill"] for r in runs}) == 1
            ranges = sorted(run_partition_range(r.tags) for r in runs)
            assert len(runs) == -(-len(keys) // PER_RUN)
            covered = [k for first, last in ranges for k in keys[keys.index(first) : keys.index(last) + 1]]
            assert sorted(covered) == sorted(keys)  # every partition in exactly one run of at most PER_RUN
            assert all(keys.index(last) - keys.index(first) < PER_RUN for first, last in ranges)

            # 2. One repository's input changes: only its shard re-runs.
            clone = Path(resources["source"].clones_dir) / "widget"
            (clone / "wobble.go").write_text("package widget\n\n// Wobble is new.\nfunc Wobble() int { return Size }\n")
            commit(clone, 4, "Add Wobble (#9)\n\nWobbling widgets.")
            changed = time.time()
            dg.materialize([*ASSETS, *CHECKS], selection=["raw_prs", "categorized_records"], partition_key=WIDGET,
                           instance=instance, resources=resources)  # fmt: skip
            wait_for("the widget shard re-packed", lambda: packed()[WIDGET] >= 3, deployment)
            wait_for("the queue to drain", lambda: idle(instance, deployment), deployment)
            wait_ticks(deployment, location, after=time.time(), n=2)

            final = counts(instance)
            assert final["packed_shards"] == {**expected, WIDGET: 3}
            assert final["dedup_index"] == base["dedup_index"] and final["tokenizer_model"] == after["tokenizer_model"]
            for asset in ("raw_prs", "categorized_records"):  # our run only
                assert final[asset] == base[asset] + Counter({WIDGET: 1}), asset
            runs = automated_runs(instance, changed)
            assert [run_partition_range(r.tags) for r in runs] == [(WIDGET, WIDGET)]
            assert runs[0].status == dg.DagsterRunStatus.SUCCESS
