"""Checks judge what ran: the settings a materialization used (recorded in its artifact), per partition.

- The issue's case: packed_shards with ``val_fraction`` 0.1 (the documented setting) passes split_leakage
  and training is not blocked, on a corpus where 0.1 and the default 0.05 assign different splits.
- One partition's broken shard fails that partition's check alone (per partition in the instance), blocks
  the checkpoint naming that partition, and re-materializing the partition lifts the block; a partition
  packed with another val_fraction than the rest (a mixed split) does the same.
- The integrity check judges excluded paths by the excluded_dirs the partition was categorized with.
- One default per setting: every ``dg.Config`` field takes its default from a Dagster-free dataclass.
"""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gocoder_assets.categorized_records.checks import integrity_problems, recorded_filter_options
from gocoder_assets.categorized_records.filters import FilterOptions
from gocoder_assets.dagster_internal import range_tags
from gocoder_assets.definitions import ASSETS, CHECKS
from gocoder_assets.packed_shards.pack import VAL_FRACTION, assign_splits
from gocoder_assets.pipeline import materialize_all
from gocoder_assets.resources import GPUResource, LocalSourceResource, StorageResource
from gocoder_assets.sources.goroot import default_goroot
from gocoder_assets.storage import Layout, read_json
from gocoder_assets.workers.resource import WorkersResource
from gocoder_assets_tests.conftest import RUN_CONFIG, make_widget_repo
from gocoder_assets_tests.test_quality import make_repo

GO_SLICE = ["errors", "container", "sort", "unicode"]
# split_score: acme/widget53 0.004 (val at either fraction), acme/widget3 0.087 (val at 0.1 only), the rest
# above 0.2; so 0.1 puts widget3 in val where the default 0.05 does not (asserted below).
BETWEEN = "acme/widget3"
# A few real optimizer steps and one evaluation: enough for every checkpoint check to have its numbers.
TRAIN = {"preset": "test", "max_steps": 4, "warmup_steps": 1, "eval_interval": 4, "eval_tokens": 1024,
         "log_interval": 2, "checkpoint_interval": 4}  # fmt: skip
# The issue's run config, {"ops": {"packed_shards": {"config": {"val_fraction": 0.1}}}}, with the session
# graph's small tokenizer (conftest.RUN_CONFIG) and the training above.
ISSUE_CONFIG = {
    "ops": {
        "tokenizer_model": RUN_CONFIG["ops"]["tokenizer_model"],
        "packed_shards": {"config": {"val_fraction": 0.1}},
        "checkpoint": {"config": TRAIN},
    }
}


def go_file(rel: str) -> str:
    """Real Go text from the Go distribution (distinct per repo, so dedup keeps both)."""
    return (default_goroot() / "src" / rel).read_text(encoding="utf-8")


def corpus(root: Path) -> Path:
    make_widget_repo(root)
    make_repo(root, "widget3", {"builder.go": go_file("strings/builder.go"), "doc/README.md": "# three\n"})
    make_repo(root, "widget53", {"reader.go": go_file("bytes/reader.go")})
    return root


def resources(tmp: Path, clones: Path) -> dict[str, Any]:
    return {
        "storage": StorageResource(root=str(tmp / "data")),
        "source": LocalSourceResource(clones_dir=str(clones), packages=GO_SLICE, include_go=True),
        "gpu": GPUResource(device="cpu"),
        "workers": WorkersResource(mode="inline"),  # per-partition work in the run's process
    }


@dataclasses.dataclass
class Graph:
    instance: dg.DagsterInstance
    layout: Layout
    resources: dict[str, Any]
    trained: bool = False  # whether the first training run (after the whole graph) succeeded

    def run(self, selection: Any, config: dict | None = None, **kwargs: Any) -> dg.ExecuteInProcessResult:
        return dg.materialize([*ASSETS, *CHECKS], selection=selection, instance=self.instance,
                              resources=self.resources, run_config=config or {}, raise_on_error=False,
                              **kwargs)  # fmt: skip

    def pack(self, key: str, val_fraction: float) -> dg.ExecuteInProcessResult:
        config = {"ops": {"packed_shards": {"config": {"val_fraction": val_fraction}}}}
        return self.run(["packed_shards"], config, partition_key=key)

    def train(self) -> dg.ExecuteInProcessResult:
        return self.run(["checkpoint"], {"ops": {"checkpoint": ISSUE_CONFIG["ops"]["checkpoint"]}})

    def check_status(self, check: str, asset: str = "packed_shards") -> dict[str, str]:
        """Each partition's latest evaluation of ``check`` as the instance (and the UI) holds it."""
        key = dg.AssetCheckKey(dg.AssetKey(asset), check)
        infos = self.instance.event_log_storage.get_asset_check_partition_info([key], partition_keys=None)
        return {i.partition_key: i.latest_execution_status.value for i in infos}


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Graph]:
    tmp = tmp_path_factory.mktemp("judge")
    res = resources(tmp, corpus(tmp / "clones"))
    with dg.instance_for_test() as instance:
        materialize_all(instance, res, ISSUE_CONFIG, log=lambda _: None, until="packed_shards")
        g = Graph(instance, Layout(tmp / "data"), res)
        g.trained = g.train().success  # the checkpoint alone (its stage's GGUF export is not at issue here)
        yield g


