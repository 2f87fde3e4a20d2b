"""gguf_model: the checkpoint as GGUF files for llama.cpp / Ollama (full precision, Q8_0, Q4_0), with a Modelfile."""

import dagster as dg

from gocoder_assets.checkpoint.assets import checkpoint
from gocoder_assets.checks import require_upstream_checks_passed
from gocoder_assets.gguf_model.options import GGUFOptions
from gocoder_assets.resources import StorageResource
from gocoder_assets.storage import read_json

STEM = "gocoder"
GGUF_NAME = f"{STEM}.gguf"  # full precision (F32 or F16): the reference the quantized files are judged against
VARIANT_NAMES = {"full": GGUF_NAME, "q8_0": f"{STEM}.Q8_0.gguf", "q4_0": f"{STEM}.Q4_0.gguf"}
# The Modelfile serves Q8_0: its perplexity stays within 1% of full precision (the gguf_llama_cpp check
# enforces it), it is 1/4 of F32 and 1/2 of F16 on disk and in RAM, and llama.cpp's CPU Q8_0 kernels are
# fast. Q4_0 costs small models noticeably more quality; users who want it point FROM at it.
SERVED_VARIANT = "q8_0"


class GGUFConfig(dg.Config):
    """See ``GGUFOptions``."""

    dtype: str = GGUFOptions.dtype


@dg.asset(deps=[checkpoint], code_version="2", group_name="export", kinds={"gguf"})
def gguf_model(context: dg.AssetExecutionContext, config: GGUFConfig, storage: StorageResource) -> dg.MaterializeResult:
    """`ollama create gocoder -f Modelfile` (Q8_0) or `llama-cli -m gocoder.Q4_0.gguf` load them as is.

    Refuses while a blocking check upstream fails (e.g. ``losses_finite`` on a diverged checkpoint).
    """
    from gocoder_assets.gguf_model.export import export_variants, write_modelfile  # noqa: PLC0415

    require_upstream_checks_passed(context)
    layout = storage.layout()
    hf_dir, out_dir = layout.checkpoint_dir, layout.gguf_dir
    summaries = export_variants(hf_dir, hf_dir / "tokenizer.model", out_dir, stem=STEM, dtype=config.dtype)
    num_ctx = read_json(hf_dir / "config.json")["max_position_embeddings"]
    write_modelfile(out_dir / VARIANT_NAMES[SERVED_VARIANT], out_dir / "Modelfile", num_ctx)
    full = summaries["full"]
    per_variant: dict[str, dg.MetadataValue | int | str] = {}
    for key, s in summaries.items():
        per_variant[f"{key}_path"] = dg.MetadataValue.path(s["path"])
        per_variant[f"{key}_bytes"] = s["bytes"]
        per_variant[f"{key}_unquantized_matrices"] = s["unquantized_matrices"]
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(full["path"]),
            "modelfile": dg.MetadataValue.path(str(out_dir / "Modelfile")),
            "served_variant": SERVED_VARIANT,
            "tensors": full["n_tensors"],
            "parameters": full["n_params"],
            "bytes": full["bytes"],
            "vocab_size": full["vocab_size"],
            "dtype": full["dtype"],
            **per_variant,
        }
    )
