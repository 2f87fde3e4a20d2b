"""Checks on tokenizer_model, on held-out records it never trained on.

They judge the tokenizer by what it was trained with, as ``tokenizer_info.json`` records it (``settings``:
vocabulary size, byte fallback, markers; ``holdout_partitions``), never by today's defaults. An info file
without settings predates that record and fails with "re-materialize" rather than being guessed at.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg
import sentencepiece as spm

from gocoder_assets.categorized_records.serialize import readable
from gocoder_assets.checks import asset_check, result
from gocoder_assets.resources import StorageResource
from gocoder_assets.storage import Layout, file_sha256, read_json
from gocoder_assets.tokenizer_model.assets import INFO_FILE, tokenizer_model
from gocoder_assets.tokenizer_model.encode import MissingMarkerError, RecordCodec
from gocoder_assets.tokenizer_model.train import MODEL_FILE, iter_texts, load_processor, round_trip_report

SAMPLE = 300  # a check parameter (how many held-out records are judged), not a training setting
UNRECORDED = (
    "tokenizer_info.json has no settings: written before settings were recorded; re-materialize tokenizer_model"
)


def recorded_info(layout: Layout) -> dict[str, Any] | None:
    """The info file when it records the settings the tokenizer was trained with, else None."""
    info = read_json(layout.tokenizer_dir / INFO_FILE)
    return info if isinstance(info.get("settings"), dict) else None


def artifact_problems(layout: Layout, sp: spm.SentencePieceProcessor, info: dict[str, Any]) -> list[list]:
    """Rows for every way the model file disagrees with the info that describes it (and downstream reads)."""
    rows: list[list] = []
    sha = file_sha256(layout.tokenizer_dir / MODEL_FILE)
    if sha != info["sha256"]:
        rows.append(["model file", MODEL_FILE, f"sha256 {sha[:12]}…, info says {info['sha256'][:12]}…"])
    wanted = info["settings"]["vocab_size"]
    if sp.vocab_size() != wanted or info["vocab_size"] != wanted:
        rows.append(
            ["vocab size", sp.vocab_size(), f"trained with vocab_size {wanted}, info says {info['vocab_size']}"]
        )
    try:
        ids = RecordCodec(sp, info["settings"]["markers"]).marker_ids
    except MissingMarkerError:
        return rows  # round_trip_problems reports it
    if ids != info["marker_ids"]:
        rows.append(["marker ids", "all", f"{ids}, info (what packed_shards used) says {info['marker_ids']}"])
    return rows


def holdout_sample(storage: StorageResource) -> list[str]:
    """Records of the partitions the tokenizer was not trained on, as its info file names them.

    Read from the info rather than recomputed, so the check tests exactly what training left out.
    """
    layout = storage.layout()
    keys = read_json(layout.tokenizer_dir / INFO_FILE).get("holdout_partitions", [])
    sample = []
    for _, text in iter_texts(layout.categorized_file(k) for k in keys):
        sample.append(text)
        if len(sample) >= SAMPLE:
            break
    return sample


def round_trip_problems(sp: spm.SentencePieceProcessor, sample: list[str], markers: Sequence[str]) -> list[list]:
    """Rows ``[what, which, detail]`` for every way the codec fails on ``sample`` (stored records).

    A record must round-trip exactly; each marker must be one control id (``RecordCodec`` refuses a
    tokenizer where one is not); and the same record with its markers written out (``readable``),
    encoded *as content*, must hold no marker id: content cannot forge structure.
    """
    try:
        codec = RecordCodec(sp, markers)
    except MissingMarkerError as e:
        return [["marker", "all", str(e)]]
    ids = codec.encode(sample)
    rows: list[list] = [["record", i, len(t)] for i, (t, x) in enumerate(zip(sample, ids, strict=True))
                        if codec.decode(x) != t]  # fmt: skip
    hostile = [readable(t) for t in sample] + ["".join(markers)]
    forged = set(codec.marker_ids.values())
    for i, x in enumerate(codec.encode(hostile)):
        hits = sorted({sp.id_to_piece(t) for t in x if t in forged})
        if hits:
            rows.append(["forged marker", i, ", ".join(hits)])
    return rows


@asset_check(
    asset=tokenizer_model,
    blocking=True,
    description="decode(encode(x)) == x for stored records; markers one control id each; "
    "marker strings in content never yield a marker id.",
)
def tokenizer_round_trip(storage: StorageResource) -> dg.AssetCheckResult:
    layout = storage.layout()
    info = recorded_info(layout)
    if info is None:
        return result(False, ["what", "which", "size / detail"], [["settings", INFO_FILE, UNRECORDED]])
    sp = load_processor(layout.tokenizer_dir)
    sample = holdout_sample(storage)
    markers = info["settings"]["markers"]
    rows = artifact_problems(layout, sp, info) + round_trip_problems(sp, sample, markers)
    bad = sum(r[0] == "record" for r in rows)
    exact = 100.0 * (len(sample) - bad) / (len(sample) or 1)
    return result(not rows, ["what", "which", "size / detail"], rows, round_trip_exact_pct=exact, sample=len(sample))


@asset_check(
    asset=tokenizer_model,
    description="Bytes per token and unknown-token rate on held-out text; no unknown ids when it was trained with "
    "byte fallback.",
)
def tokenizer_efficiency(storage: StorageResource) -> dg.AssetCheckResult:
    layout = storage.layout()
    info = recorded_info(layout)
    if info is None:
        return result(False, ["measure", "value"], [["settings", UNRECORDED]], blocking_failure=False)
    settings = info["settings"]
    sp = load_processor(layout.tokenizer_dir)
    report = round_trip_report(RecordCodec(sp, settings["markers"]), holdout_sample(storage))
    rows = [[k, round(v, 4) if isinstance(v, float) else v] for k, v in report.items()]
    rows += [["trained with vocab_size", settings["vocab_size"]], ["byte_fallback", settings["byte_fallback"]]]
    # Byte fallback spells any character as bytes, so an unknown id means a broken model; without it
    # (a tokenizer trained otherwise) unknown ids are expected for rare characters and only reported.
    passed = report["unk_rate"] == 0 or not settings["byte_fallback"]
    return result(passed, ["measure", "value"], rows, blocking_failure=False, **report)
