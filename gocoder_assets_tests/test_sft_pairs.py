"""sft_pairs: a planted history yields exactly the expected "explain why" pairs, every other change dropped by its
CommitPackFT reason; the pairs carry the training text's redaction, the MIX change rendering and provenance."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from gocoder_assets.categorized_records.categorize import Categorizer
from gocoder_assets.categorized_records.changes import ReviewComment, render_file_change
from gocoder_assets.categorized_records.serialize import MARKERS, mark, readable, render_change
from gocoder_assets.dagster_internal import range_tags
from gocoder_assets.packed_shards.pack import assign_splits
from gocoder_assets.partitions import REPOS
from gocoder_assets.sft_pairs import filters
from gocoder_assets.sft_pairs.assets import PAIR_SCHEMA, sft_pairs
from gocoder_assets.sft_pairs.checks import pair_problems
from gocoder_assets.sft_pairs.filters import SFTOptions
from gocoder_assets.sft_pairs.pairs import PairBuilder, parse_change, rationale
from gocoder_assets.sources.base import RepoInfo
from gocoder_assets.sources.git_clones import GitClonesSource
from gocoder_assets.storage import Layout, write_parquet
from gocoder_assets.tokenizer_model.encode import RecordCodec
from gocoder_assets.tokenizer_model.train import load_processor
from gocoder_assets_tests.conftest import make_widget_repo
from gocoder_assets_tests.gitrepo import commit, git, gits

OPTS = SFTOptions()
TOKEN = "ghp_" + "Zk3q9Xv2Lm8Rt5Wb7Nc1Hd4Jf6Gs0Py2Qa8E"  # GitHub token shape: the redactor's <KEY>
FIX_BODY = (
    "Ratio divided by a negative tooth count and returned a negative ratio,\n"
    "which callers used as a slice length and panicked.\n\n"
    f"Reported by ada.lovelace@gearworks.io; the staging token was {TOKEN}.\n\n"
    "Fixes #2\n\nSigned-off-by: Ada Lovelace <ada@example.com>"
)
FIX_RESPONSE = (
    "Ratio divided by a negative tooth count and returned a negative ratio,\n"
    "which callers used as a slice length and panicked.\n\n"
    "Reported by <EMAIL>; the staging token was <KEY>."
)
LOCK_BODY = (
    "Mesh is called from two goroutines in the server, so the pair must be locked\n"
    "while both gears turn; this adds the lock and a comment saying so."
)
EXPECTED_PAIRS = [
    ("cmd/gears, gears: explain why Mesh locks the pair", LOCK_BODY),
    ("gears: handle negative tooth counts in Ratio", FIX_RESPONSE),
]
# Every change of the planted repository but the two pairs, by the reason it is dropped.
PLANTED_DROPS = {
    "boilerplate_subject": 2,  # "Initial commit", "Update README.md"
    "merge": 1,
    "revert": 2,  # 'Revert "…"' and a body saying "This reverts commit …"
    "version_bump": 2,  # dependabot's "Bump x from a to b", "v1.2.3"
    "subject_too_short": 1,
    "subject_few_words": 1,
    "not_imperative": 1,
    "no_response": 1,
    "response_too_short": 1,
    "too_many_tokens": 1,
}
# make_widget_repo's three commits: "Initial import", "Grow widgets (#7)", "Add Spin (#8)" (8 characters).
WIDGET_DROPS = {"boilerplate_subject": 1, "subject_few_words": 1, "subject_too_short": 1}


def gear_go(ratio_guard: bool = False, lock: bool = False) -> str:
    guard = "\tif teeth <= 0 {\n\t\treturn 0\n\t}\n" if ratio_guard else ""
    mesh = "\tp.mu.Lock()\n\tdefer p.mu.Unlock()\n" if lock else ""
    return (
        'package gears\n\nimport "sync"\n\n// Pair is two meshed gears.\ntype Pair struct {\n\tmu sync.Mutex\n'
        "\tA, B int\n}\n\n// Ratio is the gear ratio of a over teeth.\nfunc Ratio(a, teeth int) int {\n"
        f"{guard}\treturn a / teeth\n}}\n\n// Mesh turns both gears of p.\nfunc (p *Pair) Mesh() {{\n{mesh}"
        "\tp.A++\n\tp.B++\n}\n"
    )


def table_go(offset: int) -> str:
    rows = "".join(f"\tSize{i:03d} = {i * 7919 + offset} // gear {i} of the size table\n" for i in range(160))
    return f"package gears\n\n// The gear sizes.\nconst (\n{rows})\n"


def make_gears_repo(root: Path) -> Path:
    """acme/gears (MIT): one commit per drop reason, two that make pairs; returns the clone's path."""
    repo = root / "gears"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", "https://github.com/acme/gears.git")
    (repo / "LICENSE").write_text("MIT License\n\nPermission is hereby granted, free of charge, to any person\n")
    (repo / "README.md").write_text("# gears\n\nGears for Go programs.\n")
    (repo / "gears.go").write_text(gear_go())
    (repo / "table.go").write_text(table_go(0))
    (repo / "go.mod").write_text("module example.com/gears\n\ngo 1.21\n\nrequire golang.org/x/text v0.3.0\n")
    steps: list[tuple[str, dict[str, str]]] = [
        ("Initial commit", {}),
        (f"gears: handle negative tooth counts in Ratio (#3)\n\n{FIX_BODY}", {"gears.go": gear_go(True)}),
        ("Merge branch 'feature/teeth' into main\n\nBrings the tooth work in from the feature branch.",
         {"gears.go": gear_go(False)}),
        ('Revert "gears: handle negative tooth counts in Ratio"\n\nThis reverts commit 1234567abcdef.\n\n'
         "It broke the build on every platform we have.", {"gears.go": gear_go(True)}),
        ("Bump golang.org/x/text from 0.3.0 to 0.3.8\n\nBumps golang.org/x/text to pick up the fixes.",
         {"go.mod": "module example.com/gears\n\ngo 1.21\n\nrequire golang.org/x/text v0.3.8\n"}),
        ("v1.2.3\n\nThe release with the tooth count fix in it.", {"README.md": "# gears\n\nGears, v1.2.3.\n"}),
        ("Update README.md", {"README.md": "# gears\n\nGears for Go programs, v1.2.3.\n"}),
        ("Fix it\n\nThe ratio is computed in integers so it rounds down.", {"gears.go": gear_go(False)}),
        ("Fix gear ratio rounding\n\nThe ratio is computed in integers so it rounds down.",
         {"gears.go": gear_go(True)}),
        ("Gears now mesh without slipping at speed\n\nThe mesh bumps both gears at once.",
         {"gears.go": gear_go(True).replace("p.A++\n\tp.B++", "p.A, p.B = p.A+1, p.B+1")}),
        ("Add a Mesh helper for gear pairs", {"mesh.go": "package gears\n\n// Both meshes a and b.\n"
                                               "func Both(a, b *Pair) {\n\ta.Mesh()\n\tb.Mesh()\n}\n"}),
        ("Document the tooth count constant better\n\nDocs.", {"mesh.go": "package gears\n\n// Both meshes two.\n"
                                                               "func Both(a, b *Pair) {\n\ta.Mesh()\n\tb.Mesh()\n}\n"}),
        ("Regenerate the table of gear sizes with fixed primes (#4)\n\nThe sizes were off by one prime in every "
         "row, so every lookup returned the neighbour's size.", {"table.go": table_go(1)}),
        ("Restore the old gear ratio behaviour for callers\n\nThis reverts commit abcdef1234 because the new "
         "ratio broke callers.", {"gears.go": gear_go(False)}),
        (f"cmd/gears, gears: explain why Mesh locks the pair (#5)\n\n{LOCK_BODY}", {"gears.go": gear_go(False, True)}),
    ]  # fmt: skip
    for n, (message, files) in enumerate(steps, start=1):
        for name, text in files.items():
            (repo / name).write_text(text)
        commit(repo, n, message)
    return repo


