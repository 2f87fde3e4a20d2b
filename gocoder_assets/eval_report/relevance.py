"""Text relevance of generated continuations: ROUGE-L against what people really wrote (Dagster-free).

Two tasks, both a prompt cut from held-out data and the human text that followed it:

- **PR-comment relevance** (``comment_tasks``): a held-out MIX record (a pull request or issue with its
  discussion) up to its discussion's ``<COMMENTS>`` marker and the first entry's author label
  (``username_1: ``, ``username_2 (approved): ``, ``username_3 on a.go:12: `` — categorize's labels, the
  ones sft_pairs' ``parse_comments`` reads); the reference is that first comment. Only the discussion
  outside the file blocks counts: a ``<COMMENTS>`` inside a ``<FILE`` block is a review thread placed
  beside its code, part of the change, not the conversation.
- **Explanations** (``explanation_tasks``): held-out ("val") sft_pairs rows; the prompt is the
  instruction-format text up to ``### Response:\\n``, the reference the response.

Generated text is cut where its unit ends (``cut_comment``: at the next discussion entry or a marker;
``cut_explanation``: at a ``###`` header or a marker), and the same cut stops the sampler early
(``Generator.complete``'s ``stop``, consulted only on tokens that can complete such a boundary).
ROUGE-L is Google's ``rouge-score`` implementation (the one the summarization literature reports):
F-measure of the longest common subsequence of lower-cased alphanumeric tokens, no stemming.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import heapq
import re
from collections.abc import Callable, Iterable
from typing import Any

from gocoder_assets.categorized_records.serialize import MARKER_OF, RESERVED, readable, split_markers
from gocoder_assets.sft_pairs.pairs import ENTRY

# Where a generated comment has run into the next entry. Checked as text arrives, so it must match as soon as
# the entry is certain: digits are single pieces (split_digits), so ``\nusername_3`` completes on a digit.
# A comment line that *starts* with a mention (``username_3 said …``) is cut too: names are the same tokens.
_NEXT_ENTRY = re.compile(r"\n(?:username_\d|…:)")
_HEADER = re.compile(r"(?:^|\n)###")
COMMENT_STOP_ON = "\n0123456789…:"  # tokens that can complete _NEXT_ENTRY (markers always count)
EXPLANATION_STOP_ON = "\n#"  # tokens that can complete _HEADER


# A record whose prompt alone is longer than this is skipped (counted): the model would see only its tail, and
# encoding a 200k-character change to keep its last thousand tokens is wasted work. (Sampling settings are the
# caller's: eval_report's EvalOptions.)
MAX_PROMPT_CHARS = 16_000


@dataclasses.dataclass(frozen=True)
class TextTask:
    prompt: str  # stored form (markers as sentinels)
    reference: str
    record_id: str
    repo: str


@functools.cache
def _scorer() -> Any:
    from rouge_score import rouge_scorer  # noqa: PLC0415

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure of ``prediction`` against ``reference``; 0.0 when either holds no word."""
    if not prediction.strip() or not reference.strip():
        return 0.0
    return float(_scorer().score(reference, prediction)["rougeL"].fmeasure)


def cut_comment(text: str) -> str:
    """A generated first comment without what follows it: the next discussion entry or any marker."""
    end = len(text)
    for found in (RESERVED.search(text), _NEXT_ENTRY.search(text)):
        if found:
            end = min(end, found.start())
    return text[:end].strip()


def cut_explanation(text: str) -> str:
    """A generated response without what follows it: a ``###`` header (a new instruction block) or a marker."""
    end = len(text)
    for found in (RESERVED.search(text), _HEADER.search(text)):
        if found:
            end = min(end, found.start())
    return text[:end].strip()


def _discussion_at(text: str) -> int | None:
    """Offset just after the top-level ``<COMMENTS>`` sentinel (outside every file block), or None."""
    depth, offset = 0, 0
    parts = split_markers(text)
    for k, part in enumerate(parts):
        offset += len(part)
        if k % 2 == 0:
            continue
        marker = MARKER_OF[part]
        if marker == "<FILE":
            depth += 1
        elif marker == "</FILE>":
            depth -= 1
        elif marker == "<COMMENTS>" and depth == 0:
            return offset
    return None


def comment_task(record: dict[str, Any]) -> TextTask | str:
    """The first-comment task of one record, or the reason it has none."""
    if record.get("category") != "MIX":
        return "not_mix"
    text = record["text"]
    at = _discussion_at(text)
    if at is None:
        return "no_comments"
    if not text.startswith("\n", at):
        return "bad_discussion"  # render_comments writes "<COMMENTS>\n" then the entries
    label = ENTRY.match(text, at + 1)  # a discussion entry's label, as sft_pairs' parse_comments reads it
    if label is None or not label.group(1):
        return "no_first_entry"  # e.g. only the "…: [… N more comments]" line
    rest = text[label.end() :]
    following = ENTRY.search(rest)
    reference = rest[: following.start() if following else len(rest)]
    reference = reference[: m.start()] if (m := RESERVED.search(reference)) else reference
    if not reference.strip():
        return "empty_comment"
    return TextTask(text[: label.end()], reference.strip(), str(record["record_id"]), str(record.get("repo", "")))


