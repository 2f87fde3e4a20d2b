"""GitClonesSource against real git repositories built in a temporary directory.

Every expectation is checked against what git itself prints (``git log``, ``git show``), so
the test pins the source to git's view of the history rather than to hand-written values.
"""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gocoder_assets.sources import base, git_clones, git_diff
from gocoder_assets.sources.git_clones import GitClonesSource, detect_license, parse_remote
from gocoder_assets_tests.gitrepo import commit, git, gits

MIT = """MIT License

Copyright (c) 2024 Acme

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction.
"""
FIX_BODY = "The tokenizer dropped the last token\nwhen the input had no newline.\n\nFixes #41."


@pytest.fixture(scope="module")
def clones(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clones")
    repo = root / "widget"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "LICENSE").write_text(MIT)
    (repo / "README.md").write_text("# widget\n")
    (repo / "go.mod").write_text("module example.com/widget\n\ngo 1.22\n")
    (repo / "main.go").write_text('package main\n\nfunc main() { println("hi") }\n')
    (repo / "parser.go").write_text("package main\n\nfunc parse(s string) string { return s[:len(s)-1] }\n")
    (repo / "old.go").write_text("package main\n\nvar old = 1\n")
    (repo / "logo.png").write_bytes(b"\x89PNG\0\0")
    commit(repo, 1, "Initial import")
    (repo / "parser.go").write_text("package main\n\nfunc parse(s string) string { return s }\n")
    commit(repo, 2, f"Fix parser bug (#42)\n\n{FIX_BODY}\n")
    (repo / "old.go").unlink()
    commit(repo, 3, "Remove old.go")
    (repo / "blob.go").write_bytes(b"package main\n\0\0\0binary\n")
    (repo / "latin1.go").write_bytes(b"package main // caf\xe9\n")
    (repo / "link.go").symlink_to("main.go")
    git(repo, "add", "-A")
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{'a' * 40},vendor/sub")
    git(repo, "commit", "-q", "-m", "Add odd files", n=4)
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "feature.go").write_text("package main\n\nvar feature = true\n")
    commit(repo, 5, "Add feature", "feature.go")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge branch feature", "feature", n=6)
    (repo / "main.go").write_text('package main\n\nfunc main() { println("hello") }\n')
    commit(repo, 7, "Say hello", "main.go")  # not -A: that would drop the gitlink
    git(repo, "remote", "add", "origin", "https://user:secret@github.com/acme/widget.git")

    lonely = root / "lonely"  # bare, no remote
    git(root, "clone", "-q", "--bare", str(repo), str(lonely))
    git(lonely, "remote", "remove", "origin")
    (root / "notes").mkdir()  # not a repository: skipped
    (root / "notes" / "todo.txt").write_text("x\n")
    return root


def _widget(clones: Path, **kw: object) -> tuple[Path, base.RepoInfo, list[dict]]:
    source = GitClonesSource(clones, fetched_at="2024-02-01T00:00:00+00:00", **kw)  # type: ignore[arg-type]
    info = next(r for r in source.list_repos() if r.full_name == "acme/widget")
    return clones / "widget", info, list(source.collect(info))


def test_list_repos(clones: Path) -> None:
    repos = GitClonesSource(clones, fetched_at="2024-02-01T00:00:00+00:00").list_repos()
    assert [r.partition_key for r in repos] == ["acme/widget", "local/lonely"]
    widget, lonely = repos
    assert widget.full_name == "acme/widget"
    assert widget.url == "https://github.com/acme/widget.git"
    assert "secret" not in widget.url and "user" not in widget.url
    assert widget.license_spdx == "MIT"
    assert widget.commit_sha == gits(clones / "widget", "rev-parse", "HEAD").strip()
    assert (widget.default_branch, widget.source, widget.root, widget.stars) == ("main", "git", "", None)
    assert widget.fetched_at == "2024-02-01T00:00:00+00:00"
    assert lonely.url == f"file://{(clones / 'lonely').resolve()}"
    assert lonely.commit_sha == widget.commit_sha and lonely.license_spdx == "MIT"


