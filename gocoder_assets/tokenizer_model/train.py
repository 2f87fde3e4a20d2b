"""One SentencePiece BPE tokenizer for the whole corpus, plus its Hugging Face twin.

Settings are chosen so Go source round-trips byte for byte (see shared NOTES):
identity normalization, no dummy prefix, no whitespace collapsing, byte fallback, and
``split_by_whitespace=False`` — measured on the Go standard library, that last one both
compresses better and makes the Hugging Face BPE built below produce *identical* ids
(with whitespace pre-splitting, runs of spaces tokenize differently in the two
libraries). llama.cpp's SPM tokenizer does not pre-split either.

Markers (``<REPO>``, ``<FILE`` …) are SentencePiece *control* symbols: they own ids but are never
matched in text, so a README that says ``<REPO>`` cannot forge structure. Records are stored with one
sentinel character per marker and turned into ids by ``encode.RecordCodec`` (content runs encoded,
marker ids inserted); training sentences are content runs only, so no sentence holds a sentinel.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm

from gocoder_assets.categorized_records.serialize import RESERVED, split_markers
from gocoder_assets.packed_shards.pack import VAL_FRACTION, assign_splits
from gocoder_assets.tokenizer_model.encode import RecordCodec

SPECIALS = {"unk": (0, "<unk>"), "bos": (1, "<s>"), "eos": (2, "</s>"), "pad": (3, "<pad>")}
MODEL_FILE = "tokenizer.model"


@dataclasses.dataclass(frozen=True)
class TokenizerOptions:
    vocab_size: int = 8192
    # Sentences (runs of ``chunk_lines`` lines) sampled for training; bounds memory. 125k runs of 16
    # lines is about the 2M lines the line-based trainer sampled (≈ 1 GB RSS, NOTES).
    input_sentence_size: int = 125_000
    chunk_lines: int = 16
    max_sentence_length: int = 16384
    character_coverage: float = 0.9995
    seed: int = 1234
    num_threads: int = 2
    # Fixed, not settings: Go must round-trip byte for byte (module docstring). Recorded in the info file
    # so the checks judge the tokenizer by what it was trained with (no unknown ids only with byte fallback).
    byte_fallback: bool = dataclasses.field(default=True, init=False)


@dataclasses.dataclass(frozen=True)
class HoldoutOptions:
    """Which repositories the tokenizer never trains on, and how many of their records it is measured on.

    ``holdout_fraction`` goes to packed_shards' ``assign_splits``, with the same default as its
    val_fraction (``VAL_FRACTION``), so by default the held-out repos are exactly the val repos.
    """

    holdout_fraction: float = VAL_FRACTION
    holdout_max_records: int = 500


def iter_texts(parquet_files: Iterable[Path], skip: Container[str] = ()) -> Iterator[tuple[str, str]]:
    """(record_id, text) of every record not in ``skip``, streamed batch by batch (memory stays flat)."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    for path in parquet_files:
        for batch in pq.ParquetFile(path).iter_batches(columns=["record_id", "text"], batch_size=256):
            for record_id, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                if record_id not in skip:
                    yield record_id, text


def content_runs(text: str) -> list[str]:
    """The non-empty text between a stored record's markers (its sentinels dropped)."""
    return [run for run in split_markers(text)[0::2] if run]


def record_chunks(text: str, max_lines: int, max_bytes: int) -> Iterator[str]:
    """Training sentences of one stored record: ``text_chunks`` of each content run, never a sentinel.

    Markers are control symbols, which SentencePiece neither learns from nor matches in text; a
    sentinel left in a sentence would only teach it pieces for a character content never holds.
    """
    for run in content_runs(text):
        yield from text_chunks(run, max_lines, max_bytes)


def text_chunks(text: str, max_lines: int, max_bytes: int) -> Iterator[str]:
    """Cut ``text`` at line ends into runs of up to ``max_lines`` lines, newlines kept.

    SentencePiece only learns pieces inside a sentence, so training on single lines meant ``\n``
    was never inside a piece and every newline cost a byte token. Runs of lines let it learn
    ``}\n``, ``\n\t\t`` and ``{\n\t``. Runs stay under ``max_bytes`` (the trainer skips longer
    sentences); a single line longer than that is yielded alone and skipped there, as before.
    """
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    chunk: list[str] = []
    size = 0
    for line in lines:
        n = len(line.encode("utf-8"))
        if chunk and (len(chunk) >= max_lines or size + n > max_bytes):
            yield "".join(chunk)
            chunk, size = [], 0
        chunk.append(line)
        size += n
    if chunk:
        yield "".join(chunk)


