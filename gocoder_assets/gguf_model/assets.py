"""gguf_model / sft_gguf_model: a checkpoint as GGUF files for llama.cpp / Ollama (full, Q8_0, Q4_0) + a Modelfile.

Both assets are made by one factory (:func:`gguf_asset`) around one Dagster-free function
(``export.export_model``), so the base and the fine-tuned model can never be exported differently; they
differ only in where they read and write, their file stem, and the Modelfile's TEMPLATE (plain completion
for the base model, the instruction format for the fine-tuned one).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from gocoder_assets.checkpoint.assets import checkpoint
from gocoder_assets.checks import require_upstream_checks_passed
from gocoder_assets.gguf_model.options import GGUFOptions
from gocoder_assets.resources import StorageResource
from gocoder_assets.sft_checkpoint.assets import sft_checkpoint
from gocoder_assets.storage import Layout


def variant_names(stem: str) -> dict[str, str]:
    """File name of each variant: ``<stem>.gguf`` (full precision), ``<stem>.Q8_0.gguf``, ``<stem>.Q4_0.gguf``."""
    return {"full": f"{stem}.gguf", "q8_0": f"{stem}.Q8_0.gguf", "q4_0": f"{stem}.Q4_0.gguf"}


STEM = "gocoder"
GGUF_NAME = f"{STEM}.gguf"  # full precision (F32 or F16): the reference the quantized files are judged against
VARIANT_NAMES = variant_names(STEM)
SFT_STEM = "gocoder-sft"
SFT_VARIANT_NAMES = variant_names(SFT_STEM)
# The Modelfile serves Q8_0: its perplexity stays within 1% of full precision (the gguf_llama_cpp check
# enforces it), it is 1/4 of F32 and 1/2 of F16 on disk and in RAM, and llama.cpp's CPU Q8_0 kernels are
# fast. Q4_0 costs small models noticeably more quality; users who want it point FROM at it.
SERVED_VARIANT = "q8_0"


class GGUFConfig(dg.Config):
    """See ``GGUFOptions``."""

    dtype: str = GGUFOptions.dtype


@dataclass(frozen=True)
class GGUFTarget:
    """What differs between the exported models: the HF directory read, the folder written, the stem."""

    hf_dir: Callable[[Layout], Path]
    out_dir: Callable[[Layout], Path]
    stem: str
    instruction: bool  # Modelfile TEMPLATE from the checkpoint's sft_format.json, else plain completion

    def variant_names(self) -> dict[str, str]:
        return variant_names(self.stem)


BASE = GGUFTarget(lambda layout: layout.checkpoint_dir, lambda layout: layout.gguf_dir, STEM, instruction=False)
SFT = GGUFTarget(
    lambda layout: layout.sft_checkpoint_dir, lambda layout: layout.sft_gguf_dir, SFT_STEM, instruction=True
)


def publish(layout: Layout, target: GGUFTarget, dtype: str) -> dict[str, dg.MetadataValue | int | str]:
    """Export ``target`` and return the asset's metadata (Dagster-light: tests call it with a plain Layout)."""
    from gocoder_assets.gguf_model.export import export_model  # noqa: PLC0415 - numpy, gguf, sentencepiece
    from gocoder_assets.gguf_model.modelfile import read_instruction_format  # noqa: PLC0415

    hf_dir, out_dir = target.hf_dir(layout), target.out_dir(layout)
    instruction = read_instruction_format(hf_dir) if target.instruction else None
    out = export_model(
        hf_dir, out_dir, stem=target.stem, served_variant=SERVED_VARIANT, dtype=dtype, instruction=instruction
    )
    summaries = out["variants"]
    full = summaries["full"]
    per_variant: dict[str, dg.MetadataValue | int | str] = {}
    for key, s in summaries.items():
        per_variant[f"{key}_path"] = dg.MetadataValue.path(s["path"])
        per_variant[f"{key}_bytes"] = s["bytes"]
        per_variant[f"{key}_unquantized_matrices"] = s["unquantized_matrices"]
    extra: dict[str, dg.MetadataValue | int | str] = {}
    if instruction is not None:
        extra["instruction"] = instruction.instruction
        extra["template"] = dg.MetadataValue.md(f"```\n{out['template']}\n```")
    return {
        "path": dg.MetadataValue.path(full["path"]),
        "modelfile": dg.MetadataValue.path(out["modelfile"]),
        "served_variant": SERVED_VARIANT,
        "tensors": full["n_tensors"],
        "parameters": full["n_params"],
        "bytes": full["bytes"],
        "vocab_size": full["vocab_size"],
        "dtype": full["dtype"],
        **per_variant,
        **extra,
    }


def gguf_asset(
    *,
    name: str,
    target: GGUFTarget,
    deps: Sequence[dg.AssetsDefinition | dg.AssetKey],
    group_name: str,
    code_version: str,
    description: str,
) -> dg.AssetsDefinition:
    """One GGUF export asset; refuses while a blocking check upstream fails (e.g. a diverged checkpoint)."""

    @dg.asset(
        name=name,
        deps=list(deps),
        code_version=code_version,
        group_name=group_name,
        kinds={"gguf"},
        description=description,
    )
    def _asset(context: dg.AssetExecutionContext, config: GGUFConfig, storage: StorageResource) -> dg.MaterializeResult:
        require_upstream_checks_passed(context)
        return dg.MaterializeResult(metadata=publish(storage.layout(), target, config.dtype))

    return _asset


gguf_model = gguf_asset(
    name="gguf_model",
    target=BASE,
    deps=[checkpoint],
    group_name="export",
    code_version="2",
    description="`ollama create gocoder -f Modelfile` (Q8_0) or `llama-cli -m gocoder.Q4_0.gguf` load them as is.\n\n"
    "Refuses while a blocking check upstream fails (e.g. ``losses_finite`` on a diverged checkpoint).",
)

sft_gguf_model = gguf_asset(
    name="sft_gguf_model",
    target=SFT,
    deps=[sft_checkpoint],
    group_name="sft",
    code_version="1",
    description="The fine-tuned checkpoint as GGUF (full, Q8_0, Q4_0); `ollama create gocoder-sft -f Modelfile` "
    'serves Q8_0 with the instruction format as TEMPLATE, so `ollama run gocoder-sft "<title, body, change>"` '
    "answers why the change was made. Refuses while a blocking check upstream fails.",
)