def test_strict_rejects_non_git_dirs(clones: Path) -> None:
    with pytest.raises(ValueError, match="notes"):
        GitClonesSource(clones, strict=True).list_repos()


def test_snapshot_records(clones: Path) -> None:
    repo, _, records = _widget(clones)
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "tree" and kinds.count("tree") == 1
    assert kinds.index("change") > max(i for i, k in enumerate(kinds) if k in ("file", "skip"))
    git_paths = sorted(gits(repo, "ls-tree", "-r", "--name-only", "HEAD").split("\n")[:-1])
    assert records[0]["paths"] == git_paths
    assert "vendor/sub" in git_paths and "logo.png" in git_paths
    files = {r["path"]: r for r in records if r["kind"] == "file"}
    assert sorted(files) == ["README.md", "feature.go", "go.mod", "main.go", "parser.go"]
    for path, rec in files.items():
        assert rec["text"] == gits(repo, "show", f"HEAD:{path}")
        assert rec["size"] == len(rec["text"].encode())
    skips = {r["path"]: r["reason"] for r in records if r["kind"] == "skip"}
    assert skips == {"blob.go": "binary", "latin1.go": "invalid_utf8", "link.go": "symlink", "vendor/sub": "submodule"}


def test_change_records_match_git(clones: Path) -> None:
    repo, _, records = _widget(clones)
    changes = [r for r in records if r["kind"] == "change"]
    log = gits(repo, "log", "--first-parent", "--no-merges", "--format=%H").split()
    assert [c["sha"] for c in changes] == log and len(log) == 5
    merges = gits(repo, "log", "--merges", "--format=%H").split()
    feature = gits(repo, "rev-parse", "feature").strip()
    assert merges and not {*merges, feature} & {c["sha"] for c in changes}
    checked = 0
    for change in changes:
        sha = change["sha"]
        meta = gits(repo, "log", "-1", "--format=%s%x00%b%x00%an%x00%aI", sha)
        subject, body, author, date = meta.split("\0")
        assert change["body"] == body.strip()
        assert (change["author"], change["created_at"], change["comments"]) == (author, date.strip(), [])
        if change["number"] is None:
            assert change["title"] == subject
        else:
            assert f"{change['title']} (#{change['number']})" == subject
        parent = gits(repo, "rev-list", "--parents", "-n1", sha).split()[1:]
        names = gits(repo, "diff-tree", "-r", "--root", "--no-commit-id", "--name-status", "--no-renames", sha)
        assert [(f["status"], f["path"]) for f in change["files"]] == [
            tuple(line.split("\t")) for line in names.splitlines()
        ]
        for f in change["files"]:
            shown = git(repo, "show", "--format=", sha, "--", f["path"])
            expected_diff = shown[shown.index(b"diff --git") :]
            if "skipped" not in f:
                assert f["diff"] == expected_diff.decode()
                checked += 1
                side = {"before": (parent[0] if parent else None, "A"), "after": (sha, "D")}
                for key, (rev, absent) in side.items():
                    want = None if f["status"] == absent else gits(repo, "show", f"{rev}:{f['path']}")
                    assert f[key] == want, (sha, f["path"], key)
    assert checked >= 8

    fix = next(c for c in changes if c["number"] == 42)
    assert (fix["title"], fix["body"], fix["author"]) == ("Fix parser bug", FIX_BODY, "Ada Lovelace")
    assert fix["created_at"] == "2024-01-02T12:00:00+00:00"
    (removed,) = next(c for c in changes if c["title"] == "Remove old.go")["files"]
    assert (removed["path"], removed["status"], removed["after"]) == ("old.go", "D", None)
    assert removed["before"] == "package main\n\nvar old = 1\n"
    root = changes[-1]
    assert root["title"] == "Initial import" and all(f["before"] is None for f in root["files"])
    odd = {f["path"]: f for f in next(c for c in changes if c["title"] == "Add odd files")["files"]}
    assert odd["blob.go"]["skipped"] == "binary" and odd["blob.go"]["after"] is None
    assert "Binary files /dev/null and b/blob.go differ" in odd["blob.go"]["diff"]
    assert odd["latin1.go"]["skipped"] == "invalid_utf8" and odd["latin1.go"]["after"] is None
    assert odd["link.go"]["skipped"] == "symlink" and odd["link.go"]["after"] is None
    assert odd["vendor/sub"]["skipped"] == "submodule"