class RepoHoldout:
    """Holds out whole repositories, the ones packed_shards puts in val (same ``assign_splits``).

    A per-record hash let val repos' text into training, so held-out numbers were optimistic
    and the vocabulary had seen the validation set. Here val partitions are only measured on.
    """

    def __init__(self, files: Mapping[str, Path], val_fraction: float, max_records: int, skip: Container[str] = ()):
        splits = assign_splits(list(files), val_fraction)
        self.files, self.max_records, self.skip = files, max_records, skip
        self.val_keys = sorted(k for k in files if splits[k] == "val")
        self.training_records = 0

    def sentences(self, options: TokenizerOptions) -> Iterator[str]:
        """Multi-line training sentences (content runs, see ``record_chunks``) from train partitions only;
        counts the records used."""
        val = set(self.val_keys)
        train = [f for k, f in self.files.items() if k not in val]
        for _, text in iter_texts(train, self.skip):
            self.training_records += 1
            yield from record_chunks(text, options.chunk_lines, options.max_sentence_length)

    def holdout_texts(self) -> list[str]:
        """Up to ``max_records`` records of the val partitions, in partition order."""
        out: list[str] = []
        for _, text in iter_texts([self.files[k] for k in self.val_keys], self.skip):
            if len(out) >= self.max_records:
                break
            out.append(text)
        return out


def round_trip_report(codec: RecordCodec, texts: Sequence[str]) -> dict[str, float | int]:
    """How the tokenizer does on stored records it never saw: exactness, compression, unknowns.

    Exact means ``codec.decode(codec.encode(record)) == record``, markers included. Bytes are the
    content's UTF-8 bytes: a marker is structure, not text, and counts 0 (as in ``token_byte_lengths``).
    """
    ids = codec.encode(list(texts)) if texts else []
    exact = sum(codec.decode(i) == t for i, t in zip(ids, texts, strict=True))
    n_tokens = sum(len(i) for i in ids)
    n_bytes = sum(len(RESERVED.sub("", t).encode("utf-8")) for t in texts)
    unk = sum(x == codec.sp.unk_id() for i in ids for x in i)
    return {
        "holdout_records": len(texts),
        "round_trip_exact_pct": 100.0 * exact / len(texts) if texts else 100.0,
        "bytes_per_token": n_bytes / n_tokens if n_tokens else 0.0,
        "unk_rate": unk / n_tokens if n_tokens else 0.0,
    }


def train_tokenizer(lines: Iterable[str], out_dir: Path, markers: Sequence[str], options: TokenizerOptions) -> None:
    """Train into ``out_dir`` (tokenizer.model + tokenizer.json/tokenizer_config.json).

    ``lines`` must be content (``record_chunks``), never stored records: the markers are registered as
    control symbols, ids 4… after ``<unk> <s> </s> <pad>``, which SentencePiece does not match in text.
    """
    spm.set_random_generator_seed(options.seed)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(out_dir / "tokenizer"),
        model_type="bpe",
        vocab_size=options.vocab_size,
        byte_fallback=options.byte_fallback,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        allow_whitespace_only_pieces=True,
        split_by_whitespace=False,
        split_digits=True,
        max_sentence_length=options.max_sentence_length,
        character_coverage=options.character_coverage,
        input_sentence_size=options.input_sentence_size,
        shuffle_input_sentence=True,
        control_symbols=list(markers),
        unk_id=SPECIALS["unk"][0],
        bos_id=SPECIALS["bos"][0],
        eos_id=SPECIALS["eos"][0],
        pad_id=SPECIALS["pad"][0],
        num_threads=options.num_threads,
        minloglevel=2,
    )
    write_hf_tokenizer(out_dir / MODEL_FILE, out_dir, markers)


