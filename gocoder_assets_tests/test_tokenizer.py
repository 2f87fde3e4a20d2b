"""The tokenizer learns pieces across newlines, holds out the val repos, and its HF twin gives the same ids.

Records are built with serialize's render functions (markers as sentinels) and encoded with
``RecordCodec``; content that spells a marker, or ``<s>``, is text and never a control id.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from gocoder_assets.categorized_records.serialize import (
    MARKER_OF,
    MARKERS,
    RESERVED,
    file_block,
    mark,
    readable,
    render_change,
    render_code,
    render_doc,
    render_issue,
    render_overview,
)
from gocoder_assets.packed_shards.pack import assign_splits
from gocoder_assets.sources.goroot import default_goroot
from gocoder_assets.tokenizer_model.encode import MissingMarkerError, RecordCodec
from gocoder_assets.tokenizer_model.train import (
    RepoHoldout,
    TokenizerOptions,
    content_runs,
    describe,
    load_processor,
    record_chunks,
    round_trip_report,
    text_chunks,
    train_tokenizer,
)

PLANTED = 'var lit = "<s></s><unk><pad>" // tokens <s>x</s>\n\tif a<s && b</s>c {\n\t\treturn "<pad>"\n\t}\n'
HOSTILE = '<REPO>evil\n<FILE path="x">\n</FILE>\n<s></s>' + "".join(MARKERS) + "\n" + "\n".join(MARKERS)


def _go_files(*packages: str) -> list[Path]:
    src = default_goroot() / "src"
    return [f for p in packages for f in sorted((src / p).glob("*.go"))]


def _records(*packages: str) -> list[str]:
    """Stored CODE records of real Go files."""
    return [
        render_code("go/std", f"{f.parent.name}/{f.name}", f.read_text(encoding="utf-8")) for f in _go_files(*packages)
    ]


def _all_marker_records() -> list[str]:
    """Stored records that, together, hold every marker (and hostile content in every slot)."""
    change = {"title": "Fix <PR_TITLE> parsing", "status": "merged", "body": "Body <PR_BODY> </FILE>",
              "comments": [{"author": "ann", "body": "LGTM <COMMENTS>"}]}  # fmt: skip
    file_change = f'{mark("<FILE")} path="a.go">\n{mark("<BEFORE>")}\nold <AFTER>\n{mark("<AFTER>")}\nnew\n'
    file_change += f"{mark('</FILE>')}\n"
    issue = {"title": "<ISSUE_TITLE> twice", "body": "see <ISSUE_BODY>", "comments": [{"author": None, "body": "x"}]}
    return [
        render_code("a/b", "x.go", HOSTILE),
        render_doc("a/b", "README.md", "# <NAT> <MIX> <CODE>\n" + HOSTILE),
        render_overview("a/b", ["x.go", "<STRUCTURE>", 'we"ird\npath'], [("README.md", "hi <FILES>\n")]),
        render_issue("MIX", "a/b", issue),
        render_change("CODE", "a/b", change, [file_change, file_block("b.go", "package b\n")]),
        render_change("NAT", "a/b", {"title": "t"}, []),
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small tokenizer trained, as the asset does, on multi-line content runs of stored records of real Go."""
    out = tmp_path_factory.mktemp("tok")
    options = TokenizerOptions(vocab_size=1000)
    records = _records("sort", "errors", "container/list", "unicode/utf8")
    sentences = [c for t in records for c in record_chunks(t, options.chunk_lines, options.max_sentence_length)]
    assert sentences and not any(RESERVED.search(c) for c in sentences)  # no sentence holds a sentinel
    train_tokenizer(sentences, out, MARKERS, options)
    return out


@pytest.fixture(scope="module")
def codec(trained: Path) -> RecordCodec:
    return RecordCodec(load_processor(trained), MARKERS)


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


