"""Checks on tokenizer_model, on held-out records it never trained on."""

import dagster as dg

from gocoder_assets.categorized_records.serialize import MARKERS
from gocoder_assets.checks import result
from gocoder_assets.resources import StorageResource
from gocoder_assets.storage import read_json
from gocoder_assets.tokenizer_model.assets import INFO_FILE, tokenizer_model
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


@dg.asset_check(asset=tokenizer_model, blocking=True, description="decode(encode(x)) == x; markers one token each.")
def tokenizer_round_trip(storage: StorageResource) -> dg.AssetCheckResult:
    sp = load_processor(storage.layout().tokenizer_dir)
    sample = holdout_sample(storage)
    bad = [[i, len(t)] for i, t in enumerate(sample) if sp.decode(sp.encode(t)) != t]
    split = [[m, len(sp.encode(m))] for m in MARKERS if len(sp.encode(m)) != 1]
    rows = [["record", *b] for b in bad] + [["marker", *m] for m in split]
    exact = 100.0 * (len(sample) - len(bad)) / (len(sample) or 1)
    return result(not rows, ["what", "which", "size / pieces"], rows, round_trip_exact_pct=exact, sample=len(sample))


@dg.asset_check(asset=tokenizer_model, description="Bytes per token and unknown-token rate on held-out text.")
def tokenizer_efficiency(storage: StorageResource) -> dg.AssetCheckResult:
    sp = load_processor(storage.layout().tokenizer_dir)
    report = round_trip_report(sp, holdout_sample(storage))
    rows = [[k, round(v, 4) if isinstance(v, float) else v] for k, v in report.items()]
    return result(report["unk_rate"] == 0, ["measure", "value"], rows, blocking_failure=False, **report)