def shas(repo: Path) -> dict[str, str]:
    """Commit subject (without a ``(#N)`` suffix) → sha."""
    out = {}
    for entry in gits(repo, "log", "--format=%H %s").splitlines():
        sha, subject = entry.split(" ", 1)
        out[subject.rsplit(" (#", 1)[0]] = sha
    return out


def drops(counts: collections.Counter[str] | dict[str, int]) -> dict[str, int]:
    return {k.removeprefix("dropped:"): v for k, v in counts.items() if k.startswith("dropped:") and v}


# -- the filters, one by one ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("subject", "reason"),
    [
        ("Merge pull request #12 from acme/feature-branch", "merge"),
        ("Merge branch 'main' into feature/teeth", "merge"),
        ("Merge remote-tracking branch 'origin/main'", "merge"),
        ("[dev.typeparams] all: merge master (1a2b3c) into dev.typeparams", "merge"),
        ("Merge duplicate gear sizes into one table", None),  # merge as a verb, not a merge commit
        ('Revert "net/http: add a Transport pool for idle conns"', "revert"),
        ("net/http: revert CL 12345 which broke the build", "revert"),
        ("Bump github.com/stretchr/testify from 1.8.0 to 1.8.4", "version_bump"),
        ("build(deps): bump golang.org/x/net in the go.mod file", "version_bump"),
        ("chore(deps): update module github.com/x/y to v1.2.3", "version_bump"),
        ("Release v1.2.0 of the gears module today", "version_bump"),
        ("v1.2.3", "version_bump"),
        ("all: update vendored dependencies for the release", "version_bump"),
        ("Release the lock before calling the user callback", None),  # release as a verb
        ("Update README.md", "boilerplate_subject"),
        ("Update README with the new install instructions", "boilerplate_subject"),
        ("Initial commit", "boilerplate_subject"),
        ("Add files via upload", "boilerplate_subject"),
        ("Fix it", "subject_too_short"),
        ("Fix " + "x" * 1000, "subject_too_long"),
        ("Fix gear ratio rounding", "subject_few_words"),
        ("net/http: fix Transport leak", "subject_few_words"),  # the area prefix is not a word
        ("Fixed the gear ratio rounding bug", "not_imperative"),
        ("Gears now mesh without slipping at speed", "not_imperative"),
        ("This change makes the ratio exact", "not_imperative"),
        ("Fix the gear ratio rounding for small gears", None),
        ("net/http: fix a Transport leak on closed conns", None),
        ("cmd/go, go/build: handle vendored module paths in GOPATH", None),
        ("fix(api): handle empty bodies in the gear endpoint", None),
        ("[release-branch.go1.21] crypto/tls: reject short session tickets early", None),
        ("Fix bug: crash on an empty gear table", None),  # a colon after two words is no area prefix
    ],
)
def test_subject_filters(subject: str, reason: str | None) -> None:
    assert filters.subject_drop_reason(subject, OPTS) == reason


