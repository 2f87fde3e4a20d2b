"""When the daemon re-materializes what: automation conditions declared on the assets, and the sensor that
evaluates them.

With ``dagster dev`` (or ``dagster-daemon``) running, the ``gocoder_automation`` sensor evaluates these
conditions every ``GOCODER_AUTOMATION_INTERVAL`` seconds (30). Retraining the tokenizer makes every shard
partition's dependency newer, and ``packed_shards`` re-materializes them as one backfill, which honours its
backfill policy (runs of at most GOCODER_PARTITIONS_PER_RUN partitions); a change to one repository's
records re-materializes that repository's shards only. A partition whose upstream records are missing is
never requested, and nothing runs while a blocking check upstream is failing. ``checkpoint`` trains once,
after the last stale shard is packed, not after each run of the backfill.

Without the daemon, ``gocoder_assets.refresh.refresh_stale`` does the same from the command line.
"""

from __future__ import annotations

import dataclasses
import os

import dagster as dg

SENSOR_NAME = "gocoder_automation"
# Runs (and backfills) the sensor starts carry this tag; dagster.yaml gives them at most half the run queue.
AUTOMATION_TAG = "gocoder/automation"


@dataclasses.dataclass(frozen=True)
class AutomationSettings:
    """How often the daemon evaluates the conditions. Read when the definitions load (the interval is part
    of the sensor's definition); GOCODER_AUTOMATION_INTERVAL overrides the default."""

    interval_seconds: int = 30

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> AutomationSettings:
        env = dict(os.environ if env is None else env)
        value = env.get("GOCODER_AUTOMATION_INTERVAL")
        return cls(interval_seconds=int(value)) if value else cls()


_C = dg.AutomationCondition
# repo_list re-materializes whenever the repository list is refreshed (daily, say) and only adds or removes
# partitions; a repository's split is stable (packed_shards.pack.split_score), so its update alone must not
# re-pack 5,000 shards. Added repositories still get their shards: their records are newly updated.
_REPO_LIST = dg.AssetSelection.assets("repo_list")

# eager() without repo_list as a trigger: materialize when a dependency was updated (or the partition is
# newly missing), and no dependency is missing or in progress; plus Dagster's own cross-run block on failed
# blocking checks (per partition for the per-repo checks).
SHARDS = (
    (_C.newly_missing() | _C.any_deps_updated().ignore(_REPO_LIST)).since_last_handled()
    & ~_C.any_deps_missing()
    & ~_C.any_deps_in_progress()
    & ~_C.in_progress()
    & _C.all_deps_blocking_checks_passed()
).with_label("eager_except_repo_list")

# Train once per change of the corpus, after the stale shards are re-packed. eager() would request checkpoint
# in the very tick the stale shards are requested: "will be requested" only counts parents that can run in
# the same run, and a per-repo parent of an unpartitioned asset cannot, so nothing held it back, and it
# would train on shards of the old tokenizer while they are being re-packed (and again afterwards). Here a
# shard partition is "pending" from the moment one of its triggering dependencies updates until it is
# materialized again; checkpoint waits while any is pending or in progress (a backfill's partitions count as
# in progress until it executes them), then the trigger, remembered since the change, fires once.
_PACKED = dg.AssetSelection.assets("packed_shards")
_SHARD_PENDING = (
    _C.any_deps_updated().ignore(_REPO_LIST).since(_C.newly_updated()).with_label("updated_upstream_since_packed")
)
CHECKPOINT = (
    (_C.newly_missing() | _C.any_deps_updated()).since_last_handled()
    & ~_C.any_deps_match(_SHARD_PENDING).allow(_PACKED).with_label("any_shard_pending")
    & ~_C.any_deps_missing()
    & ~_C.any_deps_in_progress()
    & ~_C.in_progress()
    & _C.all_deps_blocking_checks_passed()
).with_label("once_after_shards")


def automation_sensor(settings: AutomationSettings | None = None) -> dg.AutomationConditionSensorDefinition:
    """The sensor that evaluates the conditions above, running as soon as the daemon starts.

    Dagster's implicit ``default_automation_condition_sensor`` starts STOPPED (someone has to switch it on
    in the UI); this one starts RUNNING. ``emit_backfills`` (on by default, spelled out because it matters)
    turns a request for several partitions into one backfill, so the backfill policy cuts it into runs.
    """
    settings = settings or AutomationSettings.from_env()
    return dg.AutomationConditionSensorDefinition(
        SENSOR_NAME,
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=settings.interval_seconds,
        emit_backfills=True,
        run_tags={AUTOMATION_TAG: "true"},
        description="Re-materializes stale shards (and retrains once) after upstream changes; see automation.py.",
    )
