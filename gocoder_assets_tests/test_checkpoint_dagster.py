"""The checkpoint asset under Dagster: resume on re-materialization, and no GGUF from a diverged or failing run.

Each test copies the session's built data folder (shards, tokenizer) and uses a fresh instance, so
the shared ``built`` fixture is left as it was.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from gocoder_assets.automation import AUTOMATION_TAG
from gocoder_assets.checkpoint.checks import losses_finite
from gocoder_assets.checkpoint.worker import TrainJob
from gocoder_assets.definitions import ASSETS, CHECKS
from gocoder_assets.gguf_model.assets import GGUF_NAME
from gocoder_assets.resources import GPUResource, LocalSourceResource, StorageResource
from gocoder_assets.storage import Layout
from gocoder_assets.workers.resource import WorkersResource
from gocoder_assets_tests.conftest import RUN_CONFIG, Built

TRAIN = RUN_CONFIG["ops"]["checkpoint"]["config"]


def copy_of_built(built: Built, tmp_path: Path) -> tuple[dict, Layout]:
    root = tmp_path / "data"
    shutil.copytree(built.layout.root, root, ignore=shutil.ignore_patterns("checkpoint", "gguf_model"))
    resources = {
        "storage": StorageResource(root=str(root)),
        "source": LocalSourceResource(include_go=False, clones_dir=str(tmp_path)),
        "gpu": GPUResource(device="cpu", precision="fp32"),
        "workers": WorkersResource(mode="inline"),
    }
    return resources, Layout(root)


def materialize(instance, resources, selection, train_config: dict) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*ASSETS, *CHECKS],
        selection=selection,
        instance=instance,
        resources=resources,
        run_config={"ops": {"checkpoint": {"config": train_config}}},
        raise_on_error=False,
    )


def test_rematerializing_resumes_and_shows_the_curve(built: Built, tmp_path: Path) -> None:
    resources, layout = copy_of_built(built, tmp_path)
    # ROCm settings reach the training process's environment (harmless on CPU).
    resources["gpu"] = GPUResource(
        device="cpu", precision="fp32", hip_alloc_conf="expandable_segments:True", hsa_override_gfx_version="10.3.0"
    )
    config = {**TRAIN, "max_steps": 12, "checkpoint_interval": 5, "eval_interval": 6}
    with dg.instance_for_test() as instance:
        first = materialize(instance, resources, ["checkpoint"], config)
        assert first.success
        again = materialize(instance, resources, ["checkpoint"], config)
        assert again.success
        meta = again.asset_materializations_for_node("checkpoint")[0].metadata
        logs = [entry.user_message for entry in instance.all_logs(first.run_id)]
    assert "PYTORCH_HIP_ALLOC_CONF=expandable_segments:True" in logs and "HSA_OVERRIDE_GFX_VERSION=10.3.0" in logs
    assert meta["resumed_from_step"].value == 10 and meta["steps"].value == 12
    assert meta["loss_curve"].value.startswith("![loss curve](data:image/png;base64,")
    for key in ("val_loss_CODE", "val_bpb", "val_unigram_loss", "micro_batch", "accumulation", "mfu"):
        assert key in meta, key
    assert (layout.checkpoint_dir / "tokenizer.model").is_file()  # AutoTokenizer loads the HF folder


def test_an_automated_retrain_keeps_the_last_runs_settings(built: Built, tmp_path: Path) -> None:
    """The automation sensor launches with no run config: it must train with the settings of the last
    training run (here 8 steps), not TrainConfig's defaults (400)."""
    resources, layout = copy_of_built(built, tmp_path)
    config = {**TRAIN, "max_steps": 8, "checkpoint_interval": 4, "eval_interval": 4}
    with dg.instance_for_test() as instance:
        assert materialize(instance, resources, ["checkpoint"], config).success
        automated = dg.materialize(
            [*ASSETS, *CHECKS], selection=["checkpoint"], instance=instance, resources=resources,
            tags={AUTOMATION_TAG: "true"}, raise_on_error=False,
        )  # fmt: skip
        assert automated.success
        meta = automated.asset_materializations_for_node("checkpoint")[0].metadata
        logs = [entry.user_message for entry in instance.all_logs(automated.run_id)]
    assert meta["steps"].value == 8 and meta["resumed_from_step"].value > 0  # same settings: it resumed
    assert any("training with the last run's settings" in line for line in logs)
    assert TrainJob.read(layout.train_run_dir / "job.json").train_config["max_steps"] == 8


def test_divergence_fails_the_run_and_writes_no_gguf(built: Built, tmp_path: Path) -> None:
    """A learning rate of 1e30 blows the weights up: the worker stops at the non-finite step, nothing exports."""
    resources, layout = copy_of_built(built, tmp_path)
    with dg.instance_for_test() as instance:
        result = materialize(
            instance,
            resources,
            ["checkpoint", "gguf_model"],
            {**TRAIN, "learning_rate": 1e30, "min_lr": 0.0, "warmup_steps": 0},
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "diverged at step" in str(failure.step_failure_data.error)
    assert not (layout.gguf_dir / GGUF_NAME).exists() and not layout.checkpoint_dir.exists()


def test_gguf_refuses_a_checkpoint_whose_blocking_check_failed(built: Built, tmp_path: Path) -> None:
    """losses_finite is blocking: a NaN val loss on the latest checkpoint keeps gguf_model from exporting it."""
    resources, layout = copy_of_built(built, tmp_path)
    shutil.copytree(built.layout.checkpoint_dir, layout.checkpoint_dir)
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                "checkpoint", metadata={"initial_loss": 5.0, "final_train_loss": 3.0, "val_loss": float("nan")}
            )
        )
        check = dg.materialize(
            [*ASSETS, *CHECKS],
            selection=dg.AssetSelection.checks(losses_finite),
            instance=instance,
            resources=resources,
            raise_on_error=False,
        )
        assert not check.get_asset_check_evaluations()[0].passed
        export = dg.materialize(
            [*ASSETS, *CHECKS], selection=["gguf_model"], instance=instance, resources=resources, raise_on_error=False
        )
    assert not export.success
    failure = next(e for e in export.all_events if e.is_step_failure)
    assert "checkpoint:losses_finite" in str(failure.step_failure_data.error)
    assert not (layout.gguf_dir / GGUF_NAME).exists()


@pytest.mark.parametrize("bad", [{"preset": "huge"}, {"stages": [{"weights": {"PROSE": 1.0}}]}])
def test_bad_config_fails_before_launch(built: Built, tmp_path: Path, bad: dict) -> None:
    resources, layout = copy_of_built(built, tmp_path)
    with dg.instance_for_test() as instance:
        result = materialize(instance, resources, ["checkpoint"], {**TRAIN, **bad})
    assert not result.success and not layout.checkpoint_dir.exists()