def test_each_subject_filter_alone() -> None:
    assert (
        filters.merge("Merge branch 'x' into main", OPTS) == "merge" and filters.merge("Fix a merge bug", OPTS) is None
    )
    assert filters.revert('Revert "x"', OPTS) == "revert" and filters.revert("Fix a revert bug in git", OPTS) is None
    assert filters.version_bump("Bump x from 1.2 to 1.3", OPTS) == "version_bump"
    assert filters.version_bump("Fix the version check in init", OPTS) is None
    assert filters.boilerplate("Update README.md", OPTS) == "boilerplate_subject"
    assert filters.boilerplate("Update the README parser for tables", OPTS) == "boilerplate_subject"
    assert filters.boilerplate("Update the gear table for large gears", OPTS) is None
    assert (
        filters.subject_length("x" * 9, OPTS) == "subject_too_short" and filters.subject_length("x" * 10, OPTS) is None
    )
    assert (
        filters.subject_length("x" * 1001, OPTS) == "subject_too_long"
        and filters.subject_length("x" * 1000, OPTS) is None
    )
    assert (
        filters.subject_words("a b c d", OPTS) == "subject_few_words"
        and filters.subject_words("a b c d e", OPTS) is None
    )
    assert filters.imperative("pkg: Add x", OPTS) is None and filters.imperative("Adds x", OPTS) == "not_imperative"
    assert filters.subject_core("[release-branch.go1.21] net/http, io: fix x") == "fix x"
    assert filters.first_word("fix(api)!: Handle x") == "handle"
    assert filters.reverts_in_body("x\n\nThis reverts commit 0123456789abcdef.")
    assert not filters.reverts_in_body("This reverts a bad default, commit by commit.")
    assert filters.response_drop_reason("  ", OPTS) == "no_response"
    assert filters.response_drop_reason("Docs.", OPTS) == "response_too_short"
    assert filters.response_drop_reason("The cache grew without bound.", OPTS) is None


