"""One SentencePiece BPE tokenizer for the whole corpus, plus its Hugging Face twin.

Settings are chosen so Go source round-trips byte for byte (see shared NOTES):
identity normalization, no dummy prefix, no whitespace collapsing, byte fallback, and
``split_by_whitespace=False`` — measured on the Go standard library, that last one both
compresses better and makes the Hugging Face BPE built below produce *identical* ids
(with whitespace pre-splitting, runs of spaces tokenize differently in the two
libraries). llama.cpp's SPM tokenizer does not pre-split either.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Container, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm

SPECIALS = {"unk": (0, "<unk>"), "bos": (1, "<s>"), "eos": (2, "</s>"), "pad": (3, "<pad>")}
MODEL_FILE = "tokenizer.model"


@dataclasses.dataclass(frozen=True)
class TokenizerOptions:
    vocab_size: int = 8192
    # Lines sampled for training; bounds memory (≈ 1 GB RSS at 2M lines, NOTES).
    input_sentence_size: int = 2_000_000
    max_sentence_length: int = 16384
    character_coverage: float = 0.9995
    seed: int = 1234
    num_threads: int = 2


def iter_texts(parquet_files: Iterable[Path], skip: Container[str] = ()) -> Iterator[tuple[str, str]]:
    """(record_id, text) of every record not in ``skip``, streamed batch by batch (memory stays flat)."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    for path in parquet_files:
        for batch in pq.ParquetFile(path).iter_batches(columns=["record_id", "text"], batch_size=256):
            for record_id, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                if record_id not in skip:
                    yield record_id, text


def is_holdout(record_id: str, fraction: float) -> bool:
    """A stable pseudo-random slice of records kept out of training to test the tokenizer on."""
    return int(hashlib.sha256(record_id.encode()).hexdigest()[:8], 16) / 16**8 < fraction


class HoldoutSplitter:
    """Feeds training lines from non-held-out records and keeps a capped held-out sample."""

    def __init__(self, fraction: float, max_records: int) -> None:
        self.fraction, self.max_records = fraction, max_records
        self.holdout: list[str] = []
        self.training_records = 0

    def lines(self, texts: Iterable[tuple[str, str]]) -> Iterator[str]:
        for record_id, text in texts:
            if is_holdout(record_id, self.fraction):
                if len(self.holdout) < self.max_records:
                    self.holdout.append(text)
                continue
            self.training_records += 1
            yield from (line for line in text.split("\n") if line)


def round_trip_report(sp: spm.SentencePieceProcessor, texts: Sequence[str]) -> dict[str, float | int]:
    """How the tokenizer does on text it never saw: exactness, compression, unknowns."""
    ids = sp.encode(list(texts), num_threads=2) if texts else []
    exact = sum(sp.decode(i) == t for i, t in zip(ids, texts, strict=True))
    n_tokens = sum(len(i) for i in ids)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    unk = sum(x == sp.unk_id() for i in ids for x in i)
    return {
        "holdout_records": len(texts),
        "round_trip_exact_pct": 100.0 * exact / len(texts) if texts else 100.0,
        "bytes_per_token": n_bytes / n_tokens if n_tokens else 0.0,
        "unk_rate": unk / n_tokens if n_tokens else 0.0,
    }


def train_tokenizer(lines: Iterable[str], out_dir: Path, markers: Sequence[str], options: TokenizerOptions) -> None:
    """Train into ``out_dir`` (tokenizer.model + tokenizer.json/tokenizer_config.json)."""
    spm.set_random_generator_seed(options.seed)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(out_dir / "tokenizer"),
        model_type="bpe",
        vocab_size=options.vocab_size,
        byte_fallback=True,
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
        user_defined_symbols=list(markers),
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
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers  # noqa: PLC0415
    from transformers import PreTrainedTokenizerFast  # noqa: PLC0415
    from transformers.tokenization_utils_base import generate_merges  # noqa: PLC0415

    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    vocab = {sp.id_to_piece(i): i for i in range(sp.vocab_size())}
    bpe = models.BPE(vocab=vocab, merges=generate_merges(vocab), unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    tok = Tokenizer(bpe)
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(p, special=True, normalized=False) for _, p in SPECIALS.values()])
    tok.add_tokens([AddedToken(m, special=False, normalized=False) for m in markers])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=SPECIALS["unk"][1],
        bos_token=SPECIALS["bos"][1],
        eos_token=SPECIALS["eos"][1],
        pad_token=SPECIALS["pad"][1],
        clean_up_tokenization_spaces=False,
    )
    fast.save_pretrained(str(out_dir))


def load_processor(out_dir: Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(out_dir / MODEL_FILE))


def token_byte_lengths(sp: spm.SentencePieceProcessor) -> np.ndarray:
    """UTF-8 bytes each id contributes to decoded text (int32, one per id): bits-per-byte's denominator.

    Bits per byte compares models across tokenizers, so it must count the bytes of the text itself,
    not of the pieces: ``\u2581`` stands for one space byte, a byte-fallback piece ``<0xNN>`` is one
    byte, and control/unknown/unused ids (BOS, EOS, PAD, UNK) decode to nothing. With identity
    normalization and no dummy prefix the sum over ``encode(text)`` is exactly ``len(text.encode())``.
    """
    lengths = np.zeros(sp.get_piece_size(), dtype=np.int32)
    for i in range(sp.get_piece_size()):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        lengths[i] = 1 if sp.is_byte(i) else len(sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8"))
    return lengths


def describe(sp: spm.SentencePieceProcessor, markers: Sequence[str]) -> dict[str, Any]:
    """Facts downstream stages and checks rely on: special ids and each marker's single id."""
    marker_ids = {}
    for m in markers:
        ids = sp.encode(m)
        if len(ids) != 1:
            raise ValueError(f"marker {m!r} encodes to {len(ids)} pieces, expected 1")
        marker_ids[m] = ids[0]
    return {
        "vocab_size": sp.vocab_size(),
        "bos_id": sp.bos_id(),
        "eos_id": sp.eos_id(),
        "unk_id": sp.unk_id(),
        "pad_id": sp.pad_id(),
        "marker_ids": marker_ids,
    }
