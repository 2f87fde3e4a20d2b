"""The training text as the categorizer writes it: categories by the design's rules, change records a
reviewer reads (from real git history), structure that content cannot forge, caps that show."""

from __future__ import annotations

from pathlib import Path

import pytest

from gocoder_assets.categorized_records.categorize import Categorizer
from gocoder_assets.categorized_records.filters import FilterOptions
from gocoder_assets.categorized_records.serialize import MARKERS, RESERVED, SENTINELS, readable, split_markers
from gocoder_assets.sources.base import RepoInfo
from gocoder_assets.sources.git_clones import GitClonesSource
from gocoder_assets_tests.gitrepo import commit, git

REPO = RepoInfo(partition_key="acme/app", full_name="acme/app", url="https://github.com/acme/app", stars=42,
                license_spdx="MIT", default_branch="main", commit_sha="c" * 40, fetched_at="2026-01-01T00:00:00+00:00",
                source="github", license_key="mit")  # fmt: skip
PROSE = "The service stops answering after a day of uptime; restarting it helps for a while."


def issue(number: int, body: str, comments: tuple[str, ...] = ()) -> dict:
    return {"kind": "issue", "number": number, "title": f"Issue {number}", "body": body, "author": "alice",
            "comments": [{"author": "bob", "body": c} for c in comments]}  # fmt: skip


def change(number: int, body: str, files: list[dict], state: str | None = "MERGED", **extra) -> dict:
    return {"kind": "change", "number": number, "sha": f"{number:040d}", "title": f"Change {number}", "body": body,
            "author": "alice", "comments": [], "files": files, "state": state, **extra}  # fmt: skip


def go_file(path: str, before: str | None, after: str | None, status: str = "M") -> dict:
    return {"path": path, "status": status, "diff": None, "before": before, "after": after}


def run(records: list[dict], options: FilterOptions | None = None) -> tuple[dict, Categorizer]:
    cat = Categorizer(REPO, options)
    rows = {(r["kind"], r["pr_number"], r["path"]): r for r in cat.run(records)}
    return rows, cat


# -- categories -----------------------------------------------------------------------------------------
FUNC = "package app\n\nfunc Run() error {\n\treturn nil\n}\n"
CASES = [
    # (label, record, expected category, expected code rules counted)
    ("issue in prose", issue(1, PROSE, (PROSE,)), "NAT", []),
    ("issue with a fenced block", issue(2, f"{PROSE}\n\n```go\nx := f()\n```"), "MIX", ["code_block"]),
    ("issue with inline code", issue(3, "Calling `Serve` twice panics the whole process here."), "MIX",
     ["inline_code"]),
    ("issue with Go lines in a comment", issue(4, PROSE, ("It fails here:\nif err != nil {\n\treturn err\n}",)),
     "MIX", ["go_line"]),
    ("issue with a code reference", issue(5, "The retry loop in server/handler.go:42 never exits."), "MIX",
     ["code_reference"]),
    ("change with a description and code", change(6, PROSE, [go_file("a.go", FUNC, FUNC.replace("nil", "err"))]),
     "MIX", []),
    ("patch: a title over a diff", change(7, "", [go_file("a.go", FUNC, FUNC.replace("nil", "err"))]), "CODE", []),
    ("change without surviving code, prose", change(8, PROSE, [go_file("img.png", None, None)]), "NAT", []),
    ("change without surviving code, inline code", change(9, "Rename `Run` to `Start` in the docs.",
                                                          [go_file("img.png", None, None)]), "MIX", ["inline_code"]),
]  # fmt: skip


@pytest.mark.parametrize(("label", "record", "category", "rules"), CASES, ids=[c[0] for c in CASES])
def test_categories_follow_the_design(label: str, record: dict, category: str, rules: list[str]) -> None:
    rows, cat = run([record])
    row = rows[(record["kind"], record["number"], next(iter(k[2] for k in rows if k[1] == record["number"])))]
    assert row["category"] == category, label
    assert cat.counts[f"records:{record['kind']}:{category}"] == 1
    assert sorted(k.split(":", 1)[1] for k in cat.counts if k.startswith("code_rule:")) == rules


