"""Checks on repo_list: only licensed, allowlisted, distinct repositories enter the corpus."""

import collections

import dagster as dg
import pyarrow.parquet as pq

from gocoder_assets.checks import asset_check, result
from gocoder_assets.licenses import is_allowed
from gocoder_assets.repo_list.assets import repo_list
from gocoder_assets.resources import StorageResource


def license_problems(rows: list[dict]) -> list[list[str]]:
    return [[r["partition_key"], str(r["license_spdx"])] for r in rows if not is_allowed(r["license_spdx"])]


def duplicates(rows: list[dict]) -> list[list[str]]:
    out = []
    for field in ("partition_key", "url"):
        counts = collections.Counter(r[field] for r in rows)
        out += [[field, value, str(n)] for value, n in counts.items() if n > 1]
    return out


@asset_check(asset=repo_list, blocking=True, description="Every license is OSI-approved; none missing.")
def repo_list_licenses(storage: StorageResource) -> dg.AssetCheckResult:
    rows = pq.read_table(storage.layout().repo_list_file).to_pylist()
    bad = license_problems(rows)
    return result(not bad, ["repo", "license"], bad, repos=len(rows), unlicensed=len(bad))


@asset_check(asset=repo_list, blocking=True, description="No repository listed twice.")
def repo_list_unique(storage: StorageResource) -> dg.AssetCheckResult:
    rows = pq.read_table(storage.layout().repo_list_file).to_pylist()
    dups = duplicates(rows)
    return result(not dups, ["field", "value", "times"], dups, repos=len(rows))
