"""The model card, generated from what the upstream assets wrote, never typed by hand.

Every number on the card is read from a stored artifact (the checkpoint's ``config.json`` and
``run/result.json``, ``tokenizer_info.json``, the GGUF files, ``licenses.csv``), so the card cannot
drift from the model it describes: re-materializing any upstream asset makes it stale, and
re-materializing it rewrites every section. ``gather`` reads, ``render`` formats; both Dagster-free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gocoder_assets.categorized_records.serialize import CATEGORIES, MARKERS
from gocoder_assets.license_manifest.manifest import read_manifest, tokens_by_license, tokens_by_split_and_category
from gocoder_assets.licenses import license_family, obligations
from gocoder_assets.metadata import markdown_table
from gocoder_assets.storage import Layout, read_json

TOKENIZER_INFO = "tokenizer_info.json"  # tokenizer_model.assets.INFO_FILE, without importing Dagster
RESULT_FILE = "result.json"  # checkpoint/run/result.json, written by the training worker


@dataclass
class CardFacts:
    """Everything the card states, as read from the artifacts."""

    config: dict[str, Any]
    result: dict[str, Any]
    tokenizer: dict[str, Any]
    licenses: list[dict[str, Any]]
    gguf_files: list[tuple[str, int]] = field(default_factory=list)  # (file name, bytes), sorted
    served_gguf: str | None = None  # the file the Modelfile's FROM points at

    @property
    def params(self) -> int:
        return int(self.result["params"])


def gather(layout: Layout) -> CardFacts:
    """Read the facts; a missing artifact is an error naming the asset to materialize."""
    needed = [
        ("checkpoint", layout.checkpoint_dir / "config.json"),
        ("checkpoint", layout.train_run_dir / RESULT_FILE),
        ("tokenizer_model", layout.tokenizer_dir / TOKENIZER_INFO),
        ("license_manifest", layout.license_manifest_file),
    ]
    for asset, path in needed:
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: materialize {asset} first")
    gguf_dir = layout.gguf_dir
    gguf_files = sorted((p.name, p.stat().st_size) for p in gguf_dir.glob("*.gguf"))
    if not gguf_files:
        raise FileNotFoundError(f"no GGUF file in {gguf_dir}: materialize gguf_model first")
    served = None
    modelfile = gguf_dir / "Modelfile"
    if modelfile.exists():
        match = re.search(r"^FROM\s+(\S+)", modelfile.read_text(encoding="utf-8"), re.MULTILINE)
        served = Path(match.group(1)).name if match else None
    return CardFacts(
        config=read_json(layout.checkpoint_dir / "config.json"),
        result=read_json(layout.train_run_dir / RESULT_FILE),
        tokenizer=read_json(layout.tokenizer_dir / TOKENIZER_INFO),
        licenses=read_manifest(layout.license_manifest_file),
        gguf_files=gguf_files,
        served_gguf=served,
    )


def human(n: float) -> str:
    """3_400_000 → ``3.4M``: a size a reader takes in at a glance, next to the exact number."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return str(int(n))


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else f"{value:,}"


def _variant(name: str) -> str:
    match = re.search(r"\.(Q\d+_\w+|F16|F32)\.gguf$", name, re.IGNORECASE)
    return match.group(1).upper() if match else "full precision"


def model_section(facts: CardFacts) -> str:
    c = facts.config
    rows = [
        ["architecture", ", ".join(c.get("architectures") or [c.get("model_type", "?")])],
        ["parameters", f"{facts.params:,} ({human(facts.params)})"],
        ["layers", c.get("num_hidden_layers")],
        ["hidden size", c.get("hidden_size")],
        ["attention heads / KV heads", f"{c.get('num_attention_heads')} / {c.get('num_key_value_heads')}"],
        ["MLP size", c.get("intermediate_size")],
        ["context length", c.get("max_position_embeddings")],
        ["vocabulary", c.get("vocab_size")],
        ["tied embeddings", c.get("tie_word_embeddings")],
        ["RoPE theta", c.get("rope_theta") or (c.get("rope_parameters") or {}).get("rope_theta")],
    ]
    return "## Model\n\n" + markdown_table(["", ""], rows)


