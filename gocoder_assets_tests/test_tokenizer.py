"""The tokenizer learns pieces across newlines, holds out the val repos, and its HF twin gives the same ids."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from gocoder_assets.categorized_records.serialize import MARKERS
from gocoder_assets.packed_shards.pack import assign_splits
from gocoder_assets.sources.goroot import default_goroot
from gocoder_assets.tokenizer_model.train import (
    RepoHoldout,
    TokenizerOptions,
    load_processor,
    round_trip_report,
    text_chunks,
    train_tokenizer,
)

PLANTED = 'var lit = "<s></s><unk><pad>" // tokens <s>x</s>\n\tif a<s && b</s>c {\n\t\treturn "<pad>"\n\t}\n'


def _go_files(*packages: str) -> list[Path]:
    src = default_goroot() / "src"
    return [f for p in packages for f in sorted((src / p).glob("*.go"))]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small tokenizer trained, as the asset does, on multi-line runs of real Go."""
    out = tmp_path_factory.mktemp("tok")
    options = TokenizerOptions(vocab_size=1000)
    texts = [f.read_text(encoding="utf-8") for f in _go_files("sort", "errors", "container/list", "unicode/utf8")]
    sentences = [c for t in texts for c in text_chunks(t, options.chunk_lines, options.max_sentence_length)]
    train_tokenizer(sentences, out, MARKERS, options)
    return out


@pytest.mark.parametrize("text", ["", "a", "a\n", "\n\n\n", "x\ny", "l1\nl2\nl3\nl4\nl5\n\n", "ü\n" * 9 + "tail"])
def test_chunks_rejoin_exactly_and_respect_limits(text: str) -> None:
    chunks = list(text_chunks(text, max_lines=2, max_bytes=7))
    assert "".join(chunks) == text
    for c in chunks:
        assert c and c.count("\n") <= 2
        assert len(c.encode()) <= 7 or c.count("\n") <= 1  # only a single over-long line may exceed the cap
    assert all(c.endswith("\n") for c in chunks[:-1])  # cuts fall only after a newline


def test_chunks_cut_only_at_line_ends() -> None:
    text = "".join(f"line {i}\n" for i in range(40))
    chunks = list(text_chunks(text, max_lines=16, max_bytes=10_000))
    assert [c.count("\n") for c in chunks] == [16, 16, 8]
    assert all(c.endswith("\n") for c in chunks)


def test_pieces_span_newlines_and_round_trip(trained: Path) -> None:
    sp = load_processor(trained)
    newline_pieces = [sp.id_to_piece(i) for i in range(sp.vocab_size()) if "\n" in sp.id_to_piece(i)]
    assert len(newline_pieces) > 20, newline_pieces
    held_out = [f.read_text(encoding="utf-8") for f in _go_files("strings", "bufio")]
    pieces = sp.encode(held_out[0], out_type=str)
    assert sum("\n" in p and p != "\n" for p in pieces) > held_out[0].count("\n") // 2
    report = round_trip_report(sp, [*held_out, PLANTED])
    assert report["round_trip_exact_pct"] == 100.0 and report["unk_rate"] == 0.0
    newlines = sum(t.count("\n") for t in held_out)
    byte_newlines = sum(sp.encode(t).count(sp.piece_to_id("<0x0A>")) for t in held_out)
    assert byte_newlines < newlines // 4  # most newlines now ride inside a learned piece


def test_hf_tokenizer_gives_sentencepiece_ids_even_for_special_literals(trained: Path) -> None:
    sp = load_processor(trained)
    raw = Tokenizer.from_file(str(trained / "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(trained)
    texts = [f.read_text(encoding="utf-8") for f in _go_files("bufio")[:6]]
    texts += [PLANTED, texts[0][:500] + PLANTED + texts[1][:500], *MARKERS, '<FILE path="a.go">\n<s>\n</FILE>\n']
    for text in texts:
        expected = sp.encode(text)
        assert raw.encode(text, add_special_tokens=False).ids == expected, text[:80]
        assert auto.encode(text, add_special_tokens=False) == expected, text[:80]
        assert auto.decode(expected) == text
    assert sp.encode("<s>") != [sp.bos_id()]  # the literal is text, not the control id
    assert (auto.bos_token_id, auto.eos_token_id, auto.pad_token_id) == (sp.bos_id(), sp.eos_id(), sp.pad_id())
    assert auto.decode([sp.bos_id(), *sp.encode("x"), sp.eos_id()], skip_special_tokens=True) == "x"


def _write_partition(path: Path, key: str, n: int) -> None:
    ids = [f"{key}#{i}" for i in range(n)]
    texts = [f"// repo {key} record {i}\nfunc F{i}() {{\n\treturn\n}}\n" for i in range(n)]
    pq.write_table(pa.table({"record_id": ids, "text": texts}), path)


def test_holdout_is_the_val_repos_and_they_are_not_trained_on(tmp_path: Path) -> None:
    keys = [f"owner/repo{i}" for i in range(30)]
    files = {}
    for i, key in enumerate(keys):
        files[key] = tmp_path / f"{i}.parquet"
        _write_partition(files[key], key, 3)
    splits = assign_splits(keys, 0.1)
    val = sorted(k for k, s in splits.items() if s == "val")
    assert 0 < len(val) < len(keys)
    holdout = RepoHoldout(files, 0.1, max_records=1000, skip={f"{keys[0]}#0"})
    assert holdout.val_keys == val
    trained_text = "".join(holdout.sentences(TokenizerOptions()))
    assert not any(f"repo {k} " in trained_text for k in val)
    assert all(f"repo {k} " in trained_text for k in keys if k not in val and k != keys[0])
    assert f"repo {keys[0]} record 0\n" not in trained_text + "".join(holdout.holdout_texts())  # dropped duplicate
    expected_records = 3 * (len(keys) - len(val)) - (keys[0] not in val)
    assert holdout.training_records == expected_records
    texts = holdout.holdout_texts()
    assert texts and all(any(f"repo {k} " in t for k in val) for t in texts)
    assert len(RepoHoldout(files, 0.1, max_records=2).holdout_texts()) == 2
