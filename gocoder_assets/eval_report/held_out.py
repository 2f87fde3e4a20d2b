"""The held-out material an evaluation reads, straight from the pipeline's own artifacts (Dagster-free).

Held out means the val repositories of packed_shards' split: no token of theirs was trained on. Their
raw records give whole Go packages (tests included) for the code tasks, their categorized records the
MIX discussions for review-comment relevance; sft_pairs' val rows are the held-out explanations.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from gocoder_assets.categorized_records.serialize import mark
from gocoder_assets.eval_report.options import MODELS, EvalOptions
from gocoder_assets.storage import Layout, read_json

_FILE_END = mark("</FILE>") + "\n"


def model_dirs(layout: Layout, options: EvalOptions) -> dict[str, Path]:
    """The report's model first, then the comparison (if any): name → Hugging Face directory.

    A missing model is an error naming the asset to materialize; "auto" compares with the other of
    checkpoint / sft_checkpoint only when it exists, so a base-only project still gets a report.
    """
    known = {"checkpoint": layout.checkpoint_dir, "sft_checkpoint": layout.sft_checkpoint_dir}

    def present(path: Path) -> bool:
        return (path / "config.json").is_file()

    main = known[options.model]
    if not present(main):
        raise FileNotFoundError(f"{options.model} is not materialized ({main} has no config.json): materialize it")
    models = {options.model: main}
    if options.compare == "auto":
        other = next(m for m in MODELS if m != options.model)
        if present(known[other]):
            models[other] = known[other]
    elif options.compare != "none":
        path = known.get(options.compare) or Path(options.compare).expanduser()
        if not present(path):
            raise FileNotFoundError(f"compare={options.compare!r}: {path} is not a checkpoint directory")
        name = options.compare if options.compare in known else f"compare ({path.name})"
        if name == options.model:
            raise ValueError(f"compare={options.compare!r} is the report's own model")
        models[name] = path
    return models


def train_eval_tokens(layout: Layout) -> int:
    """The val-token budget of the checkpoint's last training run (its job file), or TrainConfig's default."""
    from gocoder_assets.checkpoint.config import TrainConfig  # noqa: PLC0415 - only when resolving eval_tokens=0

    job = layout.train_run_dir / "job.json"
    if job.is_file():
        return int(read_json(job)["train_config"].get("eval_tokens", TrainConfig.eval_tokens))
    return TrainConfig.eval_tokens


def repo_files(layout: Layout, key: str) -> dict[str, str]:
    """Path → text of every collected file of one repository (raw records, before any filter)."""
    from gocoder_assets.eval_report.go_tasks import files_from_records  # noqa: PLC0415
    from gocoder_assets.raw_prs.archive import read_raw  # noqa: PLC0415

    path = layout.raw_records_file(key)
    if not path.exists():
        raise FileNotFoundError(f"raw_prs[{key}] not materialized: {path}")
    return files_from_records(read_raw(path))


def mix_records(layout: Layout, keys: Sequence[str]) -> Iterator[dict[str, Any]]:
    """The held-out repositories' MIX records (categorized_records rows)."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    for key in keys:
        path = layout.categorized_file(key)
        if not path.exists():
            raise FileNotFoundError(f"categorized_records[{key}] not materialized: {path}")
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
            yield from (r for r in batch.to_pylist() if r.get("category") == "MIX")


def val_pairs(layout: Layout, keys: Sequence[str]) -> Iterator[dict[str, Any]]:
    """sft_pairs rows of the val split, over every repository that has a pairs file."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    for key in keys:
        path = layout.sft_pairs_file(key)
        if path.exists():
            yield from (r for r in pq.read_table(path).to_pylist() if r["split"] == "val")


def code_prompt(repo: str, path: str, prefix: str) -> str:
    """The stored CODE record of a file cut after ``prefix``: what the model saw in training, up to the body."""
    from gocoder_assets.categorized_records.serialize import render_code  # noqa: PLC0415

    record = render_code(repo, path, prefix)
    if not prefix.endswith("\n") or not record.endswith(_FILE_END):
        raise ValueError(f"{path}: a prompt must end at a line end (the body's opening brace line)")
    return record[: -len(_FILE_END)]