def tokenizer_section(facts: CardFacts) -> str:
    t = facts.tokenizer
    rows = [
        ["type", "SentencePiece BPE, byte fallback, identity normalization (exact round trip)"],
        ["vocabulary", t.get("vocab_size")],
        ["bytes per token (held-out records)", _num(t.get("bytes_per_token"), 2)],
        ["exact round trip on held-out records", f"{_num(t.get('round_trip_exact_pct'), 1)}%"],
        ["markers (one control id each)", " ".join(f"`{m}`" for m in MARKERS)],
        ["sha256 of tokenizer.model", f"`{t.get('sha256')}`"],
    ]
    return "## Tokenizer\n\n" + markdown_table(["", ""], rows)


def data_section(facts: CardFacts) -> str:
    splits = tokens_by_split_and_category(facts.licenses)
    header = ["split", *CATEGORIES, "total"]
    rows = [[s, *(f"{splits[s][c]:,}" for c in (*CATEGORIES, "total"))] for s in ("train", "val")]
    repos = {s: sum(r["split"] == s for r in facts.licenses) for s in ("train", "val")}
    return (
        "## Training data\n\n"
        f"{repos['train']} repositories in train, {repos['val']} held out for validation (a repository is wholly "
        "in one split). Tokens include each record's trailing EOS. Categories: **NAT** natural language "
        "without code, **MIX** natural language with code (changes with their discussion, issues with "
        "code), **CODE** source files and patches.\n\n" + markdown_table(header, rows)
    )


def training_section(facts: CardFacts) -> str:
    r = facts.result
    train_tokens = tokens_by_split_and_category(facts.licenses)["train"]["total"]
    rows = [
        ["preset", r.get("preset")],
        ["steps", _num(r.get("steps"))],
        ["tokens seen", _num(r.get("tokens_seen"))],
        ["passes over the train tokens", f"{r.get('tokens_seen', 0) / train_tokens:.2f}" if train_tokens else "–"],
        ["batch tokens", _num(r.get("total_batch_tokens"))],
        ["optimizer", r.get("optimizer")],
        ["device / precision", f"{r.get('device_name') or r.get('device')} / {r.get('precision')}"],
        ["wall time (s)", _num(r.get("wall_time_s"), 0)],
    ]
    return "## Training\n\n" + markdown_table(["", ""], rows)


def eval_section(facts: CardFacts) -> str:
    model, unigram = facts.result.get("val") or {}, facts.result.get("val_unigram") or {}

    def row(label: str, source: dict[str, Any], key: str) -> list[str]:
        return [label, *(_num(source.get(f"{key}{s}")) for s in ("", *(f"_{c}" for c in CATEGORIES)))]

    rows = [
        row("val loss (nats/token)", model, "val_loss"),
        row("val bits per byte", model, "val_bpb"),
        row("unigram baseline loss", unigram, "val_unigram_loss"),
        row("unigram baseline bits per byte", unigram, "val_unigram_bpb"),
        row("scored tokens", model, "val_tokens"),
    ]
    loss, baseline = model.get("val_loss"), unigram.get("val_unigram_loss")
    verdict = (
        "" if loss is None or baseline is None
        else f"\n\nThis model {'beats' if loss < baseline else '**does not beat**'} the unigram baseline overall."
    )  # fmt: skip
    return (
        "## Evaluation\n\n"
        "On held-out repositories (never trained on). Bits per byte do not depend on the tokenizer; the "
        "unigram baseline (train token frequencies) is scored on the same tokens, and a model that does not "
        "beat it has learned nothing from context.\n\n"
        + markdown_table(["metric", "overall", *CATEGORIES], rows)
        + verdict
    )


