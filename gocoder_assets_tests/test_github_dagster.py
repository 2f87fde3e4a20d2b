"""repo_list and raw_prs materialized by Dagster from the emulator; the token leaves no trace on disk."""

from __future__ import annotations

import gzip
from pathlib import Path

import dagster as dg
import pytest

from gocoder_assets.partitions import REPOS
from gocoder_assets.raw_prs.archive import read_raw
from gocoder_assets.raw_prs.assets import raw_prs
from gocoder_assets.repo_list.assets import repo_list
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.resources import StorageResource
from gocoder_assets.sources.github.resource import GitHubResource, github_resource_from_env
from gocoder_assets.sources.github.source import GitHubSource
from gocoder_assets.storage import Layout
from gocoder_assets_tests.github_emulator import Emulator, ensure_schema, source_settings
from gocoder_assets_tests.github_emulator_data import widget_repo

TOKEN = "ghp_DagsterRunTokenXyZ0123456789abcdef0005"


def files_containing(root: Path, needle: bytes) -> list[Path]:
    hits = []
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data += gzip.decompress(data)
        if needle in data:
            hits.append(path)
    return hits


def test_materialize_from_github_and_the_token_never_lands_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_schema()
    git_root, home, data = tmp_path / "git", tmp_path / "dagster_home", tmp_path / "data"
    repos = [widget_repo(git_root, n_prs=6), widget_repo(git_root, repo_id=2, name="gadget", n_prs=3, stars=50)]
    home.mkdir()
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    with (
        Emulator(repos, git_root, TOKEN, fault_rate=0.1, seed=2) as emu,
        dg.instance_for_test(temp_dir=str(home)) as instance,
    ):
        resources = {
            "storage": StorageResource(root=str(data)),
            "source": GitHubResource(
                token=dg.EnvVar("GITHUB_TOKEN"),
                base_url=emu.base_url,
                cache_dir=str(data / "github_api"),
                request_timeout=1.0,
                retry_wait_scale=0.001,
            ),
        }
        assert dg.materialize([repo_list], resources=resources, instance=instance).success
        assert set(instance.get_dynamic_partitions(REPOS)) == {"acme/widget", "acme/gadget"}
        for key in ("acme/widget", "acme/gadget"):
            assert dg.materialize(
                [raw_prs, repo_list], selection=[raw_prs], partition_key=key, resources=resources, instance=instance
            ).success
    with Emulator(repos, git_root, TOKEN) as clean_emu:  # the same partition, collected without faults
        clean = GitHubSource(source_settings(clean_emu, tmp_path / "clean"), log=lambda _: None)
        widget = next(r for r in clean.list_repos() if r.full_name == "acme/widget")
        unfaulted = list(clean.collect(widget))
    assert sum(emu.faults.values()) > 0
    layout = Layout(data)
    assert list(read_raw(layout.raw_records_file("acme/widget"))) == unfaulted, "faults change nothing"
    listed = read_repo_list(layout.repo_list_file)
    assert list(listed) == ["acme/widget", "acme/gadget"] and listed["acme/widget"].source == "github"
    records = list(read_raw(layout.raw_records_file("acme/widget")))
    assert sum(r["kind"] == "change" for r in records) == 6 and any(r["kind"] == "issue" for r in records)
    assert list((data / "github_api").iterdir()), "the raw API archive lives under the data folder"
    assert files_containing(home, TOKEN.encode()) == []
    assert files_containing(data, TOKEN.encode()) == []
    # the scan does see what runs wrote: partition keys in the event log, PR titles in the gzipped archives
    assert files_containing(home, b"acme/gadget") and files_containing(data, b"Add feature 6")


def test_the_token_is_the_only_switch(tmp_path: Path) -> None:
    assert github_resource_from_env({"GOCODER_DATA_DIR": str(tmp_path)}) is None
    resource = github_resource_from_env({"GITHUB_TOKEN": "x", "GOCODER_DATA_DIR": str(tmp_path)})
    assert isinstance(resource, GitHubResource) and resource.cache_dir == str(tmp_path / "github_api")
