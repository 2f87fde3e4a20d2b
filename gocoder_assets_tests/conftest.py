"""The whole graph, materialized once per test session on a small real corpus.

Corpus: a few packages of the Go distribution plus a tiny git repository with PR-style
commits (so NAT, MIX and CODE all occur). Tiny vocabulary and model keep it to seconds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from gocoder_assets.pipeline import materialize_all
from gocoder_assets.resources import GPUResource, LocalSourceResource, StorageResource
from gocoder_assets.storage import Layout
from gocoder_assets.workers.resource import WorkersResource
from gocoder_assets_tests.gitrepo import commit, git

GO_SLICE = ["errors", "container", "sort", "unicode"]
RUN_CONFIG = {
    "ops": {
        "tokenizer_model": {"config": {"vocab_size": 1200, "holdout_fraction": 0.05}},
        "checkpoint": {
            "config": {
                "preset": "test",
                "max_steps": 40,
                "warmup_steps": 5,
                "eval_interval": 20,
                "eval_tokens": 8192,
                "log_interval": 10,
            }
        },
        # Small but whole: every section runs (a held-out std package's functions, its tests) in seconds.
        "eval_report": {"config": {"code_prompts": 5, "samples": 2, "test_tasks": 2, "max_new_tokens": 24}},
    }
}


def make_widget_repo(root: Path) -> Path:
    """owner acme, MIT, three PR-style commits touching Go files."""
    repo = root / "widget"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", "https://github.com/acme/widget.git")
    (repo / "LICENSE").write_text("MIT License\n\nPermission is hereby granted, free of charge, to any person\n")
    (repo / "README.md").write_text("# widget\n\nWidgets for Go programs.\n")
    (repo / "widget.go").write_text("package widget\n\n// Size is the widget size.\nconst Size = 3\n")
    commit(repo, 1, "Initial import")
    (repo / "widget.go").write_text("package widget\n\n// Size is the widget size.\nconst Size = 4\n")
    commit(repo, 2, "Grow widgets (#7)\n\nFour is the new three:\nmeasured on real widgets.")
    spin = "package widget\n\n// Spin turns the widget.\nfunc Spin(n int) int {\n\treturn n * Size\n}\n"
    (repo / "spin.go").write_text(spin)
    commit(repo, 3, "Add Spin (#8)\n\nSpin turns a widget n times.")
    return root


@dataclasses.dataclass
class Built:
    instance: dg.DagsterInstance
    layout: Layout
    results: list[dg.ExecuteInProcessResult]

    def metadata(self, asset: str) -> dict:
        for result in self.results:
            for event in result.get_asset_materialization_events():
                if event.asset_key == dg.AssetKey(asset):
                    return {k: v.value for k, v in event.materialization.metadata.items()}
        raise KeyError(asset)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    tmp = tmp_path_factory.mktemp("graph")
    clones = make_widget_repo(tmp / "clones")
    resources = {
        "storage": StorageResource(root=str(tmp / "data")),
        "source": LocalSourceResource(clones_dir=str(clones), packages=GO_SLICE, include_go=True),
        "gpu": GPUResource(device="cpu"),
        "workers": WorkersResource(),  # the default: a local process pool
    }
    with dg.instance_for_test() as instance:
        results = materialize_all(instance, resources, RUN_CONFIG, log=lambda _: None)
        yield Built(instance, Layout(tmp / "data"), results)


# --- A tiny tokenizer + LlamaForCausalLM + its GGUF variants, shared by test_gguf_export and test_llama_cpp ---


@pytest.fixture(scope="session")
def tiny_spm_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 400-piece SentencePiece model with the record markers as control symbols."""
    from gocoder_assets_tests.tiny_model import train_tiny_tokenizer  # noqa: PLC0415

    return train_tiny_tokenizer(tmp_path_factory.mktemp("tiny_spm"))


@pytest.fixture(scope="session")
def save_tiny_llama():
    """``save(dir, sp, tied=...) -> model``: a random 2-layer LlamaForCausalLM saved as train.py saves it."""
    from gocoder_assets.storage import atomic_dir  # noqa: PLC0415
    from gocoder_assets_tests.tiny_model import tiny_llama  # noqa: PLC0415

    def save(d: Path, sp, *, tied: bool):
        model = tiny_llama(sp, tied=tied)
        with atomic_dir(d) as tmp:  # as checkpoint/train.py writes the HF dir (file modes included)
            model.save_pretrained(tmp, safe_serialization=True)
        return model

    return save


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory, tiny_spm_model: Path, save_tiny_llama) -> dict:
    """Untied tiny model in ``dir/hf`` and its three GGUF variants in ``dir/gguf``, written under umask 022.

    Keys: dir, hf_dir, model, sp, variants (``export_variants``'s summaries: full, q8_0, q4_0).
    """
    import os  # noqa: PLC0415

    import sentencepiece as spm  # noqa: PLC0415

    from gocoder_assets.gguf_model.export import export_variants  # noqa: PLC0415

    d = tmp_path_factory.mktemp("tiny_gguf")
    sp = spm.SentencePieceProcessor(model_file=str(tiny_spm_model))
    old = os.umask(0o022)
    try:
        model = save_tiny_llama(d / "hf", sp, tied=False)
        variants = export_variants(d / "hf", tiny_spm_model, d / "gguf", name="gocoder-test")
    finally:
        os.umask(old)
    return {"dir": d, "hf_dir": d / "hf", "model": model, "sp": sp, "variants": variants}
