"""Atomic writes and partition-key folder names."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gocoder_assets.storage import atomic_dir, atomic_file, key_to_dirname


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]


def test_failed_dir_write_keeps_the_old_dir(tmp_path: Path) -> None:
    path = tmp_path / "model"
    path.mkdir()
    (path / "w").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(path) as tmp:
        (tmp / "w").write_text("half")
        raise RuntimeError("killed")
    assert (path / "w").read_text() == "old" and list(tmp_path.iterdir()) == [path]
    with atomic_dir(path) as tmp:
        (tmp / "w").write_text("new")
    assert (path / "w").read_text() == "new" and list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("key", ["golang/go/src/net", "..", ".hidden", "a b/ü", "x%2Fy"])
def test_partition_keys_map_to_one_safe_distinct_folder(key: str) -> None:
    name = key_to_dirname(key)
    assert "/" not in name and not name.startswith(".")
    others = {"golang/go/src/net", "..", ".hidden", "a b/ü", "x%2Fy"} - {key}
    assert name not in {key_to_dirname(o) for o in others}


def test_artifacts_are_readable_by_other_users(tmp_path: Path) -> None:
    """A model server running as another user (Ollama, llama.cpp) must be able to open what we write."""
    old = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "f.bin") as tmp:
            tmp.write_bytes(b"x")
        with atomic_dir(tmp_path / "d") as tmp, atomic_file(tmp / "inner.json") as inner:
            inner.write_text("{}")
    finally:
        os.umask(old)
    for path in (tmp_path / "f.bin", tmp_path / "d" / "inner.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
