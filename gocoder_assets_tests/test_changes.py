"""File changes as review snippets: no changed line lost, context sized to the enclosing Go decl."""

from __future__ import annotations

import difflib
import os
import random
import re
import subprocess
from pathlib import Path

import pytest

from gocoder_assets.categorized_records.changes import (
    ChangeOptions,
    ReviewComment,
    change_type,
    render_file_change,
    split_lines,
)
from gocoder_assets.categorized_records.serialize import SENTINELS, ReservedCharError, mark, readable, split_markers

HEADER = re.compile(r"^@@ -(\d+),(\d+) \+(\d+),(\d+) @@", re.M)
TAIL = re.compile(r"(?:@@ -\d+,\d+ \+\d+,\d+ @@.*\n|\[… .* not shown\]\n)\Z")
NO_NEWLINE = "\\ No newline at end of file\n"


def go_file(rng: random.Random, funcs: int, body: tuple[int, int] = (3, 30)) -> str:
    """A synthetic gofmt-shaped Go file: package, imports, a var block, a type and funcs."""
    parts = ['package demo\n\nimport (\n\t"fmt"\n)\n\nvar (\n\ta = 1\n\tb = 2\n)\n\ntype T struct {\n\tX int\n}\n']
    for i in range(funcs):
        lines = "".join(f"\tfmt.Println({i}, {j})\n" for j in range(rng.randint(*body)))
        parts.append(f"\n// f{i} prints.\nfunc f{i}(t *T) error {{\n{lines}\treturn nil\n}}\n")
    return "".join(parts)


def modified(before: str, after: str, path: str = "x.go", diff: str | None = None) -> dict:
    return {"path": path, "status": "M", "diff": diff, "before": before, "after": after}


def git_diff(tmp: Path, before: str, after: str) -> str:
    (tmp / "a.go").write_bytes(before.encode())
    (tmp / "b.go").write_bytes(after.encode())
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, LC_ALL="C")
    cmd = ["git", "diff", "--no-index", "-U3", "--no-color", "--no-ext-diff", "a.go", "b.go"]
    return subprocess.run(cmd, cwd=tmp, capture_output=True, env=env).stdout.decode()


def snippets(text: str) -> list[tuple[tuple[int, int, int, int], str, str]]:
    """``(header numbers, BEFORE text, AFTER text)`` per region of a rendered block."""
    runs = split_markers(text)
    out, k = [], 0
    while k < len(runs):
        if runs[k] == mark("<BEFORE>"):
            nums = tuple(int(n) for n in HEADER.findall(runs[k - 1])[-1])
            after = TAIL.sub("", runs[k + 3][1:])  # the next region's header or a truncation line
            out.append((nums, runs[k + 1][1:], after))
            k += 3
        k += 1
    return out


def diff_lines(diff: str) -> tuple[list[str], list[str]]:
    """The ``-`` and ``+`` lines of a unified diff (their text, ``\\n``-less)."""
    minus, plus = [], []
    for ln in diff.split("\n"):
        if ln.startswith(("---", "+++")):
            continue
        if ln.startswith("-"):
            minus.append(ln[1:])
        elif ln.startswith("+"):
            plus.append(ln[1:])
    return minus, plus


def difflib_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """The - and + lines the difflib fallback sees (same matcher settings as the module)."""
    old, new = split_lines(before), split_lines(after)
    minus, plus = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag != "equal":
            minus += [ln.rstrip("\n") for ln in old[i1:i2]]
            plus += [ln.rstrip("\n") for ln in new[j1:j2]]
    return minus, plus


def is_subsequence(needles: list[str], hay: list[str]) -> bool:
    it = iter(hay)
    return all(any(n == h for h in it) for n in needles)


def check_regions(text: str, before: str, after: str) -> list[tuple[tuple[int, int, int, int], str, str]]:
    """Every region's header numbers name exactly its BEFORE/AFTER lines; regions never overlap."""
    old, new = split_lines(before), split_lines(after)
    regions = snippets(text)
    last_old = last_new = 0
    for (a, b, c, d), bef, aft in regions:
        o, n = (a - 1 if b else a), (c - 1 if d else c)
        assert o >= last_old and n >= last_new, "regions overlap or run backwards"
        for lines, start, count, shown in ((old, o, b, bef), (new, n, d, aft)):
            expect = "".join(lines[start : start + count])
            if expect and not expect.endswith("\n"):
                expect += "\n" + NO_NEWLINE
            assert shown == expect
        last_old, last_new = o + b, n + d
    return regions


def random_edit(rng: random.Random, text: str) -> str:
    lines = split_lines(text)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(lines) + 1)
        op = rng.choice(("insert", "delete", "replace"))
        new = [f"\tx{rng.randrange(10**6)} := {rng.randrange(100)}\n" for _ in range(rng.randint(1, 6))]
        if op == "insert":
            lines[at:at] = new
        elif op == "delete":
            del lines[at : at + rng.randint(1, 8)]
        else:
            lines[at : at + rng.randint(1, 5)] = new
    if lines and rng.random() < 0.1:
        lines[-1] = lines[-1].rstrip("\n")  # sometimes no newline at the end
    return "".join(lines)


