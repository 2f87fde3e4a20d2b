"""eval_report's sampler (generate.py) and ROUGE-L relevance tasks (relevance.py) on a tiny random checkpoint."""

from __future__ import annotations

import collections
import shutil
from pathlib import Path

import pytest
import sentencepiece as spm
import torch

from gocoder_assets.categorized_records.changes import ReviewComment, render_file_change
from gocoder_assets.categorized_records.serialize import mark, render_change, render_code, render_issue
from gocoder_assets.eval_report.generate import Generator, filter_top_p
from gocoder_assets.eval_report.relevance import (
    TextTask,
    comment_relevance,
    comment_tasks,
    cut_comment,
    cut_explanation,
    explanation_relevance,
    explanation_tasks,
    readable_prompt_tail,
    rouge_l,
)
from gocoder_assets.sft_pairs.pairs import format_prompt
from gocoder_assets.tokenizer_model.encode import RecordCodec

# Short enough that prompt + 20 new ids fit the tiny model's 64-id context (no truncation unless a test asks).
MAX_NEW = 20
CLOSE = mark("</FILE>") + "\n"
PROMPTS = [  # stored CODE records cut after a function's opening line, as code-validity prompts are
    render_code("example/a", "a.go", "func Add(x int) {\n").removesuffix(CLOSE),
    render_code("example/b", "b.go", "func Show(v int) string {\n\treturn ").removesuffix(CLOSE),
]


def _hf_dir(root: Path, tiny_spm_model: Path, save_tiny_llama, sp, edit=None) -> Path:
    """A checkpoint dir as the pipeline writes it; ``edit(model)`` may change the weights first."""
    hf = root / "hf"
    model = save_tiny_llama(hf, sp, tied=False)
    if edit is not None:
        with torch.no_grad():
            edit(model)
        model.save_pretrained(hf, safe_serialization=True)
    shutil.copy(tiny_spm_model, hf / "tokenizer.model")
    return hf


@pytest.fixture(scope="module")
def sp(tiny_spm_model):
    return spm.SentencePieceProcessor(model_file=str(tiny_spm_model))


@pytest.fixture(scope="module")
def gen(tmp_path_factory, tiny_spm_model, save_tiny_llama, sp) -> Generator:
    return Generator(_hf_dir(tmp_path_factory.mktemp("gen"), tiny_spm_model, save_tiny_llama, sp))


def hand_greedy(model, ids: list[int], n: int, eos: int | None = None) -> list[int]:
    """Argmax over the full-sequence logits, no KV cache: the reference for the cached sampler."""
    out: list[int] = []
    with torch.no_grad():
        for _ in range(n):
            token = int(model(torch.tensor([ids + out])).logits[0, -1].argmax())
            if token == eos:
                break
            out.append(token)
    return out


def sample(gen: Generator, prompts=PROMPTS, **kw):
    settings = {"samples": 3, "temperature": 1.0, "top_p": 1.0, "seed": 7, "max_new_tokens": 16} | kw
    return gen.complete(prompts, **settings)


def test_same_seed_same_samples_whatever_the_batch(gen):
    first = sample(gen)
    assert sample(gen) == first
    assert sample(gen, prompts=PROMPTS[::-1]) == first[::-1]  # a prompt's samples do not depend on its position
    assert sample(gen, prompts=PROMPTS[1:]) == first[1:]
    assert sample(gen, seed=8) != first
    assert all(len(set(rows)) > 1 for rows in first)  # the rows of one prompt are different draws
    assert all(len(s) == 3 for s in first)


def test_greedy_equals_an_argmax_loop(gen):
    for prompt in PROMPTS:
        ids = gen.codec.encode_one(prompt)
        assert len(ids) + MAX_NEW <= gen.context  # no truncation here
        want = gen.codec.decode(hand_greedy(gen.model, ids, MAX_NEW))
        assert want
        assert gen.complete([prompt], samples=2, temperature=0, top_p=1.0, seed=1, max_new_tokens=MAX_NEW) == [
            [want] * 2
        ]


def test_tiny_top_p_is_greedy(gen):
    greedy = sample(gen, temperature=0)
    assert sample(gen, top_p=1e-6) == greedy
    assert sample(gen, top_p=1e-6, seed=99) == greedy


def test_filter_top_p_keeps_the_nucleus():
    probs = torch.tensor([[0.125, 0.5, 0.25, 0.125]])
    assert filter_top_p(probs, 0.5).tolist() == [[0.0, 0.5, 0.0, 0.0]]
    assert filter_top_p(probs, 0.6).tolist() == [[0.0, 0.5, 0.25, 0.0]]  # 0.5 < 0.6: the next one is needed
    assert filter_top_p(probs, 1e-9).tolist() == [[0.0, 0.5, 0.0, 0.0]]
    assert filter_top_p(probs, 1.0).tolist() == probs.tolist()


