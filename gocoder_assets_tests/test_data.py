"""Training data: the token stream over indexed shards, curriculum stages and the window sampler.

The planted corpus gives every non-EOS token a unique id (its rank in the corpus), so a sampled
window can be traced back to its exact positions and categories without trusting the sampler.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from gocoder_assets.checkpoint.data import DEFAULT_STAGES, Stage, TokenStream, WindowSampler, parse_stages
from gocoder_assets.packed_shards.shard_format import CATEGORIES, ShardFormatError, index_path
from gocoder_assets_tests.shards import make_shard

EOS = 2
CTX = 32
# Very unequal categories: CODE is ~20x NAT, as in a real corpus.
SIZES = {"NAT": 1_500, "MIX": 6_000, "CODE": 30_000}


def planted_records(seed: int = 0) -> list[list[tuple[str, list[int]]]]:
    """Four shards of randomly interleaved records (5-80 tokens) with unique non-EOS token ids."""
    rng = np.random.default_rng(seed)
    pool = []
    for category, size in SIZES.items():
        left = size
        while left > 0:
            n = min(left, int(rng.integers(5, 80)))
            pool.append((category, n))
            left -= n
    order = rng.permutation(len(pool))
    next_id, shards = 3, [[], [], [], []]
    for i in order:
        category, n = pool[i]
        shards[int(rng.integers(0, 4))].append((category, list(range(next_id, next_id + n))))
        next_id += n
    return shards


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[TokenStream, list[list[tuple[str, list[int]]]]]:
    root = tmp_path_factory.mktemp("stream")
    shards = planted_records()
    paths = [make_shard(root / f"repo{i}" / "tokens.bin", records, EOS) for i, records in enumerate(shards)]
    return TokenStream(paths), shards


def flat(shards: list[list[tuple[str, list[int]]]]) -> tuple[np.ndarray, np.ndarray]:
    """The expected concatenation and each position's category code, built from the records themselves."""
    tokens, codes = [], []
    for records in shards:
        for category, ids in records:
            tokens += [*ids, EOS]
            codes += [CATEGORIES.index(category)] * (len(ids) + 1)
    return np.array(tokens), np.array(codes, dtype=np.uint8)


def test_stream_reads_across_shards_with_categories(planted) -> None:
    stream, shards = planted
    tokens, codes = flat(shards)
    assert stream.num_tokens == len(tokens)
    np.testing.assert_array_equal(stream.read(0, stream.num_tokens), tokens)
    spans = stream.shard_spans()
    edge = spans[1][0]
    np.testing.assert_array_equal(stream.read(edge - 5, 10), tokens[edge - 5 : edge + 5])  # crosses a shard end
    assert [n for _, n in spans] == [sum(len(ids) + 1 for _, ids in records) for records in shards]
    assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(spans))
    positions = np.arange(stream.num_tokens)
    np.testing.assert_array_equal(stream.categories_of(positions), codes)
    records_per_category = {c: sum(1 for rs in shards for cat, _ in rs if cat == c) for c in CATEGORIES}
    assert stream.tokens_by_category == {c: SIZES[c] + records_per_category[c] for c in CATEGORIES}
    assert sum(len(chunk) for _, chunk in stream.chunks()) == stream.num_tokens
    with pytest.raises(IndexError):
        stream.read(stream.num_tokens - 3, 4)
    with pytest.raises(IndexError):
        stream.categories_of(np.array([stream.num_tokens]))


def test_category_streams_are_their_records_concatenated(planted) -> None:
    stream, shards = planted
    for category in CATEGORIES:
        expected = np.array([t for rs in shards for c, ids in rs if c == category for t in [*ids, EOS]])
        got = stream.read_category(category, 0, stream.tokens_by_category[category])
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(stream.read_category(category, 7, 300), expected[7:307])


def test_stream_refuses_a_shard_without_index(tmp_path: Path) -> None:
    shard = make_shard(tmp_path / "old" / "tokens.bin", [("CODE", [5, 6])], EOS)
    index_path(shard).unlink()
    with pytest.raises(ShardFormatError, match="re-materialize packed_shards"):
        TokenStream([shard])


def test_parse_stages_normalises_and_explains_mistakes() -> None:
    stages = parse_stages([{"tokens": 1_000, "weights": {"NAT": 1, "CODE": 3}}, {"weights": None}])
    assert stages == [Stage(1_000, {"NAT": 0.25, "MIX": 0.0, "CODE": 0.75}), Stage(None, None)]
    assert parse_stages([]) == list(DEFAULT_STAGES) == [Stage(tokens=None, weights=None)]
    bad = {
        "unknown categories": [{"weights": {"PROSE": 1}}],
        "finite and >= 0": [{"weights": {"NAT": -1, "CODE": 2}}],
        "all zero": [{"weights": {"NAT": 0, "CODE": 0}}],
        "positive number": [{"tokens": 0}],
        "only the last stage": [{"weights": {"NAT": 1}}, {"tokens": 5}],
        "unknown keys": [{"tokens": 5, "weight": {"NAT": 1}}],
    }
    for message, raw in bad.items():
        with pytest.raises(ValueError, match=message):
            parse_stages(raw)


def trace(stream: TokenStream, window: np.ndarray, position_of: np.ndarray) -> np.ndarray:
    """Category codes of a window's targets, located via a non-EOS token's unique id."""
    t = int(np.flatnonzero(window != EOS)[0])
    start = int(position_of[window[t]]) - t
    np.testing.assert_array_equal(stream.read(start, len(window)), window)  # really a slice of the stream
    return stream.categories_of(np.arange(start + 1, start + len(window)))


