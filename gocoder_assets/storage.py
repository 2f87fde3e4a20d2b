"""Where every artifact lives on disk, and how it gets there atomically.

One folder per asset, one sub-folder per partition. Partition keys are repository names
that contain ``/`` (Dagster allows it), so they are percent-encoded into a single path
segment. Every write goes to a temporary sibling first and is renamed into place, so a
run killed mid-write never leaves a partial artifact that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def key_to_dirname(key: str) -> str:
    """Injective, filesystem-safe folder name for a partition key (never ``.``/``..``)."""
    name = urllib.parse.quote(key, safe="")
    if name.startswith("."):
        name = "%2E" + name[1:]
    return name


class Layout:
    """The data folder's layout. Dagster-free so tests and scripts can use it directly."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def asset_dir(self, asset: str) -> Path:
        path = self.root / asset
        path.mkdir(parents=True, exist_ok=True)
        return path

    def partition_dir(self, asset: str, key: str) -> Path:
        path = self.asset_dir(asset) / key_to_dirname(key)
        path.mkdir(parents=True, exist_ok=True)
        return path

    # Named files, so no module spells a path by hand.
    @property
    def repo_list_file(self) -> Path:
        return self.asset_dir("repo_list") / "repos.parquet"

    def raw_records_file(self, key: str) -> Path:
        return self.partition_dir("raw_prs", key) / "records.jsonl.gz"

    def categorized_file(self, key: str) -> Path:
        return self.partition_dir("categorized_records", key) / "records.parquet"

    def signatures_file(self, key: str) -> Path:
        return self.partition_dir("categorized_records", key) / "signatures.npy"

    @property
    def dedup_file(self) -> Path:
        return self.asset_dir("dedup_index") / "dropped.parquet"

    @property
    def tokenizer_dir(self) -> Path:
        return self.asset_dir("tokenizer_model")

    def sft_pairs_file(self, key: str) -> Path:
        """One repository's instruction pairs (sft_pairs)."""
        return self.partition_dir("sft_pairs", key) / "pairs.parquet"

    def shard_file(self, key: str) -> Path:
        return self.partition_dir("packed_shards", key) / "tokens.bin"

    def shard_index(self, key: str) -> Path:
        """Record boundaries and categories of the shard (``shard_format.index_path`` of ``shard_file``)."""
        return self.partition_dir("packed_shards", key) / "records.parquet"

    def shard_manifest(self, key: str) -> Path:
        return self.partition_dir("packed_shards", key) / "manifest.json"

    @property
    def checkpoint_dir(self) -> Path:
        return self.asset_dir("checkpoint") / "hf"

    @property
    def tensorboard_dir(self) -> Path:
        return self.asset_dir("checkpoint") / "tensorboard"

    @property
    def train_state_dir(self) -> Path:
        """Resume points of the current training run (``checkpoint.state``)."""
        return self.asset_dir("checkpoint") / "train_state"

    @property
    def train_run_dir(self) -> Path:
        """The last launch's job file, per-token byte lengths, result and loss curve."""
        path = self.asset_dir("checkpoint") / "run"
        path.mkdir(exist_ok=True)
        return path

    @property
    def gguf_dir(self) -> Path:
        return self.asset_dir("gguf_model")

    @property
    def sft_checkpoint_dir(self) -> Path:
        """The fine-tuned Hugging Face directory (sft_checkpoint), laid out like ``checkpoint_dir``."""
        return self.asset_dir("sft_checkpoint") / "hf"

    @property
    def sft_tensorboard_dir(self) -> Path:
        return self.asset_dir("sft_checkpoint") / "tensorboard"

    @property
    def sft_train_state_dir(self) -> Path:
        """Resume points of the current fine-tuning run."""
        return self.asset_dir("sft_checkpoint") / "train_state"

    @property
    def sft_run_dir(self) -> Path:
        """The last fine-tuning launch's job file, encoded pairs, result and loss curve."""
        path = self.asset_dir("sft_checkpoint") / "run"
        path.mkdir(exist_ok=True)
        return path

    @property
    def sft_gguf_dir(self) -> Path:
        return self.asset_dir("sft_gguf_model")

    @property
    def eval_report_dir(self) -> Path:
        """report.json, report.md and the bpb chart of the last evaluation."""
        return self.asset_dir("eval_report")

    @property
    def license_manifest_file(self) -> Path:
        """One row per repository that contributed tokens: license, commit, tokens by category."""
        return self.asset_dir("license_manifest") / "licenses.csv"

    @property
    def model_card_file(self) -> Path:
        """The model card, in a folder of its own (not ``checkpoint/hf/README.md``: checkpoint owns that)."""
        return self.asset_dir("model_card") / "MODEL_CARD.md"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create 0600/0700 so half-written temp files stay private; what is renamed into place
# gets the modes an ordinary open()/mkdir() would give, so a model server running as another user
# (Ollama, llama.cpp) can read the artifacts.
def _modes() -> tuple[int, int]:
    mask = _umask()
    return 0o666 & ~mask, 0o777 & ~mask


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it over ``path`` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _modes()[0])
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temp folder beside ``path``; swap it in for ``path`` on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        file_mode, dir_mode = _modes()
        os.chmod(tmp, dir_mode)
        for child in tmp.rglob("*"):  # files made inside through mkstemp (atomic_file) are 0600 too
            os.chmod(child, dir_mode if child.is_dir() else file_mode)
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, obj: Any) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_identity(model_dir: Path) -> dict[str, str]:
    """SHA-256 of each weights file of a Hugging Face directory: what "the same base model" means (resume, records)."""
    files = sorted(Path(model_dir).glob("*.safetensors")) or sorted(Path(model_dir).glob("*.bin"))
    if not files:
        raise FileNotFoundError(f"{model_dir} holds no weights (*.safetensors): not a Hugging Face model directory")
    return {p.name: file_sha256(p) for p in files}


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_parquet(
    rows: Iterator[dict[str, Any]],
    path: Path,
    schema: Any,
    batch_rows: int = 512,
    metadata: dict[str, str] | None = None,
) -> int:
    """Stream dict rows into a Parquet file in batches (memory bounded by one batch); atomic.

    ``metadata`` is added to the file's schema metadata (``pq.read_schema(path).metadata``), so an
    artifact can say how it was made (the settings it was made with) without a sidecar file.
    """
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    if metadata:
        schema = schema.with_metadata({**(schema.metadata or {}), **metadata})
    n = 0
    with atomic_file(path) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= batch_rows:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                n += len(batch)
                batch = []
        if batch or n == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            n += len(batch)
    return n