def test_rationale_keeps_the_why_only() -> None:
    body = (
        "<!-- Thanks for the PR! Describe your change. -->\nThe cache grew without bound under load.\n\n"
        "- [x] I added tests\n- [ ] I updated the docs\n\nFixes #12\nUpdates golang/go#345\n\n"
        "Change-Id: I0123456789abcdef\nReviewed-on: https://go-review.googlesource.com/c/go/+/1\n"
        "Signed-off-by: username_0 <EMAIL>"
    )
    assert rationale(body) == "The cache grew without bound under load."
    assert rationale("Note: the limit is per connection.") == "Note: the limit is per connection."


# -- parsing a stored change record ----------------------------------------------------------------------------
def test_parse_change_separates_the_files_from_the_discussion() -> None:
    file_block = render_file_change(
        {"path": "a.go", "status": "M", "before": "old\n", "after": "new\n"}, [ReviewComment("username_1", 1, "Hm.")]
    ).text
    assert "<COMMENTS>\nusername_1 (line 1): Hm.\n</FILE>" in readable(file_block)  # a comment inside the file
    change = {"title": "Fix x in y for z", "status": "merged", "body": "Line one.\nusername_9: not an entry? no.",
              "comments": [{"author": "username_1 (approved)", "body": "Looks right:\nthe lock is taken early."},
                           {"author": "username_2", "body": "Thanks!"}]}  # fmt: skip
    parts = parse_change(render_change("MIX", "acme/app", change, [file_block]))
    assert (parts.title, parts.status, parts.body) == (change["title"], "merged", change["body"])
    assert parts.files == mark("<FILES>") + "\n" + file_block  # the block with its inline comment
    assert [(c.author, c.state, c.body) for c in parts.comments] == [
        ("username_1", "approved", "Looks right:\nthe lock is taken early."),
        ("username_2", None, "Thanks!"),
    ]


# -- pairs from categorized records, Dagster-free --------------------------------------------------------------
REPO = RepoInfo(partition_key="acme/app", full_name="acme/app", url="https://github.com/acme/app", stars=1,
                license_spdx="MIT", default_branch="main", commit_sha="c" * 40, fetched_at="2026-01-01T00:00:00+00:00",
                source="github", license_key="mit")  # fmt: skip
FUNC = "package app\n\nfunc Run() error {\n\treturn nil\n}\n"
WHY = "Run swallowed the error, so a failed start looked like success to every caller."


def pr(
    number: int, title: str, body: str, state: str = "MERGED", reviews: tuple = (), files: list | None = None
) -> dict:
    files = files if files is not None else [{"path": "a.go", "status": "M", "diff": None, "before": FUNC,
                                              "after": FUNC.replace("nil", "errStart")}]  # fmt: skip
    return {"kind": "change", "number": number, "sha": f"{number:040d}", "title": title, "body": body,
            "author": "alice", "comments": [], "files": files, "state": state, "reviews": list(reviews)}  # fmt: skip


@pytest.fixture(scope="module")
def codec(graph) -> RecordCodec:
    """The project's tokenizer as tokenizer_model trained it on the planted clones (one training per module)."""
    return RecordCodec(load_processor(graph[1].tokenizer_dir), MARKERS)


def build(records: list[dict], codec: RecordCodec, options: SFTOptions = OPTS) -> tuple[list[dict], PairBuilder]:
    builder = PairBuilder(codec, options)
    return list(builder.run(Categorizer(REPO).run(records))), builder


BINARY = {"path": "logo.png", "status": "A", "before": None, "after": None, "skipped": "binary"}


def test_response_from_the_reviewer_when_the_body_has_no_why(codec: RecordCodec) -> None:
    review = {"author": "bob", "state": "APPROVED", "body": WHY}
    own = {"author": "alice", "state": "COMMENTED", "body": "I explain my own change here at length, twice."}
    lgtm = {"author": "carol", "state": "APPROVED", "body": "LGTM"}
    records = [
        pr(1, "Return the start error from Run", "", reviews=(own, lgtm, review)),
        pr(2, "Return the start error from Run", "Fixes #9", reviews=(review,)),
        pr(3, "Return the start error from Run", WHY, reviews=({**review, "body": "Reviewer words, not the why."},)),
        pr(4, "Return the start error from Run", WHY, state="CLOSED"),
        pr(5, "Return the start error from Run", WHY, files=[BINARY]),
        pr(6, "Return the start error from Run", "", reviews=(lgtm,)),
    ]
    rows, builder = build(records, codec)
    got = [(r["pr_number"], r["response_source"], r["response"]) for r in rows]
    assert got == [(1, "review", WHY), (2, "review", WHY), (3, "body", WHY)]
    inputs = {r["pr_number"]: readable(r["input"]) for r in rows}
    assert inputs[1].startswith('<PR_TITLE>Return the start error from Run\n<FILES>\n<FILE path="a.go"')
    assert inputs[2].startswith("<PR_TITLE>Return the start error from Run\n<PR_BODY>Fixes #9\n<FILES>\n")
    assert WHY not in inputs[3] and "<PR_BODY>" not in inputs[3] and "Reviewer words" not in inputs[3]
    assert drops(builder.counts) == {"unmerged": 1, "no_change": 1, "no_response": 1}
    assert builder.counts["response_source:review"] == 2 and builder.counts["pairs"] == 3


