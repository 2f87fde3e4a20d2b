"""repo_list: which repositories the corpus is made of; registers one partition per repo."""

import dagster as dg

from gocoder_assets.metadata import markdown_table, table_metadata
from gocoder_assets.partitions import REPOS
from gocoder_assets.repo_list.repos import REPO_SCHEMA, write_repo_list
from gocoder_assets.resources import RepoSourceResource, StorageResource

# SQLite rejects one insert of ~36k keys (dagster#16260).
PARTITION_CHUNK = 1000


def sync_partitions(instance: dg.DagsterInstance, keys: list[str]) -> tuple[int, int]:
    """Make the `repos` partitions equal ``keys``; returns (added, removed)."""
    existing = set(instance.get_dynamic_partitions(REPOS))
    wanted = set(keys)
    to_add = [k for k in keys if k not in existing]
    for i in range(0, len(to_add), PARTITION_CHUNK):
        instance.add_dynamic_partitions(REPOS, to_add[i : i + PARTITION_CHUNK])
    removed = sorted(existing - wanted)
    for key in removed:
        instance.delete_dynamic_partition(REPOS, key)
    return len(to_add), len(removed)


@dg.asset(code_version="2", group_name="collect", kinds={"parquet"})
def repo_list(
    context: dg.AssetExecutionContext, source: RepoSourceResource, storage: StorageResource
) -> dg.MaterializeResult:
    """One row per repository with provenance; one `repos` partition per row."""
    src = source.get_source()
    repos = src.list_repos()
    # Sources that filter (GitHub: license, fork, archived) say how many repos they left out and why.
    excluded = {f"excluded:{reason}": n for reason, n in sorted(getattr(src, "excluded", {}).items())}
    if not repos:
        raise ValueError("the source listed no repositories")
    path = storage.layout().repo_list_file
    write_repo_list(repos, path)
    added, removed = sync_partitions(context.instance, [r.partition_key for r in repos])
    preview = [[r.partition_key, r.license_spdx, r.stars, r.commit_sha[:12], r.url] for r in repos[:50]]
    return dg.MaterializeResult(
        metadata={
            "repos": len(repos),
            **table_metadata(REPO_SCHEMA, len(repos)),
            **excluded,
            # GitHub search pages still incomplete (timed out on GitHub's side) after retries
            **({"search:incomplete_pages": src.search_incomplete} if hasattr(src, "search_incomplete") else {}),
            "partitions_added": added,
            "partitions_removed": removed,
            "path": dg.MetadataValue.path(str(path)),
            "preview": dg.MetadataValue.md(markdown_table(["repo", "license", "stars", "commit", "url"], preview)),
        }
    )
