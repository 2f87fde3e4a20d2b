"""What users see in the Dagster UI: the webserver, pointed at the instance the graph was
materialized into, reports every asset, every partition and the asset checks; and a person's daily path
through it (open the graph, backfill two partitions of raw_prs, read a check's per-partition table),
driven in Debian's Chromium on a copy of that instance, with webserver and daemon running.

Screenshots of each step of the person's path go to GOCODER_UI_ARTIFACTS (under CI: .ci-artifacts/ui in
the repo; else the test's tmp folder); a failing step saves one more and prints where they are."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gocoder_assets_tests.conftest import GO_SLICE, Built
from gocoder_assets_tests.servers import Deployment, dagster_deployment, require

if TYPE_CHECKING:
    from playwright.sync_api import Page

ASSET_NAMES = ["repo_list", "raw_prs", "categorized_records", "dedup_index", "tokenizer_model", "packed_shards",
               "checkpoint", "gguf_model", "license_manifest", "model_card", "sft_pairs", "sft_checkpoint",
               "sft_gguf_model", "eval_report"]  # fmt: skip
# The session's corpus has no change record that survives the instruction filters: no pairs, nothing fine-tuned.
NOT_MATERIALIZED = {"sft_checkpoint", "sft_gguf_model"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REPO = Path(__file__).resolve().parents[1]
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
         "--disable-background-networking", "--disable-component-update"]  # fmt: skip

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
        assert bool(node["assetMaterializations"]) == (name not in NOT_MATERIALIZED), name
        if node["isPartitioned"]:
            stats = node["partitionStats"]
            assert stats["numMaterialized"] == stats["numPartitions"] == 5, name
    checks = {c["name"]: c for n in data for c in n["assetChecksOrError"]["checks"]}
    assert len(checks) == 19
    # llama.cpp verified the exported GGUFs; the evaluation harness scored the true bodies 1.0
    for name in ("tokenizer_round_trip", "gguf_llama_cpp", "eval_harness_sound"):
        assert checks[name]["executionForLatestMaterialization"]["status"] == "SUCCEEDED", name


def test_the_ui_renders_the_assets_and_their_checks(webserver: int, tmp_path: Path) -> None:
    """Real Chromium, headless, on the real UI: what a user sees after the main job."""
    chromium = require(CHROMIUM, "apt-get install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only this test needs a browser

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
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
        # The evaluation: the bits-per-byte table with its baselines, and the samples a person reads.
        page.goto(f"http://127.0.0.1:{webserver}/assets/eval_report", wait_until="networkidle")
        page.get_by_placeholder("Filter metadata keys").fill("perplexity")  # short markdown renders inline
        page.get_by_role("cell", name="unigram (train tokens)").first.wait_for(timeout=60_000)
        page.get_by_role("columnheader", name="CODE").first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "eval_perplexity.png"))
        page.get_by_placeholder("Filter metadata keys").fill("samples")
        page.wait_for_timeout(1_000)
        longer = page.get_by_text("[Show Markdown]")  # long markdown opens in a dialog
        if longer.count():
            longer.first.click()
        page.get_by_text("Prompt (end)").first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "eval_samples.png"))
        browser.close()
    assert (tmp_path / "checks.png").stat().st_size > 10_000
    assert width == 700  # decoded: the 7-inch, 100-dpi figure the worker drew


# --- A person's path, on a copy of the instance (a backfill must not change what the tests above count) ---

BACKFILLED = ["golang/go/src/errors", "golang/go/src/sort"]
BACKFILL_QUERY = """query ($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { status numPartitions } ... on PythonError { message } } }"""
WAIT_MS = 120_000  # generous: each wait is for a state and ends as soon as the UI shows it


@pytest.fixture(scope="module")
def deployment(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """`dagster-webserver` + `dagster-daemon` on a copy of the built instance and data folder.

    The copy is safe: SQLite files are copied while no test writes them (tests run one at a time). The repo's
    dagster.yaml (the queued run coordinator, as users run it) replaces the test instance's settings; the
    daemon's runs read the Go packages of the build (the git clones are not needed for the two partitions).
    """
    tmp = tmp_path_factory.mktemp("ui_copy")
    home = tmp / "dagster_home"
    shutil.copytree(built.instance.root_directory, home)
    shutil.copytree(built.layout.root, tmp / "data")
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {"GOCODER_DATA_DIR": str(tmp / "data"), "GOCODER_GO_PACKAGES": ",".join(GO_SLICE),
           "GOCODER_CLONES_DIR": "", "GITHUB_TOKEN": "", "GOCODER_DEVICE": "cpu"}  # fmt: skip
    with dagster_deployment(home, env, daemon=True, log_dir=tmp) as running:
        running.graphql("mutation { setNuxSeen }")  # what the first-visit dialog's "Skip" does
        try:
            yield running
        finally:
            for log in ("webserver.log", "daemon.log"):  # shown by pytest only when the test failed
                text = (tmp / log).read_text(errors="replace") if (tmp / log).exists() else ""
                print(f"--- {tmp / log} (last 3000 characters)\n{text[-3000:]}")


def artifacts_dir(tmp_path: Path) -> Path:
    """Where the screenshots go: GOCODER_UI_ARTIFACTS, or .ci-artifacts/ui under CI, or the test's tmp folder."""
    chosen = os.environ.get("GOCODER_UI_ARTIFACTS") or (REPO / ".ci-artifacts" / "ui" if os.environ.get("CI") else "")
    folder = Path(chosen) if chosen else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_a_person_backfills_two_partitions_and_reads_the_check_table(deployment: Deployment, tmp_path: Path) -> None:
    """Graph → raw_prs → Materialize… → pick two partitions → Launch backfill → wait → the check's table."""
    chromium = require(CHROMIUM, "apt-get install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only the UI tests need a browser

    url = f"http://127.0.0.1:{deployment.port}"
    shots = artifacts_dir(tmp_path)
    taken: list[Path] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1200})
        page.set_default_timeout(WAIT_MS)

        def shot(name: str) -> None:
            path = shots / f"{len(taken) + 1:02d}-{name}.png"
            page.screenshot(path=str(path))
            taken.append(path)

        try:
            person_path(page, url, shot, deployment)
        except BaseException:
            shot("failure")
            print("UI screenshots:\n" + "\n".join(str(t) for t in taken))
            raise
        finally:
            browser.close()


