"""raw_prs: everything the source holds for one repository, archived as collected."""

from collections.abc import Iterator

import dagster as dg

from gocoder_assets.metadata import counts_metadata
from gocoder_assets.partitions import per_repo_asset
from gocoder_assets.raw_prs.archive import write_raw
from gocoder_assets.repo_list.assets import repo_list
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.resources import RepoSourceResource, StorageResource
from gocoder_assets.sources.base import RawRecord


def _noting_exclusions(records: Iterator[RawRecord], excluded: list[str]) -> Iterator[RawRecord]:
    """Pass records through, noting the reason of an ``excluded`` one (a repository deleted or blocked since
    the listing: the partition is empty, and its metadata says why)."""
    for record in records:
        if record["kind"] == "excluded":
            excluded.append(record["reason"])
        yield record


@per_repo_asset(
    deps=[repo_list],
    code_version="4",
    group_name="collect",
    kinds={"json"},
    # One slot per running collection step (pool size: .ci/setup); the offline sources take a slot too.
    pool="github",
)
def raw_prs(
    context: dg.AssetExecutionContext, source: RepoSourceResource, storage: StorageResource
) -> dg.MaterializeResult:
    """Change records (PRs/commits), README, file tree and source files of each repo; metadata also says
    what each partition's collection cost (``cost:api_requests``, ``cost:graphql_points``, ``cost:git_bytes``)."""
    layout = storage.layout()
    repos = read_repo_list(layout.repo_list_file)
    src = source.get_source()
    per_partition = {}
    for key in context.partition_keys:
        if key not in repos:
            raise KeyError(f"partition {key!r} is not in repo_list: re-materialize repo_list")
        excluded: list[str] = []
        stats = write_raw(_noting_exclusions(src.collect(repos[key]), excluded), layout.raw_records_file(key))
        counts = {f"records:{k}": v for k, v in stats["kinds"].items()}
        counts.update({f"excluded:{reason}": 1 for reason in excluded})
        counts.update({f"skipped:{k}": v for k, v in stats["skips"].items()})
        counts["text_bytes"] = stats["text_bytes"]
        # What collecting cost (GitHub source: API requests, GraphQL points, git pack bytes): an incremental
        # re-collection should show small numbers here, which is how a wasteful one gets noticed.
        counts.update({f"cost:{k}": v for k, v in (getattr(src, "last_cost", None) or {}).items()})
        per_partition[key] = counts
        context.log.info(f"{key}: {counts}")
    return dg.MaterializeResult(metadata=counts_metadata(per_partition))
