"""gguf_llama_cpp / sft_gguf_llama_cpp: the exported GGUFs load, tokenize, compute and quantize correctly in llama.cpp.

Not blocking: the files exist either way, and the check needs an optional package. Without
``llama_cpp`` it fails with WARN and says how to install it, so a missing runtime is never mistaken
for a verified model. One factory (:func:`llama_cpp_check`) makes the check for both exports; the
fine-tuned model's adds prompts in its instruction format to the tokenization texts and generates from one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import dagster as dg
import gguf

from gocoder_assets.checks import asset_check, result
from gocoder_assets.gguf_model.assets import BASE, SFT, GGUFTarget, gguf_model, sft_gguf_model
from gocoder_assets.resources import StorageResource
from gocoder_assets.storage import file_sha256, read_json

MAX_WINDOWS = 4  # n_ctx-token val windows per variant: enough to separate Q8_0 from Q4_0, seconds on a CPU
MAX_RECORDS = 200  # val records whose content runs are tokenized by both tokenizers
MAX_PAIR_PROMPTS = 20  # val content runs also tokenized inside the instruction format (fine-tuned model)


def _verify(storage: StorageResource, target: GGUFTarget, tmp: Path) -> dg.AssetCheckResult:
    from gocoder_assets.checkpoint.assets import shard_splits  # noqa: PLC0415 - heavy imports
    from gocoder_assets.gguf_model.export import export_gguf  # noqa: PLC0415
    from gocoder_assets.gguf_model.modelfile import read_instruction_format  # noqa: PLC0415
    from gocoder_assets.gguf_model.verify import PROBE_TEXTS, content_runs, val_records, verify  # noqa: PLC0415
    from gocoder_assets.tokenizer_model.assets import INFO_FILE  # noqa: PLC0415
    from gocoder_assets.tokenizer_model.encode import RecordCodec  # noqa: PLC0415
    from gocoder_assets.tokenizer_model.train import MODEL_FILE, load_processor  # noqa: PLC0415

    layout = storage.layout()
    hf_dir, out_dir, names = target.hf_dir(layout), target.out_dir(layout), target.variant_names()
    info = read_json(layout.tokenizer_dir / INFO_FILE)
    # The val shards are the current tokenizer's ids, and its info names the markers it was trained with:
    # both describe the checkpoint's tokenizer only if the checkpoint was trained with that same model file.
    if file_sha256(hf_dir / MODEL_FILE) != info["sha256"] or "settings" not in info:
        why = (
            "the checkpoint was trained with another tokenizer than the current tokenizer_model"
            if "settings" in info
            else "tokenizer_info.json has no settings (written before settings were recorded)"
        )
        return result(False, ["problem"], [[f"{why}; re-materialize it and the checkpoint"]], blocking_failure=False)
    full = out_dir / names["full"]
    f32 = full
    field = gguf.GGUFReader(full).get_field("general.file_type")
    if field is None or field.contents() != int(gguf.LlamaFileType.ALL_F32):
        # A large model ships F16; the 1e-3 logit rule and the perplexity reference need F32, so make one.
        f32 = Path(export_gguf(hf_dir, hf_dir / "tokenizer.model", tmp / "f32.gguf", dtype="f32")["path"])
    variants = {"f32": f32, "q8_0": out_dir / names["q8_0"], "q4_0": out_dir / names["q4_0"]}
    sp = load_processor(hf_dir)
    codec = RecordCodec(sp, info["settings"]["markers"])
    _, val_keys = shard_splits(layout, info["sha256"])
    val_shards = [layout.shard_file(k) for k in val_keys]
    extra: dict = {}
    if target.instruction:  # the fine-tuned model is prompted in its instruction format: check that text too
        fmt = read_instruction_format(hf_dir)
        inputs = [*PROBE_TEXTS, *(r for t in val_records(val_shards, codec, MAX_PAIR_PROMPTS) for r in content_runs(t))]
        extra = {
            "extra_texts": [fmt.render(x) for x in inputs[: len(PROBE_TEXTS) + MAX_PAIR_PROMPTS]],
            "generate_prompt": fmt.render(PROBE_TEXTS[0]),
        }
    report = verify(
        variants,
        hf_dir,
        sp,
        codec,
        val_shards=val_shards,
        n_ctx=int(read_json(hf_dir / "config.json")["max_position_embeddings"]),
        max_windows=MAX_WINDOWS,
        max_records=MAX_RECORDS,
        **extra,
    )
    rows = report.rows() + [["failure", f, "", "❌"] for f in report.failures()]
    return result(
        report.passed,
        ["measure", "value", "rule", "ok"],
        rows,
        blocking_failure=False,
        max_abs_logit_diff=report.max_abs_logit_diff,
        **{f"ppl_{k}": v for k, v in report.ppl.items()},
        val_shards=len(val_keys),
    )


DESCRIPTION = (
    "llama.cpp (llama-cpp-python): tokenization equals SentencePiece on val text and marker prompts{extra}, "
    "F32 logits within 1e-3 of torch, greedy generation returns text, Q8_0 perplexity within 1% of F32 "
    "(Q4_0 reported)."
)


def llama_cpp_check(asset: dg.AssetsDefinition, target: GGUFTarget, name: str) -> dg.AssetChecksDefinition:
    """The llama.cpp verification of one export (see the module docstring); ``name`` is the check's name."""
    extra = " and on prompts in the instruction format" if target.instruction else ""

    @asset_check(asset=asset, name=name, blocking=False, description=DESCRIPTION.format(extra=extra))
    def _check(storage: StorageResource) -> dg.AssetCheckResult:
        try:
            import llama_cpp  # noqa: F401, PLC0415
        except ImportError as e:
            return dg.AssetCheckResult(
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                description=f'llama-cpp-python is not installed, nothing verified: pip install -e ".[serve]" ({e})',
                metadata={"report": dg.MetadataValue.md('llama_cpp missing: `pip install -e ".[serve]"`')},
            )
        with tempfile.TemporaryDirectory(prefix="gguf_verify_") as tmp:
            return _verify(storage, target, Path(tmp))

    return _check


gguf_llama_cpp = llama_cpp_check(gguf_model, BASE, "gguf_llama_cpp")
sft_gguf_llama_cpp = llama_cpp_check(sft_gguf_model, SFT, "sft_gguf_llama_cpp")
