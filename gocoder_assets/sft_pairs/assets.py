"""sft_pairs: "explain why this change was made" instruction pairs per repository, from its change records."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pyarrow as pa

from gocoder_assets.categorized_records.assets import categorized_records
from gocoder_assets.categorized_records.serialize import MARKERS, readable
from gocoder_assets.checks import require_upstream_checks_passed
from gocoder_assets.config import with_config
from gocoder_assets.dedup_index.assets import dedup_index
from gocoder_assets.dedup_index.index import dropped_ids
from gocoder_assets.metadata import counts_metadata
from gocoder_assets.packed_shards.pack import assign_splits
from gocoder_assets.partitions import per_repo_asset
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.resources import StorageResource
from gocoder_assets.sft_pairs.filters import SFTOptions
from gocoder_assets.sft_pairs.pairs import PROVENANCE, PairBuilder
from gocoder_assets.storage import write_parquet
from gocoder_assets.tokenizer_model.assets import tokenizer_model
from gocoder_assets.tokenizer_model.encode import RecordCodec
from gocoder_assets.tokenizer_model.train import load_processor

# text = the formatted pair (pairs.py); response_start / response_token_start = where the response begins in
# characters / token ids; tokens = prompt + response + the EOS the trainer appends; split = train | val (the
# repository's packed_shards split); the rest is the change record's provenance.
_INT = ("response_start", "response_token_start", "tokens", "pr_number")
COLUMNS = ("instruction", "input", "response", "text", "response_start", "response_token_start", "tokens",
           "subject", "response_source", "split", *PROVENANCE)  # fmt: skip
PAIR_SCHEMA = pa.schema([(c, pa.int64() if c in _INT else pa.string()) for c in COLUMNS])
SAMPLE_CHARS = 4000
_DEFAULTS = SFTOptions()


class SFTConfig(dg.Config):
    """CommitPackFT's subject filters and the pair limits (filters.SFTOptions holds the defaults and says why)."""

    min_subject_chars: int = _DEFAULTS.min_subject_chars
    max_subject_chars: int = _DEFAULTS.max_subject_chars
    min_subject_words: int = _DEFAULTS.min_subject_words
    min_response_chars: int = _DEFAULTS.min_response_chars
    max_tokens: int = _DEFAULTS.max_tokens
    instruction: str = _DEFAULTS.instruction
    val_fraction: float = _DEFAULTS.val_fraction

    def options(self) -> SFTOptions:
        return with_config(_DEFAULTS, self.model_dump())


def sample_markdown(row: dict) -> str:
    """One pair as a person reads it (markers written out), cut to ``SAMPLE_CHARS``."""
    text = readable(row["text"])
    cut = text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS] + f"\n[… {len(text) - SAMPLE_CHARS} more chars]"
    where = f"{row['repo']} #{row['pr_number']}" if row["pr_number"] else f"{row['repo']} {row['commit_sha'][:12]}"
    return f"**{where}** ({row['tokens']} tokens, response from the {row['response_source']})\n\n```text\n{cut}\n```"


@per_repo_asset(
    deps=[categorized_records, dedup_index, tokenizer_model],
    code_version="1",
    group_name="sft",
    kinds={"parquet"},
)
def sft_pairs(context: dg.AssetExecutionContext, config: SFTConfig, storage: StorageResource) -> dg.MaterializeResult:
    """Instruction / input / response pairs with CommitPackFT's filters, every drop counted by reason; the text is
    the training text's (redacted, anonymized), the change rendered as in MIX records, provenance kept."""
    require_upstream_checks_passed(context)
    import pyarrow.parquet as pq  # noqa: PLC0415

    layout = storage.layout()
    options = config.options()
    splits = assign_splits(list(read_repo_list(layout.repo_list_file)), options.val_fraction)
    codec = RecordCodec(load_processor(layout.tokenizer_dir), MARKERS)
    dropped = dropped_ids(layout.dedup_file)
    per_partition: dict[str, dict[str, int]] = {}
    first: list[dict[str, Any]] = []
    for key in context.partition_keys:
        source = layout.categorized_file(key)
        if not source.exists():
            raise FileNotFoundError(f"categorized_records[{key}] not materialized: {source}")
        builder = PairBuilder(codec, options, dropped, splits.get(key, "train"))
        batches = pq.ParquetFile(source).iter_batches(columns=["kind", "text", *PROVENANCE], batch_size=256)
        rows = builder.run(r for batch in batches for r in batch.to_pylist())
        written = write_parquet(_first(rows, first), layout.sft_pairs_file(key), PAIR_SCHEMA)
        per_partition[key] = {**builder.counts, "pairs": written}  # "pairs" also where there are none
    metadata = counts_metadata(per_partition)
    if first:
        metadata["sample"] = dg.MetadataValue.md(sample_markdown(first[0]))
    metadata["path"] = dg.MetadataValue.path(str(layout.asset_dir("sft_pairs")))
    return dg.MaterializeResult(metadata=metadata)


def _first(rows: Iterator[dict[str, Any]], into: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """``rows`` unchanged; the run's first pair is also kept in ``into`` (the metadata's sample)."""
    for row in rows:
        if not into:
            into.append(row)
        yield row
