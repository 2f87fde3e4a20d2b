"""Go code-model tasks cut from held-out repositories: prompts at function boundaries, closing sampled
bodies, and the pass@k estimator. The checks that need the toolchain (parse, compile, test) live in
`gocoder_assets.eval_report.go_site.GoSite`.

The task shape follows HumanEval / MultiPL-E: the prompt is the file from its start through the body's
opening ``{`` and newline (so the model sees the imports, types and doc comment), the model writes the
body, and the completion is closed where the top-level body closes. Bodies are found with go/parser (see
`go_toolchain.function_spans`); only functions gofmt would lay out as ``{\\n ... \\n}`` with the closing
brace at column 1 qualify, which makes ``prompt + body + suffix`` an exact re-assembly of the file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gocoder_assets.eval_report.go_toolchain import function_spans

GENERATED = re.compile(r"^// Code generated .* DO NOT EDIT\.$", re.MULTILINE)


@dataclass(frozen=True)
class GoFunction:
    """One top-level function or method of a held-out file, split where the model takes over."""

    path: str  # file path as given (GOROOT-relative ``src/...`` for the Go distribution)
    package_dir: str  # its directory ("" for a file at the repository root)
    name: str  # "Reverse" or "(*List).PushBack" (type parameters dropped)
    prompt: str  # file text from its start through the body's opening "{\n"
    body: str  # the original body: after `prompt`, up to (not including) the closing "}" line
    suffix: str  # the closing "}" and everything after it

    def with_body(self, body: str) -> str:
        """The whole file with ``body`` in place of the original one."""
        return self.prompt + body + self.suffix

    @property
    def package_name(self) -> str:
        """Go's ``package`` clause of the file (read from the prompt)."""
        found = re.search(r"^package\s+(\w+)", self.prompt, re.MULTILINE)
        return found.group(1) if found else ""


def is_candidate_file(path: str, text: str) -> bool:
    """Non-test Go files the go command would compile as part of a package, minus generated ones: the
    go command ignores ``testdata``, ``vendor`` packages are someone else's code, and ``_``/``.`` names are
    ignored by it too."""
    p = PurePosixPath(path)
    if p.suffix != ".go" or p.name.endswith("_test.go") or p.name.startswith(("_", ".")):
        return False
    if any(part in ("testdata", "vendor") or part.startswith(("_", ".")) for part in p.parts[:-1]):
        return False
    return not GENERATED.search(text)


def find_functions(files: Mapping[str, str], goroot: Path | None = None) -> list[GoFunction]:
    """Top-level functions and methods with multi-line bodies in the non-test Go files of ``files``
    (path → text), in path and source order. Files that do not parse are left out."""
    candidates = {p: t for p, t in files.items() if is_candidate_file(p, t)}
    spans = function_spans(candidates, goroot)
    out: list[GoFunction] = []
    for path in sorted(spans):
        parsed = spans[path]
        if parsed.error:
            continue
        text = candidates[path]
        for name, lbrace, rbrace in parsed.funcs:
            if text[lbrace + 1 : lbrace + 2] != "\n" or rbrace == 0 or text[rbrace - 1] != "\n":
                continue  # one-line body, or a closing brace not at column 1 (not gofmt'd)
            body = text[lbrace + 2 : rbrace]
            if not body.strip():
                continue
            out.append(
                GoFunction(
                    path=path,
                    package_dir=str(PurePosixPath(path).parent) if "/" in path else "",
                    name=name,
                    prompt=text[: lbrace + 2],
                    body=body,
                    suffix=text[rbrace:],
                )
            )
    return out


def close_body(completion: str) -> str | None:
    """The body part of a sampled continuation of ``GoFunction.prompt``: everything before the line whose
    ``}`` closes the function (depth counted with Go's lexical rules: strings, raw strings, runes and
    comments hide braces). A closing brace after code on the same line keeps that code, with a newline
    added. None when the function never closes."""
    depth = 1
    i, n = 0, len(completion)
    while i < n:
        ch = completion[i]
        if ch == "/" and completion.startswith("//", i):
            end = completion.find("\n", i)
            i = n if end < 0 else end
            continue
        if ch == "/" and completion.startswith("/*", i):
            end = completion.find("*/", i + 2)
            if end < 0:
                return None
            i = end + 2
            continue
        if ch == "`":
            end = completion.find("`", i + 1)
            if end < 0:
                return None
            i = end + 1
            continue
        if ch in "\"'":
            i = _skip_quoted(completion, i)
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                line_start = completion.rfind("\n", 0, i) + 1
                if not completion[line_start:i].strip():
                    return completion[:line_start]
                return completion[:i].rstrip(" \t") + "\n"
        i += 1
    return None


def _skip_quoted(text: str, start: int) -> int:
    """Index just past the interpreted string or rune literal opening at ``start``. A newline ends it (an
    error Go's scanner reports too), so a stray quote cannot swallow the rest of the completion."""
    quote = text[start]
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == quote:
            return i + 1
        if ch == "\n":
            return i
        i += 1
    return i


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of Chen et al. 2021 (HumanEval, used by MultiPL-E): the chance that at least one of
    ``k`` samples drawn without replacement from ``n`` samples, ``c`` of them correct, is correct."""
    if not 0 <= c <= n or k < 1 or n < 1:
        raise ValueError(f"pass_at_k needs 0 <= c <= n, n >= 1, k >= 1; got n={n} c={c} k={k}")
    if k > n:
        raise ValueError(f"pass_at_k needs k <= n (n={n}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def mean_pass_at_k(per_task: Sequence[Sequence[bool]], k: int) -> float:
    """pass@k over tasks as the papers report it: the mean of each task's unbiased estimate, where
    ``per_task[i]`` holds the pass/fail of task i's samples (every task needs at least ``k`` samples)."""
    if not per_task:
        raise ValueError("mean_pass_at_k needs at least one task")
    return sum(pass_at_k(len(s), sum(map(bool, s)), k) for s in per_task) / len(per_task)


def files_from_records(records: Iterable[Mapping[str, object]]) -> dict[str, str]:
    """path → text of the ``{"kind": "file"}`` raw records of one repository (trees and skips ignored)."""
    return {str(r["path"]): str(r["text"]) for r in records if r.get("kind") == "file"}
