"""The documented command-line paths: `dagster asset materialize` against a persistent DAGSTER_HOME,
partitions and staleness after a tokenizer change; and the main job (`python -m gocoder_assets.pipeline`,
what `.ci/main` runs) with the progress it prints."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from gocoder_assets import pipeline
from gocoder_assets.dagster_internal import stale_partitions
from gocoder_assets.definitions import ASSETS, CHECKS, resources_from_env
from gocoder_assets.partitions import REPOS
from gocoder_assets.refresh import refresh_stale

PACKAGES = ["cmp", "errors", "maps"]
KEYS = [f"golang/go/src/{p}" for p in PACKAGES]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder: DAGSTER_HOME holding the repo's dagster.yaml (as .ci/setup makes it) and a data folder."""
    home = tmp_path_factory.mktemp("cli")
    (home / "dagster_home").mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster_home" / "dagster.yaml")
    return home


def environment(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DAGSTER_HOME": str(home / "dagster_home"),
        "GOCODER_DATA_DIR": str(home / "data"),
        "GOCODER_GO_PACKAGES": ",".join(PACKAGES),
        "GOCODER_CLONES_DIR": "",  # the Go packages alone, whatever the caller's shell has
        "GITHUB_TOKEN": "",
    }


def materialize(home: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = environment(home)
    cmd = [DAGSTER, "asset", "materialize", "-m", "gocoder_assets.definitions", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert (proc.returncode == 0) == ok, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def stale(home: Path, asset: str = "packed_shards") -> set[str]:
    """Stale or missing partitions as the UI's badges show them (Dagster's own resolver)."""
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        return stale_partitions(instance, [*ASSETS, *CHECKS], asset, instance.get_dynamic_partitions(REPOS))


def test_cli_partitions_and_tokenizer_change_makes_shards_stale(home: Path) -> None:
    tok = '{"ops": {"tokenizer_model": {"config": {"vocab_size": %d}}}}'
    # Set-up in ranged runs, as the main job makes them (the CLI refuses ranges for these assets, below).
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        config = {"ops": {"tokenizer_model": {"config": {"vocab_size": 600}}}}
        pipeline.materialize_all(instance, resources_from_env(environment(home)), config, log=lambda _: None,
                                 until="packed_shards")  # fmt: skip
        assert instance.get_materialized_partitions(dg.AssetKey("packed_shards")) == set(KEYS)
    assert stale(home) == set()

    materialize(home, "--select", "tokenizer_model", "--config-json", tok % 700)
    assert stale(home) == set(KEYS)
    materialize(home, "--select", "packed_shards", "--partition", KEYS[1])
    assert stale(home) == {KEYS[0], KEYS[2]}
    # `--partition-range` needs a single-run backfill policy; per-repo assets backfill in runs of
    # partitions_per_run, so ranges come from the UI's backfills, the main job or --refresh-stale.
    refused = materialize(home, "--select", "packed_shards", "--partition-range", f"{KEYS[0]}...{KEYS[2]}", ok=False)
    assert "single-run backfill policy" in refused.stdout + refused.stderr

    # The refresh command re-materializes exactly the stale ones, as two ranges.
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        done = refresh_stale(
            instance, resources_from_env(environment(home)), [*ASSETS, *CHECKS], assets=("packed_shards",)
        )
        runs = instance.get_runs()
    assert done == {"packed_shards": 2} and stale(home) == set()
    assert sum(r.tags.get("dagster/asset_partition_range_start") == KEYS[2] for r in runs) == 1


def main_job(tmp: Path, *args: str, packages: str = ",".join(PACKAGES)) -> subprocess.CompletedProcess:
    """`python -m gocoder_assets.pipeline ARGS` on its own DAGSTER_HOME (the repo's dagster.yaml, as .ci/setup
    makes it) and data folder, 2 partitions per run."""
    (tmp / "dagster_home").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", tmp / "dagster_home" / "dagster.yaml")
    env = {**environment(tmp), "GOCODER_GO_PACKAGES": packages, "GOCODER_PARTITIONS_PER_RUN": "2",
           "GOCODER_DEVICE": "cpu"}  # fmt: skip
    cmd = [sys.executable, "-m", "gocoder_assets.pipeline", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def test_main_job_prints_progress_and_where_the_artifacts_are(tmp_path: Path) -> None:
    proc = main_job(tmp_path, "--preset", "test", "--max-steps", "10", "--vocab-size", "600")
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    lines = out.splitlines()
    # One line per range: 3 partitions in runs of 2 -> 2/3, then 3/3 with the stage's time.
    assert "[2/9] raw_prs, categorized_records: 3 partitions in 2 run(s) of at most 2" in lines
    assert any(line.startswith("[2/9] raw_prs, categorized_records: 2/3 partitions (") and "/s), ETA " in line
               for line in lines)  # fmt: skip
    assert any(line.startswith("[4/9] packed_shards: 3/3 partitions (") and "done in" in line for line in lines)
    assert any(line.startswith("[7/9] sft_pairs: 3/3 partitions (") and "done in" in line for line in lines)
    for stage in ("[1/9] repo_list", "[3/9] dedup_index, tokenizer_model", "[5/9] checkpoint, gguf_model",
                  "[6/9] license_manifest, model_card"):  # fmt: skip
        assert any(line.startswith(f"{stage}: done in ") for line in lines), stage
    # The Go distribution has no pull requests: nothing to fine-tune on, said instead of failing the job.
    assert any(line.startswith("[8/9] sft_checkpoint, sft_gguf_model: skipped: sft_pairs holds no train pair")
               for line in lines)  # fmt: skip
    assert any(line.startswith("[9/9] eval_report: done in ") for line in lines)
    # Not Dagster's event stream (it would be on stderr); the training's own INFO lines, yes.
    debug = [line for line in (out + proc.stderr).splitlines() if " - DEBUG - " in line or "STEP_START" in line]
    assert not debug, debug[:5]
    assert any(" - INFO - " in line and " - checkpoint - training " in line for line in proc.stderr.splitlines())
    # The summary names files that exist, and how to look at the instance.
    summary = {line.split(maxsplit=2)[-1] for line in lines if line.startswith("  ")}
    paths = [Path(p) for p in summary if p.startswith("/")]
    assert all(p.exists() for p in paths), paths
    names = {p.name for p in paths}
    assert {"MODEL_CARD.md", "licenses.csv", "gocoder.gguf", "gocoder.Q8_0.gguf", "report.md", "dagster_home"} <= names
    assert lines[-1].endswith(f"DAGSTER_HOME={tmp_path / 'dagster_home'} dagster dev -h 127.0.0.1")
    # The same per-partition records as one run per stage: every partition materialized, by ranged runs.
    with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("packed_shards")) == set(KEYS)
        starts = sorted(r.tags.get("dagster/asset_partition_range_start", "") for r in instance.get_runs())
    assert starts.count(KEYS[0]) == 3 and starts.count(KEYS[2]) == 3  # raw_prs, packed_shards, sft_pairs stages
    # Right after the main job nothing is stale: --refresh-stale (gocoder_assets.refresh) has nothing to do.
    refresh = main_job(tmp_path, "--refresh-stale")
    assert refresh.returncode == 0, refresh.stdout[-3000:] + refresh.stderr[-3000:]
    assert "packed_shards: re-materialized 0 stale or missing partitions" in refresh.stdout


def test_main_job_failure_names_the_stage_and_exits_nonzero(tmp_path: Path) -> None:
    proc = main_job(tmp_path, packages="no_such_package")
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    failed = next(line for line in lines if " failed" in line)
    assert failed.startswith("[1/9] repo_list failed (run ")  # the run's id: its logs in the UI
    assert "ValueError: packages not found under" in failed and "no_such_package" in failed
    debug = [line for line in proc.stderr.splitlines() if " - DEBUG - " in line]
    errors = [line for line in proc.stderr.splitlines() if " - dagster - ERROR - " in line]
    assert not debug and errors, proc.stderr[-3000:]  # Dagster's error (with its trace), no DEBUG stream
    verbose = main_job(tmp_path, "--verbose", packages="no_such_package")
    assert verbose.returncode == 1 and " - DEBUG - " in verbose.stderr and "STEP_START" in verbose.stderr


def test_progress_line_and_chunks() -> None:
    assert (
        pipeline.progress_line("[2/9] raw_prs", 150, 5000, 48.0)
        == "[2/9] raw_prs: 150/5000 partitions (3.1/s), ETA 25m52s"
    )
    assert pipeline.progress_line("[4/9] packed_shards", 5, 5, 3.0).endswith("5/5 partitions (1.7/s), done in 3s")
    assert pipeline.duration(3 * 3600 + 7 * 60 + 5) == "3h07m"
    assert pipeline.chunks(list("abcde"), 2) == [["a", "b"], ["c", "d"], ["e"]]
    with pytest.raises(ValueError, match="at least 1"):
        pipeline.chunks(["a"], 0)
