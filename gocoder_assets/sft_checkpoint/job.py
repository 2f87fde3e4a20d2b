"""The fine-tuning job: every current repository's pairs encoded with the checkpoint's tokenizer, and the job file.

The pairs are re-encoded here rather than taken from sft_pairs' ``tokens`` because the model must
see exactly its own tokenizer's ids, and fitted to its own context; sft_pairs' offsets and filters
(``response_token_start``, ``max_tokens``) were computed with ``tokenizer_model``, so a checkpoint
trained with another tokenizer is refused instead of being tuned on pairs measured with a different one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gocoder_assets.checkpoint.worker import TOKENIZER_FILES, TrainJob
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.sft_checkpoint.config import SFTTrainOptions
from gocoder_assets.sft_checkpoint.data import EncodedPairs, encode_pairs, write_pairs
from gocoder_assets.storage import Layout, atomic_file, file_sha256, read_json, weights_identity, write_json

FORMAT_FILE = "sft_format.json"  # the prompt format the model was tuned on, for the Modelfile and the evaluator
SETTINGS_FILE = "sft_settings.json"  # the settings and encoding counts of the run that made the directory
PAIRS_FILE = "pairs.npz"


class TokenizerMismatchError(ValueError):
    """The checkpoint was trained with another tokenizer than the one sft_pairs measured its pairs with."""


class NoTrainPairsError(ValueError):
    """Nothing to fine-tune on; the message says why that happens and what to do."""


def check_tokenizer(layout: Layout) -> dict[str, Any]:
    """tokenizer_model's info, after checking that the checkpoint carries that very tokenizer."""
    from gocoder_assets.tokenizer_model.assets import INFO_FILE  # noqa: PLC0415 - a Dagster module

    model_file = layout.checkpoint_dir / "tokenizer.model"
    if not (layout.checkpoint_dir / "config.json").is_file() or not model_file.is_file():
        raise FileNotFoundError(f"checkpoint not materialized ({layout.checkpoint_dir}): materialize checkpoint first")
    info = read_json(layout.tokenizer_dir / INFO_FILE)
    sha = file_sha256(model_file)
    if sha != info["sha256"]:
        raise TokenizerMismatchError(
            f"the checkpoint's tokenizer (sha256 {sha[:12]}…) is not tokenizer_model's ({info['sha256'][:12]}…), "
            "with which sft_pairs computed its offsets and token limits: re-materialize checkpoint (it trains with "
            "the current tokenizer), or sft_pairs and checkpoint together after a tokenizer change"
        )
    return info


def repo_pairs(layout: Layout) -> Iterator[tuple[str, dict[str, list[tuple[str, str]]], Counter[str]]]:
    """Per current repository: (key, (prompt, response) texts by split, how many pairs use each instruction).

    One repository at a time, so only one partition's texts are in memory while they are encoded.
    """
    import pyarrow.parquet as pq  # noqa: PLC0415

    for key in read_repo_list(layout.repo_list_file):
        path = layout.sft_pairs_file(key)
        if not path.is_file():
            raise FileNotFoundError(f"sft_pairs not materialized for partition {key!r} ({path}); materialize it first")
        splits: dict[str, list[tuple[str, str]]] = {"train": [], "val": []}
        instructions: Counter[str] = Counter()
        for row in pq.read_table(path, columns=["text", "response_start", "split", "instruction"]).to_pylist():
            if row["split"] not in splits:
                raise ValueError(f"{path}: split {row['split']!r} is neither train nor val")
            text, start = row["text"], row["response_start"]
            splits[row["split"]].append((text[:start], text[start:]))
            instructions[row["instruction"]] += 1
        yield key, splits, instructions


def encode_repo_pairs(
    layout: Layout, codec: Any, ctx: int
) -> tuple[dict[str, EncodedPairs], Counter[str], Counter[str], int]:
    """Every current repository's pairs encoded to fit ``ctx``: (pairs by split, cut counts, instructions, repos)."""
    parts: dict[str, list[EncodedPairs]] = {"train": [], "val": []}
    counts: Counter[str] = Counter()
    instructions: Counter[str] = Counter()
    repos = 0
    for _, splits, used in repo_pairs(layout):
        repos += 1
        instructions.update(used)
        for name, pairs in splits.items():
            if pairs:
                parts[name].append(encode_pairs(codec, pairs, ctx, counts))
    return {name: EncodedPairs.concat(p) for name, p in parts.items()}, counts, instructions, repos


