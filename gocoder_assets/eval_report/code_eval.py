"""Code validity and functional correctness on held-out Go packages, for every model in the report.

Validity: ``code_prompts`` functions are drawn (seeded) from the held-out repositories' Go files; each
prompt is the file's CODE record up to the body's opening brace; ``samples`` completions are sampled,
cut where the body closes, and judged by the Go toolchain — parsed by ``gofmt -e``, compiled in their
package. Functional correctness (MultiPL-E): functions whose package tests pass as written and fail
with the body removed; pass@1 and pass@k with the unbiased estimator. Beside the models, the true
bodies run through the same harness as a reference row: anything below 1.0 there is the harness's
fault, not a model's (the ``eval_harness_sound`` check fails on it).
"""

from __future__ import annotations

import collections
import contextlib
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gocoder_assets.categorized_records.serialize import SENTINELS
from gocoder_assets.eval_report.held_out import code_prompt, repo_files
from gocoder_assets.eval_report.options import EvalOptions
from gocoder_assets.storage import Layout

REFERENCE = "reference (true bodies)"
TINY_NOTE = (
    "pass@k exists to measure larger presets: a `tiny` model trained for minutes on a CPU is expected at ≈ 0 "
    "(and most of its completions do not parse yet)."
)
_SENTINELS = frozenset(SENTINELS.values())


def _stop(close_body: Callable[[str], str | None]) -> Callable[[str], bool]:
    """A completion ends when the body closes, or when the model writes a marker (``</FILE>``, a new record)."""
    return lambda text: close_body(text) is not None or any(c in _SENTINELS for c in text)


def new_tokens(generator: Any, options: EvalOptions) -> int:
    """``max_new_tokens``, but at most half the model's context: the prompt keeps the other half."""
    return min(options.max_new_tokens, generator.context // 2)


def _rates(validity: Sequence[Any]) -> dict[str, float]:
    n = len(validity)
    return {
        "parse_rate": sum(v.parsed for v in validity) / n if n else float("nan"),
        "compile_rate": sum(v.compiled for v in validity) / n if n else float("nan"),
    }


def code_section(
    layout: Layout,
    repos: Mapping[str, Any],
    val_keys: Sequence[str],
    generators: Mapping[str, Any],
    options: EvalOptions,
    go_settings: Any,
    log: Callable[[str], None],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The code table's numbers per model (and the reference), skip counts, and per-completion samples.

    Prompts and tasks are drawn repository by repository from the held-out functions in a seeded order;
    only functions the harness can judge are kept (std-only packages that build unmodified; for tasks,
    tests that pass and reach the function), the rest are counted by reason.
    """
    from gocoder_assets.eval_report.go_site import GoSite  # noqa: PLC0415 - the toolchain only when evaluating
    from gocoder_assets.eval_report.go_tasks import close_body, find_functions, pass_at_k  # noqa: PLC0415

    skipped: collections.Counter[str] = collections.Counter()
    samples: list[dict[str, Any]] = []
    rng = random.Random(options.seed)
    with contextlib.ExitStack() as stack:
        sites: dict[str, Any] = {}
        chosen: list[tuple[str, Any]] = []
        tasks: list[tuple[str, Any]] = []
        found_total = 0
        for key in val_keys:
            files = repo_files(layout, key)
            found = find_functions(files)
            found_total += len(found)
            if not found:
                skipped["repos_without_go_functions"] += 1
                continue
            rng.shuffle(found)
            site = sites[key] = stack.enter_context(GoSite.for_files(files, settings=go_settings))
            if len(chosen) < options.code_prompts:
                kept, reasons = site.compile_tasks(found, options.code_prompts - len(chosen))
                chosen += [(key, fn) for fn in kept]
                skipped.update(reasons)
            if len(tasks) < options.test_tasks:
                kept, reasons = site.test_tasks(found, options.test_tasks - len(tasks))
                tasks += [(key, fn) for fn in kept]
                skipped.update({f"test_task:{r}": n for r, n in reasons.items()})
        log(f"code: {len(chosen)} prompts and {len(tasks)} test tasks from {found_total} held-out functions")

        def judge(validity_bodies: list[list[str | None]], test_bodies: list[list[str | None]]) -> tuple[dict, list]:
            """The table row for one model's closed bodies (per prompt, per task), and each prompt's first verdict."""
            validity, firsts = [], []
            for (key, fn), bodies in zip(chosen, validity_bodies, strict=True):
                verdicts = sites[key].check(fn, bodies)
                validity += verdicts
                firsts.append(verdicts[0])
            completions = sum(len(b) for b in validity_bodies)
            closed = sum(b is not None for bodies in validity_bodies for b in bodies)
            row: dict[str, Any] = {"prompts": len(chosen), "completions": completions, **_rates(validity)}
            row["closed_rate"] = closed / completions if completions else float("nan")
            if tasks:
                p1, pk = [], []
                for (key, fn), bodies in zip(tasks, test_bodies, strict=True):
                    passed = sum(sites[key].passes(fn, b) for b in bodies)
                    p1.append(pass_at_k(len(bodies), passed, 1))
                    pk.append(pass_at_k(len(bodies), passed, len(bodies)))
                row.update(test_tasks=len(tasks), pass_at_1=sum(p1) / len(p1), pass_at_k=sum(pk) / len(pk))
            return row, firsts

        models = {REFERENCE: judge([[fn.body] for _, fn in chosen], [[fn.body] for _, fn in tasks])[0]}
        stop = _stop(close_body)
        for name, generator in generators.items():
            prompts = [code_prompt(repos[key].full_name, fn.path, fn.prompt) for key, fn in [*chosen, *tasks]]
            outputs = generator.complete(
                prompts,
                samples=options.samples,
                temperature=options.temperature,
                top_p=options.top_p,
                seed=options.seed,
                max_new_tokens=new_tokens(generator, options),
                stop=stop,
            )
            bodies = [[close_body(t) for t in texts] for texts in outputs]
            models[name], firsts = judge(bodies[: len(chosen)], bodies[len(chosen) :])
            for i, (key, fn) in enumerate(chosen[: options.report_samples]):
                samples.append(
                    {
                        "title": f"{repos[key].full_name} {fn.path}: {fn.name}",
                        "model": name,
                        "prompt": prompts[i],
                        "completion": outputs[i][0],
                        "verdict": f"closed: {bodies[i][0] is not None}, parses: {firsts[i].parsed}, "
                        f"compiles: {firsts[i].compiled}",
                    }
                )
        tool_runs = sum((collections.Counter(site.counts) for site in sites.values()), collections.Counter())
    code = {
        "samples": options.samples,
        "models": models,
        "skipped": dict(skipped),
        "tool_runs": dict(tool_runs),  # gofmt / go build / go test invocations, timeouts
        "note": TINY_NOTE,
    }
    return code, samples
