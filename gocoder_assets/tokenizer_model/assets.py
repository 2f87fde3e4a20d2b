"""tokenizer_model: one SentencePiece BPE vocabulary over every repository partition."""

import dagster as dg

from gocoder_assets.categorized_records.assets import categorized_records
from gocoder_assets.categorized_records.serialize import MARKERS
from gocoder_assets.checks import require_upstream_checks_passed
from gocoder_assets.dedup_index.assets import dedup_index
from gocoder_assets.dedup_index.index import dropped_ids
from gocoder_assets.packed_shards.pack import VAL_FRACTION
from gocoder_assets.repo_list.assets import repo_list
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.resources import StorageResource
from gocoder_assets.storage import atomic_dir, file_sha256, write_json
from gocoder_assets.tokenizer_model.encode import RecordCodec
from gocoder_assets.tokenizer_model.train import (
    MODEL_FILE,
    RepoHoldout,
    TokenizerOptions,
    describe,
    load_processor,
    round_trip_report,
    train_tokenizer,
)

INFO_FILE = "tokenizer_info.json"


class TokenizerConfig(dg.Config):
    vocab_size: int = TokenizerOptions.vocab_size
    input_sentence_size: int = TokenizerOptions.input_sentence_size
    # Fraction of repositories held out, handed to packed_shards' ``assign_splits``: the same default as
    # packed_shards' val_fraction, so the held-out repos are exactly the val repos (change both together).
    holdout_fraction: float = VAL_FRACTION
    holdout_max_records: int = 500


@dg.asset(
    deps=[repo_list, categorized_records, dedup_index], code_version="4", group_name="tokenize", kinds={"sentencepiece"}
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
    holdout = RepoHoldout(
        dict(zip(keys, files, strict=True)),
        config.holdout_fraction,
        config.holdout_max_records,
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
            "sha256": info["sha256"],
            "path": dg.MetadataValue.path(str(layout.tokenizer_dir)),
        },
    )
