"""Stale partitions without the daemon: ``refresh.refresh_stale`` after a tokenizer change, and the automation
conditions themselves evaluated tick by tick (``dg.evaluate_automation_conditions``, what the sensor runs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from gocoder_assets.dagster_internal import range_tags
from gocoder_assets.definitions import ASSETS, CHECKS, resources_from_env
from gocoder_assets.packed_shards.assets import packed_shards
from gocoder_assets.partitions import REPOS
from gocoder_assets.pipeline import materialize_all
from gocoder_assets.refresh import chunked_ranges, refresh_stale, stale_partitions

PACKAGES = ["cmp", "errors", "maps"]
KEYS = [f"golang/go/src/{p}" for p in PACKAGES]
SHARDS = dg.AssetKey("packed_shards")
CHECKPOINT = dg.AssetKey("checkpoint")


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dg.DagsterInstance, dict]]:
    """The graph up to packed_shards on three Go packages, tokenizer vocab 600."""
    tmp = tmp_path_factory.mktemp("refresh")
    # From the same function as `dagster dev` (so a resource added there is here too), on our own env only.
    resources = resources_from_env({"GOCODER_DATA_DIR": str(tmp / "data"), "GOCODER_GO_PACKAGES": ",".join(PACKAGES)})
    with dg.instance_for_test() as instance:
        run_config = {"ops": {"tokenizer_model": {"config": {"vocab_size": 600}}}}
        materialize_all(instance, resources, run_config, log=lambda _: None, until="packed_shards")
        assert instance.get_dynamic_partitions(REPOS) == KEYS
        yield instance, resources


def retrain_tokenizer(instance: dg.DagsterInstance, resources: dict, vocab_size: int) -> None:
    config = {"ops": {"tokenizer_model": {"config": {"vocab_size": vocab_size}}}}
    dg.materialize([*ASSETS, *CHECKS], selection=["tokenizer_model"], instance=instance, resources=resources,
                   run_config=config)  # fmt: skip


def shard_runs(instance: dg.DagsterInstance) -> list[tuple[str, str]]:
    """(first, last) packed_shards partition each run materialized, in the order the runs ran."""
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=SHARDS), limit=10_000, ascending=True)
    by_run: dict[str, list[str]] = {}
    for record in records.records:
        by_run.setdefault(record.run_id, []).append(record.partition_key)
    return [(min(keys, key=KEYS.index), max(keys, key=KEYS.index)) for keys in by_run.values()]


def test_refresh_stale_rematerializes_exactly_the_stale_partitions_in_ranges(graph) -> None:
    instance, resources = graph
    assert stale_partitions(instance, packed_shards, KEYS) == set()
    assert refresh_stale(instance, resources, [*ASSETS, *CHECKS], log=lambda _: None) == dict.fromkeys(
        ("raw_prs", "categorized_records", "packed_shards"), 0
    )

    retrain_tokenizer(instance, resources, 700)
    assert stale_partitions(instance, packed_shards, KEYS) == set(KEYS)
    dg.materialize([*ASSETS, *CHECKS], selection=["packed_shards"], partition_key=KEYS[1], instance=instance,
                   resources=resources)  # fmt: skip
    assert stale_partitions(instance, packed_shards, KEYS) == {KEYS[0], KEYS[2]}

    before = len(shard_runs(instance))
    done = refresh_stale(instance, resources, [*ASSETS, *CHECKS], assets=("packed_shards",), log=lambda _: None)
    assert done == {"packed_shards": 2} and stale_partitions(instance, packed_shards, KEYS) == set()
    assert shard_runs(instance)[before:] == [(KEYS[0], KEYS[0]), (KEYS[2], KEYS[2])]

    # All three stale, at most two per run: the backfill policy's cut.
    retrain_tokenizer(instance, resources, 800)
    done = refresh_stale(instance, resources, [*ASSETS, *CHECKS], log=lambda _: None, partitions_per_run=2)
    assert done == {"raw_prs": 0, "categorized_records": 0, "packed_shards": 3}
    assert shard_runs(instance)[before + 2 :] == [(KEYS[0], KEYS[1]), (KEYS[2], KEYS[2])]
    assert stale_partitions(instance, packed_shards, KEYS) == set()


def test_partition_without_records_is_never_requested(graph) -> None:
    instance, _ = graph
    instance.add_dynamic_partitions(REPOS, ["acme/empty"])
    try:
        keys = instance.get_dynamic_partitions(REPOS)
        assert stale_partitions(instance, packed_shards, keys) == set()
    finally:
        instance.delete_dynamic_partition(REPOS, "acme/empty")


def test_conditions_repack_stale_shards_then_train_once(graph) -> None:
    """Tick by tick, as the sensor evaluates them: a tokenizer change requests every shard partition and not
    yet the checkpoint; once the shards are packed the checkpoint is requested once, and never for a
    partition whose records are missing."""
    instance, resources = graph
    defs = dg.Definitions(assets=ASSETS, asset_checks=CHECKS, resources=resources)
    instance.report_runless_asset_event(dg.AssetMaterialization(CHECKPOINT))  # trained earlier
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.total_requested == 0  # the first tick only records where things stand

    retrain_tokenizer(instance, resources, 900)
    tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert tick.get_requested_partitions(SHARDS) == set(KEYS)
    assert tick.get_num_requested(CHECKPOINT) == 0  # waits for the shards

    tags = range_tags(KEYS[0], KEYS[-1])  # what the backfill runs
    dg.materialize([*ASSETS, *CHECKS], selection=["packed_shards"], instance=instance, resources=resources, tags=tags)
    tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
    assert tick.get_num_requested(SHARDS) == 0 and tick.get_num_requested(CHECKPOINT) == 1

    instance.add_dynamic_partitions(REPOS, ["acme/empty"])
    try:
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
        assert tick.total_requested == 0  # trained once; the new repository has no records yet
    finally:
        instance.delete_dynamic_partition(REPOS, "acme/empty")


def test_chunked_ranges() -> None:
    keys = ["a", "b", "c", "d", "e", "f"]
    assert chunked_ranges(keys, {"a", "b", "c", "e"}, 2) == [("a", "b"), ("c", "c"), ("e", "e")]
    assert chunked_ranges(keys, set(), 2) == []
    assert chunked_ranges(keys, set(keys), 50) == [("a", "f")]
    with pytest.raises(ValueError, match="at least 1"):
        chunked_ranges(keys, set(keys), 0)


def test_refresh_rejects_other_assets(tmp_path: Path) -> None:
    with dg.instance_for_test() as instance, pytest.raises(ValueError, match="per-repo assets"):
        refresh_stale(instance, {}, [*ASSETS, *CHECKS], assets=("checkpoint",))
