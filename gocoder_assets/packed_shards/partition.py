"""One partition of packed_shards, Dagster-free: what a worker process runs (workers/tasks.py).

``pack_partition_job`` encodes the partition's categorized records into its shard and index and writes
its manifest (with the split and the ``val_fraction`` that decided it), returning per-partition numbers
and each record's token count as plain JSON values.

The tokenizer and the split assignment are loaded once per worker process and reused for every
partition it packs (``functools.lru_cache`` keyed by the files' stamps, ``workers.cache``), so a
rewritten file is never served from the cache. The dedup index is read per partition, for that
partition's record ids only. The run passes the tokenizer's sha256; a worker whose tokenizer file has
another (a stale copy of the shared data folder) fails.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

from gocoder_assets.categorized_records.partition import cached_repos
from gocoder_assets.categorized_records.serialize import MARKERS
from gocoder_assets.config import with_config
from gocoder_assets.dedup_index.index import dropped_ids
from gocoder_assets.packed_shards.pack import PackOptions, assign_splits, pack_partition
from gocoder_assets.packed_shards.shard_format import index_path
from gocoder_assets.storage import Layout, file_sha256, write_json
from gocoder_assets.workers.cache import Stamp, file_stamp


@dataclasses.dataclass(frozen=True)
class Tokenizer:
    codec: Any  # tokenizer_model.encode.RecordCodec
    sha256: str
    vocab_size: int


@functools.lru_cache(maxsize=2)
def _tokenizer(stamp: Stamp) -> Tokenizer:
    from gocoder_assets.tokenizer_model.encode import RecordCodec  # noqa: PLC0415
    from gocoder_assets.tokenizer_model.train import load_processor  # noqa: PLC0415

    model = Path(stamp[0])
    sp = load_processor(model.parent)
    # Markers as control ids; fails here on a tokenizer without them.
    return Tokenizer(RecordCodec(sp, MARKERS), file_sha256(model), sp.vocab_size())


def load_tokenizer(layout: Layout, expected_sha256: str | None = None) -> Tokenizer:
    """The data folder's tokenizer, loaded once per process per file version; checked against the
    run's sha256 when given."""
    from gocoder_assets.tokenizer_model.train import MODEL_FILE  # noqa: PLC0415

    tok = _tokenizer(file_stamp(layout.tokenizer_dir / MODEL_FILE))
    if expected_sha256 is not None and tok.sha256 != expected_sha256:
        msg = f"tokenizer {layout.tokenizer_dir / MODEL_FILE} has sha256 {tok.sha256}, the run expects"
        raise ValueError(f"{msg} {expected_sha256}: is the shared data folder the same on every worker?")
    return tok


@functools.lru_cache(maxsize=4)
def _splits(stamp: Stamp, val_fraction: float) -> dict[str, str]:
    return assign_splits(list(cached_repos(stamp)), val_fraction)


def split_assignment(layout: Layout, val_fraction: float) -> dict[str, str]:
    """Every repository of repo_list → "train" / "val" at ``val_fraction``, computed once per process per
    repository-list version (packing and the split check both ask once per partition)."""
    return _splits(file_stamp(layout.repo_list_file), val_fraction)


def warm() -> None:
    """Imports done before workers fork (workers/preload.py): SentencePiece and the codec."""
    import pyarrow.parquet  # noqa: F401, PLC0415

    from gocoder_assets.tokenizer_model import encode, train  # noqa: F401, PLC0415


def pack_partition_job(data_root: str, key: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Pack partition ``key`` under ``data_root``. ``settings``: PackOptions fields, and the run's
    ``tokenizer_sha256``. Returns {"key", "split", "records", "text_tokens", "tokens",
    "tokens_by_category", "sizes": {"kind category": [tokens per record, without its EOS]}}."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    layout = Layout(data_root)
    options = with_config(PackOptions(), settings)
    splits = split_assignment(layout, options.val_fraction)
    if key not in splits:
        raise KeyError(f"partition {key!r} is not in {layout.repo_list_file}: re-materialize repo_list")
    tok = load_tokenizer(layout, settings.get("tokenizer_sha256"))
    # Only this partition's drops: a worker holding the corpus-wide set (millions of ids at 5,000
    # repositories) once per process would multiply it by the processes on a machine.
    dropped = dropped_ids(layout.dedup_file, repo=key)
    # A manifest means "index and shard complete": drop the old one before rewriting either, so a
    # run killed mid-partition leaves no manifest vouching for a half-replaced pair.
    layout.shard_manifest(key).unlink(missing_ok=True)
    stats = pack_partition(layout.categorized_file(key), layout.shard_file(key), tok.codec, dropped)
    manifest = {
        **dataclasses.asdict(stats),
        "split": splits[key],
        "tokenizer_sha256": tok.sha256,
        "vocab_size": tok.vocab_size,
        "val_fraction": options.val_fraction,
    }
    write_json(layout.shard_manifest(key), manifest)
    index = pq.read_table(index_path(layout.shard_file(key)), columns=["kind", "category", "tokens"])
    sizes: dict[str, list[int]] = {}
    for kind, category, tokens in zip(*(index.column(c).to_pylist() for c in ("kind", "category", "tokens")),
                                      strict=True):  # fmt: skip
        sizes.setdefault(f"{kind} {category}", []).append(int(tokens) - 1)  # without the record's EOS
    return {"key": key, "split": splits[key], **dataclasses.asdict(stats), "sizes": sizes}