def test_max_commits(clones: Path) -> None:
    repo, _, records = _widget(clones, max_commits=2)
    changes = [r["sha"] for r in records if r["kind"] == "change"]
    assert changes == gits(repo, "log", "--first-parent", "--no-merges", "-n2", "--format=%H").split()


def test_shallow_boundary_is_not_a_root(clones: Path, tmp_path: Path) -> None:
    git(tmp_path, "clone", "-q", "--depth", "2", f"file://{clones / 'widget'}", str(tmp_path / "c" / "w"))
    (info,) = GitClonesSource(tmp_path / "c").list_repos()
    changes = [r["sha"] for r in GitClonesSource(tmp_path / "c").collect(info) if r["kind"] == "change"]
    assert changes == [info.commit_sha]  # the grafted boundary (the merge) is not reported


def test_too_large(clones: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "MAX_FILE_BYTES", 40)
    _, _, records = _widget(clones)
    skips = {r["path"]: r["reason"] for r in records if r["kind"] == "skip"}
    assert skips["main.go"] == "too_large" and "go.mod" not in skips


def test_parse_remote_and_license() -> None:
    assert parse_remote("git@github.com:acme/widget.git") == ("acme/widget", "git@github.com:acme/widget.git")
    assert parse_remote("ssh://git:pw@host.xz:22/acme/widget") == ("acme/widget", "ssh://host.xz:22/acme/widget")
    assert parse_remote("file:///srv/git/acme/widget.git")[0] == "acme/widget"
    assert parse_remote("https://example.com/widget")[0] is None
    assert detect_license(MIT) == "MIT"
    assert detect_license("Apache License\n Version 2.0, January 2004\n") == "Apache-2.0"
    gpl = "GNU GENERAL PUBLIC LICENSE\nVersion 2, June 1991\n... GNU Lesser General Public License ..."
    assert detect_license(gpl) == "GPL-2.0"
    assert detect_license("GNU LESSER GENERAL PUBLIC LICENSE Version 2.1, February 1999") == "LGPL-2.1"
    bsd = "Redistribution and use in source and binary forms ... Neither the name of Google Inc."
    assert detect_license(bsd) == "BSD-3-Clause"
    assert detect_license("All rights reserved.") is None


def test_commit_message_that_is_not_utf8_is_not_mangled(tmp_path: Path) -> None:
    """git re-encodes a Latin-1 message to UTF-8 itself; nothing may carry U+FFFD."""
    repo = tmp_path / "clones" / "latin"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "a.go").write_text("package a\n")
    git(repo, "add", "-A")
    (tmp_path / "msg").write_bytes(b"Caf\xe9 fix\n\nLatin-1 body \xe9\n")
    git(repo, "-c", "i18n.commitEncoding=UTF-8", "commit", "-q", "-F", str(tmp_path / "msg"))
    source = GitClonesSource(tmp_path / "clones")
    records = list(source.collect(source.list_repos()[0]))
    change = next(r for r in records if r["kind"] == "change")
    assert change["title"] == "Café fix" and change["body"] == "Latin-1 body é"
    assert not any("\ufffd" in str(r) for r in records)


GO_LINES = "".join(f"var v{i} = {i}\n" for i in range(10))


