"""A tiny trained tokenizer + random ``LlamaForCausalLM`` laid out like the pipeline's outputs.

``build_tiny_model(root)`` writes ``root/hf`` (the shape of ``data/checkpoint/hf``: weights, config and the
tokenizer files ``tokenizer.model``/``tokenizer.json``/``tokenizer_config.json``) and
``root/gguf/gocoder.gguf`` + ``Modelfile`` (the shape of ``data/gguf_model``), in seconds on a CPU.

The weights are random, except that the output rows of every non-NORMAL piece (``<unk> <s> </s> <pad>``,
the markers, byte pieces) are zero: their logit is then exactly 0 while some normal piece's is positive,
so greedy decoding never stops at EOS, never emits a marker (which detokenizes to nothing) and never a
lone UTF-8 continuation byte. Greedy output is therefore non-empty text, and deterministic enough that
llama.cpp and transformers must produce the same continuation.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import sentencepiece as spm
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from gocoder_assets.categorized_records.serialize import MARKERS, render_code
from gocoder_assets.gguf_model.export import NORMAL, export_gguf, piece_types, write_modelfile
from gocoder_assets.tokenizer_model.train import MODEL_FILE, TokenizerOptions, record_chunks, train_tokenizer

CONTEXT = 64
N_HEAD, N_KV = 4, 2


@dataclasses.dataclass
class TinyModel:
    hf_dir: Path
    gguf_path: Path
    modelfile: Path
    sp: spm.SentencePieceProcessor
    model: LlamaForCausalLM
    context: int = CONTEXT


def go_records(n_funcs: int = 200) -> list[str]:
    """Stored CODE records (markers as sentinels) of generated Go."""
    rng = random.Random(0)
    names = ["handler", "ctx", "err", "value", "reader", "buf", "conn", "server"]
    out = []
    for i in range(n_funcs):
        a, b = rng.choice(names), rng.choice(names)
        body = [f'package {a}\n\nimport "fmt"\n\n', f"func {a.title()}{i}({b} int) (string, error) {{\n"]
        body.append(f'\tif {b} > {rng.randint(0, 99)} {{\n\t\treturn "", fmt.Errorf("{a}: %d", {b})\n\t}}\n')
        body.append(f'\tfor i := 0; i < {b}; i++ {{\n\t\t{a}Count += i\n\t}}\n\treturn "{a}", nil\n}}\n')
        out.append(render_code(f"example/{a}", f"pkg/{a}_{i}.go", "".join(body)))
    return out


def train_tiny_tokenizer(out_dir: Path, vocab_size: int = 400) -> Path:
    """A SentencePiece model (markers as control symbols) plus its HF files in ``out_dir``; its path."""
    lines = [line for record in go_records() for line in record_chunks(record, 1, 16384) if line.strip()]
    train_tokenizer(lines, out_dir, list(MARKERS), TokenizerOptions(vocab_size=vocab_size))
    return out_dir / MODEL_FILE


def tiny_llama(sp: spm.SentencePieceProcessor, *, tied: bool = False, context: int = CONTEXT) -> LlamaForCausalLM:
    """A random 2-layer GQA Llama for ``sp`` (random norms, so a swapped or missing norm changes the logits)."""
    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=N_HEAD,
        num_key_value_heads=N_KV,
        intermediate_size=128,
        vocab_size=sp.get_piece_size(),
        max_position_embeddings=context,
        rms_norm_eps=1e-5,
        bos_token_id=sp.bos_id(),
        eos_token_id=sp.eos_id(),
        pad_token_id=sp.pad_id(),
        tie_word_embeddings=tied,
    )
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
        if not tied:  # logit exactly 0 for non-NORMAL pieces: greedy text never stops at EOS/markers/bytes
            not_normal = torch.tensor([i for i, kind in enumerate(piece_types(sp)) if kind != NORMAL])
            model.lm_head.weight[not_normal] = 0.0
    return model


def build_tiny_model(root: Path, *, vocab_size: int = 400, dtype: str = "f32") -> TinyModel:
    hf_dir = Path(root) / "hf"
    hf_dir.mkdir(parents=True)
    sp = spm.SentencePieceProcessor(model_file=str(train_tiny_tokenizer(hf_dir, vocab_size)))
    model = tiny_llama(sp)
    model.save_pretrained(hf_dir, safe_serialization=True)

    gguf_path = Path(root) / "gguf" / "gocoder.gguf"
    export_gguf(hf_dir, hf_dir / MODEL_FILE, gguf_path, name="gocoder-tiny", dtype=dtype)
    modelfile = gguf_path.parent / "Modelfile"
    write_modelfile(gguf_path, modelfile, CONTEXT)
    return TinyModel(hf_dir=hf_dir, gguf_path=gguf_path, modelfile=modelfile, sp=sp, model=model)
