"""Shard format, record index, packing and its check, and train/val split rules."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gocoder_assets.categorized_records.serialize import MARKER_OF, MARKERS, render_code, render_doc
from gocoder_assets.checkpoint.assets import shard_splits
from gocoder_assets.packed_shards import pack
from gocoder_assets.packed_shards.checks import shard_problems
from gocoder_assets.packed_shards.pack import assign_splits, pack_partition
from gocoder_assets.packed_shards.shard_format import (
    CATEGORIES,
    HEADER_BYTES,
    ShardFormatError,
    index_path,
    open_shard,
    read_index,
    write_index,
    write_shard,
)
from gocoder_assets.repo_list.repos import write_repo_list
from gocoder_assets.sources.base import RepoInfo
from gocoder_assets.storage import Layout, write_json
from gocoder_assets.tokenizer_model.encode import MissingMarkerError, RecordCodec
from gocoder_assets_tests.shards import make_shard

EOS = 2


def test_shard_round_trip_and_numpy_memmap(tmp_path: Path) -> None:
    tokens = np.array([5, 0, 65535, 2], dtype=np.uint16)
    path = tmp_path / "s.bin"
    write_shard(path, tokens)
    np.testing.assert_array_equal(open_shard(path), tokens)
    # The documented plain-numpy recipe reads the same thing.
    np.testing.assert_array_equal(np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES), tokens)
    assert np.fromfile(path, dtype="<i4", count=3).tolist() == [20240520, 1, 4]


def test_truncated_or_foreign_shards_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "s.bin"
    write_shard(path, np.arange(100, dtype=np.uint16))
    data = path.read_bytes()
    path.write_bytes(data[:-2])
    with pytest.raises(ShardFormatError, match="header says 100"):
        open_shard(path)
    path.write_bytes(b"\0" * len(data))
    with pytest.raises(ShardFormatError, match="magic"):
        open_shard(path)
    with pytest.raises(ValueError, match="uint16"):
        write_shard(path, np.array([70000]))


def test_splits_are_per_repo_deterministic_and_never_empty() -> None:
    names = [f"owner/repo{i}" for i in range(1000)]
    splits = assign_splits(names)
    assert splits == assign_splits(list(reversed(names)))
    assert 0.03 < sum(s == "val" for s in splits.values()) / len(names) < 0.07
    # Adding repos never moves an existing one (for corpora big enough to need no fallback).
    assert all(assign_splits([*names, "new/one"])[n] == s for n, s in splits.items())
    for n in range(2, 20):
        small = assign_splits(names[:n])
        assert set(small.values()) == {"train", "val"}, n
    assert assign_splits(["only/one"]) in ({"only/one": "train"}, {"only/one": "val"})


def test_training_refuses_shards_from_another_tokenizer_or_torn(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    repos = [RepoInfo(k, k, "u" + k, None, "MIT", "main", "sha", "now", "git") for k in ("a/x", "b/y")]
    write_repo_list(repos, layout.repo_list_file)
    for key, split in (("a/x", "train"), ("b/y", "val")):
        write_shard(layout.shard_file(key), np.arange(10, dtype=np.uint16))
        write_json(layout.shard_manifest(key), {"tokens": 10, "split": split, "tokenizer_sha256": "t1"})
    assert shard_splits(layout, "t1") == (["a/x"], ["b/y"])  # partition keys
    with pytest.raises(ValueError, match="older tokenizer"):
        shard_splits(layout, "t2")
    write_shard(layout.shard_file("b/y"), np.arange(5, dtype=np.uint16))
    with pytest.raises(ValueError, match="disagrees with its manifest"):
        shard_splits(layout, "t1")


class CharProcessor:
    """A stand-in SentencePiece processor: one id per character, so expected tokens are easy to write.

    Markers are control pieces 4…19 (as in a trained tokenizer); characters map to 20…299, so a
    marker spelled out in text is characters, as SentencePiece does it. ``calls`` counts encode calls.
    """

    def __init__(self) -> None:
        self.calls = 0

    def vocab_size(self) -> int:
        return 300

    def eos_id(self) -> int:
        return EOS

    def piece_to_id(self, piece: str) -> int:
        return 4 + MARKERS.index(piece) if piece in MARKERS else 0

    def id_to_piece(self, i: int) -> str:
        return MARKERS[i - 4] if 4 <= i < 4 + len(MARKERS) else chr(i)

    def is_control(self, i: int) -> bool:
        return i in (1, 2, 3) or 4 <= i < 4 + len(MARKERS)

    def encode(self, texts: Sequence[str], num_threads: int = 1) -> list[list[int]]:
        self.calls += 1
        return [[20 + ord(ch) % 280 for ch in text] for text in texts]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(chr(i - 20) for i in ids)  # exact for the ASCII these tests use


def char_codec() -> RecordCodec:
    return RecordCodec(CharProcessor(), MARKERS)


def test_packing_inserts_marker_ids_and_never_reads_them_from_content(tmp_path: Path) -> None:
    hostile = '<REPO>evil\n<FILE path="x">\n</FILE>\n<s></s>' + "".join(MARKERS)
    texts = [render_code("a/b", "x.go", hostile), render_doc("a/b", "README.md", "# <CODE>\n")]
    codec = char_codec()
    shard = tmp_path / "p" / "tokens.bin"
    shard.parent.mkdir()
    rows = [("c", "CODE", texts[0]), ("n", "NAT", texts[1])]
    pack_partition(write_records(tmp_path / "r.parquet", rows), shard, codec)
    assert codec.sp.calls == 1  # every content run of the batch in one encode call
    tokens = np.asarray(open_shard(shard)).tolist()
    starts, lengths, _ = read_index(shard)
    records = [tokens[a : a + n] for a, n in zip(starts.tolist(), lengths.tolist(), strict=True)]
    marker_ids = set(codec.marker_ids.values())
    for text, ids in zip(texts, records, strict=True):
        assert ids[-1] == EOS and codec.decode(ids[:-1]) == text
        structure = [codec.marker_ids[MARKER_OF[ch]] for ch in text if ch in MARKER_OF]
        assert [i for i in ids if i in marker_ids] == structure  # only the record's own markers
    assert records[0][:2] == [codec.marker_ids["<CODE>"], codec.marker_ids["<REPO>"]]


def test_packing_refuses_a_tokenizer_without_control_markers() -> None:
    class UserDefined(CharProcessor):
        def is_control(self, i: int) -> bool:
            return i in (1, 2, 3)

    with pytest.raises(MissingMarkerError, match="control"):
        RecordCodec(UserDefined(), MARKERS)


def write_records(path: Path, rows: Sequence[tuple[str, str, str]]) -> Path:
    """A categorized_records-like Parquet with the columns packing reads: record_id, category, kind, text."""
    names = ["record_id", "category", "text"]
    table = {n: [r[i] for r in rows] for i, n in enumerate(names)}
    table["kind"] = [{"CODE": "file", "MIX": "change", "NAT": "issue"}.get(r[1], "doc") for r in rows]
    pq.write_table(pa.table(table), path)
    return path


def test_index_lives_beside_the_shard_in_the_layout(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    assert index_path(layout.shard_file("a/b")) == layout.shard_index("a/b")
    assert layout.shard_index("a/b").name == "records.parquet"
    assert CATEGORIES == ("NAT", "MIX", "CODE")


def test_pack_keeps_record_boundaries_and_categories(tmp_path: Path) -> None:
    rows = [
        ("n1", "NAT", "hi"),
        ("dup", "CODE", "skipped"),
        ("c1", "CODE", "func"),
        ("m1", "MIX", ""),
        ("c2", "CODE", "x"),
    ]
    shard = tmp_path / "p" / "tokens.bin"
    shard.parent.mkdir()
    stats = pack_partition(write_records(tmp_path / "r.parquet", rows), shard, char_codec(), skip={"dup"})
    assert (stats.records, stats.text_tokens, stats.tokens) == (4, 7, 11)
    assert stats.tokens_by_category == {"NAT": 3, "MIX": 1, "CODE": 7}
    tokens = np.asarray(open_shard(shard))
    expected = [t for _, _, text in rows if text != "skipped" for t in [*char_codec().encode([text])[0], EOS]]
    np.testing.assert_array_equal(tokens, expected)
    table = pq.read_table(index_path(shard))
    assert table.schema.field("start").type == pa.int64() and table.schema.field("tokens").type == pa.int32()
    assert table.column("record_id").to_pylist() == ["n1", "c1", "m1", "c2"]
    assert table.column("kind").to_pylist() == ["issue", "file", "change", "file"]
    starts, lengths, codes = read_index(shard)
    assert starts.tolist() == [0, 3, 8, 9] and lengths.tolist() == [3, 5, 1, 2]
    assert [CATEGORIES[c] for c in codes] == ["NAT", "CODE", "MIX", "CODE"]
    assert (starts.dtype, lengths.dtype, codes.dtype) == (np.int64, np.int64, np.uint8)
    assert np.all(tokens[starts + lengths - 1] == EOS)


def test_pack_writes_the_index_before_the_shard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed between the two writes, a shard never exists without its index (and no manifest is written)."""

    def killed(path: Path, tokens: np.ndarray) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pack, "write_shard", killed)
    shard = tmp_path / "p" / "tokens.bin"
    shard.parent.mkdir()
    with pytest.raises(KeyboardInterrupt):
        pack_partition(write_records(tmp_path / "r.parquet", [("a", "NAT", "x")]), shard, char_codec())
    assert index_path(shard).exists() and not shard.exists()


