"""When the daemon re-materializes what: automation conditions declared on the assets.

With ``dagster dev`` (or ``dagster-daemon``) running, retraining the tokenizer makes every shard partition
stale, and ``packed_shards`` re-materializes them as backfills that honour its backfill policy; a change to
one repository's records re-materializes that repository's shards only. A partition whose upstream records
are missing is never requested, and nothing runs while a blocking check upstream is failing.
"""

import dagster as dg

# eager(): materialize when a dependency was updated (or the partition is newly missing) and no dependency
# is missing or in progress; plus Dagster's own cross-run block on failed blocking checks.
SHARDS = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
CHECKPOINT = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
