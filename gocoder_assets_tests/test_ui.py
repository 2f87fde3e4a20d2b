"""What users see in the Dagster UI: the webserver, pointed at the instance the graph was
materialized into, reports every asset, every partition and the asset checks."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gocoder_assets_tests.conftest import Built

ASSET_NAMES = ["repo_list", "raw_prs", "categorized_records", "dedup_index", "tokenizer_model", "packed_shards",
               "checkpoint", "gguf_model", "license_manifest", "model_card"]  # fmt: skip
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

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


@pytest.fixture(scope="module")
def webserver(built: Built) -> Iterator[int]:
    """`dagster-webserver` on the instance the graph was materialized into; yields its port."""
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": built.instance.root_directory, "GOCODER_DATA_DIR": str(built.layout.root)}
    exe = Path(sys.executable).with_name("dagster-webserver")
    cmd = [str(exe), "-m", "gocoder_assets.definitions", "-h", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                graphql(port, "{ version }")
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "webserver did not come up"
                time.sleep(1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_webserver_shows_every_asset_partition_and_check(webserver: int) -> None:
    data = graphql(webserver, QUERY)["data"]["assetNodes"]
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data}
    assert set(nodes) == set(ASSET_NAMES)
    for name, node in nodes.items():
        assert node["assetMaterializations"], name
        if node["isPartitioned"]:
            stats = node["partitionStats"]
            assert stats["numMaterialized"] == stats["numPartitions"] == 5, name
    checks = {c["name"]: c for n in data for c in n["assetChecksOrError"]["checks"]}
    assert len(checks) == 14
    for name in ("tokenizer_round_trip", "gguf_llama_cpp"):  # llama.cpp verified the exported GGUFs
        assert checks[name]["executionForLatestMaterialization"]["status"] == "SUCCEEDED", name


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (.ci/setup installs it)")
def test_the_ui_renders_the_assets_and_their_checks(webserver: int, tmp_path: Path) -> None:
    """Real Chromium, headless, on the real UI: what a user sees after the main job."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only this test needs a browser

    flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
             "--disable-background-networking", "--disable-component-update"]  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=flags)
        page = browser.new_page(viewport={"width": 1600, "height": 1200})
        page.goto(f"http://127.0.0.1:{webserver}/assets", wait_until="networkidle")
        for name in ASSET_NAMES:
            page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
        page.goto(f"http://127.0.0.1:{webserver}/assets/tokenizer_model?view=checks", wait_until="networkidle")
        for check in ("tokenizer_round_trip", "tokenizer_efficiency"):
            page.get_by_text(check).first.wait_for(timeout=60_000)
        assert page.get_by_text("Succeeded", exact=True).count() >= 2  # both checks' latest status
        skip = page.get_by_role("button", name="Skip")  # first-visit newsletter dialog
        if skip.count():
            skip.first.click()
        page.screenshot(path=str(tmp_path / "checks.png"))
        # The llama.cpp verification of the GGUFs, green where a user looks for it.
        page.goto(f"http://127.0.0.1:{webserver}/assets/gguf_model?view=checks", wait_until="networkidle")
        page.get_by_text("gguf_llama_cpp").first.wait_for(timeout=60_000)
        page.get_by_text("Succeeded", exact=True).first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "gguf_checks.png"))
        # The checkpoint's loss curve: a PNG in markdown metadata, opened the way a person opens it.
        page.goto(f"http://127.0.0.1:{webserver}/assets/checkpoint", wait_until="networkidle")
        page.get_by_placeholder("Filter metadata keys").fill("loss_curve")
        page.wait_for_timeout(2_000)  # the first-visit dialog, if it is still due, opens after a moment
        if skip.count():
            skip.first.click()
        page.get_by_text("[Show Markdown]").first.click()
        curve = page.locator("img[src^='data:image/png']").first
        curve.wait_for(timeout=60_000)
        width = curve.evaluate("img => img.naturalWidth")
        page.screenshot(path=str(tmp_path / "loss_curve.png"))
        browser.close()
    assert (tmp_path / "checks.png").stat().st_size > 10_000
    assert width == 700  # decoded: the 7-inch, 100-dpi figure the worker drew