def test_pair_text_offsets_and_tokens(codec: RecordCodec) -> None:
    rows, _ = build([pr(1, "Return the start error from Run", WHY)], codec)
    (row,) = rows
    assert row["text"] == f"### Instruction:\n{OPTS.instruction}\n\n### Input:\n{row['input']}\n\n### Response:\n{WHY}"
    assert row["text"][row["response_start"] :] == WHY
    ids = codec.encode_one(row["text"][: row["response_start"]]) + codec.encode_one(WHY)
    assert row["tokens"] == len(ids) + 1 and codec.decode(ids[row["response_token_start"] :]) == WHY
    assert codec.decode(ids) == row["text"]
    (row,) = build([pr(1, "Return the start error from Run", WHY)], codec, SFTOptions(max_tokens=row["tokens"]))[0]
    rows, builder = build(
        [pr(1, "Return the start error from Run", WHY)], codec, SFTOptions(max_tokens=row["tokens"] - 1)
    )
    assert not rows and drops(builder.counts) == {"too_many_tokens": 1}


def test_planted_history_gives_exactly_the_expected_pairs(tmp_path: Path, codec: RecordCodec) -> None:
    repo = make_gears_repo(tmp_path / "clones")
    source = GitClonesSource(tmp_path / "clones")
    (info,) = source.list_repos()
    builder = PairBuilder(codec, OPTS)
    rows = list(builder.run(Categorizer(info).run(source.collect(info))))
    assert sorted((r["subject"], r["response"]) for r in rows) == EXPECTED_PAIRS
    assert drops(builder.counts) == PLANTED_DROPS
    assert builder.counts["change_records"] == len(shas(repo))


# -- through Dagster: the real assets on a planted folder of clones --------------------------------------------
RUN_CONFIG = {"ops": {"tokenizer_model": {"config": {"vocab_size": 600, "holdout_fraction": 0.05}}}}


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dg.DagsterInstance, Layout, Path, dict]]:
    """repo_list … tokenizer_model materialized on acme/gears + acme/widget, then sft_pairs with its check."""
    from gocoder_assets.definitions import ASSETS, CHECKS, resources_from_env  # noqa: PLC0415
    from gocoder_assets.pipeline import materialize_all  # noqa: PLC0415

    tmp = tmp_path_factory.mktemp("sft")
    clones = make_widget_repo(tmp / "clones")
    gears = make_gears_repo(clones)
    # Every resource the definitions bind (as the deployment gets them), pointed at the planted clones.
    env = {"GOCODER_DATA_DIR": str(tmp / "data"), "GOCODER_CLONES_DIR": str(clones), "GOCODER_DEVICE": "cpu",
           "GOCODER_WORKERS": "inline"}  # fmt: skip
    resources = resources_from_env(env)
    with dg.instance_for_test() as instance:
        materialize_all(instance, resources, RUN_CONFIG, log=lambda _: None, until="tokenizer_model")
        keys = instance.get_dynamic_partitions(REPOS)
        result = dg.materialize(
            [*ASSETS, *CHECKS],
            selection=[sft_pairs.key],
            instance=instance,
            resources=resources,
            tags=range_tags(keys[0], keys[-1]),
        )
        yield instance, Layout(tmp / "data"), gears, result