def test_property_no_changed_line_lost(tmp_path: Path) -> None:
    """200 random edits: every - line is in a BEFORE snippet and every + line in an AFTER, in order,
    with git's diff and with the difflib fallback; the header numbers always match the texts."""
    rng = random.Random(20240601)
    wide = ChangeOptions(max_file_lines=10**6)
    for case in range(200):
        before = go_file(rng, rng.randint(1, 25), (1, rng.choice((8, 30, 90))))
        if case % 10 == 0:
            before = before.rstrip("\n")
        after = random_edit(rng, before)
        if after == before:
            continue
        diff = git_diff(tmp_path, before, after)
        minus, plus = diff_lines(diff)
        assert minus or plus
        for entry_diff in (diff, None):
            rendered = render_file_change(modified(before, after, diff=entry_diff), options=wide)
            assert not rendered.truncated and rendered.shown_changed_lines == rendered.changed_lines
            regions = check_regions(rendered.text, before, after)
            shown_old = [ln for _, b, _ in regions for ln in b.split("\n")]
            shown_new = [ln for _, _, a in regions for ln in a.split("\n")]
            if entry_diff is None:  # the fallback's own alignment: difflib's - and + lines
                minus, plus = difflib_lines(before, after)
            assert is_subsequence(minus, shown_old), f"case {case}: a - line is missing"
            assert is_subsequence(plus, shown_new), f"case {case}: a + line is missing"
            assert rendered.changed_lines == len(minus) + len(plus)


def test_one_line_fix_in_big_file_shows_about_the_func() -> None:
    rng = random.Random(1)
    before = go_file(rng, 150, (8, 20))
    funcs = before.split("\nfunc ")
    assert len(split_lines(before)) > 2000
    target = "\tfmt.Println(70, 5)\n"
    after = before.replace(target, "\tfmt.Println(70, 500)\n")
    rendered = render_file_change(modified(before, after))
    ((_nums, bef, aft),) = check_regions(rendered.text, before, after)
    func70 = "func " + funcs[71].split("\n}\n")[0] + "\n}\n"
    assert bef == func70 and aft == func70.replace("(70, 5)", "(70, 500)")
    assert len(rendered.text) < 3 * len(func70) and rendered.changed_lines == rendered.shown_changed_lines == 2


def test_two_changes_in_one_func_merge_far_apart_funcs_do_not() -> None:
    before = go_file(random.Random(2), 30, (20, 20))
    one = before.replace("(3, 1)\n", "(3, 100)\n").replace("(3, 18)\n", "(3, 180)\n")
    assert len(snippets(render_file_change(modified(before, one)).text)) == 1
    two = before.replace("(3, 1)\n", "(3, 100)\n").replace("(25, 1)\n", "(25, 100)\n")
    regions = check_regions(render_file_change(modified(before, two)).text, before, two)
    assert len(regions) == 2 and all(r[1].startswith("func f") for r in regions)


def test_huge_func_falls_back_to_plain_context() -> None:
    before = go_file(random.Random(3), 3, (200, 200))
    after = before.replace("(1, 100)\n", "(1, 1000)\n")
    rendered = render_file_change(modified(before, after))
    (((_a, b, _c, d), bef, _),) = check_regions(rendered.text, before, after)
    assert b == d == 7 and "@@ func f1(t *T) error {" in rendered.text  # the decl named, not shown
    lines = bef.split("\n")
    assert lines[3] == "\tfmt.Println(1, 100)"


def test_added_deleted_renamed_and_skipped_blocks() -> None:
    text = "".join(f"line {i}\n" for i in range(500))
    added = render_file_change({"path": "n.go", "status": "A", "diff": None, "before": None, "after": text})
    assert readable(added.text).startswith('<FILE path="n.go" change="added">\n<AFTER>\nline 0\n')
    assert "line 119\n[… 380 more lines not shown]\n</FILE>\n" in readable(added.text)
    assert (added.changed_lines, added.shown_changed_lines, added.truncated) == (500, 120, True)
    deleted = render_file_change({"path": "d.go", "status": "D", "diff": None, "before": text, "after": None})
    assert readable(deleted.text) == '<FILE path="d.go" change="deleted">\n</FILE>\n'
    assert (deleted.changed_lines, deleted.shown_changed_lines, deleted.truncated) == (500, 0, False)
    renamed = {"path": "b.go", "old_path": "a.go", "status": "R", "diff": None, "before": text, "after": text}
    assert readable(render_file_change(renamed).text) == '<FILE path="b.go" change="renamed" from="a.go">\n</FILE>\n'
    edited = render_file_change({**renamed, "after": text.replace("line 7\n", "line seven\n")})
    assert readable(edited.text).startswith('<FILE path="b.go" change="renamed" from="a.go">\n@@ -5,7 +5,7 @@\n')
    binary = {"path": "x.png", "status": "M", "diff": "Binary files differ\n", "before": None, "after": None}
    assert readable(render_file_change(binary).text) == '<FILE path="x.png" change="modified">\n</FILE>\n'
    assert [change_type(s) for s in ("A", "D", "M", "R087")] == ["added", "deleted", "modified", "renamed"]
    with pytest.raises(ValueError):
        change_type("X")


