"""license_manifest: which repositories, under which licenses, contributed how many tokens (one CSV).

Unpartitioned and downstream of every packed_shards partition: the manifest is a statement about the
whole corpus, so it is rebuilt whenever any shard changes. The work is in ``manifest.py``.
"""

import dagster as dg

from gocoder_assets.checks import require_upstream_checks_passed
from gocoder_assets.license_manifest.manifest import (
    COLUMNS,
    build_manifest,
    tokens_by_license,
    tokens_by_split_and_category,
    write_manifest,
)
from gocoder_assets.metadata import markdown_table
from gocoder_assets.packed_shards.assets import packed_shards
from gocoder_assets.repo_list.assets import repo_list
from gocoder_assets.resources import StorageResource
from gocoder_assets.storage import read_json
from gocoder_assets.tokenizer_model.assets import INFO_FILE

PREVIEW_ROWS = 20


@dg.asset(deps=[packed_shards, repo_list], code_version="1", group_name="export", kinds={"csv"})
def license_manifest(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """``licenses.csv``: one row per repository with tokens in the shards (repo, url, SPDX id, license key,
    commit, fetched_at, split, records and tokens per category). Repositories that contributed no tokens
    are left out; the model card's license section is built from this file."""
    require_upstream_checks_passed(context)
    layout = storage.layout()
    rows = build_manifest(layout, read_json(layout.tokenizer_dir / INFO_FILE)["sha256"])
    path = layout.license_manifest_file
    write_manifest(rows, path)
    by_license = tokens_by_license(rows)
    splits = tokens_by_split_and_category(rows)
    fields = ("repos", "train_tokens", "val_tokens", "tokens")
    preview_columns = ["repo", "license", "split", "commit_sha", "records", "tokens"]
    preview = markdown_table(preview_columns, [[r[c] for c in preview_columns] for r in rows[:PREVIEW_ROWS]])
    if len(rows) > PREVIEW_ROWS:
        preview += f"\n\n(first {PREVIEW_ROWS} of {len(rows)} rows)"
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "rows": len(rows),
            "total_tokens": sum(r["tokens"] for r in rows),
            "train_tokens": splits["train"]["total"],
            "val_tokens": splits["val"]["total"],
            "licenses": len(by_license),
            "tokens_by_license": dg.MetadataValue.md(
                markdown_table(["license", *fields], [[k, *(v[f] for f in fields)] for k, v in by_license.items()])
            ),
            "preview": dg.MetadataValue.md(preview),
            "columns": dg.MetadataValue.json(list(COLUMNS)),
        }
    )