def write_hf_tokenizer(model_file: Path, out_dir: Path, markers: Sequence[str]) -> None:
    """Build tokenizer.json from the SentencePiece pieces so `AutoTokenizer` loads it.

    Built with `tokenizers` directly: transformers' own converter needs the SentencePiece
    protobuf module, which fails to import beside the protobuf 6 that dagster pins.

    SentencePiece never matches its control pieces (``<s>``, ``</s>``, ``<unk>``, ``<pad>``) in
    raw text, so a Go string holding ``"<s>"`` encodes as ``<``, ``s``, ``>``; the shards and
    llama.cpp say so. An added special token would be cut out of the text instead, so the specials
    are dropped from tokenizer.json's added tokens (plain `tokenizers` then gives the same ids) and
    ``split_special_tokens`` tells transformers, which re-registers them on load, to do the same.

    The markers are control pieces too, but this tokenizer is for *prompting*: a person writes
    ``<CODE><REPO>acme/x`` and means the markers. So they are added tokens, matched in text, with
    ``special=False``: ``split_special_tokens`` (the Rust ``encode_special_tokens``) stops transformers
    from matching *special* added tokens only, so non-special markers are still cut out of the text
    and map to their ids, and ``decode`` writes them back even with ``skip_special_tokens=True``.
    Training data never goes through this file: packed_shards encodes records with ``RecordCodec``,
    where content cannot produce a marker id. On text without marker strings both give the same ids.
    No merge may build a control piece (SentencePiece's BPE never emits one, and a merge of ``<RE`` +
    ``PO>`` would rank first, control ids being the lowest), so control pieces are skipped there.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers  # noqa: PLC0415
    from transformers import PreTrainedTokenizerFast  # noqa: PLC0415
    from transformers.tokenization_utils_base import generate_merges  # noqa: PLC0415

    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    vocab = {sp.id_to_piece(i): i for i in range(sp.vocab_size())}
    control = [sp.id_to_piece(i) for i in range(sp.vocab_size()) if sp.is_control(i)]
    merges = generate_merges(vocab, skip_tokens=control)
    bpe = models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    tok = Tokenizer(bpe)
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_tokens([AddedToken(m, special=False, normalized=False) for m in markers])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=SPECIALS["unk"][1],
        bos_token=SPECIALS["bos"][1],
        eos_token=SPECIALS["eos"][1],
        pad_token=SPECIALS["pad"][1],
        clean_up_tokenization_spaces=False,
        split_special_tokens=True,
    )
    fast.save_pretrained(str(out_dir))
    specials = {p for _, p in SPECIALS.values()}
    path = out_dir / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] not in specials]
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


def load_processor(out_dir: Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(out_dir / MODEL_FILE))


def token_byte_lengths(sp: spm.SentencePieceProcessor) -> np.ndarray:
    """UTF-8 bytes each id contributes to decoded text (int32, one per id): bits-per-byte's denominator.

    Bits per byte compares models across tokenizers, so it must count the bytes of the text itself,
    not of the pieces: ``\u2581`` stands for one space byte, a byte-fallback piece ``<0xNN>`` is one
    byte, and control/unknown/unused ids (BOS, EOS, PAD, UNK) decode to nothing. The markers are
    control ids too and count 0 on purpose: they are structure, not text, so a record's bytes are its
    content's. With identity normalization and no dummy prefix the sum over ``RecordCodec.encode`` of
    a record is exactly the UTF-8 length of its content runs (the record without its sentinels).
    """
    lengths = np.zeros(sp.get_piece_size(), dtype=np.int32)
    for i in range(sp.get_piece_size()):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        lengths[i] = 1 if sp.is_byte(i) else len(sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8"))
    return lengths


def describe(sp: spm.SentencePieceProcessor, markers: Sequence[str]) -> dict[str, Any]:
    """Facts downstream stages and checks rely on: special ids and each marker's control id.

    A marker's id is its piece's (``piece_to_id``), which must be a control piece; ``MissingMarkerError``
    otherwise (``encode.marker_ids``). ``sp.encode(marker)`` would be its characters, not its id.
    """
    marker_ids = RecordCodec(sp, markers).marker_ids
    return {
        "vocab_size": sp.vocab_size(),
        "bos_id": sp.bos_id(),
        "eos_id": sp.eos_id(),
        "unk_id": sp.unk_id(),
        "pad_id": sp.pad_id(),
        "marker_ids": marker_ids,
    }