def shares(codes: np.ndarray) -> np.ndarray:
    return np.bincount(codes, minlength=len(CATEGORIES)) / codes.size


def test_weighted_stage_realises_the_weights(planted) -> None:
    stream, _ = planted
    weights = {"NAT": 0.2, "MIX": 0.3, "CODE": 0.5}
    sampler = WindowSampler(stream, CTX, parse_stages([{"weights": weights}]), seed=1)
    all_tokens = stream.read(0, stream.num_tokens)
    position_of = np.zeros(int(all_tokens.max()) + 1, dtype=np.int64)
    position_of[all_tokens] = np.arange(stream.num_tokens)
    codes = []
    for _ in range(60):
        batch = sampler.next_batch(100, tokens_seen=0)
        assert batch.shape == (100, CTX + 1) and batch.dtype == np.int64
        for window in batch:
            ids = window[window != EOS]
            row = stream.categories_of(position_of[ids])
            assert np.all(row == row[0])  # every token of a weighted window is of one category
            codes.append(np.full(CTX, row[0], dtype=np.uint8))  # EOS tokens belong to their record too
    realised = shares(np.concatenate(codes))
    np.testing.assert_allclose(realised, [weights[c] for c in CATEGORIES], atol=0.02)
    # The natural mix of this corpus is far from the weights, so the test above can fail.
    natural = np.array([stream.tokens_by_category[c] for c in CATEGORIES]) / stream.num_tokens
    assert natural[0] < 0.05 and natural[2] > 0.75


def test_natural_mix_follows_the_corpus(planted) -> None:
    stream, _ = planted
    sampler = WindowSampler(stream, CTX, DEFAULT_STAGES, seed=2)
    all_tokens = stream.read(0, stream.num_tokens)
    position_of = np.zeros(int(all_tokens.max()) + 1, dtype=np.int64)
    position_of[all_tokens] = np.arange(stream.num_tokens)
    codes = np.concatenate([trace(stream, w, position_of) for _ in range(40) for w in sampler.next_batch(100, 0)])
    natural = np.array([stream.tokens_by_category[c] for c in CATEGORIES]) / stream.num_tokens
    np.testing.assert_allclose(shares(codes), natural, atol=0.02)


def test_stages_switch_by_tokens_seen(planted) -> None:
    stream, _ = planted
    stages = parse_stages(
        [{"tokens": 1_000, "weights": {"NAT": 1}}, {"tokens": 500, "weights": {"MIX": 1}}, {"weights": {"CODE": 1}}]
    )
    sampler = WindowSampler(stream, CTX, stages, seed=3)
    assert [sampler.stage_index(t) for t in (0, 999, 1_000, 1_499, 1_500, 10**9)] == [0, 0, 1, 1, 2, 2]
    for tokens_seen, category in ((0, "NAT"), (999, "NAT"), (1_000, "MIX"), (1_500, "CODE")):
        batch = sampler.next_batch(8, tokens_seen)
        ids = np.unique(batch[batch != EOS])
        allowed = stream.read_category(category, 0, stream.tokens_by_category[category])
        assert np.isin(ids, allowed).all(), (tokens_seen, category)


def test_a_category_too_small_for_a_window_fails_up_front(tmp_path: Path) -> None:
    paths = [make_shard(tmp_path / "a" / "tokens.bin", [("CODE", list(range(3, 200))), ("MIX", [5, 6, 7])], EOS)]
    stream = TokenStream(paths)
    with pytest.raises(ValueError, match="MIX, which has 4 tokens"):
        WindowSampler(stream, CTX, parse_stages([{"weights": {"MIX": 1, "CODE": 1}}]), seed=0)
    with pytest.raises(ValueError, match="NAT, which has 0 tokens"):
        WindowSampler(stream, CTX, parse_stages([{"weights": {"NAT": 1}}]), seed=0)
    WindowSampler(stream, CTX, parse_stages([{"weights": {"MIX": 0, "CODE": 1}}]), seed=0)  # zero weight: fine
    with pytest.raises(ValueError, match="fewer than ctx"):
        WindowSampler(stream, 1_000, DEFAULT_STAGES, seed=0)


def test_sampling_is_deterministic_and_resumable(planted) -> None:
    stream, _ = planted
    stages = parse_stages([{"tokens": 200, "weights": {"NAT": 1, "MIX": 1}}, {"weights": None}])
    a, b = WindowSampler(stream, CTX, stages, seed=7), WindowSampler(stream, CTX, stages, seed=7)
    for tokens_seen in (0, 100, 300):
        np.testing.assert_array_equal(a.next_batch(4, tokens_seen), b.next_batch(4, tokens_seen))
    assert not np.array_equal(WindowSampler(stream, CTX, stages, seed=8).next_batch(4, 0), a.next_batch(4, 0))
    state = json.loads(json.dumps(a.state_dict()))  # what a checkpoint would store
    expected = [a.next_batch(4, t) for t in (0, 150, 400, 500)]
    resumed = WindowSampler(stream, CTX, stages, seed=12345)
    resumed.load_state_dict(state)
    for tokens_seen, batch in zip((0, 150, 400, 500), expected, strict=True):
        np.testing.assert_array_equal(resumed.next_batch(4, tokens_seen), batch)
    with pytest.raises(ValueError, match="would not reproduce"):
        WindowSampler(stream, CTX + 1, stages, seed=0).load_state_dict(state)