def test_stop_cuts_where_asked(gen):
    ids = gen.codec.encode_one(PROMPTS[0])
    greedy = hand_greedy(gen.model, ids, MAX_NEW)
    texts = [gen.codec.decode(greedy[: k + 1]) for k in range(len(greedy))]
    want = next(t for t in texts if len(t) >= 6)
    got = gen.complete(PROMPTS[:1], samples=1, temperature=0, top_p=1.0, seed=0, max_new_tokens=MAX_NEW,
                       stop=lambda t: len(t) >= 6, stop_on=None)  # fmt: skip
    assert got == [[want]] and len(want) < len(texts[-1])
    # With stop_on, stop is only asked when a token holding one of those characters arrives.
    pieces = [gen.codec.decode([t]) for t in greedy]
    # A character that first appears in a later token: stop must not be asked before that token.
    first, char = next((k, p[-1]) for k, p in enumerate(pieces) if k > 1 and not any(p[-1] in q for q in pieces[:k]))
    asked: list[str] = []
    got = gen.complete(PROMPTS[:1], samples=1, temperature=0, top_p=1.0, seed=0, max_new_tokens=MAX_NEW,
                       stop=lambda t: asked.append(t) or True, stop_on=char)  # fmt: skip
    assert got == [[texts[first]]] and asked == [texts[first]]
    before = gen.stats["ended:stop"]
    before += gen.stats["ended:eos"]
    sample(gen, stop=lambda t: True, stop_on=None)  # every sampled row ends after its first token
    assert gen.stats["ended:stop"] + gen.stats["ended:eos"] - before == 6


def test_rows_that_end_leave_the_batch_and_the_others_go_on(gen, monkeypatch):
    """Rows start from four different likely tokens, then go argmax; they stop at different lengths, so finished
    rows leave the batch (and its KV cache) while the others continue: each must equal its own argmax loop.
    The rows are ordered so that the last to finish is the last row: a wrong row ⇄ sample mapping shows."""
    ids = gen.codec.encode_one(PROMPTS[1])
    with torch.no_grad():
        candidates = gen.model(torch.tensor([ids])).logits[0, -1].topk(4).indices.tolist()

    runs = {}
    for first in candidates:
        out = [first, *hand_greedy(gen.model, [*ids, first], MAX_NEW - 1)]
        runs[first] = [gen.codec.decode(out[: k + 1]) for k in range(len(out))]

    def ends(first, chars):  # (ids generated, text) when a row starting with ``first`` stops at ``chars``
        k = next((k for k, text in enumerate(runs[first]) if len(text) >= chars), len(runs[first]) - 1)
        return k + 1, runs[first][k]

    # A length at which the rows stop at three or more different steps (so rows leave the batch twice).
    chars = next(c for c in range(4, 40) if len({ends(t, c)[0] for t in candidates}) >= 3)
    expected = {t: ends(t, chars) for t in candidates}

    def stop(text):
        return len(text) >= chars

    firsts = sorted(candidates, key=lambda t: expected[t][0])
    sizes = []

    def pick(logits, temperature, top_p, rng):
        sizes.append(len(logits))
        return torch.tensor(firsts) if len(sizes) == 1 else logits.argmax(dim=-1)

    monkeypatch.setattr(gen, "_next_ids", pick)
    got = gen.complete(PROMPTS[1:], samples=4, temperature=1.0, top_p=1.0, seed=0, max_new_tokens=MAX_NEW,
                       stop=stop, stop_on=None)  # fmt: skip
    assert got == [[expected[t][1] for t in firsts]]
    assert len(set(got[0])) == 4 and len(set(sizes)) > 2  # rows left the batch, twice, while others went on


def _boost(sp, token: str, step: int, prompt: str):
    """An ``edit`` giving ``token`` 1.5× the output row of the greedy choice at ``step``: it wins there (or before)."""

    def edit(model):
        codec = RecordCodec(sp)
        chosen = hand_greedy(model, codec.encode_one(prompt), step + 1)[step]
        target = sp.eos_id() if token == "eos" else codec.marker_ids[token]
        model.lm_head.weight[target] = 1.5 * model.lm_head.weight[chosen]

    return edit


def test_eos_ends_a_sample(tmp_path, tiny_spm_model, save_tiny_llama, sp):
    g = Generator(_hf_dir(tmp_path, tiny_spm_model, save_tiny_llama, sp, _boost(sp, "eos", 3, PROMPTS[0])))
    want = hand_greedy(g.model, g.codec.encode_one(PROMPTS[0]), MAX_NEW, eos=g.eos_id)
    assert 0 < len(want) <= 3  # EOS came, at step 3 or before
    got = g.complete(PROMPTS[:1], samples=1, temperature=0, top_p=1.0, seed=0, max_new_tokens=MAX_NEW)
    assert got == [[g.codec.decode(want)]] and g.stats["ended:eos"] == 1
    rows = g.complete(PROMPTS[:1], samples=4, temperature=1.0, top_p=1e-6, seed=0, max_new_tokens=MAX_NEW)
    assert rows == [[g.codec.decode(want)] * 4] and g.stats["ended:eos"] == 5  # four rows, each ended by EOS


