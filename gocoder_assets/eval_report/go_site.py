"""Where one held-out repository's packages build, offline: parse, compile and test a function with a
sampled body swapped in.

Two places to build, one mechanism. Packages whose files are the Go distribution's own (same path under
``src/``, same text) cannot be copied out of GOROOT — they import ``internal/...`` — so they build in
GOROOT itself. Everything else is written once to a temporary tree (go.mod files reduced to their
``module`` and ``go`` lines, since only std-only packages qualify; one is written when missing). In both
cases a modified file reaches the go command as an ``-overlay`` replacement, so the tree (and GOROOT)
never change, and an external test package (``package x_test``) that imports the package by its import
path compiles against the modified file in the same build.

A package qualifies when every dependency of it and its tests is in the standard library or in its own
module, and it builds unmodified; for tests, when its tests pass unmodified. Skips are counted per
function by reason (``non_std_import``, ``build_failed``, ``file_not_built`` …).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from gocoder_assets.eval_report.go_toolchain import GoRun, GoSettings, run_go
from gocoder_assets.sources.goroot import default_goroot, go_version

if TYPE_CHECKING:
    from gocoder_assets.eval_report.go_tasks import GoFunction

# The coverage probe: tests must fail when the function panics on entry. The original body stays after
# it (unreachable code compiles; vet is off), so the probe never fails just because an import or a
# variable went unused — a failure means the tests reach the function.
REMOVED = '\tpanic("removed")\n'
DEFAULT_MODULE = "heldout"


@dataclass(frozen=True)
class Validity:
    """What became of one completion: ``parsed`` by ``gofmt -e``, ``compiled`` by ``go build`` in its package."""

    parsed: bool
    compiled: bool
    timed_out: bool = False
    error: str = ""  # first line of the failing tool's message; "not closed" for a body that never closed


def validity_summary(results: Sequence[Validity]) -> dict[str, float | int]:
    """Shares that parse and compile among ``results`` (unclosed completions count as failures)."""
    n = len(results)
    return {
        "n": n,
        "parse_rate": sum(r.parsed for r in results) / n if n else 0.0,
        "compile_rate": sum(r.compiled for r in results) / n if n else 0.0,
        "timeouts": sum(r.timed_out for r in results),
    }


@dataclass
class _Package:
    dir: str
    abs_dir: Path
    in_goroot: bool
    skip: str = ""  # why the package cannot be checked ("" when it can)
    go_files: frozenset[str] = frozenset()  # file names the go command compiles here (this GOOS/GOARCH)
    has_tests: bool = False
    tests: str | None = None  # None: not run yet; "": pass unmodified; else the skip reason


def _first_line(res: GoRun) -> str:
    for line in (res.stderr + "\n" + res.stdout).splitlines():
        if line.strip() and not line.startswith(("#", "go: finding")):
            return line.strip()[:300]
    return f"exit status {res.returncode}"


def _named(res: GoRun, scratch: Path, fn: GoFunction) -> GoRun:
    """Messages name the held-out file, not the scratch copy (the go command prints paths relative to its cwd)."""
    name = PurePosixPath(fn.path).name

    def fix(text: str) -> str:
        return text.replace(str(scratch), fn.path).replace(f"./{name}:", f"{fn.path}:")

    return dataclasses.replace(res, stdout=fix(res.stdout), stderr=fix(res.stderr))


def _dir(path: str) -> str:
    return str(PurePosixPath(path).parent) if "/" in path else ""


def _safe(path: str) -> bool:
    p = PurePosixPath(path)
    return bool(path) and not p.is_absolute() and ".." not in p.parts and "\\" not in path and "\0" not in path


def sanitize_go_mod(text: str) -> str:
    """Only the ``module`` and ``go`` lines: requirements are never needed by std-only packages, and
    with GOPROXY=off a ``require`` of a module missing from the cache could break even those."""
    module = re.search(r"^\s*module\s+(\"[^\"]+\"|\S+)", text, re.MULTILINE)
    go = re.search(r"^\s*go\s+(\d+(?:\.\d+){0,2})\s*(?://.*)?$", text, re.MULTILINE)
    lines = [f"module {module.group(1) if module else DEFAULT_MODULE}", ""]
    if go:
        lines.append(f"go {go.group(1)}")
    return "\n".join(lines) + "\n"


class GoSite:
    """One repository's packages, checkable offline; a context manager owning its temp dirs."""

    def __init__(self, files: Mapping[str, str], goroot: Path | None = None, settings: GoSettings | None = None):
        self.goroot = (goroot or default_goroot()).resolve()
        self.settings = settings or GoSettings()
        self.files = dict(files)
        self.counts: Counter[str] = Counter()  # tool runs, timeouts, unsafe paths
        self._tmp = Path(tempfile.mkdtemp(prefix="gocoder-go-"))
        self._tree = self._tmp / "tree"
        self._variants = 0
        self._packages: dict[str, _Package] = {}
        self._tested_packages = 0
        dirs = {_dir(p) for p in self.files if p.endswith(".go")}
        self._in_goroot = {d: self._matches_goroot(d) for d in dirs}
        if not all(self._in_goroot.values()):
            self._write_tree()

    @classmethod
    def for_files(
        cls, files: Mapping[str, str], goroot: Path | None = None, settings: GoSettings | None = None
    ) -> GoSite:
        return cls(files, goroot, settings)

    def __enter__(self) -> GoSite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    # -- layout -------------------------------------------------------------------------------------
    def _matches_goroot(self, d: str) -> bool:
        if not d.startswith("src/") or not _safe(d):
            return False
        for path, text in self.files.items():
            if _dir(path) == d and path.endswith(".go"):
                real = self.goroot / path
                if not real.is_file() or real.read_text(encoding="utf-8", errors="replace") != text:
                    return False
        return True

    def _write_tree(self) -> None:
        self._tree.mkdir(parents=True)
        for path, text in self.files.items():
            if not _safe(path):
                self.counts["unsafe_path"] += 1
                continue
            target = self._tree / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if PurePosixPath(path).name == "go.mod":
                text = sanitize_go_mod(text)
            target.write_text(text, encoding="utf-8", newline="")
        if not (self._tree / "go.mod").exists():
            release = go_version(self.goroot).removeprefix("go").split(".")
            (self._tree / "go.mod").write_text(f"module {DEFAULT_MODULE}\n\ngo {'.'.join(release[:2])}\n")

    def _abs(self, path: str) -> Path:
        return (self.goroot if self._in_goroot.get(_dir(path), False) else self._tree) / path

    # -- go commands --------------------------------------------------------------------------------
    def _go(self, pkg: _Package, args: list[str], timeout_s: float) -> GoRun:
        res = run_go(args, self.goroot, cwd=pkg.abs_dir, timeout_s=timeout_s, module_mode=not pkg.in_goroot)
        self.counts[f"{args[0]}_{args[1]}" if args[0] == "go" else args[0]] += 1
        if res.timed_out:
            self.counts["timeouts"] += 1
        return res

    def _test_args(self) -> list[str]:
        s = self.settings
        return ["go", "test", "-vet=off", f"-timeout={int(s.test_timeout_s)}s", *(["-short"] if s.test_short else [])]

    def _package(self, d: str) -> _Package:
        if d in self._packages:
            return self._packages[d]
        in_goroot = self._in_goroot.get(d, False)
        pkg = _Package(d, (self.goroot if in_goroot else self._tree) / d, in_goroot)
        self._packages[d] = pkg
        if not _safe(d or "."):
            pkg.skip = "unsafe_path"
            return pkg
        timeout = self.settings.build_timeout_s
        res = self._go(pkg, ["go", "list", "-e", "-json", "."], timeout)
        if not res.ok:
            pkg.skip = "list_timeout" if res.timed_out else "list_failed"
            return pkg
        info = json.loads(res.stdout)
        if info.get("Error"):
            pkg.skip = "no_buildable_files" if "build constraints" in str(info["Error"]) else "list_failed"
            return pkg
        pkg.go_files = frozenset(info.get("GoFiles") or ())
        pkg.has_tests = bool(info.get("TestGoFiles") or info.get("XTestGoFiles"))
        fmt = "{{.ImportPath}}\t{{.Standard}}\t{{with .Module}}{{.Main}}{{end}}"
        res = self._go(pkg, ["go", "list", "-e", "-deps", "-test", "-f", fmt, "."], timeout)
        if not res.ok:
            pkg.skip = "list_timeout" if res.timed_out else "list_failed"
            return pkg
        own = info.get("ImportPath", "")
        for line in res.stdout.splitlines():
            path, standard, main = [*line.split("\t"), "", ""][:3]
            if path.split(" [")[0] in (own, own + "_test", own + ".test"):
                continue  # the package itself, its external tests and the generated test main
            if standard != "true" and main != "true":
                pkg.skip = "non_std_import"
                return pkg
        res = self._go(pkg, ["go", "build", "-o", "/dev/null", "."], timeout)
        if not res.ok:
            pkg.skip = "build_timeout" if res.timed_out else "build_failed"
        return pkg

    def _compile_skip(self, fn: GoFunction) -> str:
        if fn.path not in self.files:
            return "unknown_file"
        pkg = self._package(fn.package_dir)
        if pkg.skip:
            return pkg.skip
        return "" if PurePosixPath(fn.path).name in pkg.go_files else "file_not_built"

    def _test_skip(self, fn: GoFunction) -> str:
        reason = self._compile_skip(fn)
        if reason:
            return reason
        pkg = self._package(fn.package_dir)
        if pkg.tests is None:
            if not pkg.has_tests:
                pkg.tests = "no_tests"
            elif self._tested_packages >= self.settings.max_test_packages:
                return "package_budget"
            else:
                self._tested_packages += 1
                res = self._go(
                    pkg, [*self._test_args(), "."], self.settings.test_timeout_s + self.settings.build_timeout_s
                )
                pkg.tests = "" if res.ok else ("test_timeout" if res.timed_out else "tests_fail")
        return pkg.tests

    def _with_variant(self, fn: GoFunction, body: str, args: list[str], timeout_s: float) -> tuple[GoRun, GoRun]:
        """Write ``fn`` with ``body`` to a scratch file; return (gofmt -e, go <args> -overlay) results. The
        go command is skipped (returncode -2) when gofmt rejects the file."""
        self._variants += 1
        scratch = self._tmp / "variants" / str(self._variants)
        scratch.mkdir(parents=True)
        try:
            modified = scratch / PurePosixPath(fn.path).name
            modified.write_text(fn.with_body(body), encoding="utf-8", newline="")
            overlay = scratch / "overlay.json"
            overlay.write_text(json.dumps({"Replace": {str(self._abs(fn.path)): str(modified)}}), encoding="utf-8")
            pkg = self._package(fn.package_dir)
            fmt = _named(
                self._go(pkg, ["gofmt", "-e", "-l", str(modified)], self.settings.build_timeout_s), modified, fn
            )
            if not fmt.ok:
                return fmt, GoRun(-2, "", "not parsed")
            res = self._go(pkg, [*args[:2], f"-overlay={overlay}", *args[2:], "."], timeout_s)
            return fmt, _named(res, modified, fn)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    # -- public checks ------------------------------------------------------------------------------
    def compile_tasks(
        self, functions: Sequence[GoFunction], limit: int | None = None
    ) -> tuple[list[GoFunction], Counter]:
        """Functions whose package qualifies for validity checks (std-only, builds unmodified, file built on
        this platform), at most ``limit``; skipped functions counted by reason."""
        kept: list[GoFunction] = []
        skipped: Counter[str] = Counter()
        for fn in functions:
            if limit is not None and len(kept) >= limit:
                break
            reason = self._compile_skip(fn)
            if reason:
                skipped[reason] += 1
            else:
                kept.append(fn)
        return kept, skipped

    def check(self, fn: GoFunction, bodies: Sequence[str | None]) -> list[Validity]:
        """Parse (``gofmt -e``) and compile (``go build`` of its package) ``fn`` with each body in place;
        None bodies (completions that never closed) fail both. Identical bodies are checked once."""
        reason = self._compile_skip(fn)
        if reason:
            raise ValueError(f"{fn.path} {fn.name}: package cannot be checked ({reason}); filter with compile_tasks")
        done: dict[str, Validity] = {}
        out: list[Validity] = []
        for body in bodies:
            if body is None:
                out.append(Validity(False, False, error="not closed"))
                continue
            if body not in done:
                build = ["go", "build", "-o", "/dev/null"]
                fmt, res = self._with_variant(fn, body, build, self.settings.build_timeout_s)
                if not fmt.ok:
                    done[body] = Validity(False, False, fmt.timed_out, _first_line(fmt))
                else:
                    done[body] = Validity(True, res.ok, res.timed_out, "" if res.ok else _first_line(res))
            out.append(done[body])
        return out

    def test_tasks(self, functions: Sequence[GoFunction], limit: int) -> tuple[list[GoFunction], Counter]:
        """Up to ``limit`` functions whose package tests pass unmodified and fail when the function panics
        on entry (the tests reach it); skipped functions counted by reason (``not_covered`` when the tests
        still pass with the probe)."""
        tasks: list[GoFunction] = []
        skipped: Counter[str] = Counter()
        timeout = self.settings.test_timeout_s + self.settings.build_timeout_s
        for fn in functions:
            if len(tasks) >= limit:
                break
            reason = self._test_skip(fn)
            if not reason:
                fmt, res = self._with_variant(fn, REMOVED + fn.body, self._test_args(), timeout)
                if res.ok:
                    reason = "not_covered"
                elif res.timed_out:
                    reason = "probe_timeout"
                elif not fmt.ok or "[build failed]" in res.stdout or "[setup failed]" in res.stdout:
                    reason = "probe_build_failed"
            if reason:
                skipped[reason] += 1
            else:
                tasks.append(fn)
        return tasks, skipped

    def passes(self, fn: GoFunction, body: str | None) -> bool:
        """``go test`` of the package with ``body`` in place passes (None never does; a timeout fails)."""
        reason = self._test_skip(fn)
        if reason:
            raise ValueError(f"{fn.path} {fn.name}: package cannot be tested ({reason}); filter with test_tasks")
        if body is None:
            return False
        timeout = self.settings.test_timeout_s + self.settings.build_timeout_s
        fmt, res = self._with_variant(fn, body, self._test_args(), timeout)
        return fmt.ok and res.ok