def test_sft_pairs_asset_on_planted_clones(graph) -> None:
    instance, layout, gears, result = graph
    assert result.success
    keys = instance.get_dynamic_partitions(REPOS)
    assert keys == ["acme/gears", "acme/widget"]
    rows = [r for k in keys for r in pq.read_table(layout.sft_pairs_file(k)).to_pylist()]
    assert sorted((r["subject"], r["response"]) for r in rows) == EXPECTED_PAIRS
    meta = {k: v.value for k, v in result.get_asset_materialization_events()[0].materialization.metadata.items()}
    want = collections.Counter(PLANTED_DROPS) + collections.Counter(WIDGET_DROPS)
    assert drops(meta) == dict(want)
    assert meta["pairs"] == 2 and meta["change_records"] == 15 + 3
    assert meta["partitions"] == 2 and "acme/gears" in meta["per_partition"]
    assert "### Response:" in meta["sample"] and "<FILES>" in meta["sample"]  # markers written out for people
    checks = result.get_asset_check_evaluations()
    assert sorted(c.partition for c in checks) == keys and all(c.passed for c in checks)
    # Provenance: the record's, down to the commit.
    sha = shas(gears)
    got = {(r["repo"], r["full_name"], r["pr_number"], r["commit_sha"], r["path"], r["license"], r["url"], r["split"],
            r["category"], r["response_source"]) for r in rows}  # fmt: skip
    url = "https://github.com/acme/gears.git"  # the clone's remote, as repo_list records it
    # The held-out repository is packed_shards' val repository (the same split rule and default fraction).
    split = assign_splits(keys)["acme/gears"]
    assert split == "val"
    want_rows = {("acme/gears", "acme/gears", n, sha[s], "gears.go", "MIT", url, split, "MIX", "body")
                 for n, s in ((3, EXPECTED_PAIRS[1][0]), (5, EXPECTED_PAIRS[0][0]))}  # fmt: skip
    assert got == want_rows
    categorized = pq.read_table(layout.categorized_file("acme/gears")).to_pylist()
    ids = {r["record_id"] for r in categorized if r["kind"] == "change" and r["pr_number"] in (3, 5)}
    assert {r["record_id"] for r in rows} == ids
    for r in rows:
        prompt = r["text"][: r["response_start"]]
        assert r["text"][r["response_start"] :] == r["response"] and prompt.endswith("\n\n### Response:\n")
        assert r["response"] not in prompt and 0 < r["response_token_start"] < r["tokens"] <= OPTS.max_tokens
        # The input is the MIX rendering: the title, then the change as the record stores it.
        shown = readable(r["input"])
        assert shown.startswith(f'<PR_TITLE>{r["subject"]}\n<FILES>\n<FILE path="gears.go" change="modified">\n@@')
        record = next(c["text"] for c in categorized if c["record_id"] == r["record_id"])
        assert r["input"].split("\n", 1)[1] + "\n" in record  # the <FILES> section, byte for byte
    # Redacted as the training text is: the planted e-mail and token are placeholders in the pair.
    fix = next(r for r in rows if r["pr_number"] == 3)
    assert "<EMAIL>" in fix["response"] and "<KEY>" in fix["response"]
    assert all("gearworks.io" not in r["text"] and TOKEN not in r["text"] for r in rows)


def test_check_finds_secrets_misplaced_offsets_and_empty_responses(graph, tmp_path: Path) -> None:
    layout = graph[1]
    (good,) = [r for r in pq.read_table(layout.sft_pairs_file("acme/gears")).to_pylist() if r["pr_number"] == 5]
    assert pair_problems(layout.sft_pairs_file("acme/gears")) == (collections.Counter(), [])
    leaked = {**good, "record_id": "leaked", "text": good["text"].replace("the lock", f"the lock {TOKEN}")}
    shifted = {**good, "record_id": "shifted", "response_start": good["response_start"] - 1}
    empty = {**good, "record_id": "empty", "response": " ", "text": good["text"][: good["response_start"]] + " "}
    path = tmp_path / "pairs.parquet"
    write_parquet(iter([good, leaked, shifted, empty]), path, PAIR_SCHEMA)
    problems, rows = pair_problems(path)
    assert {r[0] for r in rows} == {"leaked", "shifted", "empty"}
    assert problems["response_start_misplaced"] == 2 and problems["empty_response"] == 1  # leaked's text moved too
    assert any(p.startswith("secret: ") and r == "leaked" for r, p in rows)


def test_deduplicated_records_make_no_pair(codec: RecordCodec) -> None:
    records = Categorizer(REPO).run([pr(1, "Return the start error from Run", WHY)])
    (record,) = [r for r in records if r["kind"] == "change"]
    builder = PairBuilder(codec, OPTS, dropped={record["record_id"]})
    assert list(builder.run([record])) == [] and drops(builder.counts) == {"duplicate": 1}
