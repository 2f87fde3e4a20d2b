"""One dynamic partition per repository; `repo_list` adds and removes them.

Per-repo assets backfill as a bounded number of runs of at most ``partitions_per_run`` partitions each
(``BackfillPolicy.multi_run``): a 5,000-partition backfill becomes 100 runs of 50, which the run queue
(``QueuedRunCoordinator`` in dagster.yaml) executes several at a time. One run per partition would spend
more time starting runs than working (see benchmarks/scale.py); one run for all would use one process.
"""

from __future__ import annotations

import dataclasses
import os

import dagster as dg

REPOS = "repos"
repos_partitions = dg.DynamicPartitionsDefinition(name=REPOS)


@dataclasses.dataclass(frozen=True)
class ScaleSettings:
    """How per-repo work is cut into runs. Read when the definitions load (a backfill policy is part of the
    asset definition, not of a run's config): GOCODER_PARTITIONS_PER_RUN overrides the default."""

    partitions_per_run: int = 50

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ScaleSettings:
        env = dict(os.environ if env is None else env)
        value = env.get("GOCODER_PARTITIONS_PER_RUN")
        return cls(partitions_per_run=int(value)) if value else cls()


SCALE = ScaleSettings.from_env()
per_repo_backfill = dg.BackfillPolicy.multi_run(max_partitions_per_run=SCALE.partitions_per_run)


def per_repo_asset(**kwargs: object):  # returns the decorator from dg.asset
    """`@dg.asset` for an asset with one partition per repository, backfilled in runs of partition ranges."""
    return dg.asset(partitions_def=repos_partitions, backfill_policy=per_repo_backfill, **kwargs)
