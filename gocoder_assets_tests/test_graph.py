"""End to end: the assets materialized by Dagster on a real slice of Go code."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import gguf
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from gocoder_assets.categorized_records.serialize import MARKERS, readable, render_code
from gocoder_assets.gguf_model.assets import SERVED_VARIANT, VARIANT_NAMES
from gocoder_assets.gguf_model.export import gguf_name
from gocoder_assets.packed_shards.shard_format import open_shard, read_header
from gocoder_assets.partitions import REPOS
from gocoder_assets.repo_list.repos import read_repo_list
from gocoder_assets.sources.goroot import default_goroot
from gocoder_assets.tokenizer_model.encode import RecordCodec
from gocoder_assets.tokenizer_model.train import load_processor
from gocoder_assets_tests.conftest import GO_SLICE, Built

ASSETS = [
    "repo_list", "raw_prs", "categorized_records", "tokenizer_model", "packed_shards", "checkpoint", "gguf_model",
    "license_manifest", "model_card",
]  # fmt: skip
PER_REPO = ["raw_prs", "categorized_records", "packed_shards"]


def records(built: Built) -> list[dict]:
    keys = read_repo_list(built.layout.repo_list_file)
    return [row for k in keys for row in pq.read_table(built.layout.categorized_file(k)).to_pylist()]


def test_every_asset_and_partition_is_materialized(built: Built) -> None:
    repos = read_repo_list(built.layout.repo_list_file)
    assert set(repos) == {f"golang/go/src/{p}" for p in GO_SLICE} | {"acme/widget"}
    assert set(built.instance.get_dynamic_partitions(REPOS)) == set(repos)
    for asset in ASSETS:
        assert built.instance.get_latest_materialization_event(dg.AssetKey(asset)) is not None, asset
    for asset in PER_REPO:
        assert built.instance.get_materialized_partitions(dg.AssetKey(asset)) == set(repos), asset


def test_repo_list_provenance(built: Built) -> None:
    repos = read_repo_list(built.layout.repo_list_file)
    widget = repos["acme/widget"]
    assert widget.license_spdx == "MIT" and widget.url == "https://github.com/acme/widget.git"
    assert len(widget.commit_sha) == 40 and widget.default_branch == "main"
    errors = repos["golang/go/src/errors"]
    assert errors.license_spdx == "BSD-3-Clause" and errors.commit_sha.startswith("go1.")
    assert errors.url.endswith("/src/errors") and errors.fetched_at


def test_categories_and_provenance(built: Built) -> None:
    rows = records(built)
    counts = {c: sum(r["category"] == c for r in rows) for c in ("NAT", "MIX", "CODE")}
    assert all(n > 0 for n in counts.values()), counts
    for r in rows:
        for field in ("repo", "license", "commit_sha", "path", "fetched_at", "url"):
            assert r[field], (field, r["record_id"])
        assert readable(r["text"]).startswith(f"<{r['category']}><REPO>")
        assert r["stars"] is None or r["stars"] >= 0
    assert not any("/testdata/" in r["path"] for r in rows)  # excluded directory


def test_change_records_serialize_the_pr(built: Built) -> None:
    change = next(r for r in records(built) if r["pr_number"] == 7)
    assert change["category"] == "MIX" and change["path"] == "widget.go"
    text = readable(change["text"])
    assert (
        "<PR_TITLE>Grow widgets\n<PR_STATUS>merged\n<PR_BODY>Four is the new three:\nmeasured on real widgets.\n"
        in text
    )
    assert '<FILE path="widget.go" change="modified">\n@@ ' in text
    before, after = text.split("<BEFORE>\n")[1].split("<AFTER>\n")
    assert "const Size = 3" in before and "const Size = 4" in after.split("</FILE>")[0]


def held_out_go_files() -> list[Path]:
    src = default_goroot() / "src"
    files = sorted((src / "strings").glob("*.go")) + sorted((src / "bufio").glob("*.go"))
    assert not set(GO_SLICE) & {"strings", "bufio"} and len(files) > 20
    return files


def test_tokenizer_round_trips_held_out_go_exactly(built: Built) -> None:
    codec = RecordCodec(load_processor(built.layout.tokenizer_dir))
    tricky = '\tx := "tab\\t"\n\n  \t // ünïcödé 日本語 emoji 🦫\r\n<FILE path="a b.go">\n</FILE>'
    for path in held_out_go_files():
        record = render_code("x/y", path.name, path.read_text(encoding="utf-8"))
        assert codec.decode(codec.encode_one(record)) == record, path
    ids = codec.encode_one(tricky)
    assert codec.decode(ids) == tricky and not set(ids) & set(codec.marker_ids.values())
    meta = built.metadata("tokenizer_model")
    assert meta["round_trip_exact_pct"] == 100.0 and meta["unk_rate"] == 0.0


def test_markers_are_single_tokens_in_both_tokenizers(built: Built) -> None:
    sp = load_processor(built.layout.tokenizer_dir)
    codec = RecordCodec(sp)
    hf = AutoTokenizer.from_pretrained(built.layout.checkpoint_dir)
    for marker in MARKERS:  # prompting: the HF tokenizer maps each marker string to the marker's id
        assert hf.encode(marker, add_special_tokens=False) == [codec.marker_ids[marker]], marker
    text = held_out_go_files()[0].read_text(encoding="utf-8")
    assert hf.encode(text, add_special_tokens=False) == sp.encode(text)
    assert hf.decode(sp.encode(text)) == text
    record = render_code("x/y", "a.go", text)
    assert hf.encode(readable(record), add_special_tokens=False) == codec.encode_one(record)


def test_shards_hold_exactly_the_tokenized_records(built: Built) -> None:
    sp = load_processor(built.layout.tokenizer_dir)
    codec = RecordCodec(sp)
    for key in read_repo_list(built.layout.repo_list_file):
        texts = pq.read_table(built.layout.categorized_file(key), columns=["text"]).column(0).to_pylist()
        expected = [t for ids in codec.encode(texts) for t in [*ids, sp.eos_id()]]
        tokens = open_shard(built.layout.shard_file(key))
        manifest = json.loads(built.layout.shard_manifest(key).read_text())
        assert read_header(built.layout.shard_file(key)) == len(expected) == manifest["tokens"], key
        np.testing.assert_array_equal(np.asarray(tokens), np.asarray(expected, dtype=np.uint16))
        assert int(tokens.max()) < sp.vocab_size()


def test_each_repo_is_wholly_in_train_or_val(built: Built) -> None:
    splits = {}
    for key in read_repo_list(built.layout.repo_list_file):
        splits[key] = json.loads(built.layout.shard_manifest(key).read_text())["split"]
    assert set(splits.values()) == {"train", "val"}  # < 20 repos: at least one in val
    meta = built.metadata("checkpoint")
    assert meta["train_shards"] + meta["val_shards"] == len(splits)


def test_training_lowers_the_loss(built: Built) -> None:
    meta = built.metadata("checkpoint")
    assert meta["steps"] == 40
    assert meta["final_train_loss"] < meta["initial_loss"]
    assert np.isfinite(meta["val_loss"])
    assert (built.layout.checkpoint_dir / "model.safetensors").exists()
    assert list(built.layout.tensorboard_dir.rglob("events.out.tfevents.*"))


def test_gguf_matches_the_checkpoint(built: Built) -> None:
    path = built.layout.gguf_dir / "gocoder.gguf"
    weights = load_file(built.layout.checkpoint_dir / "model.safetensors")
    reader = gguf.GGUFReader(path)
    shapes = {t.name: tuple(int(d) for d in reversed(t.shape)) for t in reader.tensors}
    assert shapes == {gguf_name(k): v.shape for k, v in weights.items()}
    # Values: an independent GGUF loader (transformers undoes llama.cpp's q/k permutation).
    from_gguf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).state_dict()
    for name, value in weights.items():
        np.testing.assert_array_equal(from_gguf[name].numpy(), value, err_msg=name)
    original = AutoModelForCausalLM.from_pretrained(built.layout.checkpoint_dir)
    ids = torch.tensor([load_processor(built.layout.tokenizer_dir).encode("func main() {\n\treturn\n}\n")])
    with torch.no_grad():
        torch.testing.assert_close(
            AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)(ids).logits,
            original(ids).logits,
        )
    modelfile = (built.layout.gguf_dir / "Modelfile").read_text()
    assert f"FROM ./{VARIANT_NAMES[SERVED_VARIANT]}" in modelfile and 'TEMPLATE "{{ .Prompt }}"' in modelfile
    for name in VARIANT_NAMES.values():  # every variant readable by a server running as another user
        assert (built.layout.gguf_dir / name).stat().st_mode & 0o004, name


@pytest.mark.parametrize("asset", ["raw_prs", "categorized_records", "packed_shards"])
def test_per_partition_numbers_are_in_metadata(built: Built, asset: str) -> None:
    table = built.metadata(asset)["per_partition"]
    for key in read_repo_list(built.layout.repo_list_file):
        assert f"| {key} |" in table
