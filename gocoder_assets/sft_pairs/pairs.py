"""Instruction pairs ("explain why this change was made") from one partition's change records (Dagster-free).

Source: categorized_records' change records, not the raw PRs, so every pair is filtered, PII- and
secret-redacted and anonymized exactly as the training text is, and shows the change in the very
rendering the model saw in pre-training (MIX records, changes.py). A record's text is cut back into
title, body, file changes and discussion with serialize.py's ``split_markers`` / ``MARKER_OF``; the file
changes are kept as stored, markers as sentinels, so ``RecordCodec`` encodes them as the same control
ids (``serialize.readable`` writes them out for people; the GGUF / HF tokenizers map those strings to the
same ids for prompting).

Format (``text``; ``response_start`` is the character offset of the response, ``response_token_start``
its token offset, so a loss mask on the response is exact in either space)::

    ### Instruction:\\n⟨instruction⟩\\n\\n### Input:\\n⟨input⟩\\n\\n### Response:\\n⟨response⟩

The answer must not be in the question:
- Response = the rationale of the PR description / commit message body (after the subject): the body
  without PR-template comments, task-list checkboxes, bare issue references (``Fixes #12``) and trailers
  (``Signed-off-by``, ``Change-Id`` …). Input = ``<PR_TITLE>`` title + ``<FILES>`` the change. The body
  is *not* in the Input, and neither is the discussion (a reply often restates the why).
- When the body holds no rationale (empty, or shorter than ``min_response_chars`` once cleaned), the
  Response is the reviewer's summary: the first review (not by the PR's author, state approved or
  commented) long enough; then the Input also carries the body (``<PR_BODY>``), which is not the answer.
- Review comments placed inside the file blocks stay: they are part of the MIX rendering of the change.

Drops (each counted ``dropped:<reason>``): ``duplicate`` (dedup_index removed the record), ``unmerged``
(a closed, unmerged PR: nobody made the change), ``no_change`` (no file survived the filters), the
subject filters of filters.py, ``revert`` (a body saying "This reverts commit …"), ``no_response`` /
``response_too_short``, and ``too_many_tokens`` (the pair with its EOS over ``max_tokens``).
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Iterable, Iterator
from typing import Any

from gocoder_assets.categorized_records.serialize import MARKER_OF, line, mark, split_markers
from gocoder_assets.sft_pairs import filters
from gocoder_assets.sft_pairs.filters import SFTOptions

PROVENANCE = ("record_id", "repo", "full_name", "category", "pr_number", "commit_sha", "path", "license",
              "license_key", "url", "fetched_at")  # fmt: skip
# The prompt format (public: sft_checkpoint records it beside the tuned model for its Modelfile and evaluator).
PROMPT_TEMPLATE = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
_TEMPLATE = PROMPT_TEMPLATE
RESPONSE_HEADER = "### Response:\n"

# A top-level discussion entry: ``username_3: …``, ``username_1 (approved): …``, ``username_2 on a.go:12: …``
# (categorize._discussion / _change), or the ``…: [… N more comments]`` line.
ENTRY = re.compile(r"^(username_\d+)(?: \(([a-z_]+)\)| on [^\n]*?)?: |^…: ", re.M)
_SUMMARY_STATES = ("approved", "commented")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_CHECKBOX = re.compile(r"^\s*[-*] \[[ xX]\].*$", re.M)
_ISSUE_REF = re.compile(
    r"^\s*(?:(?:fix(?:es|ed)?|close[sd]?|resolve[sd]?|updates?|for|see|refs?|related(?: to)?)[:\s]+)?"
    r"(?:[\w.-]+/[\w.-]+)?#\d+[.,;\s]*$",
    re.I | re.M,
)
_TRAILER = re.compile(
    r"^(?:[\w-]+-by|Change-Id|Reviewed-on|Run-TryBot|(?:LUCI-)?TryBot-Result|Auto-Submit|Commit-Queue|Cc|Bug|Fixes"
    r"|Updates|Closes|Refs|See-also|Link): \S.*$",
    re.I,
)
_BLANKS = re.compile(r"\n{3,}")


@dataclasses.dataclass(frozen=True)
class Comment:
    author: str
    state: str | None  # a review's state ("approved" …); None for an issue comment or a thread comment
    body: str


@dataclasses.dataclass(frozen=True)
class ChangeParts:
    """A change record's text cut back into its parts; ``files`` is the stored ``<FILES>`` block, markers kept."""

    title: str
    status: str
    body: str
    files: str
    comments: tuple[Comment, ...]


def _field(run: str) -> str:
    """A field's run without the newline ``serialize.line`` added."""
    return run[:-1] if run.endswith("\n") else run


