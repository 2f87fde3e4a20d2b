"""One evaluation, end to end and Dagster-free: every section for every model, written as one report.

Sections: bits per byte / perplexity (perplexity.py), code validity and pass@k (code_eval.py), ROUGE-L
of review comments and of change explanations (relevance.py). Every model in the report gets the same
tokens, prompts and seeds, so each number has a neighbour to be read against. The report records the
settings it ran with and the models' tokenizer hash; ``report.json`` is written last, so a report
directory whose JSON is present is complete.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from gocoder_assets.eval_report import held_out
from gocoder_assets.eval_report.options import EvalOptions
from gocoder_assets.storage import Layout, atomic_file, read_json, write_json

REPORT_FILE = "report.json"
MARKDOWN_FILE = "report.md"
CHART_FILE = "bpb_by_category.png"


def _relevance_section(kind: str, tasks: list[Any], generators: dict[str, Any], options: EvalOptions, run: Any):
    """ROUGE-L of every model on the same tasks (``run`` is relevance.comment_ / explanation_relevance).

    Greedy, as summarization papers score ROUGE: one deterministic text per task, so base and fine-tuned
    differ by what they learned, not by the sampler's luck.
    """
    from gocoder_assets.eval_report.code_eval import new_tokens  # noqa: PLC0415

    per_model, samples = {}, []
    for name, generator in generators.items():
        out = run(
            generator,
            tasks,
            samples=1,
            temperature=0.0,
            top_p=1.0,
            seed=options.seed,
            max_new_tokens=new_tokens(generator, options),
        )
        per_model[name] = {"tasks": len(tasks), "rouge_l": out["rouge_l"]}
        if out["rows"]:
            row = out["rows"][0]
            samples.append(
                {
                    "title": f"{kind}: {row['repo']} {row['record_id']}",
                    "model": name,
                    "prompt": row["prompt"],
                    "completion": row["generated"][0],
                    "verdict": f"ROUGE-L {row['rouge_l'][0]:.3f} against the real one:\n\n> "
                    + row["reference"][:600].replace("\n", "\n> "),
                }
            )
    return per_model, samples


def pick_samples(code: list[dict[str, Any]], text: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """``n`` samples: the text tasks' first (a comment, the explanations of each model), then code completions."""
    return (text[: max(0, n - 2)] + code)[:n]


def evaluate(
    layout: Layout, options: EvalOptions, device: Any, go_settings: Any = None, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run every section; write ``report.json``, ``report.md`` and the chart; return the report.

    ``device`` is a ``checkpoint.device.DeviceChoice``; ``go_settings`` a ``go_toolchain.GoSettings`` (None:
    its defaults).
    """
    from gocoder_assets.checkpoint.assets import shard_splits  # noqa: PLC0415 - heavy imports below
    from gocoder_assets.eval_report.code_eval import code_section  # noqa: PLC0415
    from gocoder_assets.eval_report.generate import Generator  # noqa: PLC0415
    from gocoder_assets.eval_report.perplexity import bpb_by_model, check_tokenizer, score_table  # noqa: PLC0415
    from gocoder_assets.eval_report.relevance import (  # noqa: PLC0415
        comment_relevance,
        comment_tasks,
        explanation_relevance,
        explanation_tasks,
    )
    from gocoder_assets.eval_report.report import bpb_chart_png  # noqa: PLC0415
    from gocoder_assets.repo_list.repos import read_repo_list  # noqa: PLC0415
    from gocoder_assets.tokenizer_model.assets import INFO_FILE  # noqa: PLC0415

    started = time.perf_counter()
    models = held_out.model_dirs(layout, options)
    tokenizer_sha = read_json(layout.tokenizer_dir / INFO_FILE)["sha256"]
    check_tokenizer(models, tokenizer_sha)
    train_keys, val_keys = shard_splits(layout, tokenizer_sha)
    repos = read_repo_list(layout.repo_list_file)
    eval_tokens = options.eval_tokens or held_out.train_eval_tokens(layout)
    log(f"evaluating {', '.join(models)} on {len(val_keys)} held-out repositories")
    generators = {name: Generator(path, device=device.device) for name, path in models.items()}
    rows, windows = score_table(
        {name: g.model for name, g in generators.items()},
        models[options.model],
        [layout.shard_file(k) for k in train_keys],
        [layout.shard_file(k) for k in val_keys],
        eval_tokens,
        device,
    )
    code, code_samples = code_section(layout, repos, val_keys, generators, options, go_settings, log)
    skipped: collections.Counter[str] = collections.Counter()
    comments = comment_tasks(held_out.mix_records(layout, val_keys), options.comment_tasks, counts=skipped)
    explanations = explanation_tasks(held_out.val_pairs(layout, list(repos)), options.explanation_tasks, counts=skipped)
    relevance, text_samples = {}, []
    text_skipped = {k: v for k, v in skipped.items() if not k.endswith(":candidates")}
    for kind, tasks, run in (
        ("review comment", comments, comment_relevance),
        ("change explanation", explanations, explanation_relevance),
    ):
        relevance[kind], samples = _relevance_section(kind, tasks, generators, options, run)
        # Explanations: every model's, side by side (what fine-tuning changed); comments: the report's model.
        text_samples += samples if kind == "change explanation" else samples[:1]
    code["skipped"].update(text_skipped)
    report = {
        "settings": {
            **dataclasses.asdict(options),
            **(dataclasses.asdict(go_settings) if go_settings else {}),
            "eval_tokens": eval_tokens,
            "device": device.device,
        },
        # check_tokenizer proved every model carries the shards' tokenizer
        "models": {n: {"path": str(p), "tokenizer_sha256": tokenizer_sha} for n, p in models.items()},
        "held_out_repos": val_keys,
        "perplexity": [dataclasses.asdict(r) for r in rows],
        "windows": windows,
        "code": code,
        "relevance": relevance,
        "samples": pick_samples(code_samples, text_samples, options.report_samples),
        "seconds": round(time.perf_counter() - started, 1),
    }
    out = layout.eval_report_dir
    png = bpb_chart_png(bpb_by_model(rows), f"bits per byte on {len(val_keys)} held-out repositories")
    with atomic_file(out / CHART_FILE) as tmp:
        tmp.write_bytes(png)
    with atomic_file(out / MARKDOWN_FILE) as tmp:
        tmp.write_text(markdown(report), encoding="utf-8")
    write_json(out / REPORT_FILE, report)
    return report


def markdown(report: dict[str, Any]) -> str:
    """The whole report as one markdown document (what ``report.md`` holds)."""
    from gocoder_assets.eval_report.perplexity import ScoreRow  # noqa: PLC0415
    from gocoder_assets.eval_report.report import (  # noqa: PLC0415
        code_markdown,
        perplexity_markdown,
        relevance_markdown,
        samples_markdown,
    )

    rows = [ScoreRow(**r) for r in report["perplexity"]]
    return "\n\n".join(
        [
            f"# Evaluation of {next(iter(report['models']))}",
            f"Held-out repositories: {len(report['held_out_repos'])}. Settings: `{report['settings']}`",
            "## Bits per byte and perplexity\n\n" + perplexity_markdown(rows),
            "## Go code\n\n" + code_markdown(report["code"]),
            "## Relevance (ROUGE-L)\n\n" + relevance_markdown(report["relevance"]),
            "## Samples\n\n" + samples_markdown(report["samples"]),
        ]
    )