def check(name: str) -> dg.AssetSelection:
    """Just this packed_shards check, as the UI's "Execute checks" runs it (no materialization)."""
    return dg.AssetSelection.checks(dg.AssetCheckKey(dg.AssetKey("packed_shards"), name))


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    return " ".join(e.event_specific_data.error.to_string() for e in result.get_step_failure_events())


def test_val_fraction_point_one_passes_split_leakage_and_trains(graph: Graph) -> None:
    keys = graph.instance.get_dynamic_partitions("repos")
    assert BETWEEN in keys and len(keys) == 7
    at_default, at_issue = assign_splits(keys, VAL_FRACTION), assign_splits(keys, 0.1)
    assert {k for k in keys if at_default[k] != at_issue[k]} == {BETWEEN}  # the setting changes the split
    manifests = {k: read_json(graph.layout.shard_manifest(k)) for k in keys}
    assert {k: m["split"] for k, m in manifests.items()} == at_issue
    assert {m["val_fraction"] for m in manifests.values()} == {0.1}
    assert set(graph.check_status("split_leakage").values()) == {"SUCCEEDED"}
    assert graph.check_status("split_leakage").keys() == set(keys)
    assert graph.trained  # training was not blocked
    event = graph.instance.get_latest_materialization_event(dg.AssetKey("checkpoint"))
    meta = event.asset_materialization.metadata
    assert meta["val_shards"].value == 2 and meta["train_shards"].value == 5


def test_one_broken_partition_fails_alone_blocks_training_and_its_repair_lifts_the_block(graph: Graph) -> None:
    keys = graph.instance.get_dynamic_partitions("repos")
    broken = "acme/widget"
    shard = graph.layout.shard_file(broken)
    saved = shard.read_bytes()
    shard.write_bytes(saved[:-2])  # a torn shard: the header's token count no longer matches
    try:
        checked = graph.run(check("shards_valid"), tags=range_tags(keys[0], keys[-1]))  # "Execute checks"
        evaluations = {e.partition: e.passed for e in checked.get_asset_check_evaluations()}
        assert evaluations == {k: k != broken for k in keys}  # one evaluation per partition, in one run
        status = graph.check_status("shards_valid")
        assert status == {k: "FAILED" if k == broken else "SUCCEEDED" for k in keys}
        blocked = graph.train()
        assert not blocked.success
        assert f"packed_shards:shards_valid [{broken}]" in failure_text(blocked)
    finally:
        shard.write_bytes(saved)
    assert graph.pack(broken, 0.1).success  # re-materialized: its checks run with it and pass
    assert set(graph.check_status("shards_valid").values()) == {"SUCCEEDED"}
    assert graph.train().success


def test_a_partition_packed_with_another_val_fraction_is_a_mixed_split(graph: Graph) -> None:
    odd = graph.pack(BETWEEN, VAL_FRACTION)  # the default, where the rest used 0.1
    assert not odd.success
    (evaluation,) = [e for e in odd.get_asset_check_evaluations() if e.check_name == "split_leakage"]
    assert not evaluation.passed and "mixed split" in evaluation.metadata["report"].value
    # Re-judging every partition: only the odd one out fails (6 were packed with 0.1, it with 0.05).
    keys = graph.instance.get_dynamic_partitions("repos")
    rejudged = graph.run(check("split_leakage"), tags=range_tags(keys[0], keys[-1]))
    assert {e.partition: e.passed for e in rejudged.get_asset_check_evaluations()} == {k: k != BETWEEN for k in keys}
    assert graph.check_status("split_leakage") == {k: "FAILED" if k == BETWEEN else "SUCCEEDED" for k in keys}
    blocked = graph.train()
    assert not blocked.success and f"packed_shards:split_leakage [{BETWEEN}]" in failure_text(blocked)
    assert graph.pack(BETWEEN, 0.1).success
    assert set(graph.check_status("split_leakage").values()) == {"SUCCEEDED"}


