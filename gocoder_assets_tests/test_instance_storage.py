"""Instance storage under parallel runs: dagster.yaml's SQLite default and its PostgreSQL block
(dagster.postgres.yaml) on Debian's PostgreSQL, each with a materialization plus a 4-run backfill that the
run queue (QueuedRunCoordinator, ``max_concurrent_runs: 4``) executes at the same time.

The backfill is launched as the UI launches it (GraphQL ``launchPartitionBackfill``), on the real
``packed_shards`` with its checks (one partition per run here: GOCODER_PARTITIONS_PER_RUN=1), by a real
``dagster-webserver`` + ``dagster-daemon``. Each run also holds the test asset ``rendezvous``, which waits
until all four runs are inside it: the runs can only succeed if the queue ran them at the same time.
The corpus and tokenizer are built once, into a data folder both instances read; each instance records its
own runs.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from gocoder_assets.definitions import ASSETS, CHECKS, resources_from_env
from gocoder_assets.pipeline import materialize_all
from gocoder_assets_tests.servers import Deployment, dagster_deployment, postgres_server
from gocoder_assets_tests.test_automation import REPO_ROOT, idle, instance_home, materialization_counts, wait_for

PACKAGES = ["cmp", "errors", "maps", "sort"]
MODULE = "gocoder_assets_tests.automation_defs"
SHARDS, RENDEZVOUS = dg.AssetKey("packed_shards"), dg.AssetKey("rendezvous")
LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
  }
}"""
BACKFILL = "query B($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }"


def instance_yaml(postgres: bool) -> str:
    """dagster.yaml, with dagster.postgres.yaml's storage block for Postgres: one source for the rest."""
    config = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    if postgres:
        config.update(yaml.safe_load((REPO_ROOT / "dagster.postgres.yaml").read_text()))
    return yaml.safe_dump(config, sort_keys=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Records, dedup index and tokenizer for four Go packages, built on a throwaway instance."""
    data = tmp_path_factory.mktemp("storage_data")
    resources = resources_from_env({"GOCODER_DATA_DIR": str(data), "GOCODER_GO_PACKAGES": ",".join(PACKAGES)})
    with dg.instance_for_test() as instance:
        config = {"ops": {"tokenizer_model": {"config": {"vocab_size": 600}}}}
        materialize_all(instance, resources, config, log=lambda _: None, until="tokenizer_model")
    return resources


@contextlib.contextmanager
def backend(kind: str) -> Iterator[dict[str, str]]:
    """Environment for the instance: nothing for SQLite, DAGSTER_PG_* for a fresh PostgreSQL cluster."""
    if kind == "sqlite":
        yield {}
        return
    # Not under pytest's tmp_path: that is mode 0700, and under root the cluster runs as `postgres`, which
    # must be able to reach its folder.
    with tempfile.TemporaryDirectory(prefix="gocoder-pg-") as workdir, postgres_server(Path(workdir)) as pg:
        yield {
            "DAGSTER_PG_HOST": pg["hostname"],
            "DAGSTER_PG_PORT": pg["port"],
            "DAGSTER_PG_USERNAME": pg["username"],
            "DAGSTER_PG_PASSWORD": pg["password"],
            "DAGSTER_PG_DB": pg["db_name"],
        }


def launch_backfill(deployment: Deployment, assets: list[str], partitions: list[str]) -> str:
    params = {"partitionNames": partitions, "assetSelection": [{"path": [a]} for a in assets]}
    launched = deployment.graphql(LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def text_mentions(root: Path, needle: bytes) -> list[str]:
    """Files under ``root`` (logs, SQLite event logs, captured run output) containing ``needle``."""
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_four_backfill_runs_in_parallel(kind: str, corpus: dict, tmp_path: Path, monkeypatch) -> None:
    with backend(kind) as backend_env:
        home = instance_home(tmp_path / "dagster_home", instance_yaml(postgres=kind == "postgres"))
        env = {
            **backend_env,
            "GOCODER_DATA_DIR": corpus["storage"].root,
            "GOCODER_PARTITIONS_PER_RUN": "1",
            "GOCODER_TEST_BARRIER_DIR": str(tmp_path / "barrier"),
            "GOCODER_TEST_BARRIER_COUNT": "4",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p),
        }
        for name, value in backend_env.items():
            monkeypatch.setenv(name, value)  # the test's own instance reads the same dagster.yaml
        with dg.DagsterInstance.from_config(str(home)) as instance:
            expected_storage = "PostgresEventLogStorage" if kind == "postgres" else "SqliteEventLogStorage"
            assert type(instance.event_log_storage).__name__ == expected_storage
            # The materialization: repo_list adds the four partitions to this instance.
            dg.materialize([*ASSETS, *CHECKS], selection=["repo_list"], instance=instance, resources=corpus)
            keys = instance.get_dynamic_partitions("repos")
            assert len(keys) == len(PACKAGES)

            with dagster_deployment(home, env, module=MODULE, daemon=True) as deployment:
                backfill = launch_backfill(deployment, ["packed_shards", "rendezvous"], keys)

                def finished() -> bool:
                    status = deployment.graphql(BACKFILL, {"id": backfill})["partitionBackfillOrError"]["status"]
                    return status not in ("REQUESTED", "CANCELING", "FAILING")

                wait_for("the backfill", finished, deployment, timeout=400)
                wait_for("the queue to drain", lambda: idle(instance, deployment), deployment)
                status = deployment.graphql(BACKFILL, {"id": backfill})["partitionBackfillOrError"]["status"]
                assert status == "COMPLETED_SUCCESS", status

            runs = [r for r in instance.get_run_records() if r.dagster_run.tags.get("dagster/backfill") == backfill]
            assert len(runs) == 4 and all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in runs)
            # The queue ran them at the same time: some instant lies inside all four runs.
            assert max(r.start_time for r in runs) < min(r.end_time for r in runs), [
                (r.start_time, r.end_time) for r in runs
            ]
            assert all(r.dagster_run.asset_selection == {SHARDS, RENDEZVOUS} for r in runs)
            for asset in ("packed_shards", "rendezvous"):
                assert materialization_counts(instance, asset) == dict.fromkeys(keys, 1)
        assert text_mentions(home, b"database is locked") == []
