"""What users see in the Dagster UI: the webserver, pointed at the instance the graph was
materialized into, reports every asset, every partition and the asset checks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from gocoder_assets_tests.conftest import Built

QUERY = """{ assetNodes { assetKey { path } isPartitioned
  partitionStats { numMaterialized numPartitions }
  assetMaterializations(limit: 1) { runId }
  assetChecksOrError { ... on AssetChecks { checks { name executionForLatestMaterialization { status } } } } } }"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_webserver_shows_every_asset_partition_and_check(built: Built) -> None:
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": built.instance.root_directory, "GOCODER_DATA_DIR": str(built.layout.root)}
    webserver = Path(sys.executable).with_name("dagster-webserver")
    cmd = [str(webserver), "-m", "gocoder_assets.definitions", "-h", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                data = graphql(port, QUERY)["data"]["assetNodes"]
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "webserver did not come up"
                time.sleep(1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data}
    assert set(nodes) == {"repo_list", "raw_prs", "categorized_records", "dedup_index", "tokenizer_model",
                          "packed_shards", "checkpoint", "gguf_model"}  # fmt: skip
    for name, node in nodes.items():
        assert node["assetMaterializations"], name
        if node["isPartitioned"]:
            stats = node["partitionStats"]
            assert stats["numMaterialized"] == stats["numPartitions"] == 5, name
    checks = {c["name"]: c for n in data for c in n["assetChecksOrError"]["checks"]}
    assert len(checks) == 13
    assert checks["tokenizer_round_trip"]["executionForLatestMaterialization"]["status"] == "SUCCEEDED"