def test_a_manifest_without_val_fraction_fails_with_re_materialize(graph: Graph) -> None:
    from gocoder_assets.packed_shards.checks import split_problems  # noqa: PLC0415
    from gocoder_assets.storage import write_json  # noqa: PLC0415

    path = graph.layout.shard_manifest(BETWEEN)
    manifest = read_json(path)
    try:
        write_json(path, {k: v for k, v in manifest.items() if k != "val_fraction"})
        (row,) = split_problems(graph.layout, BETWEEN)
        assert "re-materialize" in row[1]
    finally:
        write_json(path, manifest)
    assert not split_problems(graph.layout, BETWEEN)


# --- The integrity check judges with the excluded_dirs the partition was categorized with ----------------


def test_integrity_check_uses_the_excluded_dirs_that_ran(tmp_path: Path) -> None:
    clones = tmp_path / "clones"
    files = {"testdata/golden.go": go_file("sort/sort.go"), "gen/api/api.go": go_file("errors/errors.go")}
    make_repo(clones, "dirs", files)
    # testdata is excluded by default and kept here; gen is not excluded by default and excluded here.
    dirs = [d for d in FilterOptions().excluded_dirs if d != "testdata"] + ["gen"]
    assert "testdata" in FilterOptions().excluded_dirs and "gen" not in FilterOptions().excluded_dirs
    res = {**resources(tmp_path, clones), "source": LocalSourceResource(clones_dir=str(clones), include_go=False)}
    config = {"ops": {"categorized_records": {"config": {"excluded_dirs": dirs}}}}
    with dg.instance_for_test() as instance:
        materialize_all(instance, res, config, log=lambda _: None, until="categorized_records")
        path = Layout(tmp_path / "data").categorized_file("acme/dirs")
        paths = {r["path"] for r in pq.read_table(path, columns=["path"]).to_pylist()}
        assert "testdata/golden.go" in paths and "gen/api/api.go" not in paths  # what ran
        assert recorded_filter_options(path).excluded_dirs == tuple(dirs)
        assert not integrity_problems(path)  # the kept testdata file is not flagged
        key = dg.AssetCheckKey(dg.AssetKey("categorized_records"), "categorized_records_integrity")
        (info,) = instance.event_log_storage.get_asset_check_partition_info([key], partition_keys=None)
        assert (info.partition_key, info.latest_execution_status.value) == ("acme/dirs", "SUCCEEDED")
    # A record under gen/ the run excluded (planted): the check flags it, where the defaults would not.
    table = pq.read_table(path)
    rows = table.to_pylist()
    i = next(n for n, r in enumerate(rows) if r["path"] == "testdata/golden.go")
    rows.append({**rows[i], "path": "gen/api/planted.go", "record_id": rows[i]["record_id"] + "x"})
    planted = tmp_path / "planted.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), planted)
    assert integrity_problems(planted) == {"excluded_path": 1}
    # A file that does not record its settings is not judged by defaults.
    bare = tmp_path / "bare.parquet"
    pq.write_table(table.replace_schema_metadata({}), bare)
    with pytest.raises(ValueError, match="re-materialize"):
        integrity_problems(bare)


# --- One default per setting -----------------------------------------------------------------------------

# Each Config class (module.Class) and the Dagster-free dataclasses whose defaults its fields take, by field name.
DOCUMENTS: dict[str, tuple[str, ...]] = {
    "gocoder_assets.categorized_records.assets.CategorizeConfig": (
        "gocoder_assets.categorized_records.filters.FilterOptions",
        "gocoder_assets.categorized_records.changes.ChangeOptions",
    ),
    "gocoder_assets.dedup_index.assets.DedupConfig": ("gocoder_assets.dedup_index.options.DedupOptions",),
    "gocoder_assets.dedup_index.checks.DupRateConfig": ("gocoder_assets.dedup_index.options.DedupOptions",),
    "gocoder_assets.tokenizer_model.assets.TokenizerConfig": (
        "gocoder_assets.tokenizer_model.train.TokenizerOptions",
        "gocoder_assets.tokenizer_model.train.HoldoutOptions",
    ),
    "gocoder_assets.packed_shards.assets.PackConfig": ("gocoder_assets.packed_shards.pack.PackOptions",),
    "gocoder_assets.checkpoint.assets.CheckpointConfig": ("gocoder_assets.checkpoint.config.TrainConfig",),
    "gocoder_assets.checkpoint.assets.CurriculumStage": ("gocoder_assets.checkpoint.data.Stage",),
    "gocoder_assets.gguf_model.assets.GGUFConfig": ("gocoder_assets.gguf_model.options.GGUFOptions",),
    "gocoder_assets.sft_pairs.assets.SFTConfig": ("gocoder_assets.sft_pairs.filters.SFTOptions",),
    "gocoder_assets.sft_checkpoint.assets.SFTCheckpointConfig": (
        "gocoder_assets.sft_checkpoint.config.SFTTrainOptions",
    ),
    "gocoder_assets.eval_report.assets.EvalConfig": (
        "gocoder_assets.eval_report.options.EvalOptions",
        "gocoder_assets.eval_report.go_toolchain.GoSettings",
    ),
}
# Dataclasses still defined beside their Config in a Dagster module (to move to a Dagster-free one).


