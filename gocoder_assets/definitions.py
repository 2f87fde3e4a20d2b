"""The whole graph in one place: assets and the resources they run with.

repo_list → raw_prs[repo] → categorized_records[repo] → tokenizer_model
          → packed_shards[repo] → checkpoint → gguf_model

Resource settings come from the environment so `dagster dev`, the CLI and the main job
agree: GOCODER_DATA_DIR (default ./data), GOCODER_CLONES_DIR (a folder of git clones;
unset = the Go distribution), GOCODER_GO_PACKAGES (comma-separated slice of GOROOT/src),
GOCODER_DEVICE / GOCODER_PRECISION (training hardware).
"""

from __future__ import annotations

import os

import dagster as dg

from gocoder_assets.categorized_records.assets import categorized_records
from gocoder_assets.checkpoint.assets import checkpoint
from gocoder_assets.gguf_model.assets import gguf_model
from gocoder_assets.packed_shards.assets import packed_shards
from gocoder_assets.raw_prs.assets import raw_prs
from gocoder_assets.repo_list.assets import repo_list
from gocoder_assets.resources import GPUResource, LocalSourceResource, StorageResource
from gocoder_assets.tokenizer_model.assets import tokenizer_model

ASSETS = [repo_list, raw_prs, categorized_records, tokenizer_model, packed_shards, checkpoint, gguf_model]


def resources_from_env(env: dict[str, str] | None = None) -> dict[str, dg.ConfigurableResource]:
    env = dict(os.environ if env is None else env)
    packages = env.get("GOCODER_GO_PACKAGES")
    return {
        "storage": StorageResource(root=env.get("GOCODER_DATA_DIR", "data")),
        "source": LocalSourceResource(
            clones_dir=env.get("GOCODER_CLONES_DIR") or None,
            packages=[p.strip() for p in packages.split(",") if p.strip()] if packages else None,
        ),
        "gpu": GPUResource(
            device=env.get("GOCODER_DEVICE", "auto"),
            precision=env.get("GOCODER_PRECISION", "auto"),
            compile=env.get("GOCODER_COMPILE", "0") == "1",
        ),
    }


defs = dg.Definitions(assets=ASSETS, resources=resources_from_env())
