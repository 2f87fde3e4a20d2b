"""Ollama Modelfiles: plain completion for the base model, the instruction format for the fine-tuned one.

Ollama reads a Modelfile with its own small parser (ollama/ollama ``parser/parser.go``) and renders TEMPLATE
with Go's ``text/template`` (``template/template.go``: ``missingkey=zero``; when the template names neither
``.Messages`` nor ``.Response`` it appends ``{{ .Response }}`` and, for a prompt, cuts the output there; a
``/api/generate`` prompt reaches the template as ``.Prompt``). The parser's quoting rules, which the
writers here respect rather than hope for:

- A value ends at the first newline at which the text read so far, trimmed, is a complete value: a bare
  word, ``"…"`` or ``\"\"\"…\"\"\"``. Until then spaces, tabs and newlines are kept as they are, so a
  multi-line value is only safe triple-quoted, with no ``\"\"\"`` inside (one before a newline ends it).
- There is no escape character: ``\\"`` is a backslash and a quote. One-line values (stop strings) are
  written ``"…"`` and refused if they hold a quote, a backslash or a newline, rather than be misread.
- Other non-printable characters are dropped, so a value must not contain any.

The base model's ``TEMPLATE "{{ .Prompt }}"`` passes the prompt through untouched: it is a completion model
trained on raw records, and a chat template would wrap prompts in text it never saw. The SFT model's
TEMPLATE is the instruction format it was fine-tuned on (``sft_format.json``, written by sft_checkpoint),
with the instruction filled in and the input left to ``.Prompt``: ``ollama run gocoder-sft "<change>"``
sends exactly the prompt it was trained to answer.
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

from gocoder_assets.storage import atomic_file

SFT_FORMAT_FILE = "sft_format.json"  # in the fine-tuned HF directory, next to config.json
PLAIN_TEMPLATE = "{{ .Prompt }}"
_TRIPLE = '"""'


@dataclass(frozen=True)
class InstructionFormat:
    """The fine-tuning prompt: ``prompt_template`` has ``{instruction}`` and ``{input}`` (``str.format`` fields)."""

    instruction: str
    prompt_template: str

    def render(self, input_text: str) -> str:
        """The prompt the model was trained on (what ``sft_pairs.pairs.format_prompt`` builds)."""
        return self.prompt_template.format(instruction=self.instruction, input=input_text)

    def parts(self) -> list[tuple[str, str | None]]:
        """(literal text, field name or None) as ``str.format`` reads the template, consecutive text merged.

        ``string.Formatter.parse`` splits text at every ``{{``/``}}`` escape; merging matters because a Go
        action opener ``{{`` can span two of its pieces (``{{{{`` gives ``{`` then ``{``).
        """
        out: list[tuple[str, str | None]] = []
        for literal, field_name, spec, conversion in string.Formatter().parse(self.prompt_template):
            if field_name is not None and (spec or conversion):
                raise ValueError(f"prompt_template field {{{field_name}}} has a format spec or conversion")
            if out and out[-1][1] is None:
                literal = out.pop()[0] + literal
            out.append((literal, field_name))
        return out

    def go_template(self) -> str:
        """The same prompt as an Ollama (Go ``text/template``) TEMPLATE with ``{input}`` → ``{{ .Prompt }}``.

        The template is parsed as ``str.format`` parses it, so ``{{``/``}}`` escapes mean what they meant
        there; literal text that would open a Go action (``{{``) is emitted as the action ``{{ "{{" }}``.
        """
        segments, current, names = [], "", set()
        for literal, field_name in self.parts():
            current += literal
            if field_name == "instruction":
                current += self.instruction
            elif field_name == "input":
                segments.append(current)
                current = ""
            elif field_name is not None:
                raise ValueError(f"prompt_template has an unknown field {{{field_name}}} (instruction, input)")
            names.add(field_name)
        if "input" not in names:
            raise ValueError("prompt_template has no {input}: the prompt would never reach the model")
        # Escaped per whole text run between inputs, so a "{{" spanning template text and instruction is caught.
        return PLAIN_TEMPLATE.join(_go_literal(seg) for seg in [*segments, current])

    def stop(self) -> str | None:
        """The header a new pair starts with (``### Instruction:``): a model that writes it has finished."""
        parts = self.parts()
        head = parts[0][0].strip() if parts else ""
        return head or None


