"""The whole graph in one place: assets and the resources they run with.

repo_list → raw_prs[repo] → categorized_records[repo] → dedup_index → tokenizer_model
          → packed_shards[repo] → checkpoint → gguf_model
          packed_shards[repo] → license_manifest; checkpoint, gguf_model, license_manifest → model_card
          categorized_records[repo], dedup_index, tokenizer_model → sft_pairs[repo] (instruction pairs)
          checkpoint, sft_pairs[repo] → sft_checkpoint → sft_gguf_model (the fine-tuned model)
          checkpoint, sft_checkpoint, packed_shards[repo], raw_prs[repo] … → eval_report

Resource settings come from the environment so `dagster dev`, the CLI and the main job
agree: GOCODER_DATA_DIR (default ./data), GOCODER_CLONES_DIR (a folder of git clones;
unset = the Go distribution), GOCODER_GO_PACKAGES (comma-separated slice of GOROOT/src),
GOCODER_DEVICE / GOCODER_PRECISION / GOCODER_COMPILE (training hardware), GOCODER_NPROC /
GOCODER_TORCHRUN_ARGS (data-parallel processes, multi-node rendezvous), PYTORCH_HIP_ALLOC_CONF /
HSA_OVERRIDE_GFX_VERSION (ROCm, passed to the training process), GOCODER_WORKERS (inline | processes |
celery; default processes) / GOCODER_WORKERS_MAX (default: the cores available) / GOCODER_CELERY_BROKER /
GOCODER_CELERY_QUEUE (where per-partition work runs; gocoder_assets/workers), GOCODER_PARTITIONS_PER_RUN
(partitions per backfill run), GOCODER_LSH_STORAGE / GOCODER_LSH_REDIS (dedup index store), GITHUB_TOKEN
(collect from GitHub instead; see README "Collecting from GitHub").
"""

from __future__ import annotations

import os
import shlex

import dagster as dg

from gocoder_assets.automation import automation_sensor
from gocoder_assets.categorized_records.assets import categorized_records
from gocoder_assets.categorized_records.checks import (
    categorized_records_category_counts,
    categorized_records_integrity,
    categorized_records_secrets_residual,
)
from gocoder_assets.checkpoint.assets import checkpoint
from gocoder_assets.checkpoint.checks import beats_unigram, losses_finite
from gocoder_assets.dedup_index.assets import dedup_index
from gocoder_assets.dedup_index.checks import dedup_rates
from gocoder_assets.eval_report.assets import eval_report
from gocoder_assets.eval_report.checks import eval_harness_sound
from gocoder_assets.gguf_model.assets import gguf_model, sft_gguf_model
from gocoder_assets.gguf_model.checks import gguf_llama_cpp, sft_gguf_llama_cpp
from gocoder_assets.license_manifest.assets import license_manifest
from gocoder_assets.model_card.assets import model_card
from gocoder_assets.packed_shards.assets import packed_shards
from gocoder_assets.packed_shards.checks import shards_valid, split_leakage
from gocoder_assets.raw_prs.assets import raw_prs
from gocoder_assets.raw_prs.checks import raw_prs_valid
from gocoder_assets.repo_list.assets import repo_list
from gocoder_assets.repo_list.checks import repo_list_licenses, repo_list_unique
from gocoder_assets.resources import GPUResource, LocalSourceResource, StorageResource
from gocoder_assets.sft_checkpoint.assets import sft_checkpoint
from gocoder_assets.sft_checkpoint.checks import sft_beats_base, sft_losses_finite
from gocoder_assets.sft_pairs.assets import sft_pairs
from gocoder_assets.sft_pairs.checks import sft_pairs_valid
from gocoder_assets.sources.github.resource import github_resource_from_env
from gocoder_assets.tokenizer_model.assets import tokenizer_model
from gocoder_assets.tokenizer_model.checks import tokenizer_efficiency, tokenizer_round_trip
from gocoder_assets.workers.resource import workers_resource_from_env

# Who answers for the assets in the UI's catalog; set once here instead of on every decorator.
OWNERS = ["team:gocoder"]
ASSETS = dg.map_asset_specs(
    lambda spec: spec.replace_attributes(owners=OWNERS),
    [
        repo_list, raw_prs, categorized_records, dedup_index, tokenizer_model, packed_shards, checkpoint, gguf_model,
        license_manifest, model_card, sft_pairs, sft_checkpoint, sft_gguf_model, eval_report,
    ],
)  # fmt: skip


def resources_from_env(env: dict[str, str] | None = None) -> dict[str, dg.ConfigurableResource]:
    env = dict(os.environ if env is None else env)
    packages = env.get("GOCODER_GO_PACKAGES")
    return {
        "storage": StorageResource(root=env.get("GOCODER_DATA_DIR", "data")),
        # A GitHub token is the only switch between GitHub and the offline source.
        "source": github_resource_from_env(env)
        or LocalSourceResource(
            clones_dir=env.get("GOCODER_CLONES_DIR") or None,
            packages=[p.strip() for p in packages.split(",") if p.strip()] if packages else None,
        ),
        "gpu": GPUResource(
            device=env.get("GOCODER_DEVICE", "auto"),
            precision=env.get("GOCODER_PRECISION", "auto"),
            compile=env.get("GOCODER_COMPILE", "0") == "1",
            # The ROCm variables keep their standard names, so a shell that already exports them agrees.
            hip_alloc_conf=env.get("PYTORCH_HIP_ALLOC_CONF") or None,
            hsa_override_gfx_version=env.get("HSA_OVERRIDE_GFX_VERSION") or None,
            num_processes=int(env.get("GOCODER_NPROC") or 1),
            torchrun_args=shlex.split(env.get("GOCODER_TORCHRUN_ARGS", "")),
        ),
        "workers": workers_resource_from_env(env),
    }


CHECKS = [
    repo_list_licenses,
    repo_list_unique,
    raw_prs_valid,
    categorized_records_secrets_residual,
    categorized_records_integrity,
    categorized_records_category_counts,
    dedup_rates,
    tokenizer_round_trip,
    tokenizer_efficiency,
    shards_valid,
    split_leakage,
    losses_finite,
    beats_unigram,
    gguf_llama_cpp,
    sft_pairs_valid,
    sft_losses_finite,
    sft_beats_base,
    sft_gguf_llama_cpp,
    eval_harness_sound,
]

# Runs execute in one process: each run is one step per asset over a range of partitions, and the
# per-partition work inside it is spread by the `workers` resource; a process per step would only add
# start-up time.
defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=CHECKS,
    resources=resources_from_env(),
    sensors=[automation_sensor()],
    executor=dg.in_process_executor,
)
