"""Sampling continuations of stored-form prompts from a Hugging Face checkpoint (Dagster-free).

The evaluator asks a checkpoint (``data/checkpoint/hf`` or ``data/sft_checkpoint/hf``) to continue prompts
cut from held-out records: function bodies, the first review comment, the explanation of a change. Prompts
and continuations are in *stored form* (markers as sentinel characters), and ``RecordCodec`` is the only
text ⇄ ids path, so a prompt is tokenized exactly as the model saw its training text and a generated marker
id comes back as its sentinel (``serialize.readable`` writes it out for people).

Why a hand-written decoding loop rather than ``model.generate``:
- reproducibility that does not depend on the batch: every prompt draws from its own ``torch.Generator``
  seeded from ``(seed, prompt)`` (``prompt_seed``), so a prompt's samples are the same whatever other
  prompts are asked for and in whatever order. ``generate`` samples from torch's global RNG;
- a ``stop(text_so_far)`` callback on the *decoded stored text* (a new discussion entry, a ``### `` header),
  consulted only when a token that can end a unit arrives (one holding a ``stop_on`` character, or a
  marker), and rows that finish (EOS, stop, length) leave the batch at once;
- a short loop on HF's KV cache (``DynamicCache``): the prompt is prefilled once (batch 1) and the cache is
  repeated for the ``samples`` rows, which all share the prompt and so need no padding or attention mask.

Sampling is temperature then nucleus (top-p) filtering, as in Holtzman et al. 2020 and HF's
``TopPLogitsWarper``: the smallest set of most likely tokens whose probability reaches ``top_p`` is kept
(the most likely token always is). Temperature 0 is greedy (argmax), with one row copied ``samples`` times.
A prompt longer than ``context - max_new_tokens`` ids is cut from the left: its end is what the
continuation depends on. No BOS/EOS is put before a prompt: packed pretraining windows start anywhere in
the stream and sft pairs start with their text, so a bare record start is what the model saw.
Truncations and why samples ended are counted in ``Generator.stats``.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gocoder_assets.categorized_records.serialize import MARKERS
from gocoder_assets.tokenizer_model.encode import RecordCodec
from gocoder_assets.tokenizer_model.train import load_processor

StopFn = Callable[[str], bool]


def prompt_seed(seed: int, prompt: str) -> int:
    """The RNG seed of one prompt: a function of the run's seed and the prompt text only (not its position)."""
    digest = hashlib.sha256(f"{seed}\0{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def filter_top_p(probs: Any, top_p: float) -> Any:
    """``probs`` (rows × vocab) with every token outside each row's nucleus set to 0 (not renormalized).

    A token is kept when the probability of the tokens ranked above it is below ``top_p``; so the most
    likely token always stays and ``top_p`` → 0 is greedy.
    """
    import torch  # noqa: PLC0415

    if top_p >= 1.0:
        return probs
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    above = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(above >= top_p, 0.0)  # ``above`` of the first is exactly 0
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs)


