"""model_card: ``model_card/MODEL_CARD.md``, the model described from its stored artifacts.

Downstream of everything the card states (checkpoint, gguf_model, tokenizer_model, license_manifest), so
Dagster marks it stale when any of them changes. It writes a folder of its own rather than
``checkpoint/hf/README.md`` (the Hugging Face convention): the checkpoint asset owns and replaces that
folder, and a second writer there would be a side effect Dagster does not track. Copy the card in as
``README.md`` when publishing; its front matter is the Hub's.
"""

import dagster as dg

from gocoder_assets.checkpoint.assets import checkpoint
from gocoder_assets.checks import require_upstream_checks_passed
from gocoder_assets.gguf_model.assets import gguf_model
from gocoder_assets.license_manifest.assets import license_manifest
from gocoder_assets.model_card.card import gather, render, tokens_by_split_and_category
from gocoder_assets.resources import StorageResource
from gocoder_assets.storage import atomic_file
from gocoder_assets.tokenizer_model.assets import tokenizer_model


@dg.asset(
    deps=[checkpoint, gguf_model, tokenizer_model, license_manifest],
    code_version="1",
    group_name="export",
    kinds={"markdown"},
)
def model_card(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """Architecture and parameters, tokenizer, training tokens by category and license, eval results
    against the unigram baseline, intended use and limits, and what each license present requires."""
    require_upstream_checks_passed(context)
    layout = storage.layout()
    facts = gather(layout)
    text = render(facts)
    path = layout.model_card_file
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return dg.MaterializeResult(
        metadata={
            "card": dg.MetadataValue.md(text),
            "path": dg.MetadataValue.path(str(path)),
            "parameters": facts.params,
            "train_tokens": tokens_by_split_and_category(facts.licenses)["train"]["total"],
            "gguf_files": dg.MetadataValue.json([name for name, _ in facts.gguf_files]),
        }
    )
