"""Checks on tokenizer_model, on held-out records it never trained on."""

import dagster as dg
import sentencepiece as spm

from gocoder_assets.categorized_records.serialize import MARKERS, readable
from gocoder_assets.checks import asset_check, result
from gocoder_assets.resources import StorageResource
from gocoder_assets.storage import read_json
from gocoder_assets.tokenizer_model.assets import INFO_FILE, tokenizer_model
from gocoder_assets.tokenizer_model.encode import MissingMarkerError, RecordCodec
from gocoder_assets.tokenizer_model.train import iter_texts, load_processor, round_trip_report

SAMPLE = 300


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


def round_trip_problems(sp: spm.SentencePieceProcessor, sample: list[str]) -> list[list]:
    """Rows ``[what, which, detail]`` for every way the codec fails on ``sample`` (stored records).

    A record must round-trip exactly; each marker must be one control id (``RecordCodec`` refuses a
    tokenizer where one is not); and the same record with its markers written out (``readable``),
    encoded *as content*, must hold no marker id: content cannot forge structure.
    """
    try:
        codec = RecordCodec(sp, MARKERS)
    except MissingMarkerError as e:
        return [["marker", "all", str(e)]]
    ids = codec.encode(sample)
    rows: list[list] = [["record", i, len(t)] for i, (t, x) in enumerate(zip(sample, ids, strict=True))
                        if codec.decode(x) != t]  # fmt: skip
    hostile = [readable(t) for t in sample] + ["".join(MARKERS)]
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
    sp = load_processor(storage.layout().tokenizer_dir)
    sample = holdout_sample(storage)
    rows = round_trip_problems(sp, sample)
    bad = sum(r[0] == "record" for r in rows)
    exact = 100.0 * (len(sample) - bad) / (len(sample) or 1)
    return result(not rows, ["what", "which", "size / detail"], rows, round_trip_exact_pct=exact, sample=len(sample))


@asset_check(asset=tokenizer_model, description="Bytes per token and unknown-token rate on held-out text.")
def tokenizer_efficiency(storage: StorageResource) -> dg.AssetCheckResult:
    sp = load_processor(storage.layout().tokenizer_dir)
    report = round_trip_report(RecordCodec(sp, MARKERS), holdout_sample(storage))
    rows = [[k, round(v, 4) if isinstance(v, float) else v] for k, v in report.items()]
    return result(report["unk_rate"] == 0, ["measure", "value"], rows, blocking_failure=False, **report)
