"""Shared plumbing for asset checks: per-partition checks, the report table, and the cross-run block.

Checks on per-repo assets are **partitioned checks** (``partition_check``): one result per repository
partition, so a pass on one range can never hide a failure on another, and the UI shows each partition's
result. A ranged run (a backfill of N partitions) checks each of its N partitions.
"""

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import dagster as dg

from gocoder_assets.dagster_internal import failed_check_partitions, latest_materializations
from gocoder_assets.metadata import markdown_table
from gocoder_assets.partitions import REPOS, repos_partitions
from gocoder_assets.resources import StorageResource
from gocoder_assets.storage import Layout

MAX_ROWS = 50


def result(
    passed: bool,
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    blocking_failure: bool = True,
    **numbers: Any,
) -> dg.AssetCheckResult:
    """A check result whose metadata is a markdown table the UI renders, plus headline numbers.

    Failures are ERROR (stops downstream steps when the check is blocking) unless
    ``blocking_failure`` is False, which reports them as WARN.
    """
    note = f"\n\n({len(rows) - MAX_ROWS} more rows)" if len(rows) > MAX_ROWS else ""
    table = markdown_table(list(header), [list(r) for r in rows[:MAX_ROWS]]) if rows else "(nothing to report)"
    severity = dg.AssetCheckSeverity.ERROR if blocking_failure else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        passed=passed,
        severity=severity,
        metadata={"report": dg.MetadataValue.md(table + note), **numbers},
    )


# Blocking checks by the asset they guard, filled as check modules define them (``asset_check`` and
# ``partition_check``). A run's own job graph has every asset but only the checks it selected, and reading
# the project's full graph here would mean importing definitions, which imports every asset module: a cycle.
_BLOCKING: dict[dg.AssetKey, set[dg.AssetCheckKey]] = {}


def _register(checks: dg.AssetChecksDefinition) -> dg.AssetChecksDefinition:
    for spec in checks.check_specs:
        if spec.blocking:
            _BLOCKING.setdefault(spec.asset_key, set()).add(spec.key)
    return checks


def latest_metadata(context: dg.AssetCheckExecutionContext, asset: dg.AssetKey) -> dict[str, Any]:
    """The plain values of ``asset``'s latest materialization metadata ({} before the first one)."""
    event = context.instance.get_latest_materialization_event(asset)
    if event is None or event.asset_materialization is None:
        return {}
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def asset_check(**kwargs: Any) -> Callable[[Callable[..., Any]], dg.AssetChecksDefinition]:
    """``dg.asset_check`` for an unpartitioned asset that also records a blocking check."""

    def decorate(fn: Callable[..., Any]) -> dg.AssetChecksDefinition:
        return _register(dg.asset_check(**kwargs)(fn))

    return decorate


PartitionCheckFn = Callable[[Layout, str], dg.AssetCheckResult]


def partition_check(
    *, asset: dg.AssetsDefinition, description: str, blocking: bool = False, name: str | None = None
) -> Callable[[PartitionCheckFn], dg.AssetChecksDefinition]:
    """A check on a per-repo asset, judged per partition: ``fn(layout, partition_key) -> AssetCheckResult``.

    Runs in the same run as the asset (or alone, from the UI's "Execute checks" on chosen partitions) and
    records one evaluation per partition of the run, each linked to that partition's latest materialization.
    """

    def decorate(fn: PartitionCheckFn) -> dg.AssetChecksDefinition:
        check_name = name or fn.__name__
        spec = dg.AssetCheckSpec(
            check_name, asset=asset, partitions_def=repos_partitions, blocking=blocking, description=description
        )

        @dg.multi_asset_check(specs=[spec], name=check_name)
        def _check(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> Iterator[Any]:
            layout = storage.layout()
            keys = list(context.partition_keys)
            latest = latest_materializations(context.instance, spec.asset_key, keys)
            for key in keys:
                try:
                    outcome = fn(layout, key)
                except Exception as e:  # one unreadable partition must not leave the rest of the run unjudged
                    context.log.exception(f"{check_name} could not judge partition {key!r}")
                    outcome = result(False, ["error"], [[f"{type(e).__name__}: {e}"]], blocking_failure=True)
                yield dg.AssetCheckEvaluation(
                    asset_key=spec.asset_key,
                    check_name=check_name,
                    passed=outcome.passed,
                    metadata=outcome.metadata,
                    severity=outcome.severity,
                    description=outcome.description,
                    blocking=blocking,
                    partition=key,
                    target_materialization_data=latest.get(key),
                )
            # The op's output carries no value: the evaluations above are the results.
            for output in context.op_def.output_defs:
                yield dg.Output(None, output_name=output.name)

        _check.__doc__ = fn.__doc__
        return _register(_check)

    return decorate


def require_upstream_checks_passed(context: dg.AssetExecutionContext) -> None:
    """Refuse to run while a blocking check on an ancestor is failing for a partition this run reads.

    Blocking checks stop downstream steps of their own run only. Automated runs are also held by the
    assets' ``AutomationCondition.all_deps_blocking_checks_passed()``; this covers runs launched by hand (UI,
    CLI). A partitioned run reads its own partitions of per-repo ancestors; an unpartitioned asset (the
    tokenizer, the checkpoint) reads all of them. The latest execution of each check counts, so fixing the
    data and re-materializing the upstream partition lifts the block.
    """
    ancestors = context.job_def.asset_layer.asset_graph.get_ancestor_asset_keys(context.asset_key)
    keys = sorted((k for a in ancestors for k in _BLOCKING.get(a, ())), key=lambda k: k.to_user_string())
    # An unpartitioned asset reads every current repository (not ones repo_list has since removed).
    partitioned = context.has_partition_key_range or context.has_partition_key
    partitions = list(context.partition_keys) if partitioned else context.instance.get_dynamic_partitions(REPOS)
    failed = failed_check_partitions(context.instance, keys, partitions)
    if failed:
        named = []
        for key, parts in sorted(failed.items(), key=lambda kv: kv[0].to_user_string()):
            where = [p for p in parts if p]
            more = f" and {len(where) - 5} more" if len(where) > 5 else ""
            shown = f" [{', '.join(where[:5])}{more}]" if where else ""
            named.append(f"{key.asset_key.to_user_string()}:{key.name}{shown}")
        raise dg.Failure(
            description=f"blocking checks failed upstream: {'; '.join(named)}; fix the data and re-materialize "
            "those assets (their checks run with them) before materializing this one"
        )
