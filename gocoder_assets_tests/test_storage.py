"""Atomic writes and partition-key folder names."""

from __future__ import annotations

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
