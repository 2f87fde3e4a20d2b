"""checkpoint: a LLaMA-architecture model trained from scratch on every train shard."""


import shutil
from pathlib import Path

import dagster as dg

from gocoder_assets.checks import require_upstream_checks_passed
from gocoder_assets.packed_shards.assets import packed_shards
from gocoder_assets.packed_shards.shard_format import read_header
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.resources import GPUResource, StorageResource
from gocoder_assets.storage import Layout, atomic_dir, read_json
from gocoder_assets.tokenizer_model.assets import INFO_FILE, tokenizer_model

# What a Hugging Face directory needs besides the weights for AutoTokenizer to load it.
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json")


class CheckpointConfig(dg.Config):
    """Model size is a preset (tiny: CPU minutes; 125m: GPT-2-small shape; 350m); the rest is
    optimization. The defaults train ``tiny`` for a few CPU minutes."""

    preset: str = "tiny"
    max_steps: int = 400
    batch_size: int = 8
    learning_rate: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 40
    eval_interval: int = 100
    eval_tokens: int = 65_536
    seed: int = 1337
    log_interval: int = 20


def shard_splits(layout: Layout, tokenizer_sha: str) -> tuple[list[Path], list[Path]]:
    """Train and val shard paths, refusing shards that are missing, torn or from another tokenizer."""
    train, val, stale = [], [], []
    for key in read_repo_list(layout.repo_list_file):
        manifest_path, shard = layout.shard_manifest(key), layout.shard_file(key)
        if not manifest_path.exists() or not shard.exists():
            raise FileNotFoundError(f"packed_shards not materialized for partition {key!r}")
        manifest = read_json(manifest_path)
        if manifest["tokenizer_sha256"] != tokenizer_sha:
            stale.append(key)
            continue
        if read_header(shard) != manifest["tokens"]:
            raise ValueError(f"{shard}: token count disagrees with its manifest; re-materialize it")
        (val if manifest["split"] == "val" else train).append(shard)
    if stale:
        raise ValueError(
            f"{len(stale)} packed_shards partitions were built with an older tokenizer "
            f"(e.g. {stale[:3]}); re-materialize packed_shards for them first"
        )
    if not train:
        raise ValueError("no train shards: the corpus needs at least one train repository")
    return train, val


@dg.asset(
    deps=[packed_shards, tokenizer_model],
    code_version="1",
    group_name="train",
    kinds={"pytorch"},
    pool="gpu",
)
def checkpoint(
    context: dg.AssetExecutionContext, config: CheckpointConfig, storage: StorageResource, gpu: GPUResource
) -> dg.MaterializeResult:
    """Hugging Face directory (safetensors, config, tokenizer); losses in metadata."""
    from gocoder_assets.checkpoint.model import build_model_config  # noqa: PLC0415 - torch is heavy
    from gocoder_assets.checkpoint.train import TrainConfig, train, unigram_loss  # noqa: PLC0415

    require_upstream_checks_passed(context)
    layout = storage.layout()
    info = read_json(layout.tokenizer_dir / INFO_FILE)
    train_shards, val_shards = shard_splits(layout, info["sha256"])
    model_config = build_model_config(config.preset, info["vocab_size"], info["bos_id"], info["eos_id"], info["pad_id"])
    cfg = TrainConfig(**config.model_dump(), compile=gpu.compile)
    device = gpu.choice()
    context.log.info(f"training {config.preset} on {device.name} ({device.backend}, {device.precision})")
    tb_dir = layout.tensorboard_dir / context.run.run_id[:8]
    with atomic_dir(layout.checkpoint_dir) as out:
        result = train(cfg, model_config, train_shards, val_shards, out, tb_dir, device, log=context.log.info)
        for name in TOKENIZER_FILES:
            shutil.copy2(layout.tokenizer_dir / name, out / name)
    metadata = result.as_metadata()
    if val_shards:
        metadata["val_unigram_loss"] = unigram_loss(train_shards, val_shards, info["vocab_size"])
    metadata.update(
        train_shards=len(train_shards),
        val_shards=len(val_shards),
        path=dg.MetadataValue.path(str(layout.checkpoint_dir)),
        tensorboard=dg.MetadataValue.path(str(tb_dir)),
    )
    return dg.MaterializeResult(metadata=metadata)
