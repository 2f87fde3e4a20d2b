"""CommitPackFT-style filters on a change's subject and response (Dagster-free, datatrove style).

OctoPack (Muennighoff et al., 2023) built CommitPackFT from commits whose message reads like an
instruction: subject 10–1000 characters, more than 4 words, starting with an imperative verb, no merges,
reverts, "update README"-like or version-bump commits. Those rules are kept here, with one change for
Go: Go projects prefix the subject with the area it touches (``net/http: fix …``, ``cmd/go, go/build:
…``, conventional ``fix(api): …``, release tags ``[release-branch.go1.21] …``), so the word count and the
verb test read the subject after that prefix (``subject_core``); the character limits read it whole.

Each filter answers a drop reason or None; ``subject_drop_reason`` runs them in order and answers the
first reason, which is the name the asset counts (``dropped:<reason>``). The specific rules (merge,
revert, version bump, boilerplate) run before the generic ones, because "Merge …", "Revert …", "Bump …"
and "Update README" all start with an imperative verb and would otherwise pass or be miscounted.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from gocoder_assets.packed_shards.pack import VAL_FRACTION


@dataclasses.dataclass(frozen=True)
class SFTOptions:
    """Every threshold of sft_pairs; one default per setting (``SFTConfig`` takes its defaults from here)."""

    min_subject_chars: int = 10  # CommitPackFT: subject 10–1000 characters (the whole subject, prefix included)
    max_subject_chars: int = 1000
    min_subject_words: int = 5  # CommitPackFT: "more than 4 words" (after the area prefix)
    min_response_chars: int = 20  # a rationale shorter than this explains nothing ("Docs.", "LGTM")
    max_tokens: int = 2048  # whole pair, prompt + response + the EOS the trainer appends
    instruction: str = "Explain why this change was made."
    # Repositories held out (pairs marked "val"): the same default as packed_shards' val_fraction, so the
    # held-out pairs come from the held-out repositories (change both together).
    val_fraction: float = VAL_FRACTION


# Common imperative verbs that open commit subjects (the forms a "do X" subject starts with).
_VERBS = """
    accept access add adjust align allow annotate append apply archive assert attach augment avoid backport
    build bundle cache calculate call cancel capture catch centralize change check clarify clean cleanup clear
    clone close collapse collect combine comment compare compile complete compute configure consolidate
    construct convert copy correct count create deduplicate default defer define delete deprecate detect
    disable disallow discard display document drop dump edit elide eliminate embed emit enable encode enforce
    ensure escape evaluate exclude execute expand expect explain export expose extend extract factor fetch
    fill filter finalize finish fix flag flatten flush fold force format forward free generalize generate get
    guard halve handle harden hide hoist honor honour ignore implement import improve include increase
    initialize inline insert inspect install integrate introduce invalidate invert isolate keep kill launch
    limit lint list load localize lock log lower make mark match merge migrate minimize mock modernize modify
    move normalize note obey omit open optimize order override parallelize parse pass patch permit pin plumb
    polish populate port prefer prepare preserve prevent print process propagate protect provide prune publish
    pull push put quote raise read rearrange rebuild recognize record recover redirect reduce refactor refine
    reformat refresh regenerate register reimplement reject release reload remove rename render reorder
    reorganize repair replace report require rescue reset resolve respect restore restrict restructure retry
    return reuse revert revise rewrite rework run sanitize save scan separate serialize set share shorten show
    shrink simplify skip sort specify speed split squash stabilize standardize start stop store streamline
    strip support suppress swap switch sync synchronize teach test throw tidy tighten track translate trim
    try tune turn tweak unblock unexport unify unlock unskip untangle update upgrade use validate vendor
    verify warn widen wire wrap write
