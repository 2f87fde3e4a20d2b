"""A cheap per-repo asset for benchmarks/scale.py, in three copies that differ only in backfill policy.

The real per-repo assets (raw_prs, categorized_records, packed_shards) spend seconds per repository; here
each partition costs a small fixed amount of real work (a 64 KiB file written atomically, then hashed), so
what the benchmark sees is what Dagster itself charges: starting a run, loading this module in the run
worker, the run queue, and one materialization event per partition. The mechanics are the real assets':
a ``DynamicPartitionsDefinition`` (filled by the benchmark, as ``repo_list`` fills ``repos``), a ranged run
reading ``context.partition_keys``, one ``MaterializeResult`` with per-partition metadata, a resource.

- ``scale_per_partition``: ``BackfillPolicy.multi_run(1)``, one run per partition;
- ``scale_single``: ``BackfillPolicy.single_run()``, one run for the whole backfill;
- ``scale_multi``: ``BackfillPolicy.multi_run(N)``, N from GOCODER_SCALE_PER_RUN (default: the real assets'
  ``ScaleSettings.partitions_per_run``), read when the definitions load, as a backfill policy must be.

Load it with ``-m benchmarks.scale_defs`` from the repository root; files go to GOCODER_SCALE_DIR.
"""

import hashlib
import os
import urllib.parse
from pathlib import Path

import dagster as dg

from gocoder_assets.partitions import ScaleSettings

SCALE_PARTITIONS = "scale_repos"
scale_partitions = dg.DynamicPartitionsDefinition(name=SCALE_PARTITIONS)
PER_RUN = int(os.environ.get("GOCODER_SCALE_PER_RUN") or ScaleSettings().partitions_per_run)
FILE_BYTES = 64 * 1024


class ScaleStorage(dg.ConfigurableResource):
    """Where the partitions' files go (a resource, as the real assets' StorageResource, so each run pays for
    one)."""

    root: str

    def path(self, key: str) -> Path:
        return Path(self.root) / urllib.parse.quote(key, safe="")


def write_partition(path: Path, key: str) -> str:
    """The per-partition work: FILE_BYTES derived from the key, written atomically, read back and hashed."""
    seed = hashlib.sha256(key.encode()).digest()
    payload = (seed * (FILE_BYTES // len(seed) + 1))[:FILE_BYTES]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _scale_asset(name: str, policy: dg.BackfillPolicy) -> dg.AssetsDefinition:
    @dg.asset(name=name, partitions_def=scale_partitions, backfill_policy=policy)
    def _asset(context: dg.AssetExecutionContext, scale_storage: ScaleStorage) -> dg.MaterializeResult:
        digests = {key: write_partition(scale_storage.path(key), key) for key in context.partition_keys}
        first = context.partition_keys[0]
        metadata = {"partitions": len(digests), "bytes": FILE_BYTES * len(digests), "sha256:first": digests[first]}
        return dg.MaterializeResult(metadata=metadata)

    return _asset


scale_per_partition = _scale_asset("scale_per_partition", dg.BackfillPolicy.multi_run(1))
scale_single = _scale_asset("scale_single", dg.BackfillPolicy.single_run())
scale_multi = _scale_asset("scale_multi", dg.BackfillPolicy.multi_run(max_partitions_per_run=PER_RUN))

defs = dg.Definitions(
    assets=[scale_per_partition, scale_single, scale_multi],
    resources={"scale_storage": ScaleStorage(root=dg.EnvVar("GOCODER_SCALE_DIR"))},
)
