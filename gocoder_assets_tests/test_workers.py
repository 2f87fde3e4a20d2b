"""Per-partition work spread over workers: inline, a local process pool and a real Celery cluster (Redis
broker, a worker subprocess) give the same bytes and the same metadata, and a failing partition is named.

One data folder: the graph is built once up to packed_shards with inline workers, then categorized_records
and packed_shards are materialized again with each other mode, and every file they wrote is compared.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from gocoder_assets.categorized_records.partition import SETTINGS_KEY
from gocoder_assets.dagster_internal import range_tags
from gocoder_assets.definitions import ASSETS
from gocoder_assets.partitions import REPOS
from gocoder_assets.pipeline import materialize_all
from gocoder_assets.resources import GPUResource, LocalSourceResource, StorageResource
from gocoder_assets.storage import Layout
from gocoder_assets.workers.celery_app import client_app
from gocoder_assets.workers.resource import WorkersResource, workers_resource_from_env
from gocoder_assets.workers.settings import WorkerError, WorkerSettings
from gocoder_assets_tests import servers
from gocoder_assets_tests.conftest import make_widget_repo
from gocoder_assets_tests.gitrepo import commit, git

GO_SLICE = ["errors", "sort", "container"]
STAGES = ["categorized_records", "packed_shards"]


def make_gadget_repo(root: Path) -> None:
    """owner acme, Apache-2.0, two commits, an issue-free history with a README and a doc."""
    repo = root / "gadget"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", "https://github.com/acme/gadget.git")
    (repo / "LICENSE").write_text("Apache License\nVersion 2.0, January 2004\nhttp://www.apache.org/licenses/\n")
    (repo / "README.md").write_text("# gadget\n\nGadgets count things: `gadget.Count(xs)`.\n")
    (repo / "gadget.go").write_text(
        "package gadget\n\n// Count counts xs.\nfunc Count(xs []int) int {\n\treturn len(xs)\n}\n"
    )
    commit(repo, 1, "Initial import")
    (repo / "docs").mkdir()
    (repo / "docs" / "usage.md").write_text("# Usage\n\nCall Count with a slice; it returns how many.\n")
    commit(repo, 2, "Document Count (#3)\n\nUsers asked how to call it.")


def resources(tmp: Path, clones: Path, workers: WorkersResource) -> dict:
    return {
        "storage": StorageResource(root=str(tmp / "data")),
        "source": LocalSourceResource(clones_dir=str(clones), packages=GO_SLICE, include_go=True),
        "gpu": GPUResource(device="cpu"),
        "workers": workers,
    }


def materialized(results: list[dg.ExecuteInProcessResult] | dg.ExecuteInProcessResult) -> dict[str, dict]:
    """Asset name → the metadata of its (first) materialization in these runs."""
    found: dict[str, dict] = {}
    for result in results if isinstance(results, list) else [results]:
        for event in result.get_asset_materialization_events():
            name = event.asset_key.to_user_string()
            found.setdefault(name, {k: v.value for k, v in event.materialization.metadata.items()})
    return found


def outputs(layout: Layout) -> dict[str, bytes]:
    """Every file categorized_records and packed_shards wrote (relative path → bytes)."""
    files = {}
    for asset in STAGES:
        for path in sorted(layout.asset_dir(asset).rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                files[str(path.relative_to(layout.root))] = path.read_bytes()
    return files


def without_workers(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if not k.startswith("workers:")}


class Corpus:
    def __init__(self, tmp: Path, clones: Path, instance: dg.DagsterInstance, base: dict[str, dict]) -> None:
        self.tmp, self.clones, self.instance, self.base = tmp, clones, instance, base
        self.layout = Layout(tmp / "data")
        self.files = outputs(self.layout)
        self.keys = instance.get_dynamic_partitions(REPOS)

    def rematerialize(self, workers: WorkersResource, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            ASSETS,
            selection=STAGES,
            instance=self.instance,
            resources=resources(self.tmp, self.clones, workers),
            tags=range_tags(self.keys[0], self.keys[-1]),
            raise_on_error=raise_on_error,
        )

    def assert_same_as_inline(self, workers: WorkersResource) -> dict[str, dict]:
        """Both stages again with ``workers``, from nothing: their folders are removed first, so every
        file compared was written by this mode."""
        for asset in STAGES:
            shutil.rmtree(self.layout.root / asset)
        meta = materialized(self.rematerialize(workers))
        for asset in STAGES:
            assert without_workers(meta[asset]) == without_workers(self.base[asset]), asset
        again = outputs(self.layout)
        assert sorted(again) == sorted(self.files)
        assert [p for p in self.files if again[p] != self.files[p]] == []
        return meta


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    tmp = tmp_path_factory.mktemp("workers")
    clones = make_widget_repo(tmp / "clones")
    make_gadget_repo(clones)
    config = {"ops": {"tokenizer_model": {"config": {"vocab_size": 600, "holdout_fraction": 0.2}}}}
    with dg.instance_for_test() as instance:
        inline = WorkersResource(mode="inline")
        results = materialize_all(
            instance, resources(tmp, clones, inline), config, log=lambda _: None, until="packed_shards"
        )
        yield Corpus(tmp, clones, instance, materialized(results))


def test_inline_run_is_what_the_assets_report(corpus: Corpus) -> None:
    assert len(corpus.keys) >= 5
    names = {Path(p).parent.parent.name + "/" + Path(p).name for p in corpus.files}
    assert names == {
        "categorized_records/records.parquet",
        "categorized_records/signatures.npy",
        "packed_shards/tokens.bin",
        "packed_shards/records.parquet",
        "packed_shards/manifest.json",
    }
    assert len(corpus.files) == 5 * len(corpus.keys)  # what the other modes are compared on
    cat, pack = corpus.base["categorized_records"], corpus.base["packed_shards"]
    for key in corpus.keys:
        assert f"| {key} |" in cat["per_partition"] and f"| {key} |" in pack["per_partition"]
    assert cat["workers:mode"] == "inline" and cat["workers:pids"] == [os.getpid()]
    assert cat["dagster/row_count"] == cat["records"] > 0
    assert [c.name for c in cat["dagster/column_schema"].columns][:3] == ["record_id", "repo", "full_name"]
    # The settings each partition was made with travel in its Parquet, and the split's fraction in its manifest.
    settings = pq.read_schema(corpus.layout.categorized_file(corpus.keys[0])).metadata[SETTINGS_KEY.encode()]
    assert b'"max_lines": 100000' in settings and b'"context_lines": 3' in settings
    manifest = corpus.files[str(corpus.layout.shard_manifest(corpus.keys[0]).relative_to(corpus.layout.root))]
    assert b'"val_fraction": 0.05' in manifest


def test_process_pool_gives_the_same_bytes_and_metadata(corpus: Corpus) -> None:
    meta = corpus.assert_same_as_inline(WorkersResource(mode="processes", max_workers=2))
    pids = {p for asset in STAGES for p in meta[asset]["workers:pids"]}
    assert len(pids) >= 2 and os.getpid() not in pids


@pytest.fixture(scope="module")
def celery_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkersResource]:
    """redis-server plus one real `celery worker` (prefork, 2 processes) on a queue of its own."""
    tmp = tmp_path_factory.mktemp("celery")
    with servers.redis_server(tmp / "redis") as url:
        queue = f"gocoder-test-{uuid.uuid4().hex[:8]}"
        env = {**os.environ, "GOCODER_CELERY_BROKER": url, "GOCODER_CELERY_QUEUE": queue}
        cmd = [sys.executable, "-m", "celery", "-A", "gocoder_assets.workers.celery_app", "worker",
               "--concurrency", "2", "--pool", "prefork", "-Q", queue, "-n", f"{queue}@%h", "--loglevel", "INFO",
               "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
        log = open(tmp / "worker.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            app = client_app(url)
            servers.wait_until(lambda: bool(app.control.ping(timeout=1.0)), proc, "celery worker", timeout=90)
            yield WorkersResource(mode="celery", broker_url=url, queue=queue, max_workers=2)
        finally:
            servers.stop(proc)
            log.close()


def test_celery_cluster_gives_the_same_bytes_and_metadata(corpus: Corpus, celery_cluster: WorkersResource) -> None:
    meta = corpus.assert_same_as_inline(celery_cluster)
    pids = {p for asset in STAGES for p in meta[asset]["workers:pids"]}
    assert meta["categorized_records"]["workers:mode"] == "celery"
    assert len(pids) >= 2 and os.getpid() not in pids  # the worker's two pool processes both ran partitions


def test_celery_without_a_worker_on_the_queue_fails_at_once(celery_cluster: WorkersResource) -> None:
    lonely = WorkersResource(mode="celery", broker_url=celery_cluster.broker_url, queue="nobody-listens")
    with pytest.raises(WorkerError, match="no Celery worker consumes queue 'nobody-listens'"):
        list(lonely.map("categorize", [{"data_root": "/nonexistent", "key": "acme/x", "settings": {}}]))


@pytest.mark.parametrize("mode", ["processes", "celery"])
def test_a_failing_partition_fails_the_run_naming_it(corpus: Corpus, mode: str, request: pytest.FixtureRequest) -> None:
    workers = (
        request.getfixturevalue("celery_cluster") if mode == "celery" else WorkersResource(mode=mode, max_workers=2)
    )
    key = corpus.keys[len(corpus.keys) // 2]
    raw = corpus.layout.raw_records_file(key)
    good = raw.read_bytes()
    raw.write_bytes(good[: len(good) // 2])  # a truncated gzip archive
    try:
        result = corpus.rematerialize(workers, raise_on_error=False)
    finally:
        raw.write_bytes(good)
    assert not result.success
    failures = result.get_step_failure_events()
    assert [e.step_key for e in failures] == ["categorized_records"]
    error = failures[0].step_failure_data.error
    assert f"categorize failed on partition {key!r}" in error.to_string()
    assert "EOFError" in error.to_string() or "BadGzipFile" in error.to_string()


def test_settings_come_from_the_environment() -> None:
    env = {"GOCODER_WORKERS": "celery", "GOCODER_WORKERS_MAX": "8", "GOCODER_CELERY_BROKER": "redis://h:6379/1"}
    w = workers_resource_from_env(env)
    assert (w.mode, w.max_workers, w.broker_url, w.queue) == ("celery", 8, "redis://h:6379/1", "gocoder")
    assert workers_resource_from_env({}).settings() == WorkerSettings()
    with pytest.raises(ValueError, match="is not one of inline, processes, celery"):
        workers_resource_from_env({"GOCODER_WORKERS": "threads"}).settings()


def test_a_broker_url_from_the_environment_is_bound_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """The URL may hold a password: Dagster must record the variable, not its value."""
    monkeypatch.setenv("GOCODER_CELERY_BROKER", "redis://:s3cret@h:6379/1")
    w = workers_resource_from_env(dict(os.environ))
    assert isinstance(w.broker_url, dg.EnvVar) and w.broker_url.env_var_name == "GOCODER_CELERY_BROKER"
    assert "s3cret" not in repr(w.broker_url)


def test_per_process_caches_follow_rewritten_files(tmp_path: Path) -> None:
    """A worker keeps the repository list between partitions, but a new version (an atomic rename) is read."""
    import dataclasses  # noqa: PLC0415

    from gocoder_assets.categorized_records.partition import repo_of  # noqa: PLC0415
    from gocoder_assets.repo_list.repos import write_repo_list  # noqa: PLC0415
    from gocoder_assets.sources.git_clones import GitClonesSource  # noqa: PLC0415

    layout = Layout(tmp_path / "data")
    (repo,) = GitClonesSource(make_widget_repo(tmp_path / "clones")).list_repos()
    write_repo_list([repo], layout.repo_list_file)
    assert repo_of(layout, repo.partition_key).stars == repo.stars
    assert repo_of(layout, repo.partition_key) is repo_of(layout, repo.partition_key)  # cached
    write_repo_list([dataclasses.replace(repo, stars=12345)], layout.repo_list_file)
    assert repo_of(layout, repo.partition_key).stars == 12345
    with pytest.raises(KeyError, match="re-materialize repo_list"):
        repo_of(layout, "acme/nowhere")