def _first(tasks: Iterable[TextTask], limit: int) -> list[TextTask]:
    """The ``limit`` tasks of lowest record_id: the same set whatever order the records were read in."""
    return heapq.nsmallest(limit, tasks, key=lambda t: (t.record_id, t.prompt))


def comment_tasks(records: Iterable[dict[str, Any]], limit: int, *,
                  max_prompt_chars: int = MAX_PROMPT_CHARS,
                  counts: collections.Counter[str] | None = None) -> list[TextTask]:  # fmt: skip
    """First-comment tasks of held-out records (the caller passes only held-out ones); skips counted in ``counts``.

    ``counts`` gets ``comment_tasks:<reason>`` per skipped record (``not_mix``, ``no_comments``,
    ``prompt_too_long`` …) and ``comment_tasks:candidates``; the result holds the first ``limit`` by record_id.
    """
    counts = counts if counts is not None else collections.Counter()

    def candidates() -> Iterable[TextTask]:
        for record in records:
            task = comment_task(record)
            if isinstance(task, TextTask) and len(task.prompt) > max_prompt_chars:
                task = "prompt_too_long"
            if isinstance(task, str):
                counts[f"comment_tasks:{task}"] += 1
                continue
            counts["comment_tasks:candidates"] += 1
            yield task

    return _first(candidates(), limit)


def explanation_tasks(pairs: Iterable[dict[str, Any]], limit: int, *,
                      counts: collections.Counter[str] | None = None) -> list[TextTask]:  # fmt: skip
    """Explanation tasks of the "val" sft_pairs rows (``text[:response_start]`` → ``response``), by record_id.

    A row whose text does not end with its response at ``response_start`` is malformed: counted, skipped.
    """
    counts = counts if counts is not None else collections.Counter()

    def candidates() -> Iterable[TextTask]:
        for row in pairs:
            if row.get("split") != "val":
                counts["explanation_tasks:not_val"] += 1
                continue
            text, start, response = row["text"], int(row["response_start"]), row["response"]
            if text[start:] != response or not response.strip():
                counts["explanation_tasks:malformed"] += 1
                continue
            counts["explanation_tasks:candidates"] += 1
            yield TextTask(text[:start], response.strip(), str(row["record_id"]), str(row.get("repo", "")))

    return _first(candidates(), limit)


def relevance(generator: Any, tasks: list[TextTask], *, samples: int = 1, temperature: float, top_p: float,
              seed: int, max_new_tokens: int, cut: Callable[[str], str],
              stop_on: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Mean ROUGE-L of ``generator``'s continuations (each ``cut``) against the tasks' references.

    The sampler stops a continuation as soon as ``cut`` would shorten it (asked on ``stop_on`` tokens).
    Result: ``rouge_l`` (mean over tasks of the mean over samples; None without tasks), ``tasks``,
    ``samples``, ``scores`` (per task), ``rows`` (prompt, reference, generated texts, their scores, record_id,
    repo: what the report shows) and ``generation`` (the generator's counters for this call).
    """
    before = collections.Counter(getattr(generator, "stats", {}))
    outputs = generator.complete([t.prompt for t in tasks], samples=samples, temperature=temperature, top_p=top_p,
                                 seed=seed, max_new_tokens=max_new_tokens, stop=lambda text: cut(text) != text.strip(),
                                 stop_on=stop_on) if tasks else []  # fmt: skip
    rows, scores = [], []
    for task, texts in zip(tasks, outputs, strict=True):
        generated = [cut(t) for t in texts]
        each = [rouge_l(g, task.reference) for g in generated]
        scores.append(sum(each) / len(each))
        rows.append({**dataclasses.asdict(task), "generated": generated, "rouge_l": each})
    after = collections.Counter(getattr(generator, "stats", {}))
    return {
        "rouge_l": sum(scores) / len(scores) if scores else None,
        "tasks": len(tasks),
        "samples": samples,
        "scores": scores,
        "rows": rows,
        "generation": dict(after - before),
    }


def comment_relevance(generator: Any, tasks: list[TextTask], **sampling: Any) -> dict[str, Any]:
    """``relevance`` of first-comment tasks: a continuation ends at the next discussion entry, a marker or EOS."""
    return relevance(generator, tasks, cut=cut_comment, stop_on=COMMENT_STOP_ON, **sampling)


def explanation_relevance(generator: Any, tasks: list[TextTask], **sampling: Any) -> dict[str, Any]:
    """``relevance`` of explanation tasks: a continuation ends at EOS, a ``###`` header or a marker."""
    return relevance(generator, tasks, cut=cut_explanation, stop_on=EXPLANATION_STOP_ON, **sampling)


def readable_prompt_tail(prompt: str, chars: int = 1500) -> str:
    """The end of a stored prompt with markers written out, for a report sample (its end is what was continued)."""
    text = readable(prompt)
    return text if len(text) <= chars else "[…]" + text[-chars:]
