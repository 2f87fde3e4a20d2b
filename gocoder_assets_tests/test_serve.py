"""Serving: the exported GGUF behind llama-cpp-python's OpenAI-compatible server, and the HF directory.

The server is the real one (``python -m llama_cpp.server``), talked to through the official ``openai``
client and LangChain's ``langchain_openai.OpenAI`` completion model, as the README's "Serving the model"
shows. Greedy completions must equal transformers' greedy generation from the HF checkpoint, so what is
served is the trained model, tokenized as in training. The chat endpoint is not tested: the GGUF has no
chat template, so llama-cpp-python falls back to a Llama-2 ``[INST]`` format this base model never saw.

llama-cpp-python compiles llama.cpp on install (the ``serve`` extra), so the server tests skip when it,
``openai`` or ``langchain_openai`` is missing, unless ``GOCODER_REQUIRE_LLAMA_CPP=1`` (CI), where a missing
package fails. The HF-directory test (what ``vllm serve data/checkpoint/hf`` loads) needs none of them.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from gocoder_assets.tokenizer_model.encode import RecordCodec
from gocoder_assets_tests.tiny_model import TinyModel, build_tiny_model

PROMPT = "package main\n\nfunc "
MAX_TOKENS = 8
MARKER_PROMPT = '<CODE><REPO>acme/x\n<FILE path="a.go">\n'
STARTUP_TIMEOUT_S = 120.0


def _require(module: str) -> ModuleType:
    if os.environ.get("GOCODER_REQUIRE_LLAMA_CPP") == "1":
        return importlib.import_module(module)  # CI: a missing package is a failure, not a skip
    return pytest.importorskip(module, reason=f"{module} not installed (pip install -e '.[serve]')")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _post_json(url: str, body: dict) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def server(tiny: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """``python -m llama_cpp.server`` on a free port, ready (``GET /v1/models`` answers); stopped afterwards."""
    for module in ("llama_cpp.server", "openai", "langchain_openai"):
        _require(module)
    port = _free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(tiny.gguf_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(tiny.context),
        "--n_threads",
        "2",
    ]
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
            try:
                models = _get_json(f"{base}/v1/models")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() - started > STARTUP_TIMEOUT_S:
                pytest.fail(
                    f"llama_cpp.server not ready in {STARTUP_TIMEOUT_S:.0f} s:\n{log_path.read_text(errors='replace')}"
                )
            time.sleep(0.2)
        yield {
            "base": base,
            "model": models["data"][0]["id"],
            "startup_s": time.monotonic() - started,
            "log": log_path,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def _client(server: dict):
    from openai import OpenAI  # noqa: PLC0415

    return OpenAI(base_url=f"{server['base']}/v1", api_key="unused")


def _hf_greedy(tiny: TinyModel, ids: list[int], n: int = MAX_TOKENS) -> str:
    with torch.no_grad():
        out = tiny.model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, pad_token_id=tiny.sp.pad_id())
    return tiny.sp.decode(out[0, len(ids) :].tolist())


def test_hf_directory_loads_and_generates(tiny: TinyModel) -> None:
    """What ``vllm serve data/checkpoint/hf`` loads: the Auto classes, default tokenization (no BOS), generate."""
    tok = AutoTokenizer.from_pretrained(tiny.hf_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny.hf_dir).eval()
    inputs = tok(PROMPT, return_tensors="pt")  # add_special_tokens=True, as vLLM calls it
    assert inputs.input_ids[0].tolist() == tiny.sp.encode(PROMPT)  # no BOS: training data had none
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=MAX_TOKENS, do_sample=False, pad_token_id=tok.pad_token_id)
    new = out[0, inputs.input_ids.shape[1] :]
    assert len(new) == MAX_TOKENS
    text = tok.decode(new, skip_special_tokens=True)
    assert text and text == _hf_greedy(tiny, tiny.sp.encode(PROMPT))


def test_models_endpoint(server: dict, tiny: TinyModel) -> None:
    models = _client(server).models.list()
    assert [m.id for m in models.data] == [server["model"]]
    assert server["model"] == str(tiny.gguf_path)  # the default alias is the --model path


def test_openai_completion(server: dict, tiny: TinyModel) -> None:
    response = _client(server).completions.create(
        model=server["model"], prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0
    )
    choice = response.choices[0]
    assert choice.text.strip() and choice.finish_reason == "length"
    assert response.usage.completion_tokens == MAX_TOKENS
    assert response.usage.prompt_tokens == len(tiny.sp.encode(PROMPT))  # no BOS added (add_bos_token false)


def test_greedy_completion_equals_transformers(server: dict, tiny: TinyModel) -> None:
    # The server's default repeat_penalty is 1.1; 1.0 makes temperature 0 plain argmax, as HF's do_sample=False.
    response = _client(server).completions.create(
        model=server["model"],
        prompt=PROMPT,
        max_tokens=MAX_TOKENS,
        temperature=0,
        extra_body={"repeat_penalty": 1.0},
    )
    assert response.choices[0].text == _hf_greedy(tiny, tiny.sp.encode(PROMPT))


def test_openai_streaming_completion(server: dict) -> None:
    client = _client(server)
    params = {"model": server["model"], "prompt": PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0}
    chunks = [c.choices[0].text for c in client.completions.create(stream=True, **params) if c.choices]
    assert len(chunks) > 1 and "".join(chunks).strip()
    assert "".join(chunks) == client.completions.create(**params).choices[0].text


def test_marker_strings_in_a_completion_prompt_are_marker_ids(server: dict, tiny: TinyModel) -> None:
    """llama-cpp-python tokenizes a completion prompt with special parsing on (no ``suffix``): markers are ids."""
    sp = tiny.sp
    marker = RecordCodec(sp).marker_ids
    as_markers = [marker["<CODE>"], marker["<REPO>"], *sp.encode("acme/x\n"), marker["<FILE"]]
    as_markers += sp.encode(' path="a.go">\n')
    as_text = sp.encode(MARKER_PROMPT)
    assert len(as_text) > len(as_markers)
    assert _post_json(f"{server['base']}/extras/tokenize", {"input": MARKER_PROMPT})["tokens"] == as_markers
    assert _post_json(f"{server['base']}/extras/tokenize", {"input": PROMPT})["tokens"] == sp.encode(PROMPT)

    response = _client(server).completions.create(
        model=server["model"],
        prompt=MARKER_PROMPT,
        max_tokens=MAX_TOKENS,
        temperature=0,
        extra_body={"repeat_penalty": 1.0},
    )
    assert response.usage.prompt_tokens == len(as_markers)
    want, other = _hf_greedy(tiny, as_markers), _hf_greedy(tiny, as_text)
    assert want != other  # the two readings continue differently, so the comparison decides
    assert response.choices[0].text == want


def test_langchain_completion_model(server: dict) -> None:
    from langchain_openai import OpenAI  # noqa: PLC0415

    llm = OpenAI(
        model=server["model"], base_url=f"{server['base']}/v1", api_key="unused", temperature=0, max_tokens=MAX_TOKENS
    )
    text = llm.invoke(PROMPT)
    assert isinstance(text, str) and text.strip()
    assert (
        text
        == _client(server)
        .completions.create(model=server["model"], prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0)
        .choices[0]
        .text
    )