def test_pack_rejects_unknown_categories_before_writing(tmp_path: Path) -> None:
    shard = tmp_path / "p" / "tokens.bin"
    shard.parent.mkdir()
    with pytest.raises(ShardFormatError, match="unknown categories"):
        pack_partition(write_records(tmp_path / "r.parquet", [("a", "POEM", "x")]), shard, char_codec())
    assert not shard.exists() and not index_path(shard).exists()


def test_read_index_rejects_missing_or_inconsistent_indexes(tmp_path: Path) -> None:
    shard = make_shard(tmp_path / "s" / "tokens.bin", [("NAT", [5, 6]), ("CODE", [7])], EOS)
    assert read_index(shard)[1].tolist() == [3, 2]
    write_index(shard, ["a", "b"], ["NAT", "CODE"], [0, 2], [3, 2])
    with pytest.raises(ShardFormatError, match="contiguous"):
        read_index(shard)
    write_index(shard, ["a", "b"], ["NAT", "CODE"], [0, 3], [3, 3])
    with pytest.raises(ShardFormatError, match="records hold 6 tokens but the shard has 5"):
        read_index(shard)
    write_index(shard, ["a", "b"], ["NAT", "CODE"], [0, 5], [5, 0])
    with pytest.raises(ShardFormatError, match="0 tokens"):
        read_index(shard)
    with pytest.raises(ValueError, match="unknown categories"):
        write_index(shard, ["a"], ["PROSE"], [0], [5])
    table = pa.table({"record_id": ["a"], "category": ["PROSE"], "start": [0], "tokens": pa.array([5], pa.int32())})
    pq.write_table(table, index_path(shard))  # written by something other than write_index
    with pytest.raises(ShardFormatError, match="unknown categories"):
        read_index(shard)
    index_path(shard).unlink()
    with pytest.raises(ShardFormatError, match="re-materialize packed_shards"):
        read_index(shard)