def files_section(facts: CardFacts) -> str:
    rows = [
        [f"`{n}`", _variant(n), f"{size:,}", "yes" if n == facts.served_gguf else ""] for n, size in facts.gguf_files
    ]
    return (
        "## Files\n\n"
        "- `checkpoint/hf/`: Hugging Face directory (`model.safetensors`, `config.json`, tokenizer files); "
        "`AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained` load it.\n"
        "- `gguf_model/`: GGUF files for llama.cpp and Ollama (`ollama create gocoder -f Modelfile`).\n"
        "- `license_manifest/licenses.csv`: every source repository with its license, commit and tokens.\n\n"
        + markdown_table(["GGUF file", "weights", "bytes", "served by Modelfile"], rows)
    )


USE = """## Intended use and limits

This is a **demonstration model**: a small LLaMA-architecture network trained from scratch on a small Go
corpus, to show the pipeline end to end (collection, filtering, tokenization, training, export). It is
**not a coding assistant**: with this few parameters and training tokens it produces Go-looking text, not
correct programs. It is a base model with **no instruction tuning** and no safety tuning: it continues
text, it does not follow instructions or chat. Prompt it the way its training records look, with the
markers, e.g. `<CODE><REPO>owner/name` then a newline and `<FILE path="main.go">` and a newline, or
`<MIX><REPO>owner/name` then `<PR_TITLE>…`. Training text was filtered and redacted (secrets, e-mail
addresses, IPs, people's names replaced by placeholders), but the model may still reproduce snippets of
its sources: see the license composition below before redistributing its outputs or weights."""


def license_section(facts: CardFacts) -> str:
    by_license = tokens_by_license(facts.licenses)
    total = sum(v["tokens"] for v in by_license.values()) or 1
    rows = [
        [f"`{spdx}`", license_family(spdx), v["repos"], f"{v['train_tokens']:,}", f"{v['val_tokens']:,}",
         f"{100 * v['tokens'] / total:.1f}%", obligations(spdx)]
        for spdx, v in by_license.items()
    ]  # fmt: skip
    header = ["license", "family", "repos", "train tokens", "val tokens", "share", "what it requires"]
    return (
        "## License composition\n\n"
        "Every training token comes from a repository under an OSI-approved license (the allowlist in "
        "`licenses.py`; unlicensed and unidentified licenses are never collected). Permissive licenses ask "
        "for attribution: keep their notices, which `licenses.csv` lists per repository (url, commit). "
        "Copyleft licenses ask for source availability and share-alike for derivative works; whether a "
        "model's weights or outputs are such a work is unsettled, so decide before distributing them. "
        "The summaries below are pointers, not legal advice; the license texts govern.\n\n"
        + markdown_table(header, rows)
    )


def render(facts: CardFacts) -> str:
    """The whole card: Hugging Face front matter (so it can be published as the model's README.md), then
    the sections, each from its artifact."""
    splits = tokens_by_split_and_category(facts.licenses)
    preset = facts.result.get("preset", "?")
    head = (
        "---\nlibrary_name: transformers\npipeline_tag: text-generation\ntags: [go, code, llama, gguf]\n---\n\n"
        f"# gocoder ({preset})\n\n"
        f"A {human(facts.params)}-parameter ({facts.params:,}) LLaMA-architecture base model for Go, trained on "
        f"{splits['train']['total']:,} tokens of Go source files, changes and discussions from "
        f"{sum(r['split'] == 'train' for r in facts.licenses)} repositories. Generated by the `model_card` "
        "asset from the stored artifacts; do not edit by hand, re-materialize it."
    )
    sections = [head, USE, model_section(facts), tokenizer_section(facts), data_section(facts),
                training_section(facts), eval_section(facts), license_section(facts), files_section(facts)]  # fmt: skip
    return "\n\n".join(sections) + "\n"