def test_a_generated_marker_is_its_sentinel(tmp_path, tiny_spm_model, save_tiny_llama, sp):
    g = Generator(_hf_dir(tmp_path, tiny_spm_model, save_tiny_llama, sp, _boost(sp, "</FILE>", 2, PROMPTS[0])))
    want = g.codec.decode(hand_greedy(g.model, g.codec.encode_one(PROMPTS[0]), 12))
    got = g.complete(PROMPTS[:1], samples=1, temperature=0, top_p=1.0, seed=0, max_new_tokens=12)
    assert got == [[want]] and mark("</FILE>") in want[1:]


def test_left_truncation_keeps_the_prompt_end(gen):
    body = "".join(f"\tx{i} := {i} + y\n" for i in range(40))
    long = render_code("example/a", "a.go", "package a\n\nfunc Long(y int) int {\n" + body)
    ids = gen.codec.encode_one(long)
    keep = gen.context - 16
    assert len(ids) > keep + 20
    before = collections.Counter(gen.stats)
    got = gen.complete([long], samples=1, temperature=0, top_p=1.0, seed=0, max_new_tokens=16)
    assert got == [[gen.codec.decode(hand_greedy(gen.model, ids[-keep:], 16))]]
    assert gen.stats["prompts_truncated"] - before["prompts_truncated"] == 1
    assert gen.stats["prompt_tokens_dropped"] - before["prompt_tokens_dropped"] == len(ids) - keep
    other_start = long.replace("package a", "package zzz_other", 1)  # a change inside the dropped part
    assert gen.complete([other_start], samples=1, temperature=0, top_p=1.0, seed=0, max_new_tokens=16) == got
    with pytest.raises(ValueError, match="no room"):
        gen.complete([long], samples=1, temperature=0, top_p=1.0, seed=0, max_new_tokens=gen.context)


def test_rouge_l():
    assert rouge_l("Add a test for the parser", "add a test for the parser") == pytest.approx(1.0)
    assert rouge_l("completely unrelated words", "add a test") == 0.0
    assert rouge_l("", "add a test") == 0.0
    # LCS of "a b c d" and "a c e" is "a c": P = 2/4, R = 2/3, F = 2PR / (P + R) = 4/7.
    assert rouge_l("a b c d", "a c e") == pytest.approx(4 / 7)


def test_cuts():
    assert cut_comment("Looks fine.\nBut rename it.\nusername_2 (approved): LGTM") == "Looks fine.\nBut rename it."
    assert cut_comment("ok " + mark("</FILE>") + "more") == "ok"
    assert cut_comment("fine\n…: [… 3 more comments]") == "fine"
    assert cut_explanation("Because X.\n\n### Instruction:\nmore") == "Because X."
    assert cut_explanation("It was slow.") == "It was slow."
    assert readable_prompt_tail(PROMPTS[0]) == '<CODE><REPO>example/a\n<FILE path="a.go">\nfunc Add(x int) {\n'
    assert readable_prompt_tail(PROMPTS[0], 7) == "[…]int) {\n"


def _change(comments, file_changes=()):
    change = {"title": "net/http: fix the header parser", "status": "merged", "body": "It broke on tabs.",
              "comments": comments}  # fmt: skip
    return render_change("MIX", "example/a", change, list(file_changes))


def _file_with_thread():
    entry = {"path": "a.go", "status": "M", "before": "package a\n\nvar x = 1\n", "after": "package a\n\nvar x = 2\n"}
    return render_file_change(entry, [ReviewComment("username_3", 3, "why 2?")]).text


def _record(record_id: str, text: str, category: str = "MIX", kind: str = "change", repo: str = "example/a"):
    return {"record_id": record_id, "repo": repo, "kind": kind, "category": category, "text": text}