def test_shard_check_verifies_the_index_against_the_shard(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    write_json(layout.tokenizer_dir / "tokenizer_info.json", {"eos_id": EOS, "vocab_size": 300, "sha256": "t"})
    shard, key = layout.shard_file("a/x"), "a/x"
    stats = pack_partition(write_records(tmp_path / "r.parquet", [("a", "NAT", "ab"), ("b", "CODE", "c")]), shard,
                           char_codec())  # fmt: skip
    manifest = {"tokens": stats.tokens, "tokenizer_sha256": "t", "tokens_by_category": stats.tokens_by_category}
    write_json(layout.shard_manifest(key), manifest)
    assert shard_problems(layout, key, 300, "t") == []  # EOS id from the tokenizer info
    assert shard_problems(layout, key, 300, "t", eos_id=EOS) == []
    assert any("do not end in EOS (4)" in p for p in shard_problems(layout, key, 300, "t", eos_id=4))
    # Same lengths and sum, records cut in the wrong places: only the EOS rule sees it.
    write_index(shard, ["a", "b"], ["NAT", "CODE"], [0, 2], [2, 3])
    problems = shard_problems(layout, key, 300, "t")
    assert problems and all("EOS" in p or "tokens by category" in p for p in problems), problems
    write_index(shard, ["a", "b"], ["NAT", "NAT"], [0, 3], [3, 2])
    assert shard_problems(layout, key, 300, "t") == [
        "index has tokens by category {'NAT': 5, 'MIX': 0, 'CODE': 0}, manifest {'CODE': 2, 'MIX': 0, 'NAT': 3}"
    ]
    index_path(shard).unlink()
    assert "re-materialize packed_shards" in shard_problems(layout, key, 300, "t")[0]