def parse_change(text: str) -> ChangeParts:
    """Title, status, body, ``<FILES>`` section and top-level discussion of a stored change record.

    Comments inside file blocks (``<COMMENTS>`` between ``<FILE`` and ``</FILE>``) belong to the files
    section; only a ``<COMMENTS>`` outside every file block is the discussion.
    """
    parts = split_markers(text)
    fields: dict[str, str] = {}
    files_from = files_to = None
    discussion = ""
    depth = 0
    for k in range(1, len(parts), 2):
        marker, run = MARKER_OF[parts[k]], parts[k + 1]
        if marker == "<FILE":
            depth += 1
        elif marker == "</FILE>":
            depth -= 1
        elif marker == "<FILES>":
            files_from = k
        elif marker == "<COMMENTS>" and depth == 0:
            files_to = k
            discussion = run
            break
        elif depth == 0 and marker in ("<PR_TITLE>", "<PR_STATUS>", "<PR_BODY>"):
            fields[marker] = _field(run)
    if "<PR_TITLE>" not in fields:
        raise ValueError("not a change record: no <PR_TITLE>")
    files = "".join(parts[files_from:files_to]) if files_from is not None else ""
    return ChangeParts(fields["<PR_TITLE>"], fields.get("<PR_STATUS>", "merged"), fields.get("<PR_BODY>", ""),
                       files, parse_comments(discussion))  # fmt: skip


def parse_comments(run: str) -> tuple[Comment, ...]:
    """The ``author: body`` entries of a discussion (bodies may span lines: an entry ends where the next begins)."""
    starts = list(ENTRY.finditer(run))
    out = []
    ends = [m.start() for m in starts[1:]] + [len(run)] * bool(starts)
    for m, end in zip(starts, ends, strict=True):
        body = run[m.end() : end].strip()
        if m.group(1):
            out.append(Comment(m.group(1), m.group(2), body))
    return tuple(out)


def rationale(body: str) -> str:
    """The why of a description: without template comments, checkboxes, bare issue references and trailers."""
    text = _CHECKBOX.sub("", _ISSUE_REF.sub("", _HTML_COMMENT.sub("", body)))
    lines = text.rstrip().split("\n")
    while lines and (_TRAILER.match(lines[-1].strip()) or not lines[-1].strip()):
        lines.pop()  # the trailer block at the end (git interpret-trailers' rule: "Key: value" lines)
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def reviewer_summary(comments: Iterable[Comment], options: SFTOptions) -> str:
    """The first approving or commenting review, by someone other than the author, long enough to explain."""
    for c in comments:
        if c.state in _SUMMARY_STATES and c.author != "username_0":  # the PR's author is always username_0
            text = rationale(c.body)
            if filters.response_drop_reason(text, options) is None:
                return text
    return ""


def format_prompt(instruction: str, input_text: str) -> str:
    return _TEMPLATE.format(instruction=instruction, input=input_text)


def encode_pair(codec: Any, prompt: str, response: str) -> tuple[list[int], int]:
    """Ids of prompt + response (encoded apart, so the boundary is a token boundary) and the response's first id.

    The trainer appends EOS after the response; ``max_tokens`` counts it.
    """
    prompt_ids, response_ids = codec.encode([prompt, response])
    return prompt_ids + response_ids, len(prompt_ids)


class PairBuilder:
    """Streams one partition's categorized records into pair rows; ``counts`` fills as it goes."""

    def __init__(self, codec: Any, options: SFTOptions | None = None, dropped: set[str] | None = None,
                 split: str = "train") -> None:  # fmt: skip
        self.codec = codec
        self.options = options or SFTOptions()
        self.dropped = dropped or set()
        self.split = split
        self.counts: collections.Counter[str] = collections.Counter()

    def drop_reason(self, record: dict[str, Any], parts: ChangeParts) -> str | None:
        if record["record_id"] in self.dropped:
            return "duplicate"
        if parts.status != "merged":
            return "unmerged"
        if not parts.files:
            return "no_change"
        return filters.subject_drop_reason(parts.title, self.options) or (
            "revert" if filters.reverts_in_body(parts.body) else None
        )

    def pair(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """The pair of one change record, or None (its reason counted)."""
        parts = parse_change(record["text"])
        reason = self.drop_reason(record, parts)
        response, source = rationale(parts.body), "body"
        input_text = mark("<PR_TITLE>") + line(parts.title)
        if reason is None and filters.response_drop_reason(response, self.options):
            summary = reviewer_summary(parts.comments, self.options)
            if summary:
                response, source = summary, "review"
                input_text += mark("<PR_BODY>") + line(parts.body) if parts.body else ""
        reason = reason or filters.response_drop_reason(response, self.options)
        prompt, ids, response_token_start = "", [], 0
        if reason is None:
            input_text = (input_text + parts.files).rstrip("\n")
            prompt = format_prompt(self.options.instruction, input_text)
            ids, response_token_start = encode_pair(self.codec, prompt, response)
            if len(ids) + 1 > self.options.max_tokens:
                reason = "too_many_tokens"
        if reason:
            self.counts[f"dropped:{reason}"] += 1
            return None
        self.counts["pairs"] += 1
        self.counts[f"response_source:{source}"] += 1
        return {
            "instruction": self.options.instruction,
            "input": input_text,
            "response": response,
            "text": prompt + response,
            "response_start": len(prompt),
            "response_token_start": response_token_start,
            "tokens": len(ids) + 1,
            "subject": parts.title,
            "response_source": source,
            "split": self.split,
            **{k: record.get(k) for k in PROVENANCE},
        }

    def run(self, records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for record in records:
            if record.get("kind") != "change":
                continue
            self.counts["change_records"] += 1
            row = self.pair(record)
            if row is not None:
                yield row
