"""Checks on eval_report: the harness itself is sound, judged on the report that ran.

The true held-out bodies go through the very harness the models go through (prompt cut, close, gofmt,
go build, go test). If they do not score 1.0 the harness is broken — a toolchain problem, an overlay
that did not apply, a cut in the wrong place — and every model number in the report is suspect.
"""

import dagster as dg

from gocoder_assets.checks import asset_check, result
from gocoder_assets.eval_report.assets import eval_report
from gocoder_assets.resources import StorageResource
from gocoder_assets.storage import read_json


@asset_check(
    asset=eval_report,
    blocking=False,
    description="The true bodies of the held-out functions parse, compile and pass their package tests (1.0) "
    "through the same harness the models' completions went through, and there were prompts to judge.",
)
def eval_harness_sound(storage: StorageResource) -> dg.AssetCheckResult:
    from gocoder_assets.eval_report.code_eval import REFERENCE  # noqa: PLC0415
    from gocoder_assets.eval_report.run import REPORT_FILE  # noqa: PLC0415

    path = storage.layout().eval_report_dir / REPORT_FILE
    if not path.exists():
        return result(False, ["problem"], [[f"{path} is missing: re-materialize eval_report"]])
    reference = read_json(path)["code"]["models"].get(REFERENCE, {})
    rows = [[k, reference.get(k), 1.0] for k in ("parse_rate", "compile_rate", "pass_at_1") if k in reference]
    rows.append(["prompts", reference.get("prompts", 0), "≥ 1"])
    ok = reference.get("prompts", 0) >= 1 and all(v == 1.0 for k, v, _ in rows if k != "prompts")
    return result(ok, ["reference measure", "value", "expected"], rows)
