"""tokenizer_model: one SentencePiece BPE vocabulary over every repository partition.

``tokenizer_info.json`` records the settings it was trained with (``settings``: the options, the holdout,
the markers), so its checks judge it by what ran rather than by today's defaults.
"""

import dataclasses

import dagster as dg

from gocoder_assets.categorized_records.assets import categorized_records
from gocoder_assets.categorized_records.serialize import MARKERS
from gocoder_assets.checks import require_upstream_checks_passed
from gocoder_assets.dedup_index.assets import dedup_index
from gocoder_assets.dedup_index.index import dropped_ids
from gocoder_assets.repo_list.assets import repo_list
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.resources import StorageResource
from gocoder_assets.storage import atomic_dir, file_sha256, write_json
from gocoder_assets.tokenizer_model.encode import RecordCodec
from gocoder_assets.tokenizer_model.train import (
    MODEL_FILE,
    HoldoutOptions,
    RepoHoldout,
    TokenizerOptions,
    describe,
    load_processor,
    round_trip_report,
    train_tokenizer,
)

INFO_FILE = "tokenizer_info.json"


_OPTIONS = TokenizerOptions()
_HOLDOUT = HoldoutOptions()


class TokenizerConfig(dg.Config):
    """Vocabulary and sample size (``TokenizerOptions``); the held-out repositories (``HoldoutOptions``:
    the same default fraction as packed_shards' val_fraction, so they are the val repos; change both)."""

    vocab_size: int = _OPTIONS.vocab_size
    input_sentence_size: int = _OPTIONS.input_sentence_size
    holdout_fraction: float = _HOLDOUT.holdout_fraction
    holdout_max_records: int = _HOLDOUT.holdout_max_records


def recorded_settings(options: TokenizerOptions, holdout: HoldoutOptions) -> dict:
    """What the info file's ``settings`` holds: every option the tokenizer was trained with, its holdout,
    and its markers in id order (the checks build their codec from these, not from today's code)."""
    return {**dataclasses.asdict(options), **dataclasses.asdict(holdout), "markers": list(MARKERS)}


@dg.asset(
    deps=[repo_list, categorized_records, dedup_index], code_version="5", group_name="tokenize", kinds={"sentencepiece"}
)
def tokenizer_model(
    context: dg.AssetExecutionContext, config: TokenizerConfig, storage: StorageResource
) -> dg.MaterializeResult:
    """Trained on text from all partitions; its data version is the hash of the model file,
    so every packed_shards partition goes stale when the vocabulary changes."""
    require_upstream_checks_passed(context)
    layout = storage.layout()
    keys = list(read_repo_list(layout.repo_list_file))
    files = [layout.categorized_file(k) for k in keys]
    missing = [k for k, f in zip(keys, files, strict=True) if not f.exists()]
    if missing:
        raise FileNotFoundError(f"categorized_records not materialized for {len(missing)} partitions: {missing[:5]}")
    options = TokenizerOptions(vocab_size=config.vocab_size, input_sentence_size=config.input_sentence_size)
    held = HoldoutOptions(config.holdout_fraction, config.holdout_max_records)
    holdout = RepoHoldout(
        dict(zip(keys, files, strict=True)),
        held.holdout_fraction,
        held.holdout_max_records,
        dropped_ids(layout.dedup_file),
    )
    with atomic_dir(layout.tokenizer_dir) as out:
        train_tokenizer(holdout.sentences(options), out, MARKERS, options)
        sp = load_processor(out)
        info = describe(sp, MARKERS)
        report = round_trip_report(RecordCodec(sp, MARKERS), holdout.holdout_texts())
        info.update(
            report,
            sha256=file_sha256(out / MODEL_FILE),
            training_records=holdout.training_records,
            holdout_partitions=holdout.val_keys,
            settings=recorded_settings(options, held),
        )
        write_json(out / INFO_FILE, info)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(info["sha256"]),
        metadata={
            "vocab_size": info["vocab_size"],
            "training_records": holdout.training_records,
            "holdout_partitions": dg.MetadataValue.json(holdout.val_keys),
            **report,
            "marker_ids": dg.MetadataValue.json(info["marker_ids"]),
            "settings": dg.MetadataValue.json(info["settings"]),
            "sha256": info["sha256"],
            "path": dg.MetadataValue.path(str(layout.tokenizer_dir)),
        },
    )