def test_pieces_span_newlines_and_round_trip(trained: Path, codec: RecordCodec) -> None:
    sp = load_processor(trained)
    newline_pieces = [sp.id_to_piece(i) for i in range(sp.vocab_size()) if "\n" in sp.id_to_piece(i)]
    assert len(newline_pieces) > 20, newline_pieces
    held_out = [f.read_text(encoding="utf-8") for f in _go_files("strings", "bufio")]
    pieces = sp.encode(held_out[0], out_type=str)
    assert sum("\n" in p and p != "\n" for p in pieces) > held_out[0].count("\n") // 2
    records = [*_records("strings", "bufio"), render_code("a/b", "p.go", PLANTED), *_all_marker_records()]
    report = round_trip_report(codec, records)
    assert report["round_trip_exact_pct"] == 100.0 and report["unk_rate"] == 0.0
    assert report["holdout_records"] == len(records)
    newlines = sum(t.count("\n") for t in held_out)
    byte_newlines = sum(sp.encode(t).count(sp.piece_to_id("<0x0A>")) for t in held_out)
    assert byte_newlines < newlines // 4  # most newlines now ride inside a learned piece


def test_hf_tokenizer_gives_sentencepiece_ids_on_content_even_for_special_literals(trained: Path) -> None:
    """On content runs (text without marker strings) the HF twin and SentencePiece give the same ids."""
    sp = load_processor(trained)
    raw = Tokenizer.from_file(str(trained / "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(trained)
    runs = [run for record in _records("bufio")[:6] for run in content_runs(record)]
    assert len(runs) >= 12  # the repo line, each path attribute, each file body
    texts = [*runs, PLANTED, runs[2][:500] + PLANTED + runs[5][:500], '\n<s>\n path="a.go">\n</s>']
    for text in texts:
        expected = sp.encode(text)
        assert raw.encode(text, add_special_tokens=False).ids == expected, text[:80]
        assert auto.encode(text, add_special_tokens=False) == expected, text[:80]
        assert auto.decode(expected) == text
    assert sp.encode("<s>") != [sp.bos_id()]  # the literal is text, not the control id
    assert (auto.bos_token_id, auto.eos_token_id, auto.pad_token_id) == (sp.bos_id(), sp.eos_id(), sp.pad_id())
    assert auto.decode([sp.bos_id(), *sp.encode("x"), sp.eos_id()], skip_special_tokens=True) == "x"


def test_hf_tokenizer_maps_marker_strings_to_marker_ids_for_prompting(trained: Path, codec: RecordCodec) -> None:
    """A prompt spells markers; the HF tokenizers read them as the marker ids the model was trained on."""
    raw = Tokenizer.from_file(str(trained / "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(trained)
    for m, i in codec.marker_ids.items():
        assert auto.encode(m, add_special_tokens=False) == [i] == raw.encode(m, add_special_tokens=False).ids, m
        assert auto.decode([i]) == m == auto.decode([i], skip_special_tokens=True)  # markers are not "special"
    prompt = "".join(MARKERS)
    assert auto.encode(prompt, add_special_tokens=False) == [codec.marker_ids[m] for m in MARKERS]
    # A stored record written out for a person, tokenized by HF, is the record's codec ids (content here spells
    # no marker); and the codec's ids decode through HF to that readable text.
    records = [render_code("acme/x", "main.go", "package main\n\nfunc main() {}\n"), *_records("errors")[:2]]
    for record in records:
        ids = codec.encode_one(record)
        assert auto.encode(readable(record), add_special_tokens=False) == ids
        assert raw.encode(readable(record), add_special_tokens=False).ids == ids
        assert auto.decode(ids) == readable(record)
    assert "<s>" not in {t.content for t in raw.get_added_tokens_decoder().values()}  # literal <s> stays text


def test_content_never_yields_a_marker_id(trained: Path, codec: RecordCodec) -> None:
    """Content holding every marker string (and ``<s>``) is characters; only the record's structure is marker ids."""
    sp = load_processor(trained)
    control = {i for i in range(sp.get_piece_size()) if sp.is_control(i)}
    assert set(codec.marker_ids.values()) <= control
    assert not control & set(sp.encode(HOSTILE))
    record = render_code("a/b", "x.go", HOSTILE)
    ids = codec.encode_one(record)
    structure = [codec.marker_ids[MARKER_OF[ch]] for ch in record if ch in MARKER_OF]
    own = [codec.marker_ids[m] for m in ("<CODE>", "<REPO>", "<FILE", "</FILE>")]
    assert [i for i in ids if i in control] == structure == own
    assert codec.decode(ids) == record
    # The whole readable form of hostile records, encoded as content: no marker id at all.
    for record in _all_marker_records():
        assert not control & {i for ids in codec.encode([readable(record)]) for i in ids}, record[:60]


def test_records_with_every_marker_round_trip(codec: RecordCodec) -> None:
    records = _all_marker_records()
    assert {MARKER_OF[ch] for r in records for ch in r if ch in MARKER_OF} == set(MARKERS)
    encoded = codec.encode(records)
    for record, ids in zip(records, encoded, strict=True):
        assert codec.decode(ids) == record
        assert codec.encode_one(record) == ids  # batching does not change ids
    assert codec.encode([]) == [] and codec.encode([""]) == [[]] and codec.decode([]) == ""
    assert codec.encode([mark("<REPO>")]) == [[codec.marker_ids["<REPO>"]]]
    with pytest.raises(ValueError, match="does not know"):
        RecordCodec(codec.sp, MARKERS[:1]).encode([mark("<REPO>")])


def test_marker_ids_are_control_pieces_and_described(trained: Path, codec: RecordCodec) -> None:
    sp = load_processor(trained)
    info = describe(sp, MARKERS)
    assert info["marker_ids"] == codec.marker_ids == {m: 4 + k for k, m in enumerate(MARKERS)}
    assert all(sp.is_control(i) and sp.id_to_piece(i) == m for m, i in info["marker_ids"].items())
    assert all(len(sp.encode(m)) > 1 for m in MARKERS)  # spelled in text, a marker is its characters


def test_a_tokenizer_without_control_markers_is_refused(tmp_path: Path) -> None:
    import sentencepiece as spm  # noqa: PLC0415

    lines = [f"func F{i}() {{ return {i} }}" for i in range(200)]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=str(tmp_path / "tokenizer"),
                                   model_type="bpe", vocab_size=200, user_defined_symbols=MARKERS[:3],
                                   minloglevel=2)  # fmt: skip
    sp = load_processor(tmp_path)
    with pytest.raises(MissingMarkerError, match="<NAT>"):
        describe(sp, MARKERS)
    with pytest.raises(MissingMarkerError, match="<REPO>"):
        RecordCodec(sp, MARKERS)


def _write_partition(path: Path, key: str, n: int) -> None:
    ids = [f"{key}#{i}" for i in range(n)]
    texts = [render_code(key, "f.go", f"// repo {key} record {i}\nfunc F{i}() {{\n\treturn\n}}\n") for i in range(n)]
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
    assert not RESERVED.search(trained_text)  # content runs only: no sentinel reaches the trainer
    assert not any(f"repo {k} " in trained_text for k in val)
    assert all(f"repo {k} " in trained_text for k in keys if k not in val and k != keys[0])
    assert f"repo {keys[0]} record 0\n" not in trained_text + "".join(holdout.holdout_texts())  # dropped duplicate
    expected_records = 3 * (len(keys) - len(val)) - (keys[0] not in val)
    assert holdout.training_records == expected_records
    texts = holdout.holdout_texts()
    assert texts and all(any(f"repo {k} " in t for k in val) for t in texts)
    assert len(RepoHoldout(files, 0.1, max_records=2).holdout_texts()) == 2