def test_records_carry_full_provenance() -> None:
    rows, _ = run([issue(1, PROSE), {"kind": "file", "path": "a.go", "text": FUNC, "size": len(FUNC)}])
    for row in rows.values():
        assert (row["stars"], row["license"], row["license_key"], row["url"]) == (42, "MIT", "mit", REPO.url)
        assert row["content_sha"] and row["sig_row"] is not None  # every record is seen by dedup


# -- structure cannot be forged --------------------------------------------------------------------------
HOSTILE = "".join(f"{m}\n" for m in MARKERS) + '<FILE path="x.go">\n</FILE>\n<s></s><unk><pad>\n'


def test_marker_strings_in_content_stay_content() -> None:
    readme = {"kind": "file", "path": "README.md", "text": "# app\n" + HOSTILE, "size": 1}
    code = {"kind": "file", "path": "evil.go", "text": "package app\n\n/*\n" + HOSTILE + "*/\n", "size": 1}
    rows, _ = run([readme, code, issue(3, HOSTILE, (HOSTILE,))])
    for row in rows.values():
        parts = split_markers(row["text"])
        structure = parts[1::2]
        assert all(s in SENTINELS.values() for s in structure)
        assert HOSTILE.strip() in "".join(parts[0::2])  # the marker strings survive as plain text …
        expected = {"file": 4, "overview": 5, "issue": 5}[row["kind"]]  # … and add no structure
        assert len(structure) == expected, row["kind"]


def test_hostile_paths_are_quoted() -> None:
    path = 'a"> <FILE path="b.go\nc.go'
    rows, _ = run([{"kind": "tree", "paths": [path, "ok.go"]}, {"kind": "file", "path": path, "text": FUNC}])
    code = readable(next(r for r in rows.values() if r["kind"] == "file")["text"])
    assert '<FILE path="a\\"> <FILE path=\\"b.go\\nc.go">\n' in code
    overview = readable(next(r for r in rows.values() if r["kind"] == "overview")["text"])
    assert '"a\\"> <FILE path=\\"b.go\\nc.go"\nok.go\n' in overview


def test_content_holding_a_reserved_character_is_dropped_and_counted() -> None:
    forged = {"kind": "file", "path": "a.go", "text": FUNC + "// " + SENTINELS["<REPO>"] + "\n"}
    rows, cat = run([forged, issue(2, "x" + SENTINELS["<FILE"] + "y" + PROSE)])
    assert not [r for r in rows.values() if r["kind"] in ("file", "issue")]
    assert cat.counts["dropped:reserved_char"] == 2
    assert all(RESERVED.findall(r["text"]) for r in rows.values())  # the overview: structure only


# -- change records --------------------------------------------------------------------------------------
def big_go_file(funcs: int, changed: int | None = None) -> str:
    body = "".join(f"// F{i} is number {i}.\nfunc F{i}(x int) int {{\n\ty := x * {i}\n\treturn y + {i}\n}}\n\n"
                   for i in range(funcs))  # fmt: skip
    text = "package app\n\n" + body
    return text if changed is None else text.replace(f"\treturn y + {changed}\n", f"\treturn y - {changed}\n")


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """A real repository: a one-line fix in a 400-function file, a rename, an added and a deleted file."""
    repo = tmp_path / "clones" / "app"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", "https://github.com/acme/app.git")
    (repo / "big.go").write_text(big_go_file(400))
    (repo / "old.go").write_text(FUNC)
    (repo / "gone.go").write_text('package app\n\n// Gone is going.\nvar Gone = map[string]int{"a": 1, "b": 2}\n')
    commit(repo, 1, "Initial import")
    (repo / "big.go").write_text(big_go_file(400, changed=217))
    commit(repo, 2, "Fix F217 (#12)\n\nF217 added where it should subtract.")
    git(repo, "mv", "old.go", "new.go")
    (repo / "gone.go").unlink()
    (repo / "added.go").write_text("package app\n\ntype Added struct {\n\tName string\n\tSize int\n}\n")
    commit(repo, 3, "Move Run, drop Gone, add Added (#13)")
    return tmp_path / "clones"


