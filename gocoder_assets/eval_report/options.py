"""The evaluation's settings: one frozen dataclass, one default per setting (``EvalConfig`` takes them from here).

Dagster-, torch- and numpy-free, so loading the definitions stays light. The defaults size an
evaluation of the ``tiny`` CPU model to a couple of minutes; a 125m run on a GPU wants more prompts
and samples (``code_prompts`` 64, ``samples`` 10, ``test_tasks`` 32) for pass@k to mean anything.
"""

from __future__ import annotations

import dataclasses

MODELS = ("checkpoint", "sft_checkpoint")


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """What eval_report measures, on which model, and how completions are sampled.

    ``model`` is the checkpoint the report is about; ``compare`` is the second one scored on exactly the
    same tokens and prompts: "auto" is the other of checkpoint / sft_checkpoint when it exists, "none"
    leaves only the unigram baseline, and a path names any Hugging Face directory trained with the same
    tokenizer (say, last week's checkpoint). ``eval_tokens`` 0 scores as many val tokens as the
    checkpoint's own training run did (its job file), so the report's bits per byte line up with the
    training curve's last point.
    """

    model: str = "checkpoint"
    compare: str = "auto"
    eval_tokens: int = 0
    # Code validity: functions cut from held-out Go files at the body's opening brace, ``samples`` each.
    code_prompts: int = 8
    samples: int = 4
    # MultiPL-E style: functions whose package tests pass as written and fail with the body removed.
    test_tasks: int = 4
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 1234
    # Per completion, capped at half the model's context (the prompt keeps the other half): 128 closes most
    # standard-library bodies; a cut-off body counts as not closed.
    max_new_tokens: int = 128
    # ROUGE-L of the first review comment (held-out MIX records) and of change explanations (sft val pairs).
    comment_tasks: int = 8
    explanation_tasks: int = 8
    report_samples: int = 5

    def __post_init__(self) -> None:
        for name in ("code_prompts", "samples", "max_new_tokens", "report_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("eval_tokens", "test_tasks", "comment_tasks", "explanation_tasks"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}")
