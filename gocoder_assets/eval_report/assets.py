"""eval_report: what the model learned, measured like a code-model paper and shown as tables in the UI.

A thin shell over ``run.evaluate``: it picks the device, runs every section on the report's model and
its comparison, and turns the written report into metadata — the bits-per-byte chart first (the UI
lists metadata in order), then the tables, the samples and the headline numbers that the UI plots
across materializations.
"""

import re
from typing import Any

import dagster as dg

from gocoder_assets.categorized_records.assets import categorized_records
from gocoder_assets.checkpoint.assets import checkpoint
from gocoder_assets.checks import require_upstream_checks_passed
from gocoder_assets.config import with_config
from gocoder_assets.eval_report.go_toolchain import GoSettings
from gocoder_assets.eval_report.options import EvalOptions
from gocoder_assets.packed_shards.assets import packed_shards
from gocoder_assets.raw_prs.assets import raw_prs
from gocoder_assets.resources import GPUResource, StorageResource
from gocoder_assets.sft_checkpoint.assets import sft_checkpoint
from gocoder_assets.sft_pairs.assets import sft_pairs

_D = EvalOptions()
_GO = GoSettings()


def _key(*parts: str) -> str:
    """A metadata key from names that hold spaces and brackets ("unigram (train tokens)")."""
    return "_".join(re.sub(r"[^0-9A-Za-z]+", "_", p).strip("_") for p in parts)


class EvalConfig(dg.Config):
    """See ``EvalOptions`` (options.py) for what each setting does and its default."""

    model: str = _D.model
    compare: str = _D.compare
    eval_tokens: int = _D.eval_tokens
    code_prompts: int = _D.code_prompts
    samples: int = _D.samples
    test_tasks: int = _D.test_tasks
    temperature: float = _D.temperature
    top_p: float = _D.top_p
    seed: int = _D.seed
    max_new_tokens: int = _D.max_new_tokens
    comment_tasks: int = _D.comment_tasks
    explanation_tasks: int = _D.explanation_tasks
    report_samples: int = _D.report_samples
    # The Go checks' limits (GoSettings in go_toolchain.py).
    build_timeout_s: float = _GO.build_timeout_s
    test_timeout_s: float = _GO.test_timeout_s
    test_short: bool = _GO.test_short
    max_test_packages: int = _GO.max_test_packages

    def options(self) -> EvalOptions:
        return with_config(_D, self.model_dump())

    def go_settings(self) -> GoSettings:
        return with_config(_GO, self.model_dump())


def headline_numbers(report: dict[str, Any]) -> dict[str, float | int]:
    """Flat numbers of the report's model (the UI plots them over materializations), and the baselines' bpb."""
    main = next(iter(report["models"]))
    out: dict[str, float | int] = {}
    for row in report["perplexity"]:
        suffix = "" if row["category"] == "all" else f"_{row['category']}"
        if row["model"] == main:
            out[f"val_bpb{suffix}"], out[f"val_ppl{suffix}"] = row["bpb"], row["ppl"]
        elif row["category"] == "all":
            out[_key("val_bpb", row["model"])] = row["bpb"]
    code = report["code"]["models"].get(main, {})
    for key in ("parse_rate", "compile_rate", "pass_at_1", "pass_at_k", "test_tasks", "prompts"):
        if key in code:
            out[f"code_{key}"] = code[key]
    for kind, per_model in report["relevance"].items():
        for model, r in per_model.items():
            if r["rouge_l"] is not None:
                out[_key("rouge_l", kind, model)] = r["rouge_l"]
    return out


@dg.asset(
    deps=[checkpoint, packed_shards, raw_prs, categorized_records, sft_pairs, sft_checkpoint],
    code_version="1",
    group_name="evaluate",
    kinds={"pytorch", "go"},
    pool="gpu",
)
def eval_report(
    context: dg.AssetExecutionContext, config: EvalConfig, storage: StorageResource, gpu: GPUResource
) -> dg.MaterializeResult:
    """Bits per byte per category against baselines, Go validity and pass@k, ROUGE-L, samples: on held-out repos."""
    from gocoder_assets.checkpoint.device import pick_device  # noqa: PLC0415 - torch
    from gocoder_assets.checkpoint.report import markdown_image  # noqa: PLC0415
    from gocoder_assets.eval_report.perplexity import ScoreRow  # noqa: PLC0415
    from gocoder_assets.eval_report.report import (  # noqa: PLC0415
        code_markdown,
        perplexity_markdown,
        relevance_markdown,
        samples_markdown,
    )
    from gocoder_assets.eval_report.run import CHART_FILE, MARKDOWN_FILE, REPORT_FILE, evaluate  # noqa: PLC0415

    require_upstream_checks_passed(context)
    layout = storage.layout()
    device = pick_device(gpu.device, gpu.precision)
    report = evaluate(layout, config.options(), device, config.go_settings(), log=context.log.info)
    out = layout.eval_report_dir
    chart = markdown_image((out / CHART_FILE).read_bytes(), "bits per byte by category")
    metadata: dict[str, Any] = {
        "bpb_by_category": dg.MetadataValue.md(chart),
        "perplexity": dg.MetadataValue.md(perplexity_markdown([ScoreRow(**r) for r in report["perplexity"]])),
        "code": dg.MetadataValue.md(code_markdown(report["code"])),
        "relevance": dg.MetadataValue.md(relevance_markdown(report["relevance"])),
        "samples": dg.MetadataValue.md(samples_markdown(report["samples"])),
        **headline_numbers(report),
        "models": ", ".join(report["models"]),
        "held_out_repos": len(report["held_out_repos"]),
        "seconds": report["seconds"],
        "report": dg.MetadataValue.path(str(out / MARKDOWN_FILE)),
        "path": dg.MetadataValue.path(str(out / REPORT_FILE)),
    }
    return dg.MaterializeResult(metadata=metadata)
