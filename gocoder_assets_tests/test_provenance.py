"""Token provenance, the license manifest and the model card: unit rules, then the built graph."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gocoder_assets.license_manifest.manifest import COLUMNS, build_manifest, read_manifest
from gocoder_assets.licenses import COPYLEFT, PERMISSIVE, license_family, obligations
from gocoder_assets.packed_shards.pack import pack_partition
from gocoder_assets.packed_shards.provenance import ShardProvenance, trace
from gocoder_assets.packed_shards.shard_format import (
    CATEGORIES,
    index_path,
    read_index,
    write_index,
    write_shard,
)
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.storage import Layout, read_json
from gocoder_assets.tokenizer_model.encode import RecordCodec
from gocoder_assets.tokenizer_model.train import load_processor
from gocoder_assets_tests.conftest import Built


class CharCodec:
    """One id per character (ord % 50 + 10), EOS 2: enough to pack without a tokenizer."""

    def vocab_size(self) -> int:
        return 64

    def eos_id(self) -> int:
        return 2

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [[ord(ch) % 50 + 10 for ch in t] for t in texts]


def test_pack_copies_provenance_into_the_index_and_trace_finds_each_record(tmp_path: Path) -> None:
    rows = {
        "record_id": ["a", "dup", "b"], "category": ["NAT", "CODE", "CODE"], "kind": ["doc", "file", "change"],
        "text": ["hello", "zz", "abc"], "repo": ["o/r"] * 3, "path": ["README.md", "x.go", "y.go"],
        "pr_number": [None, None, 7], "commit_sha": ["c0", "c0", "c1"], "license": ["MIT"] * 3,
        "license_key": ["mit"] * 3,
    }  # fmt: skip
    source = tmp_path / "records.parquet"
    pq.write_table(pa.table(rows), source)
    layout = Layout(tmp_path / "data")
    shard = layout.shard_file("o/r")
    pack_partition(source, shard, CharCodec(), skip={"dup"})
    index = pq.read_table(index_path(shard)).to_pydict()
    assert index["path"] == ["README.md", "y.go"] and index["pr_number"] == [None, 7]
    assert read_index(shard)[1].tolist() == [6, 4]  # readers of boundaries are unaffected
    for position, (record, offset, eos) in {0: ("a", 0, False), 5: ("a", 5, True), 6: ("b", 0, False),
                                            9: ("b", 3, True)}.items():  # fmt: skip
        got = trace(layout, "o/r", position)
        assert (got["record_id"], got["offset"], got["is_eos"]) == (record, offset, eos), position
    got = trace(layout, "o/r", 7)
    assert got["commit_sha"] == "c1" and got["pr_number"] == 7 and got["path"] == "y.go" and got["license"] == "MIT"
    with pytest.raises(IndexError):
        trace(layout, "o/r", 10)


def test_index_without_provenance_is_refused_by_trace_and_bad_columns_are_rejected(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    shard = layout.shard_file("o/r")
    write_index(shard, ["a"], ["NAT"], [0], [1])
    with pytest.raises(ValueError, match="unknown provenance"):
        write_index(shard, ["a"], ["NAT"], [0], [1], provenance={"licence": ["MIT"]})
    with pytest.raises(ValueError, match="one value per record"):
        write_index(shard, ["a"], ["NAT"], [0], [1], provenance={"license": []})


def test_every_allowed_license_has_an_obligation_line() -> None:
    for spdx in PERMISSIVE | COPYLEFT:
        assert obligations(spdx), spdx
    assert license_family("MIT") == "permissive" and license_family("GPL-3.0") == "copyleft"
    assert "share-alike" in obligations("GPL-3.0") and "attribution" in obligations("BSD-3-Clause")
    assert obligations("GPL-2.0-or-later") == obligations("GPL-2.0-only")
    assert license_family("NOASSERTION") == "unknown"


def test_random_token_positions_trace_to_their_categorized_record(built: Built) -> None:
    layout = built.layout
    codec = RecordCodec(load_processor(layout.tokenizer_dir))
    eos = codec.eos_id()
    rng = random.Random(0)
    checked = 0
    for key in read_repo_list(layout.repo_list_file):
        records = {r["record_id"]: r for r in pq.read_table(layout.categorized_file(key)).to_pylist()}
        prov = ShardProvenance(layout, key)
        for position in [0, len(prov) - 1, *(rng.randrange(len(prov)) for _ in range(15))]:
            got = prov.trace(position)
            record = records[got["record_id"]]
            for field in ("repo", "path", "pr_number", "commit_sha", "license", "license_key", "category", "kind"):
                assert got[field] == record[field], (key, position, field)
            assert got["url"] == record["url"] and got["fetched_at"] == record["fetched_at"]
            ids = codec.encode_one(record["text"])
            assert got["record_tokens"] == len(ids) + 1
            expected = eos if got["offset"] == len(ids) else ids[got["offset"]]
            assert got["is_eos"] == (got["offset"] == len(ids))
            assert got["token"] == expected, (key, position)
            checked += 1
    assert checked > 50


def test_license_manifest_totals_match_the_shard_manifests(built: Built) -> None:
    layout = built.layout
    path = layout.license_manifest_file
    assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(COLUMNS)
    rows = {r["repo"]: r for r in read_manifest(path)}
    repos = read_repo_list(layout.repo_list_file)
    for key, repo in repos.items():
        manifest = read_json(layout.shard_manifest(key))
        if manifest["tokens"] == 0:
            assert key not in rows, key  # contributed nothing: not listed
            continue
        row = rows[key]
        assert row["tokens"] == manifest["tokens"] and row["records"] == manifest["records"], key
        assert {c: row[f"tokens_{c}"] for c in CATEGORIES} == manifest["tokens_by_category"], key
        assert row["split"] == manifest["split"] and row["commit_sha"] == repo.commit_sha
        assert row["license"] == repo.license_spdx and row["url"] == repo.url and row["fetched_at"]
    assert all(r["tokens"] > 0 for r in rows.values()) and set(rows) <= set(repos)
    meta = built.metadata("license_manifest")
    assert meta["rows"] == len(rows)
    assert meta["total_tokens"] == sum(read_json(layout.shard_manifest(k))["tokens"] for k in repos)
    assert "| MIT |" in meta["tokens_by_license"] and "| BSD-3-Clause |" in meta["tokens_by_license"]


def test_license_manifest_leaves_out_repositories_without_tokens(built: Built, tmp_path: Path) -> None:
    """A partition whose every record was dropped has an empty shard; the manifest must not list it."""
    layout = Layout(tmp_path / "data")
    shutil.copytree(built.layout.root, layout.root, ignore=shutil.ignore_patterns("checkpoint", "gguf_model"))
    empty = next(iter(read_repo_list(layout.repo_list_file)))
    write_index(layout.shard_file(empty), [], [], np.zeros(0, np.int64), np.zeros(0, np.int64))
    write_shard(layout.shard_file(empty), np.zeros(0, np.uint16))
    sha = read_json(layout.tokenizer_dir / "tokenizer_info.json")["sha256"]
    rows = build_manifest(layout, sha)
    assert empty not in {r["repo"] for r in rows} and len(rows) == len(read_repo_list(layout.repo_list_file)) - 1


def test_model_card_states_the_model_and_the_manifest_totals(built: Built) -> None:
    layout = built.layout
    card = layout.model_card_file.read_text(encoding="utf-8")
    result = read_json(layout.train_run_dir / "result.json")
    assert f"{result['params']:,}" in card
    rows = read_manifest(layout.license_manifest_file)
    for split in ("train", "val"):
        mine = [r for r in rows if r["split"] == split]
        cells = [f"{sum(r[f'tokens_{c}'] for r in mine):,}" for c in CATEGORIES] + [
            f"{sum(r['tokens'] for r in mine):,}"
        ]
        assert f"| {split} | {' | '.join(cells)} |" in card, split
    total = sum(r["tokens"] for r in rows)
    by_license = {}
    for r in rows:
        by_license[r["license"]] = by_license.get(r["license"], 0) + r["tokens"]
    for spdx, n in by_license.items():
        assert f"| `{spdx}` |" in card and f"{100 * n / total:.1f}%" in card, spdx
    assert "gocoder.gguf" in card and "not a coding assistant" in card and "instruction tuning" in card
    assert f"{read_json(layout.tokenizer_dir / 'tokenizer_info.json')['vocab_size']}" in card
    assert not (layout.checkpoint_dir / "README.md").exists()  # the checkpoint's folder stays its own
    meta = built.metadata("model_card")
    assert meta["card"] == card and meta["parameters"] == result["params"]
