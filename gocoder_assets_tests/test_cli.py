"""The documented command-line path: `dagster asset materialize` against a persistent
DAGSTER_HOME, partition ranges, and staleness after a tokenizer change."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from gocoder_assets.definitions import resources_from_env
from gocoder_assets.pipeline import contiguous_ranges, refresh_stale, stale_partitions

PACKAGES = ["cmp", "errors", "maps"]
KEYS = [f"golang/go/src/{p}" for p in PACKAGES]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


def environment(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DAGSTER_HOME": str(home / "dagster_home"),
        "GOCODER_DATA_DIR": str(home / "data"),
        "GOCODER_GO_PACKAGES": ",".join(PACKAGES),
    }


def materialize(home: Path, *args: str) -> None:
    env = environment(home)
    (home / "dagster_home").mkdir(exist_ok=True)
    cmd = [DAGSTER, "asset", "materialize", "-m", "gocoder_assets.definitions", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def stale(home: Path, asset: str = "packed_shards") -> set[str]:
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        return stale_partitions(instance, asset)


def test_cli_materializes_ranges_and_tokenizer_change_makes_shards_stale(home: Path) -> None:
    tok = '{"ops": {"tokenizer_model": {"config": {"vocab_size": %d}}}}'
    materialize(home, "--select", "repo_list")
    materialize(home, "--select", "raw_prs,categorized_records", "--partition-range", f"{KEYS[0]}...{KEYS[-1]}")
    materialize(home, "--select", "tokenizer_model", "--config-json", tok % 600)
    materialize(home, "--select", "packed_shards", "--partition-range", f"{KEYS[0]}...{KEYS[-1]}")
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("packed_shards")) == set(KEYS)
    assert stale(home) == set()

    materialize(home, "--select", "tokenizer_model", "--config-json", tok % 700)
    assert stale(home) == set(KEYS)
    materialize(home, "--select", "packed_shards", "--partition", KEYS[1])
    assert stale(home) == {KEYS[0], KEYS[2]}

    # The refresh command re-materializes exactly the stale ones, as two ranges.
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        done = refresh_stale(instance, resources_from_env(environment(home)), assets=("packed_shards",))
        runs = instance.get_runs()
    assert done == {"packed_shards": 2} and stale(home) == set()
    assert sum(r.tags.get("dagster/asset_partition_range_start") == KEYS[2] for r in runs) == 1


def test_contiguous_ranges() -> None:
    keys = ["a", "b", "c", "d", "e"]
    assert contiguous_ranges(keys, {"a", "b", "d"}) == [("a", "b"), ("d", "d")]
    assert contiguous_ranges(keys, set()) == []
    assert contiguous_ranges(keys, set(keys)) == [("a", "e")]
