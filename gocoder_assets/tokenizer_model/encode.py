"""The one place a stored record becomes token ids, and ids become a stored record again.

A stored record holds each marker as one reserved sentinel character (``serialize.SENTINELS``).
The tokenizer registers the markers as SentencePiece *control* symbols, and SentencePiece never
matches a control symbol in text: ``sp.encode("<REPO>")`` is ``<``, ``R`` … like any other text.
So the codec cuts a record at its sentinels (``split_markers``), lets SentencePiece encode only the
content runs between them, and puts each marker's control id where its sentinel was. Content can
therefore never produce a marker id — not by spelling a marker, and not by holding a sentinel,
which the categorizer refuses before a record is stored.

``decode`` is the exact inverse: ids are cut at marker ids (SentencePiece decodes a control id to
"", so decoding the whole list at once would lose them), each run is decoded, and every marker id
becomes its sentinel again. ``serialize.readable`` turns the result into marker strings for people.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gocoder_assets.categorized_records.serialize import MARKER_OF, MARKERS, SENTINELS, split_markers


class MissingMarkerError(ValueError):
    """The tokenizer does not hold a marker as a control piece (trained before markers were control symbols?)."""


def marker_ids(sp: Any, markers: Sequence[str] = MARKERS) -> dict[str, int]:
    """Marker → its control id in ``sp``; MissingMarkerError names every marker that is absent or not control."""
    ids = {m: sp.piece_to_id(m) for m in markers}
    # piece_to_id answers unk_id for an unknown piece; a user-defined marker would be matched in text.
    bad = [m for m, i in ids.items() if sp.id_to_piece(i) != m or not sp.is_control(i)]
    if bad:
        raise MissingMarkerError(
            f"tokenizer lacks markers as control pieces: {bad}; retrain tokenizer_model (markers are control_symbols)"
        )
    return ids


class RecordCodec:
    """Stored records ⇄ ids for one SentencePiece processor; see the module docstring."""

    def __init__(self, sp: Any, markers: Sequence[str] = MARKERS, num_threads: int = 2):
        self.sp = sp
        self.num_threads = num_threads
        self.marker_ids = marker_ids(sp, markers)
        self._id_of_sentinel = {SENTINELS[m]: i for m, i in self.marker_ids.items()}
        self._sentinel_of_id = {i: s for s, i in self._id_of_sentinel.items()}

    def vocab_size(self) -> int:
        return self.sp.vocab_size()

    def eos_id(self) -> int:
        return self.sp.eos_id()

    def _marker_id(self, sentinel: str) -> int:
        try:
            return self._id_of_sentinel[sentinel]
        except KeyError:
            name = MARKER_OF.get(sentinel, f"U+{ord(sentinel):04X}")
            raise ValueError(f"record holds marker {name!r}, which this codec does not know") from None

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of each stored record: content runs in one batched SentencePiece call, marker ids between."""
        pieces = [split_markers(t) for t in texts]
        runs = [run for parts in pieces for run in parts[0::2] if run]
        encoded = iter(self.sp.encode(runs, num_threads=self.num_threads) if runs else [])
        out = []
        for parts in pieces:
            ids: list[int] = []
            for k, part in enumerate(parts):
                if k % 2:
                    ids.append(self._marker_id(part))
                elif part:
                    ids.extend(next(encoded))
            out.append(ids)
        return out

    def encode_one(self, text: str) -> list[int]:
        return self.encode([text])[0]

    def decode(self, ids: Sequence[int]) -> str:
        """The stored record of ``ids`` (marker ids → sentinels); ``decode(encode_one(t)) == t``."""
        parts: list[str] = []
        run: list[int] = []
        for i in ids:
            i = int(i)
            sentinel = self._sentinel_of_id.get(i)
            if sentinel is None:
                run.append(i)
                continue
            if run:
                parts.append(self.sp.decode(run))
                run = []
            parts.append(sentinel)
        if run:
            parts.append(self.sp.decode(run))
        return "".join(parts)
