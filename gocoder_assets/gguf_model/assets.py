"""gguf_model: the checkpoint as one GGUF file for llama.cpp / Ollama, with a Modelfile."""

import dagster as dg

from gocoder_assets.checkpoint.assets import checkpoint
from gocoder_assets.checks import require_upstream_checks_passed
from gocoder_assets.resources import StorageResource
from gocoder_assets.storage import read_json

GGUF_NAME = "gocoder.gguf"


class GGUFConfig(dg.Config):
    dtype: str = "f32"  # or "f16": half the size, llama.cpp computes in F16 anyway on most backends


@dg.asset(deps=[checkpoint], code_version="1", group_name="export", kinds={"gguf"})
def gguf_model(context: dg.AssetExecutionContext, config: GGUFConfig, storage: StorageResource) -> dg.MaterializeResult:
    """`ollama create gocoder -f Modelfile` or `llama-cli -m gocoder.gguf` load it as is.

    Refuses while a blocking check upstream fails (e.g. ``losses_finite`` on a diverged checkpoint).
    """
    from gocoder_assets.gguf_model.export import export_gguf, write_modelfile  # noqa: PLC0415

    require_upstream_checks_passed(context)
    layout = storage.layout()
    hf_dir, out_dir = layout.checkpoint_dir, layout.gguf_dir
    gguf_path = out_dir / GGUF_NAME
    summary = export_gguf(hf_dir, hf_dir / "tokenizer.model", gguf_path, dtype=config.dtype)
    num_ctx = read_json(hf_dir / "config.json")["max_position_embeddings"]
    write_modelfile(gguf_path, out_dir / "Modelfile", num_ctx)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(gguf_path)),
            "modelfile": dg.MetadataValue.path(str(out_dir / "Modelfile")),
            "tensors": summary["n_tensors"],
            "bytes": summary["bytes"],
            "vocab_size": summary["vocab_size"],
            "dtype": summary["dtype"],
        }
    )
