"""What a person reads: the report's tables as markdown, the bits-per-byte chart, and the samples.

Everything here takes the finished report (plain dicts and rows), so the UI's metadata, ``report.md``
and the tests all render the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gocoder_assets.categorized_records.serialize import readable
from gocoder_assets.checkpoint.report import figure_png
from gocoder_assets.eval_report.perplexity import ScoreRow
from gocoder_assets.packed_shards.shard_format import CATEGORIES

PROMPT_TAIL_LINES = 24  # a sample shows the end of its prompt: the signature and what the model read last
SAMPLE_CHARS = 2000


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}" if value == value else "n/a"
    return str(value).replace("|", "\\|").replace("\n", " ")


def perplexity_markdown(rows: Sequence[ScoreRow]) -> str:
    """Models as rows, categories as columns of bits per byte; then perplexity and tokens per model."""
    categories = ["all", *(c for c in CATEGORIES if any(r.category == c for r in rows))]
    models = list(dict.fromkeys(r.model for r in rows))
    by = {(r.model, r.category): r for r in rows}
    bpb = [[m, *(by[(m, c)].bpb if (m, c) in by else float("nan") for c in categories)] for m in models]
    ppl = [[m, *(by[(m, c)].ppl if (m, c) in by else float("nan") for c in categories)] for m in models]
    tokens = [["targets", *(by[(models[0], c)].tokens if (models[0], c) in by else 0 for c in categories)]]
    return (
        "**Bits per byte** (lower is better; held-out repositories)\n\n"
        + _table(["model", *categories], bpb)
        + "\n\n**Perplexity** (per token)\n\n"
        + _table(["model", *categories], ppl)
        + "\n\n"
        + _table(["", *categories], tokens)
    )


def bpb_chart_png(bpb: Mapping[str, Mapping[str, float]], title: str) -> bytes:
    """Grouped bars: one group per category, one bar per model (the unigram floor included)."""
    import matplotlib  # noqa: PLC0415 - drawing only when a report is written

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    categories = ["all", *(c for c in CATEGORIES if any(c in v for v in bpb.values()))]
    models = list(bpb)
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for i, model in enumerate(models):
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(categories))]
        values = [bpb[model].get(c, float("nan")) for c in categories]
        bars = ax.bar(xs, values, width, label=model)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(range(len(categories)), categories)
    ax.set_ylabel("bits per byte")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return figure_png(fig)


def code_markdown(code: Mapping[str, Any]) -> str:
    """Validity and pass@k per model, the true bodies as the reference row, and what was skipped."""
    k = code["samples"]
    header = ["model", "prompts", "completions", "closed", "parse (gofmt -e)", "compile (go build)", "pass@1",
              f"pass@{k}", "test tasks"]  # fmt: skip
    rows = [
        [name, r["prompts"], r["completions"], r["closed_rate"], r["parse_rate"], r["compile_rate"],
         r.get("pass_at_1", float("nan")), r.get("pass_at_k", float("nan")), r.get("test_tasks", 0)]
        for name, r in code["models"].items()
    ]  # fmt: skip
    text = _table(header, rows)
    if code.get("note"):
        text += f"\n\n{code['note']}"
    skipped = code.get("skipped") or {}
    if skipped:
        text += "\n\nSkipped: " + ", ".join(f"{reason} {n}" for reason, n in sorted(skipped.items()))
    runs = code.get("tool_runs") or {}
    if runs:
        text += "\n\nGo toolchain runs: " + ", ".join(f"{tool} {n}" for tool, n in sorted(runs.items()))
    return text


def relevance_markdown(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """ROUGE-L per task kind and model (review comments, change explanations)."""
    rows = [
        [kind, model, r["tasks"], r["rouge_l"]]
        for kind, per_model in sections.items()
        for model, r in per_model.items()
    ]
    return _table(["task", "model", "held-out examples", "ROUGE-L F"], rows) if rows else "(no held-out examples)"


def _cut(text: str, limit: int = SAMPLE_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n[… {len(text) - limit} more chars]"


def sample_markdown(sample: Mapping[str, Any]) -> str:
    """One sample: where it is from, the end of its prompt, what the model wrote, and the verdict."""
    prompt = readable(sample["prompt"]).splitlines()
    tail = "\n".join(prompt[-PROMPT_TAIL_LINES:])
    skipped = len(prompt) - min(len(prompt), PROMPT_TAIL_LINES)
    lead = f"[… {skipped} earlier prompt lines]\n" if skipped else ""
    return (
        f"#### {sample['title']}\n\n{sample['verdict']}\n\n**Prompt** (end)\n\n```text\n{lead}{_cut(tail)}\n```\n\n"
        f"**{sample['model']}**\n\n```text\n{_cut(readable(sample['completion'])) or '(nothing)'}\n```"
    )


def samples_markdown(samples: Sequence[Mapping[str, Any]]) -> str:
    return "\n\n".join(sample_markdown(s) for s in samples) if samples else "(no samples)"