def no_train_pairs_message(val_pairs: int, repos: int) -> str:
    return (
        f"sft_pairs hold no train pairs ({val_pairs} val pairs over {repos} repositories), so there is nothing to "
        "fine-tune on. Pairs come from merged changes whose description explains why; the Go distribution (the "
        "default source) has no pull requests or commit history and yields none. Collect from a folder of git "
        "clones (GOCODER_CLONES_DIR) or from GitHub (GITHUB_TOKEN), then materialize the pipeline and sft_pairs again"
    )


def preset_name(model_config: dict[str, Any]) -> str:
    """``sft-<preset>`` when the base model has a preset's shape (for logs and the result), else ``sft``."""
    from gocoder_assets.checkpoint.model import PRESETS  # noqa: PLC0415 - imports transformers

    for name, p in PRESETS.items():
        shape = (p.hidden_size, p.num_layers, p.num_heads, p.num_kv_heads, p.intermediate_size)
        keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size")
        if tuple(model_config.get(k) for k in keys) == shape:
            return f"sft-{name}"
    return "sft"


def write_job(
    layout: Layout,
    options: SFTTrainOptions,
    run_id: str,
    device: str = "auto",
    precision: str = "auto",
    compile_model: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Encode the pairs, write format, settings and job files under ``sft_run_dir``; (job file, summary numbers)."""
    import numpy as np  # noqa: PLC0415

    from gocoder_assets.categorized_records.serialize import MARKERS  # noqa: PLC0415
    from gocoder_assets.sft_pairs.pairs import PROMPT_TEMPLATE  # noqa: PLC0415
    from gocoder_assets.tokenizer_model.encode import RecordCodec  # noqa: PLC0415
    from gocoder_assets.tokenizer_model.train import load_processor, token_byte_lengths  # noqa: PLC0415

    info = check_tokenizer(layout)
    base = layout.checkpoint_dir
    model_config = read_json(base / "config.json")
    ctx = int(model_config["max_position_embeddings"])
    sp = load_processor(base)
    codec = RecordCodec(sp, MARKERS)
    encoded, counts, instructions, repos = encode_repo_pairs(layout, codec, ctx)
    if not len(encoded["train"]):
        raise NoTrainPairsError(no_train_pairs_message(len(encoded["val"]), repos))
    if len(instructions) > 1:
        raise ValueError(
            f"sft_pairs hold {len(instructions)} different instructions ({sorted(instructions)[:3]}): a model is "
            "tuned on one prompt format; re-materialize every sft_pairs partition with the same instruction"
        )
    run_dir = layout.sft_run_dir
    pairs_path = write_pairs(run_dir / PAIRS_FILE, encoded, pad_id=codec.eos_id())
    token_bytes = run_dir / "token_bytes.npy"
    with atomic_file(token_bytes) as tmp, open(tmp, "wb") as f:
        np.save(f, token_byte_lengths(sp))
    summary: dict[str, Any] = {
        "train_pairs": len(encoded["train"]),
        "val_pairs": len(encoded["val"]),
        "pairs_truncated": counts["pairs_truncated"],
        "responses_truncated": counts["truncated_response"],
        "train_response_tokens": int(encoded["train"].masked_targets().sum()),
    }
    (instruction,) = instructions
    write_json(run_dir / FORMAT_FILE, {"instruction": instruction, "prompt_template": PROMPT_TEMPLATE})
    cfg = options.train_config(ctx, preset_name(model_config), compile_model)
    weights = weights_identity(base)
    write_json(
        run_dir / SETTINGS_FILE,
        {"options": asdict(options), "train_config": asdict(cfg), "encoding": summary, "base_weights": weights},
    )
    job = TrainJob(
        train_config=asdict(cfg),
        model_config=model_config,
        train_shards=[],
        val_shards=[],
        token_bytes=str(token_bytes),
        out_dir=str(layout.sft_checkpoint_dir),
        state_dir=str(layout.sft_train_state_dir),
        tensorboard_dir=str(layout.sft_tensorboard_dir / run_id[:8]),
        result_path=str(run_dir / "result.json"),
        plot_path=str(run_dir / "loss_curve.png"),
        device=device,
        precision=precision,
        # The pairs as the resume fingerprint sees them (the base weights' hashes join it inside the loop).
        data_identity={
            "tokenizer_sha256": info["sha256"],
            "train": encoded["train"].sha256(),
            "val": encoded["val"].sha256(),
        },
        extra_files=[
            *(str(base / name) for name in TOKENIZER_FILES if (base / name).is_file()),
            str(run_dir / FORMAT_FILE),
            str(run_dir / SETTINGS_FILE),
        ],
        init_from=str(base),
        sft_pairs=str(pairs_path),
    )
    return job.write(run_dir / "job.json"), summary