def _go_literal(text: str) -> str:
    """``text`` as Go template text. Only ``{{`` opens an action (``}}`` outside one is plain text); a final
    ``{`` is escaped too, since the ``{{ .Prompt }}`` after it would make ``{{{``, an action opened one early.
    """
    out = '{{ "{{" }}'.join(text.split("{{"))
    return out[:-1] + '{{ "{" }}' if out.endswith("{") else out


def read_instruction_format(hf_dir: Path) -> InstructionFormat:
    """``sft_format.json`` of a fine-tuned checkpoint, validated (a clear error, never a wrong template)."""
    path = Path(hf_dir) / SFT_FORMAT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: is {hf_dir} an sft_checkpoint output?")
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), str) for k in ("instruction", "prompt_template")):
        raise ValueError(f"{path} needs string fields 'instruction' and 'prompt_template'")
    fmt = InstructionFormat(raw["instruction"], raw["prompt_template"])
    fmt.go_template()  # validate the fields now
    return fmt


def _check_printable(kind: str, value: str) -> None:
    bad = sorted({c for c in value if not (c.isprintable() or c in " \t\r\n")})
    if bad:
        raise ValueError(f"{kind} has characters Ollama's Modelfile parser drops: {bad!r}")


def quote_line(value: str) -> str:
    """A one-line value (a stop string): ``"…"``, which Ollama unquotes without escape processing.

    ``json.dumps`` is used as the quoter only where its output is exactly ``"`` + value + ``"`` (no escapes).
    """
    _check_printable("value", value)
    quoted = json.dumps(value, ensure_ascii=False)
    if quoted != f'"{value}"' or '"' in value:
        raise ValueError(f"{value!r} cannot be a one-line Modelfile value (quotes, backslashes or newlines)")
    return quoted


def quote_block(value: str) -> str:
    """Any value as Ollama reads it back byte for byte: ``\"\"\"…\"\"\"`` (multi-line allowed, no ``\"\"\"`` inside)."""
    _check_printable("value", value)
    if _TRIPLE in value:
        raise ValueError(f'a Modelfile value cannot contain """: {value!r}')
    return f"{_TRIPLE}{value}{_TRIPLE}"


def write_modelfile(
    gguf_path: Path,
    out_path: Path,
    num_ctx: int,
    *,
    temperature: float = 0.2,
    template: str | None = None,
    stops: Sequence[str] = (),
) -> str:
    """Write an Ollama Modelfile for ``gguf_path``; returns its text.

    The EOS stop string and the context limit are read from the GGUF itself, so the Modelfile cannot
    disagree with the model it points at. FROM is relative to the Modelfile, as Ollama resolves it.
    ``template`` None is ``TEMPLATE "{{ .Prompt }}"`` (plain completion, the base model); otherwise it is a
    Go template written triple-quoted, and ``stops`` are further stop strings after EOS.
    """
    gguf_path, out_path = Path(gguf_path), Path(out_path)
    reader = gguf.GGUFReader(gguf_path)

    def field(key: str) -> Any:
        f = reader.get_field(key)
        if f is None:
            raise ValueError(f"{gguf_path} has no {key}")
        return f

    eos_piece = field("tokenizer.ggml.tokens").contents(field("tokenizer.ggml.eos_token_id").contents())
    n_ctx_train = field("llama.context_length").contents()
    if not 0 < num_ctx <= n_ctx_train:
        raise ValueError(f"num_ctx {num_ctx} outside 1..{n_ctx_train} (the model's context_length)")
    rel = os.path.relpath(gguf_path.resolve(), out_path.parent.resolve())
    ref = rel if rel.startswith("..") else f"./{rel}"
    lines = [f"FROM {ref}", f"PARAMETER num_ctx {num_ctx}"]
    lines += [f"PARAMETER stop {quote_line(s)}" for s in dict.fromkeys([eos_piece, *stops])]
    lines.append(f"PARAMETER temperature {temperature}")
    lines.append(f'TEMPLATE "{PLAIN_TEMPLATE}"' if template is None else f"TEMPLATE {quote_block(template)}")
    text = "\n".join(lines) + "\n"
    with atomic_file(out_path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return text