def test_truncation_is_visible() -> None:
    before = go_file(random.Random(4), 40, (10, 10))
    after = "".join(ln.replace("2)", "2000)") for ln in split_lines(before))  # one change per func
    rendered = render_file_change(modified(before, after), options=ChangeOptions(max_file_lines=100))
    assert rendered.truncated and 0 < rendered.shown_changed_lines < rendered.changed_lines == 80
    assert re.search(r"\n\[… 3[0-9] more changed regions \(\d+ lines\) not shown\]\n" + mark("</FILE>"), rendered.text)
    one_big = render_file_change(modified(before, "x\n" * 400), options=ChangeOptions(max_file_lines=100))
    assert one_big.truncated and "more lines not shown]" in one_big.text


def test_comments_after_their_region_and_unplaced_at_the_end() -> None:
    before = go_file(random.Random(5), 30, (10, 10))
    after = before.replace("(3, 1)\n", "(3, 100)\n").replace("(25, 1)\n", "(25, 100)\n")
    new = split_lines(after)
    at3, at25 = new.index("\tfmt.Println(3, 100)\n") + 1, new.index("\tfmt.Println(25, 100)\n") + 1
    comments = [ReviewComment("ann", at25, "second"), ReviewComment("bo", at3, "first"),
                ReviewComment("cy", None, "gone"), ReviewComment("di", 2, "far away")]  # fmt: skip
    text = readable(render_file_change(modified(before, after), comments).text)
    first, second = text.split("@@ -")[1:]
    assert f"<COMMENTS>\nbo (line {at3}): first\n" in first and "ann" not in first
    assert second.endswith(
        f"<COMMENTS>\nann (line {at25}): second\n<COMMENTS>\ncy (outdated): gone\ndi (line 2): far away\n</FILE>\n"
    )


def test_hostile_content_and_paths() -> None:
    before = "package a\n\nvar x = 1\n"
    forged = before.replace("1", "1 " + SENTINELS["</FILE>"])
    with pytest.raises(ReservedCharError):
        render_file_change(modified(before, forged, path="a.go"))
    with pytest.raises(ReservedCharError):
        render_file_change(modified(before, before.replace("1", "2")), [ReviewComment("x", 3, SENTINELS["<AFTER>"])])
    rendered = render_file_change(modified(before, before.replace("1", "2"), path='a"b\n<FILE.go'))
    assert rendered.text.startswith(mark("<FILE") + ' path="a\\"b\\n<FILE.go" change="modified">\n')


def test_crlf_and_missing_final_newline_round_trip(tmp_path: Path) -> None:
    before = "".join(f"line {i}\r\n" for i in range(20)) + "last"
    after = before.replace("line 10\r\n", "line ten\r\n").replace("last", "final")
    for diff in (git_diff(tmp_path, before, after), None):
        regions = check_regions(render_file_change(modified(before, after, "x.txt", diff)).text, before, after)
        assert [r[0] for r in regions] == [(8, 7, 8, 7), (18, 4, 18, 4)]
        assert regions[1][2] == "line 17\r\nline 18\r\nline 19\r\nfinal\n" + NO_NEWLINE
    only_newline = render_file_change(modified("a\nb", "a\nb\n", "x.txt", git_diff(tmp_path, "a\nb", "a\nb\n")))
    ((nums, bef, aft),) = snippets(only_newline.text)
    assert nums == (1, 2, 1, 2) and bef == "a\nb\n" + NO_NEWLINE and aft == "a\nb\n"


def test_hunk_header_numbers_and_enclosing_signature() -> None:
    before = go_file(random.Random(6), 5, (100, 100))
    after = before.replace("(2, 50)\n", "(2, 50)\n\tadded()\n")
    rendered = render_file_change(modified(before, after))
    (((a, b, c, d), _bef, _aft),) = check_regions(rendered.text, before, after)
    old = split_lines(before)
    assert old[a - 1 + 2] == "\tfmt.Println(2, 50)\n" and (b, d) == (6, 7) and a == c
    assert "@@ func f2(t *T) error {\n" in rendered.text
    stale = render_file_change(modified(before, after, diff="@@ -1,2 +1,2 @@\n-x\n+y\n"))  # not these texts
    assert stale.text == rendered.text