"""
IMPERATIVE_VERBS = frozenset(_VERBS.split())

# Leading ``[release-branch.go1.21]`` / ``[dev.typeparams]`` tags, then ``area:`` or ``a/b, c/d:`` or
# ``fix(scope)!:`` (a path or word, an optional parenthesised scope, comma-separated; no free spaces, so
# "Fix bug: crash" keeps its words).
_TAGS = re.compile(r"^(?:\[[^\]\n]{1,80}\]\s*)+")
_AREA = r"[\w.\-/*{}+]+(?:\([\w.\-/ ,*]*\))?!?"
_PREFIX = re.compile(rf"^{_AREA}(?:,\s*{_AREA})*:\s+")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")

_MERGE = re.compile(
    r"^merged? (?:pull request|branch|remote-tracking branch|tag|commit|changes|upstream)\b"
    r"|^merged? (?:master|main|trunk|(?:dev|release-branch)\.\S+|origin/\S+|'[^']*'|\"[^\"]*\")(?: \S+)? into\b",
    re.I,
)
_REVERT = re.compile(r"^revert(?:ed|s|ing)?\b", re.I)
_REVERT_BODY = re.compile(r"\bThis reverts commit [0-9a-f]{7,40}\b|\bThis reverts CL \d+", re.I)
_VERSION = r"v?\d+(?:\.\d+)+[\w.+-]*"
_BUMP = re.compile(
    rf"^bump(?:ed|s|ing)?\b|^(?:prepare |preparing |cut )?(?:release|releasing|version|tag)\s+(?:version\s+|to\s+)?v?\d"
    rf"|^{_VERSION}$|\bfrom {_VERSION} to {_VERSION}"
    rf"|^(?:update|upgrade)\b.*\bto {_VERSION}\s*$"
    r"|^(?:update|upgrade)\s+(?:all\s+)?(?:deps|dependencies|go\.mod|go\.sum|vendor(?:ed)?(?:\s+dependencies)?)\b",
    re.I,
)
_BOILERPLATE = re.compile(
    r"^(?:update|create|delete|edit|add|rename|upload)\s+[\w\-]*[./][\w.\-/]+$"  # web editor default: verb + a file
    r"|^(?:update|updated|edit|edited|create|add|improve)\s+(?:the\s+)?"
    r"(?:readme|changelog|changes|license|licence|authors|contributors|codeowners|\.gitignore)\b"
    r"|^(?:initial|first) (?:commit|import|version)\b|^add files via upload\b|^wip\b"
    r"|^(?:update|updates|updated|changes|minor changes|fixes|cleanup|misc|tweaks?)\W*$",
    re.I,
)


def subject_core(subject: str) -> str:
    """The subject without its release tags and ``area:`` prefix (``net/http: fix x`` → ``fix x``)."""
    core = _TAGS.sub("", subject.strip())
    return _PREFIX.sub("", core, count=1).strip()


def first_word(subject: str) -> str:
    """The first word of the subject's core, lower case (``"Fix: x"`` → ``fix``); "" when it has none."""
    m = _WORD.match(subject_core(subject))
    return m.group().lower() if m else ""


# -- subject filters: (subject, options) -> reason | None -----------------------------------------------
def merge(subject: str, options: SFTOptions) -> str | None:
    return "merge" if _MERGE.search(subject.strip()) or _MERGE.search(subject_core(subject)) else None


def revert(subject: str, options: SFTOptions) -> str | None:
    return "revert" if _REVERT.search(subject.strip()) or _REVERT.search(subject_core(subject)) else None


def version_bump(subject: str, options: SFTOptions) -> str | None:
    return "version_bump" if _BUMP.search(subject_core(subject)) else None


def boilerplate(subject: str, options: SFTOptions) -> str | None:
    """ "Update README.md", "Initial commit", "Add files via upload", "Minor changes": no instruction in them."""
    return "boilerplate_subject" if _BOILERPLATE.search(subject_core(subject)) else None


def subject_length(subject: str, options: SFTOptions) -> str | None:
    n = len(subject.strip())
    if n < options.min_subject_chars:
        return "subject_too_short"
    return "subject_too_long" if n > options.max_subject_chars else None


def subject_words(subject: str, options: SFTOptions) -> str | None:
    return "subject_few_words" if len(subject_core(subject).split()) < options.min_subject_words else None


def imperative(subject: str, options: SFTOptions) -> str | None:
    return None if first_word(subject) in IMPERATIVE_VERBS else "not_imperative"


SubjectFilter = Callable[[str, SFTOptions], "str | None"]
SUBJECT_FILTERS: tuple[SubjectFilter, ...] = (
    merge, revert, version_bump, boilerplate, subject_length, subject_words, imperative,
)  # fmt: skip


def subject_drop_reason(subject: str, options: SFTOptions) -> str | None:
    """The first filter's reason to drop a change by its subject, or None when the subject reads as an instruction."""
    for f in SUBJECT_FILTERS:
        reason = f(subject, options)
        if reason:
            return reason
    return None


def reverts_in_body(body: str) -> bool:
    """git's ``This reverts commit <sha>.`` (and Gerrit's ``This reverts CL N``): a revert with a reworded subject."""
    return bool(_REVERT_BODY.search(body))


def response_drop_reason(response: str, options: SFTOptions) -> str | None:
    """``no_response`` when there is no rationale at all, ``response_too_short`` when it explains nothing."""
    text = response.strip()
    if not text:
        return "no_response"
    return "response_too_short" if len(text) < options.min_response_chars else None