def test_a_one_line_fix_shows_its_function_not_the_file(history: Path) -> None:
    source = GitClonesSource(history)
    repo = source.list_repos()[0]
    cat = Categorizer(repo)
    rows = {r["pr_number"]: r for r in cat.run(source.collect(repo)) if r["kind"] == "change"}
    fix = readable(rows[12]["text"])
    assert rows[12]["category"] == "MIX" and "<PR_STATUS>merged\n" in fix
    before, after = fix.split("<BEFORE>\n")[1].split("<AFTER>\n")
    assert before.startswith("func F217(x int) int {\n") and "\treturn y + 217\n}\n" in before
    assert after.startswith("func F217(x int) int {\n") and "\treturn y - 217\n}\n" in after
    assert "F216" not in fix and "F218" not in fix and len(fix) < 400  # one function, not 400
    # No changed line is lost but in the initial import's 2,400-line added big.go (the first 120 are shown).
    assert cat.counts["cut:change_file_lines"] == 1
    moves = readable(rows[13]["text"])
    assert rows[13]["category"] == "CODE"  # a title over a diff is a patch
    assert '<FILE path="new.go" change="renamed" from="old.go">\n</FILE>\n' in moves
    assert '<FILE path="gone.go" change="deleted">\n</FILE>\n' in moves
    assert '<FILE path="added.go" change="added">\n<AFTER>\npackage app\n\ntype Added struct {\n' in moves
    assert cat.counts["change_chars:in_code_records"] < cat.counts["change_chars:total"] / 2


def test_review_comments_sit_beside_the_lines_they_discuss() -> None:
    before, after = big_go_file(50), big_go_file(50, changed=30)
    line = after.splitlines().index("\treturn y - 30") + 1
    threads = [
        {"path": "big.go", "line": line, "comments": [{"author": "carol", "body": "Why subtract here?"}]},
        {"path": "big.go", "line": None, "comments": [{"author": "dave", "body": "Outdated remark."}]},
    ]
    pr = change(20, PROSE, [go_file("big.go", before, after)], state="CLOSED", review_threads=threads)
    rows, _ = run([pr])
    text = readable(next(r for r in rows.values() if r["kind"] == "change")["text"])
    assert "<PR_STATUS>closed unmerged\n" in text
    region_end = text.index("\treturn y - 30\n}\n") + len("\treturn y - 30\n}\n")
    assert text[region_end:].startswith(f"<COMMENTS>\nusername_1 (line {line}): Why subtract here?\n")
    assert "username_2 (outdated): Outdated remark.\n</FILE>\n" in text


def test_caps_are_visible() -> None:
    options = FilterOptions(max_change_files=2, max_comments=3, max_comment_chars=40)
    files = [go_file(f"f{i}.go", FUNC, FUNC.replace("nil", "err")) for i in range(5)]
    comments = [{"author": f"u{i}", "body": f"comment number {i} " + "x" * 60} for i in range(6)]
    rows, cat = run([change(30, PROSE, files, comments=comments)], options)
    text = readable(next(r for r in rows.values() if r["kind"] == "change")["text"])
    assert text.count("<FILE path=") == 2 and "[… 3 more changed files not shown]\n" in text
    assert text.count("[… truncated]") == 3 and "[… 3 more comments]" in text
    assert (cat.counts["cut:change_files"], cat.counts["cut:comments"]) == (3, 3)


def test_boilerplate_root_docs_are_dropped_and_others_capped() -> None:
    docs = {"CODE_OF_CONDUCT.md": "Contributor Covenant " * 50, "CHANGELOG.md": "v1.0.0 first\n",
            "CONTRIBUTING.md": "Send patches.\n" * 3000, "docs/guide.md": "How to use app.\n" * 3000}  # fmt: skip
    rows, cat = run([{"kind": "file", "path": p, "text": t} for p, t in docs.items()])
    kept = {k[2]: r for k, r in rows.items() if r["kind"] == "doc"}
    assert set(kept) == {"CONTRIBUTING.md", "docs/guide.md"} and cat.counts["dropped:boilerplate_doc"] == 2
    assert readable(kept["CONTRIBUTING.md"]["text"]).endswith("[… truncated]\n</FILE>\n")
    assert len(kept["CONTRIBUTING.md"]["text"]) < 21_000 < len(kept["docs/guide.md"]["text"])