@pytest.fixture(scope="module")
def renames(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A history of renames; returns the repo and commit subject -> sha."""
    repo = tmp_path_factory.mktemp("renames") / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "a.go").write_text(f"package a\n\n{GO_LINES}")
    (repo / "m.go").write_text(f"package m\n\n{GO_LINES}")
    (repo / "keep.go").write_text(f"package k\n\n{GO_LINES}")
    (repo / "c_gone.go").write_text("package gone\n")
    (repo / "u.go").write_text(f"package u\n\n{GO_LINES}")
    (repo / "link.go").symlink_to("a.go")
    commit(repo, 1, "Initial")
    (repo / "pkg").mkdir()
    git(repo, "mv", "m.go", "pkg/m.go")
    commit(repo, 2, "Pure rename")
    git(repo, "mv", "a.go", "b.go")
    (repo / "b.go").write_text(f"package a\n\n{GO_LINES.replace('v3 = 3', 'v3 = 33')}")
    commit(repo, 3, "Rename with edit")
    git(repo, "mv", "keep.go", "d_kept.go")
    (repo / "c_gone.go").unlink()
    (repo / "z_new.go").write_text("package z\n")
    commit(repo, 4, "Rename add delete")
    git(repo, "mv", "u.go", "evil\\u.go")  # a backslash: legal in git on POSIX, unsafe for us
    git(repo, "mv", "link.go", "link2.go")
    commit(repo, 5, "Odd renames")
    shas = dict(line.split("\t", 1)[::-1] for line in gits(repo, "log", "--format=%H\t%s").splitlines())
    return repo, shas


def _files(repo: Path, sha: str, tmp_path: Path) -> list[dict]:
    git_ = git_clones.Git(repo / ".git", tmp_path)
    blobs = git_clones.BlobReader(git_)
    try:
        return git_clones.commit_files(git_, blobs, sha)
    finally:
        blobs.close()


def test_pure_rename_is_one_entry(renames: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    repo, shas = renames
    (entry,) = _files(repo, shas["Pure rename"], tmp_path)
    assert (entry["status"], entry["path"], entry["old_path"], entry["similarity"]) == ("R", "pkg/m.go", "m.go", 100)
    assert entry["before"] == entry["after"] == gits(repo, "show", f"{shas['Pure rename']}:pkg/m.go")
    header = "diff --git a/m.go b/pkg/m.go\nsimilarity index 100%\nrename from m.go\nrename to pkg/m.go\n"
    assert entry["diff"] == header  # no content lines: nothing changed
    assert "skipped" not in entry


def test_rename_with_edit(renames: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    repo, shas = renames
    sha = shas["Rename with edit"]
    (entry,) = _files(repo, sha, tmp_path)
    assert (entry["status"], entry["path"], entry["old_path"]) == ("R", "b.go", "a.go")
    assert 50 <= entry["similarity"] < 100
    assert entry["before"] == gits(repo, "show", f"{sha}^:a.go") and entry["after"] == gits(repo, "show", f"{sha}:b.go")
    assert "rename from a.go\nrename to b.go\n" in entry["diff"]
    assert "-var v3 = 3\n+var v3 = 33\n" in entry["diff"]
    assert entry["diff"] == git(repo, "show", "--format=", "-M", sha).decode()


def test_rename_among_adds_and_deletes_pairs_sections(renames: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    repo, shas = renames
    sha = shas["Rename add delete"]
    files = _files(repo, sha, tmp_path)
    names = gits(repo, "diff-tree", "-r", "--no-commit-id", "--name-status", "-M", sha).splitlines()
    assert [(f["status"], f.get("old_path"), f["path"]) for f in files] == [
        (s[0], p[0] if s[0] == "R" else None, p[-1]) for s, *p in (line.split("\t") for line in names)
    ]
    by_path = {f["path"]: f for f in files}
    assert set(by_path) == {"c_gone.go", "d_kept.go", "z_new.go"}
    gone, kept, new = by_path["c_gone.go"], by_path["d_kept.go"], by_path["z_new.go"]
    assert (gone["status"], gone["before"], gone["after"]) == ("D", "package gone\n", None)
    assert gone["diff"].startswith("diff --git a/c_gone.go b/c_gone.go\ndeleted file mode")
    assert (kept["status"], kept["old_path"], kept["similarity"]) == ("R", "keep.go", 100)
    assert kept["diff"].startswith("diff --git a/keep.go b/d_kept.go\n") and kept["before"] == kept["after"]
    assert (new["status"], new["before"], new["after"]) == ("A", None, "package z\n")
    assert new["diff"].startswith("diff --git a/z_new.go b/z_new.go\nnew file mode")
    assert "old_path" not in gone and "similarity" not in new


def test_unsafe_and_symlink_renames_are_skipped(renames: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    repo, shas = renames
    files = {f["path"]: f for f in _files(repo, shas["Odd renames"], tmp_path)}
    assert set(files) == {"evil\\u.go", "link2.go"}
    evil, link = files["evil\\u.go"], files["link2.go"]
    assert (evil["status"], evil["old_path"], evil["similarity"], evil["skipped"]) == ("R", "u.go", 100, "unsafe_path")
    # Each side is checked at the path it is read for: the old path is safe, the new one is not.
    assert evil["before"] == gits(repo, "show", f"{shas['Odd renames']}^:u.go") and evil["after"] is None
    assert (link["status"], link["old_path"], link["skipped"]) == ("R", "link.go", "symlink")
    assert link["before"] is None and link["after"] is None


def test_unpaired_sections_raise(
    renames: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, shas = renames
    real = git_clones.Git.popen

    def no_rename_headers(self: git_clones.Git, *args: str, **kwargs: Any) -> subprocess.Popen:
        proc = real(self, *args, **kwargs)
        if args[0] == "diff-tree":
            out = proc.stdout.read()  # type: ignore[union-attr]
            proc.stdout.close()  # type: ignore[union-attr]
            proc.stdout = io.BytesIO(out.replace(b"\nrename from ", b"\nxrename from "))
        return proc

    monkeypatch.setattr(git_clones.Git, "popen", no_rename_headers)
    with pytest.raises(RuntimeError, match="does not match R"):
        _files(repo, shas["Rename add delete"], tmp_path)


def _reference_files(git_: git_clones.Git, sha: str) -> list[tuple[str, str | None, str, str | None]]:
    """The non-streamed reading: whole diff-tree output, split at once; (status, old, path, diff)."""
    out = git_.run("diff-tree", *git_diff._DIFF_ARGS, sha) or b""
    raw, patch = out.split(b"\0\0diff --git ", 1)
    fields, entries = iter(raw.split(b"\0")), []
    for meta in fields:
        status = meta.split()[-1].decode()
        paths = [next(fields).decode() for _ in range(2 if status[0] in "RC" else 1)]
        entries.append((status[0], paths[0] if status[0] == "R" else None, paths[-1]))
    sections = [s for s in re.split(rb"(?m)^(?=diff --git )", b"diff --git " + patch) if s]
    assert len(sections) == len(entries)  # no type changes in this commit
    return [(*e, base.decode_text(s)[0]) for e, s in zip(entries, sections, strict=True)]


def test_large_patch_streams_to_the_same_entries(tmp_path: Path) -> None:
    """200 files x 2,000 lines (about 16 MB of patch), plus a rename, delete and add."""
    repo = tmp_path / "big"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    before = {f"pkg/f{n:03d}.go": "".join(f"\tv{i} := {i} // file {n}\n" for i in range(2000)) for n in range(200)}
    before |= {"old.go": f"package old\n\n{GO_LINES}", "gone.go": "package gone\n"}
    for path, text in before.items():
        (repo / path).parent.mkdir(exist_ok=True)
        (repo / path).write_text(text)
    commit(repo, 1, "Initial")
    after = {p: t.replace("0 // file", "0 // changed file") for p, t in before.items() if p.startswith("pkg/")}
    after |= {"new.go": "package new\n", "renamed.go": before["old.go"].replace("v3 = 3", "v3 = 33")}
    (repo / "gone.go").unlink()
    git(repo, "mv", "old.go", "renamed.go")
    for path, text in after.items():
        (repo / path).write_text(text)
    commit(repo, 2, "Touch everything")
    sha = gits(repo, "rev-parse", "HEAD").strip()

    files = _files(repo, sha, tmp_path)
    reference = _reference_files(git_clones.Git(repo / ".git", tmp_path), sha)
    assert [(f["status"], f.get("old_path"), f["path"], f["diff"]) for f in files] == reference
    assert len(files) == 203 and not any("skipped" in f for f in files)
    for f in files:
        assert f["before"] == (before.get(f.get("old_path", f["path"])) if f["status"] != "A" else None)
        assert f["after"] == (after.get(f["path"]) if f["status"] != "D" else None)


def test_oversized_section_is_skipped_without_being_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A section over 2 x MAX_FILE_BYTES is too_large though both sides fit; its neighbours are whole."""
    repo = tmp_path / "huge"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for name, text in {"a.go": "package a\n", "big.go": "a\n" * 499, "c.go": "package c\n"}.items():
        (repo / name).write_text(text)
    commit(repo, 1, "Initial")
    for name, text in {"a.go": "package a // edited\n", "big.go": "b\n" * 499, "c.go": "package c // edited\n"}.items():
        (repo / name).write_text(text)
    commit(repo, 2, "Rewrite big.go")
    sha = gits(repo, "rev-parse", "HEAD").strip()
    monkeypatch.setattr(base, "MAX_FILE_BYTES", 1000)
    monkeypatch.setattr(git_diff, "_CHUNK", 256)  # the big section (~3 kB) arrives in many reads
    sizes: list[int] = []  # every section (or section head) held at once
    real_of = git_diff.Section.of.__func__  # type: ignore[attr-defined]

    def spy(cls: type[git_diff.Section], data: bytes, held: bool) -> git_diff.Section:
        sizes.append(len(data))
        return real_of(cls, data, held)

    monkeypatch.setattr(git_diff.Section, "of", classmethod(spy))

    a, big, c = _files(repo, sha, tmp_path)
    assert (big["path"], big["status"], big["diff"], big["skipped"]) == ("big.go", "M", None, "too_large")
    assert (big["before"], big["after"]) == ("a\n" * 499, "b\n" * 499)
    assert max(sizes) <= 2000 + 256 + len(git_diff._SECTION_MARK)  # at most the cap and one read
    for f in (a, c):
        assert f["diff"] == gits(repo, "show", "--format=", sha, "--", f["path"]) and "skipped" not in f


class _Trickle(io.RawIOBase):
    """A stream handing out its bytes a few at a time, so every cut lands across reads."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step = data, step

    def read(self, n: int = -1) -> bytes:
        out, self.data = self.data[: self.step], self.data[self.step :]
        return out


@pytest.mark.parametrize("step", [1, 2, 5, 11, 12, 13, 100])
def test_sections_cut_across_reads(step: int) -> None:
    patch = (
        b"diff --git a/x b/x\n-diff --git \n+\n diff --git a/y\ndiff --git a/y b/y\n@@ -1 +1 @@\n"
        b"-x\n+y\ndiff --git a/z b/z\nBinary files a/z and b/z differ\n"
    )
    expected = [s for s in re.split(rb"(?m)^(?=diff --git )", patch) if s]
    for head in range(0, 30, 7):  # part of the patch already read with the raw entries
        got = list(git_diff.sections(patch[:head], _Trickle(patch[head:], step), cap=1000))  # type: ignore[arg-type]
        assert [s.data for s in got] == expected
    capped = list(git_diff.sections(b"", _Trickle(patch, step), cap=45))  # type: ignore[arg-type]
    assert [s.data for s in capped] == [None, expected[1], None]  # 49, 38 and 52 bytes
    assert [s.header for s in capped[1:]] == [expected[1][:19], expected[2][:19]]
    assert expected[0].startswith(capped[0].header) and len(capped[0].header) > 45  # no header end: the head
