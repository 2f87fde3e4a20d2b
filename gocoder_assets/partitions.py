"""One dynamic partition per repository; `repo_list` adds and removes them."""

import dagster as dg

REPOS = "repos"
repos_partitions = dg.DynamicPartitionsDefinition(name=REPOS)

# Per-repo assets run one Dagster run per range of partitions (not per partition): run
# start-up costs seconds, so thousands of repos in one-run-each would be hours of overhead.
per_repo_backfill = dg.BackfillPolicy.single_run()
