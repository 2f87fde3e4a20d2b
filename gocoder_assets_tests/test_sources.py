"""The Go-distribution source, the chained source and the categorizer, on planted trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from gocoder_assets.categorized_records.categorize import Categorizer
from gocoder_assets.categorized_records.serialize import readable
from gocoder_assets.sources.base import ChainedSource
from gocoder_assets.sources.goroot import GoRootSource


@pytest.fixture
def goroot(tmp_path: Path) -> Path:
    root = tmp_path / "go"
    pkg = root / "src" / "pkg"
    (pkg / "testdata").mkdir(parents=True)
    (pkg / "sub").mkdir()
    (root / "src" / "other").mkdir()
    (root / "VERSION").write_text("go1.99.0\ntime x\n")
    (pkg / "a.go").write_text("package pkg\n\n// A is a.\nconst A = 1\n")
    (pkg / "README.md").write_text("# pkg\n\nThe pkg package.\n")
    (pkg / "sub" / "notes.md").write_text("Notes about sub.\n")
    (pkg / "bin.go").write_bytes(b"package pkg\x00\x01")
    (pkg / "latin1.go").write_bytes(b"package pkg // caf\xe9\n")
    (pkg / "big.go").write_text("// x\n" * 300_000)
    (pkg / "testdata" / "t.go").write_text("package t\n")
    (pkg / "link.go").symlink_to("/etc/passwd")
    (pkg / "dirlink").symlink_to("/")
    (root / "src" / "other" / "o.go").write_text("package other\n")
    return root


def test_goroot_source_collects_text_and_counts_every_skip(goroot: Path) -> None:
    source = GoRootSource(goroot=goroot, fetched_at="2026-01-01T00:00:00+00:00")
    repos = source.list_repos()
    assert [r.partition_key for r in repos] == ["golang/go/src/other", "golang/go/src/pkg"]
    pkg = repos[1]
    assert (pkg.commit_sha, pkg.license_spdx, pkg.root) == ("go1.99.0", "BSD-3-Clause", "src/pkg")
    assert pkg.url == "https://github.com/golang/go/tree/go1.99.0/src/pkg"
    records = list(source.collect(pkg))
    tree = records[0]
    assert tree["kind"] == "tree" and "src/pkg/dirlink" in tree["paths"] and "src/pkg/bin.go" in tree["paths"]
    files = {r["path"] for r in records if r["kind"] == "file"}
    assert files == {"src/pkg/a.go", "src/pkg/README.md", "src/pkg/sub/notes.md", "src/pkg/testdata/t.go"}
    skips = {r["path"]: r["reason"] for r in records if r["kind"] == "skip"}
    assert skips == {
        "src/pkg/bin.go": "binary",
        "src/pkg/latin1.go": "invalid_utf8",
        "src/pkg/big.go": "too_large",
        "src/pkg/link.go": "symlink",
    }
    assert not any("passwd" in r.get("text", "") or "root:" in r.get("text", "") for r in records)


def test_packages_slice_and_unknown_package(goroot: Path) -> None:
    assert [r.root for r in GoRootSource(goroot=goroot, packages=["pkg"]).list_repos()] == ["src/pkg"]
    with pytest.raises(ValueError, match="nope"):
        GoRootSource(goroot=goroot, packages=["nope"]).list_repos()


def test_categorizer_tags_and_counts(goroot: Path) -> None:
    source = GoRootSource(goroot=goroot, packages=["pkg"])
    repo = source.list_repos()[0]
    cat = Categorizer(repo)
    rows = list(cat.run(source.collect(repo)))
    by_path = {r["path"]: r for r in rows}
    assert by_path["src/pkg/a.go"]["category"] == "CODE"
    assert by_path["src/pkg/sub/notes.md"]["category"] == "NAT"
    overview = by_path["src/pkg"]
    assert overview["kind"] == "overview" and overview["category"] == "NAT"
    text = readable(overview["text"])
    assert "<STRUCTURE>\n" in text and "The pkg package." in text
    assert "testdata" not in text  # excluded dirs are left out of the structure too
    assert "src/pkg/testdata/t.go" not in by_path
    assert cat.counts["dropped:excluded_dir"] == 1
    assert cat.counts["dropped:binary"] == cat.counts["dropped:symlink"] == 1
    assert cat.counts["category:CODE"] == 1 and cat.counts["category:NAT"] == 2


def test_text_that_cannot_round_trip_is_counted_not_mangled(goroot: Path) -> None:
    (goroot / "src" / "pkg" / "a.go").write_text("package pkg // \u2581 lower one eighth block\n")
    source = GoRootSource(goroot=goroot, packages=["pkg"])
    repo = source.list_repos()[0]
    cat = Categorizer(repo)
    rows = list(cat.run(source.collect(repo)))
    assert "src/pkg/a.go" not in {r["path"] for r in rows}
    assert cat.counts["dropped:sp_space_symbol"] == 1


def test_chained_source_dispatches_by_kind(goroot: Path) -> None:
    class Fake:
        def list_repos(self):  # type: ignore[no-untyped-def]
            return []

        def collect(self, repo):  # type: ignore[no-untyped-def]
            raise AssertionError("wrong source")

    chained = ChainedSource({"goroot": GoRootSource(goroot=goroot), "git": Fake()})
    repos = chained.list_repos()
    assert next(iter(chained.collect(repos[0])))["kind"] == "tree"
    with pytest.raises(ValueError, match="github"):
        ChainedSource({}).collect(repos[0].__class__(**{**repos[0].as_row(), "source": "github"}))


def test_discussions_drop_bots_and_chatter_and_anonymize_users(goroot: Path) -> None:
    repo = GoRootSource(goroot=goroot, packages=["pkg"]).list_repos()[0]
    long_body = "\n".join(f"line {i}" for i in range(100))
    pr = {
        "kind": "change", "number": 9, "sha": "abc", "author": "alice", "title": "T" * 600, "body": long_body,
        "comments": [
            {"author": "bob", "body": "@alice this breaks the build on arm64, see the log"},
            {"author": "carol", "body": "+1"},
            {"author": "dependabot[bot]", "body": "Bumps golang.org/x/net from 0.1 to 0.2 for security."},
        ],
        "reviews": [{"author": "bob", "state": "APPROVED", "body": "ok"}],
        "review_threads": [{"path": "a.go", "line": 3, "comments": [{"author": "alice", "body": "nit"}]}],
        "files": [{"path": "src/pkg/a.go", "status": "M", "diff": "", "before": "package pkg\n",
                   "after": "package pkg\n\n"}],
    }  # fmt: skip
    bot_pr = {**pr, "number": 10, "sha": "def", "author": "renovate[bot]"}
    issue = {"kind": "issue", "number": 11, "author": "dave", "title": "Crash", "body": "It crashes @dave"}
    cat = Categorizer(repo)
    rows = {r["pr_number"]: r for r in cat.run([pr, bot_pr, issue])}
    assert set(rows) == {9, 11, None}  # the bot's PR is gone; None is the overview
    text = readable(rows[9]["text"])
    assert rows[9]["category"] == "MIX"
    assert "<PR_TITLE>" + "T" * 500 + " [… truncated]\n" in text and "T" * 501 not in text
    assert "line 59\n[… 20 lines]\nline 80" in text and "line 70" not in text
    assert "username_1: @username_0 this breaks the build" in text
    assert ": +1\n" not in text and "Bumps" not in text and "dependabot" not in text
    assert "username_1 (approved): ok" in text and "username_0 on a.go:3: nit" in text  # reviews kept, short or not
    assert "alice" not in text and "bob" not in text
    assert rows[11]["category"] == "NAT"
    assert "<ISSUE_TITLE>Crash\n<ISSUE_BODY>It crashes @username_0" in readable(rows[11]["text"])
    assert cat.counts["dropped:bot_author"] == 1
    assert cat.counts["dropped_comments:short"] == 1 and cat.counts["dropped_comments:bot"] == 1