class Generator:
    """A checkpoint in eval mode plus its codec; ``complete`` samples continuations. See the module docstring."""

    def __init__(self, hf_dir: Path, device: str = "cpu", *, dtype: str = "float32") -> None:
        import torch  # noqa: PLC0415
        from transformers import AutoModelForCausalLM  # noqa: PLC0415

        hf_dir = Path(hf_dir)
        if not (hf_dir / "config.json").is_file():
            raise FileNotFoundError(f"{hf_dir} is not a Hugging Face model dir (no config.json)")
        if not (hf_dir / "tokenizer.model").is_file():
            raise FileNotFoundError(f"{hf_dir} has no tokenizer.model: the checkpoint must carry its tokenizer")
        self.device = torch.device(device)
        self.model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=getattr(torch, dtype)).to(self.device).eval()
        self.model.requires_grad_(False)
        self.codec = RecordCodec(load_processor(hf_dir), MARKERS)
        self.context: int = int(self.model.config.max_position_embeddings)
        self.eos_id = self.codec.eos_id()
        # prompts, samples, prompts_truncated, prompt_tokens_dropped, and per computed row (greedy computes one
        # row for all its samples) why it ended: ended:eos, ended:stop, ended:length.
        self.stats: collections.Counter[str] = collections.Counter()
        self._triggers: dict[str, list[bool]] = {}

    def encode_prompt(self, prompt: str, max_new_tokens: int) -> list[int]:
        """The prompt's ids, cut from the left to leave room for ``max_new_tokens`` in the context (counted)."""
        keep = self.context - max_new_tokens
        ids = self.codec.encode_one(prompt)
        if len(ids) > keep:
            self.stats["prompts_truncated"] += 1
            self.stats["prompt_tokens_dropped"] += len(ids) - keep
            ids = ids[len(ids) - keep :]
        if not ids:
            raise ValueError("empty prompt: there is nothing to continue")
        return ids

    def triggers(self, stop_on: str | None) -> list[bool] | None:
        """Per id: does generating it consult ``stop``? Its text holds a ``stop_on`` character, or it is a marker.

        None (for ``stop_on=None``) consults ``stop`` after every token. A plain list, not a tensor: it is
        read once per generated token, and on a GPU a tensor lookup would be a device sync each time.
        """
        if stop_on is None:
            return None
        if stop_on not in self._triggers:
            markers = set(self.codec.marker_ids.values())
            vocab = int(self.model.config.vocab_size)
            self._triggers[stop_on] = [i in markers or any(c in self.codec.decode([i]) for c in stop_on)
                                       for i in range(vocab)]  # fmt: skip
        return self._triggers[stop_on]

    def complete(
        self,
        prompts: Sequence[str],
        *,
        samples: int,
        temperature: float,
        top_p: float,
        seed: int,
        max_new_tokens: int,
        stop: StopFn | None = None,
        stop_on: str | None = "\n",
    ) -> list[list[str]]:
        """``samples`` stored-form continuations of each stored-form prompt (EOS itself is not part of a text).

        A sample ends at EOS, after ``max_new_tokens`` ids, or when ``stop(text_so_far)`` is true, asked
        each time a trigger token arrives (``triggers(stop_on)``); the text then ends with that token.
        """
        if samples < 1 or max_new_tokens < 1 or temperature < 0 or not 0 < top_p <= 1:
            raise ValueError(f"bad sampling settings: {samples=} {max_new_tokens=} {temperature=} {top_p=}")
        if max_new_tokens >= self.context:
            raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in context {self.context}")
        out = []
        for prompt in prompts:
            ids = self.encode_prompt(prompt, max_new_tokens)
            rows = 1 if temperature == 0 else samples
            texts = self._sample(ids, rows, temperature, top_p, prompt_seed(seed, prompt), max_new_tokens,
                                 stop, stop_on)  # fmt: skip
            out.append(texts * samples if rows == 1 else texts)
            self.stats["prompts"] += 1
            self.stats["samples"] += samples
        return out

    def _next_ids(self, logits: Any, temperature: float, top_p: float, rng: Any) -> Any:
        import torch  # noqa: PLC0415

        logits = logits.float()
        if temperature == 0:
            return logits.argmax(dim=-1)
        probs = filter_top_p(torch.softmax(logits / temperature, dim=-1), top_p)
        return torch.multinomial(probs, 1, generator=rng).squeeze(-1)

    def _forward(self, ids: Any, cache: Any) -> Any:
        """Last-position logits of ``ids`` after what ``cache`` holds; ``cache`` grows in place.

        The cache goes in positionally: transformers 5.23 names the argument ``past_key_values``, 5.24
        ``cache`` (the pin allows both); it is the fourth in both.
        """
        return self.model(ids, None, None, cache, use_cache=True, logits_to_keep=1).logits[:, -1, :]

    def _sample(self, prompt_ids: list[int], rows: int, temperature: float, top_p: float, seed: int,
                max_new_tokens: int, stop: StopFn | None, stop_on: str | None) -> list[str]:  # fmt: skip
        import torch  # noqa: PLC0415
        from transformers import DynamicCache  # noqa: PLC0415

        rng = torch.Generator(device=self.device).manual_seed(seed)
        triggers = self.triggers(stop_on)
        generated: list[list[int]] = [[] for _ in range(rows)]
        live = list(range(rows))  # sample index of each row still in the batch
        with torch.inference_mode():
            cache = DynamicCache(config=self.model.config)
            logits = self._forward(torch.tensor([prompt_ids], device=self.device), cache).expand(rows, -1)
            if rows > 1:
                cache.batch_repeat_interleave(rows)
            for step in range(max_new_tokens):
                next_ids = self._next_ids(logits, temperature, top_p, rng)
                keep = []
                for row, token in enumerate(next_ids.tolist()):
                    sample = live[row]
                    if token == self.eos_id:
                        self.stats["ended:eos"] += 1
                        continue
                    generated[sample].append(token)
                    asks = stop is not None and (triggers is None or triggers[token])
                    if asks and stop(self.codec.decode(generated[sample])):
                        self.stats["ended:stop"] += 1
                        continue
                    keep.append(row)
                if not keep or step == max_new_tokens - 1:
                    self.stats["ended:length"] += len(keep)
                    break
                if len(keep) < len(live):
                    index = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(index)
                    next_ids = next_ids[index]
                    live = [live[row] for row in keep]
                logits = self._forward(next_ids[:, None], cache)
        return [self.codec.decode(ids) for ids in generated]