def person_path(page: Page, url: str, shot: Callable[[str], None], deployment: Deployment) -> None:
    # 1. The graph: the groups, then the collect group opened, its two assets as nodes.
    page.goto(f"{url}/asset-groups", wait_until="networkidle")
    graph = page.locator("foreignObject")
    for group in ("collect", "prepare", "tokenize", "train", "export", "sft"):
        graph.get_by_text(group, exact=True).first.wait_for()
    shot("graph")
    graph.get_by_text("collect", exact=True).first.dblclick()
    for name in ("repo_list", "raw_prs"):
        graph.get_by_text(name, exact=True).first.wait_for()
    # 2. raw_prs: select the node, then its page in the catalog.
    graph.get_by_text("raw_prs", exact=True).first.click()
    page.get_by_role("button", name="View in Asset Catalog").or_(
        page.get_by_role("link", name="View in Asset Catalog")
    ).first.click()
    page.wait_for_url(re.compile(r"/assets/raw_prs"))
    shot("raw_prs")
    # 3. Materialize… → the partition dialog → two partitions → Launch backfill.
    page.get_by_role("button", name="Materialize…").click()
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize raw_prs")
    dialog.get_by_text("Select a partition or create one").click()
    for key in BACKFILLED:
        page.get_by_role("menuitem", name=key).click()
    page.keyboard.press("Escape")  # closes the partition list, not the dialog
    dialog.get_by_text("2 partitions", exact=True).wait_for()
    shot("launch_dialog")
    dialog.get_by_role("button", name="Launch backfill").click()
    toast = page.get_by_text(re.compile(r"Created backfill \w+"))
    toast.wait_for()
    backfill_id = re.search(r"Created backfill (\w+)", toast.inner_text()).group(1)
    # 4. Its page, until the UI says it completed (the daemon runs it: one run, two partitions).
    page.goto(f"{url}/runs/b/{backfill_id}", wait_until="networkidle")
    for key in BACKFILLED:
        page.get_by_text(key, exact=True).first.wait_for()
    shot("backfill_started")
    deadline = time.monotonic() + 240
    while True:  # the backfill page polls by itself; ask the same server when to look again
        status = deployment.graphql(BACKFILL_QUERY, {"id": backfill_id})["partitionBackfillOrError"]
        if status.get("status") not in (None, "REQUESTED"):
            break
        assert time.monotonic() < deadline, f"backfill {backfill_id} did not finish: {status}"
        time.sleep(2)
    assert status == {"status": "COMPLETED_SUCCESS", "numPartitions": 2}, status
    page.reload(wait_until="networkidle")
    page.get_by_text("100% completed").wait_for()
    shot("backfill_done")
    # 5. The check's table: raw_prs_valid's executions, one row per partition; the two newest are ours.
    page.goto(f"{url}/assets/raw_prs?view=checks", wait_until="networkidle")
    tabs = page.get_by_role("tablist").filter(has=page.get_by_role("tab", name="Execution history"))
    tabs.get_by_role("tab", name="Execution history").click()
    rows = page.get_by_role("row").filter(has_text="golang/go/src/")
    rows.nth(len(GO_SLICE) + 1).wait_for()  # the build's evaluations (at least) plus the backfill's two
    texts = rows.all_inner_texts()
    assert all("Passed" in t for t in texts), texts
    assert sorted(next(k for k in BACKFILLED if k in t) for t in texts[:2]) == BACKFILLED, texts
    shot("check_history")
    # ... and one evaluation's metadata: the "report" markdown, rendered.
    rows.first.get_by_role("button").last.click()
    metadata = page.get_by_role("dialog").filter(has_text="report")
    metadata.get_by_text("[Show Markdown]").click()
    page.get_by_text("(nothing to report)").wait_for()
    shot("check_report")
    for _ in range(2):  # the markdown, then the metadata dialog
        page.keyboard.press("Escape")
    page.get_by_role("dialog").first.wait_for(state="hidden")
    # The partitions view of the same check: every partition passed, the two backfilled ones included.
    tabs.get_by_role("tab", name="Partitions").click()
    page.get_by_text(f"Passed ({len(GO_SLICE) + 1})").wait_for()  # the Go slice and acme/widget
    shot("check_partitions")
    # 6. A check whose report is a table: records per category and kind of one partition, as markdown.
    page.goto(f"{url}/assets/categorized_records?view=checks", wait_until="networkidle")
    page.get_by_text("categorized_records_category_counts", exact=True).locator("visible=true").first.click()
    tabs.get_by_role("tab", name="Execution history").click()
    row = page.get_by_role("row").filter(has_text=BACKFILLED[0]).first
    row.get_by_role("button").last.click()
    page.get_by_role("dialog").filter(has_text="report").get_by_text("[Show Markdown]").click()
    table = page.get_by_role("dialog").filter(has_text="category").locator("table").last
    table.wait_for()
    header, *body = [[c.strip() for c in r.split("\t")] for r in table.locator("tr").all_inner_texts()]
    assert header == ["category", "kind", "records"], header
    assert body and all(r[0] in ("NAT", "MIX", "CODE") and int(r[2]) > 0 for r in body), body
    assert any(r[:2] == ["CODE", "file"] for r in body), body  # a Go package is mostly files
    shot("category_report")