def resolve(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def project_configs() -> list[type[dg.Config]]:
    """Every ``dg.Config`` subclass defined in gocoder_assets (resources aside: they are not run config), once
    definitions and every module DOCUMENTS names are imported."""
    importlib.import_module("gocoder_assets.definitions")
    for name in DOCUMENTS:
        resolve(name)
    found, todo = set(), list(dg.Config.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.split(".")[0] == "gocoder_assets" and not issubclass(cls, dg.ConfigurableResource):
            found.add(cls)
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def default_problems(cls: type[dg.Config], documents: dict[str, tuple[str, ...]]) -> list[str]:
    """Why ``cls`` breaks the rule: no declared dataclass, a field none of them has, or another default."""
    name = f"{cls.__module__}.{cls.__qualname__}"
    if name not in documents:
        return [f"{name}: no Dagster-free dataclass declared for its defaults (add it to DOCUMENTS)"]
    classes = [resolve(d) for d in documents[name]]
    defaults: dict[str, Any] = {}
    for dc in classes:
        for f in dataclasses.fields(dc):
            if f.default is not dataclasses.MISSING:
                defaults.setdefault(f.name, f.default)
            elif f.default_factory is not dataclasses.MISSING:
                defaults.setdefault(f.name, f.default_factory())
    problems = []
    for field_name, info in cls.model_fields.items():
        mine = info.get_default(call_default_factory=True)
        if field_name not in defaults:
            problems.append(f"{name}.{field_name}: no field of that name in {[d.__name__ for d in classes]}")
        elif _plain(mine) != _plain(defaults[field_name]):
            problems.append(f"{name}.{field_name}: default {mine!r}, the dataclass says {defaults[field_name]!r}")
    return problems


def test_every_config_default_comes_from_a_dagster_free_dataclass() -> None:
    problems = [p for cls in project_configs() for p in default_problems(cls, DOCUMENTS)]
    assert not problems, "\n".join(problems)
    # Dagster-free: importing the dataclass's module (in a fresh interpreter) does not import Dagster.
    modules = sorted({d.rpartition(".")[0] for ds in DOCUMENTS.values() for d in ds})
    probe = f"import sys\nfor m in {modules!r}:\n    __import__(m)\nprint('dagster' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "False", modules


def test_the_default_rule_catches_a_second_default() -> None:
    class Wrong(dg.Config):
        val_fraction: float = 0.1  # PackOptions says 0.05
        stray: int = 3

    name = f"{Wrong.__module__}.{Wrong.__qualname__}"
    problems = default_problems(Wrong, {name: ("gocoder_assets.packed_shards.pack.PackOptions",)})
    assert len(problems) == 2 and "0.1" in problems[0] and "stray" in problems[1]
    assert default_problems(Wrong, {}) and "DOCUMENTS" in default_problems(Wrong, {})[0]


def test_recorded_settings_match_what_the_tokenizer_and_shards_ran_with(graph: Graph) -> None:
    info = read_json(graph.layout.tokenizer_dir / "tokenizer_info.json")
    settings = info["settings"]
    tokenizer = RUN_CONFIG["ops"]["tokenizer_model"]["config"]
    assert settings["vocab_size"] == info["vocab_size"] == tokenizer["vocab_size"]
    assert settings["holdout_fraction"] == tokenizer["holdout_fraction"] and settings["byte_fallback"] is True
    assert sorted(info["marker_ids"]) == sorted(settings["markers"])
    # The round-trip check judges by the recorded vocabulary size: a model that is not the one described fails.
    from gocoder_assets.tokenizer_model.checks import artifact_problems  # noqa: PLC0415
    from gocoder_assets.tokenizer_model.train import load_processor  # noqa: PLC0415

    sp = load_processor(graph.layout.tokenizer_dir)
    assert not artifact_problems(graph.layout, sp, info)
    other = {**info, "settings": {**settings, "vocab_size": settings["vocab_size"] + 1}}
    assert [r[0] for r in artifact_problems(graph.layout, sp, other)] == ["vocab size"]