def test_comment_tasks_on_planted_records():
    first = {"author": "username_1", "body": "Please add a test.\nAnd a changelog entry."}
    review = {"author": "username_2 (approved)", "body": "LGTM, thanks"}
    files = [_file_with_thread()]
    assert mark("<COMMENTS>") in files[0]  # a review thread inside the file block: not the discussion
    issue = {"title": "crash on nil map", "body": "It panics.", "comments": [{"author": "username_1", "body": "Same."}]}
    records = [
        _record("r3", _change([first, review], files)),
        _record("r1", _change([review, first])),
        _record("r2", _change([], files)),
        _record("r0", PROMPTS[0], category="CODE", kind="file"),
        _record("r4", render_issue("MIX", "example/b", issue), kind="issue", repo="example/b"),
        _record("r5", _change([first], ["x" * 5000 + "\n"])),
    ]
    counts = collections.Counter()
    tasks = comment_tasks(records, 10, max_prompt_chars=2000, counts=counts)
    head = mark("<COMMENTS>") + "\n"
    no_comments = render_issue("MIX", "example/b", {**issue, "comments": []})
    assert tasks == [
        TextTask(_change([]) + head + "username_2 (approved): ", "LGTM, thanks", "r1", "example/a"),
        TextTask(_change([], files) + head + "username_1: ", first["body"], "r3", "example/a"),
        TextTask(no_comments + head + "username_1: ", "Same.", "r4", "example/b"),
    ]
    assert counts == {
        "comment_tasks:candidates": 3,
        "comment_tasks:no_comments": 1,
        "comment_tasks:not_mix": 1,
        "comment_tasks:prompt_too_long": 1,
    }
    assert comment_tasks(records[::-1], 2, max_prompt_chars=2000) == tasks[:2]  # order by record_id, then limit


def test_explanation_tasks_on_planted_pairs():
    prompt = format_prompt("Explain why this change was made.", mark("<PR_TITLE>") + "fix the parser")
    why = "Tabs broke it."
    row = {"text": prompt + why, "response_start": len(prompt), "response": why, "split": "val", "record_id": "b",
           "repo": "example/a"}  # fmt: skip
    rows = [row, {**row, "record_id": "a", "split": "train"}, {**row, "record_id": "c", "response_start": 3},
            {**row, "record_id": "a2"}]  # fmt: skip
    counts = collections.Counter()
    tasks = explanation_tasks(rows, 5, counts=counts)
    assert tasks == [TextTask(prompt, why, "a2", "example/a"), TextTask(prompt, why, "b", "example/a")]
    assert counts == {
        "explanation_tasks:candidates": 2,
        "explanation_tasks:not_val": 1,
        "explanation_tasks:malformed": 1,
    }
    assert explanation_tasks(rows[::-1], 1) == tasks[:1]


class ScriptedGenerator:
    """Answers each prompt with ``answer(task)``: the reference ("perfect"), or anything else."""

    def __init__(self, tasks, answer):
        self.by_prompt = {t.prompt: answer(t) for t in tasks}

    def complete(self, prompts, *, samples, stop, **_):
        out = [[self.by_prompt[p]] * samples for p in prompts]
        assert all(stop(t) == (cut_comment(t) != t.strip()) for rows in out for t in rows)
        return out


def test_relevance_scores():
    tasks = [TextTask("p1", "Please add a test for nil maps.", "1", "r"), TextTask("p2", "LGTM, thanks", "2", "r")]
    sampling = {"samples": 2, "temperature": 0.0, "top_p": 1.0, "seed": 0, "max_new_tokens": 8}
    perfect = comment_relevance(ScriptedGenerator(tasks, lambda t: t.reference), tasks, **sampling)
    assert perfect["rouge_l"] == pytest.approx(1.0) and perfect["tasks"] == 2 and perfect["scores"] == [1.0, 1.0]
    assert perfect["rows"][0]["generated"] == [tasks[0].reference] * 2
    ran_on = ScriptedGenerator(tasks, lambda t: t.reference + "\nusername_4: unrelated words here")
    assert comment_relevance(ran_on, tasks, **sampling)["rouge_l"] == pytest.approx(1.0)  # cut at the next entry
    wrong = comment_relevance(ScriptedGenerator(tasks, lambda t: "zzz"), tasks, **sampling)
    assert wrong["rouge_l"] == 0.0
    half = comment_relevance(ScriptedGenerator(tasks, lambda t: t.reference if t.record_id == "1" else ""), tasks,
                             **sampling)  # fmt: skip
    assert half["rouge_l"] == pytest.approx(0.5)
    assert comment_relevance(ScriptedGenerator([], str), [], **sampling)["rouge_l"] is None


def test_relevance_with_the_real_sampler(gen):
    prompt = format_prompt("Explain why this change was made.", mark("<PR_TITLE>") + "fix the parser")
    tasks = [TextTask(prompt, "the parser broke on tabs", "1", "example/a")]
    result = explanation_relevance(gen, tasks, samples=2, temperature=1.0, top_p=0.9, seed=3, max_new_tokens=12)
    assert result["tasks"] == 1 and len(result["rows"][0]["generated"]) == 2
    assert 0.0 <= result["rouge_l"] <= 1.0
    assert result["generation"]["prompts"] == 1 and result["generation"]["samples"] == 2
    assert all("###" not in g for g in result["rows"][0]["generated"])
