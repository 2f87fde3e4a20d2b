"""One dynamic partition per repository; `repo_list` adds and removes them."""

import dagster as dg

REPOS = "repos"
repos_partitions = dg.DynamicPartitionsDefinition(name=REPOS)

# Per-repo assets run one Dagster run per range of partitions (not per partition): run
# start-up costs seconds, so thousands of repos in one-run-each would be hours of overhead.
per_repo_backfill = dg.BackfillPolicy.single_run()


def per_repo_asset(**kwargs: object):  # returns the decorator from dg.asset
    """`@dg.asset` for an asset with one partition per repository, run in partition ranges."""
    return dg.asset(partitions_def=repos_partitions, backfill_policy=per_repo_backfill, **kwargs)
