"""Tests of edgegen.microservices.moe.traces: generated chains, tokenizer, trace statistics by hand, model, cache."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from edgegen.config import ConfigError
from edgegen.microservices.moe import traces as tr

TINY = dict(num_layers=2, hidden_size=16, ffn_size=16, num_experts=4, top_k=2, num_heads=2, seq_len=16,
            train_steps=2, batch_size=4, trace_sequences=3)


def test_tokenizer_roundtrip_and_unknown_character() -> None:
    text = "7+5=12;12*3=36.\nmax(3,8)=8.\nrev 123=321.\n"
    assert tr.decode(tr.encode(text)) == text
    with pytest.raises(ValueError, match="'Z'"):
        tr.encode("Z")


def test_generated_chains_are_correct() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        chain = tr.arithmetic_chain(rng)
        assert chain.endswith(".")
        steps = chain[:-1].split(";")
        prev = None
        for step in steps:
            x, op, b, y = re.fullmatch(r"(\d+)([+\-*])(\d+)=(\d+)", step).groups()
            assert eval(f"{x}{op}{b}") == int(y) and 0 <= int(y) <= 99  # noqa: S307 - digits and one operator
            assert prev is None or int(x) == prev  # each step starts from the previous result
            prev = int(y)
        fn, a, b, r = re.fullmatch(r"(max|min)\((\d+),(\d+)\)=(\d+)\.", tr.comparison_chain(rng)).groups()
        assert int(r) == (max if fn == "max" else min)(int(a), int(b))
        digits, rev = re.fullmatch(r"rev (\d+)=(\d+)\.", tr.reversal_chain(rng)).groups()
        assert rev == digits[::-1]
    batch = tr.make_batches(np.random.default_rng(1), 5, 12)
    assert batch.shape == (5, 12) and batch.max() < len(tr.ALPHABET)


def test_stats_by_hand() -> None:
    # one sequence of 4 tokens, 1 layer, top-1: experts 0, 0, 1, 1 out of 2
    e = np.array([0, 0, 1, 1]).reshape(1, 4, 1, 1)
    assert tr.expert_usage(e, 2).tolist() == [[0.5, 0.5]]
    assert tr.normalized_entropy([0.5, 0.5]) == pytest.approx(1.0)
    assert tr.normalized_entropy([1.0, 0.0]) == pytest.approx(0.0)
    overlap, indep = tr.temporal_locality(e, 2)
    assert overlap.tolist() == pytest.approx([2 / 3])  # pairs (0,0), (0,1), (1,1)
    assert indep.tolist() == pytest.approx([0.5])  # 0.5² + 0.5²
    # top-2 of 3 experts: tokens {0, 1} and {0, 2}
    co = tr.coactivation(np.array([[0, 1], [0, 2]]).reshape(1, 2, 1, 2), 3)[0]
    assert co[0, 1] == pytest.approx(0.5) and co[0, 2] == pytest.approx(0.5) and co[1, 2] == 0.0
    assert np.diag(co).tolist() == pytest.approx([1.0, 0.5, 0.5])


def test_cross_layer_mutual_information() -> None:
    same = np.array([[0, 0], [1, 1], [0, 0], [1, 1]]).reshape(1, 4, 2, 1)  # layer 1 copies layer 0
    assert tr.cross_layer_mutual_information_bits(same, 2).tolist() == pytest.approx([1.0])
    indep = np.array([[0, 0], [0, 1], [1, 0], [1, 1]]).reshape(1, 4, 2, 1)
    assert tr.cross_layer_mutual_information_bits(indep, 2).tolist() == pytest.approx([0.0])


def test_trace_stats_keys() -> None:
    rng = np.random.default_rng(0)
    e = np.stack([rng.permutation(4)[:2] for _ in range(2 * 5 * 3)]).reshape(2, 5, 3, 2)
    s = tr.trace_stats(e, 4)
    assert s["tokens"] == 10 and len(s["entropy_norm"]) == 3 and len(s["cross_layer_mi_bits"]) == 2
    assert np.array(s["usage"]).sum(1).tolist() == pytest.approx([2.0, 2.0, 2.0])
    assert s["cross_layer_mi_max_bits"] == pytest.approx(2.0)


def test_model_records_topk_per_token_and_layer() -> None:
    cfg = tr.TraceConfig(**TINY)
    model = tr.build_model(cfg)
    tokens, experts = tr.record_traces(model, cfg)
    assert tokens.shape == (3, 16) and experts.shape == (3, 16, 2, 2)
    assert experts.min() >= 0 and experts.max() < 4
    assert np.all(experts[..., 0] != experts[..., 1])  # top-k picks distinct experts
    default = tr.build_model(tr.TraceConfig())
    n = sum(p.numel() for p in default.parameters())
    assert 100_000 < n < 1_000_000  # "a few hundred thousand parameters"


def test_cache_and_fingerprint(tmp_path) -> None:
    cfg = tr.TraceConfig(**TINY)
    first = tr.load_or_build(cfg, tmp_path)
    stamp = (first["dir"] / "model.pt").stat().st_mtime_ns
    again = tr.load_or_build(cfg, tmp_path)
    assert (again["dir"] / "model.pt").stat().st_mtime_ns == stamp  # loaded, not retrained
    assert np.array_equal(first["experts"], again["experts"])
    other = tr.TraceConfig(**{**TINY, "seed": 1})
    assert other.fingerprint() != cfg.fingerprint()
    assert math.isfinite(first["train"]["heldout_loss"])


def test_calibration_counts_flops() -> None:
    cal = tr.calibrate_expert_ffn(16, 32, repeats=3)
    assert cal["flops_per_token"] == 2 * 3 * 16 * 32
    assert cal["seconds_per_token"] > 0 and cal["flops_per_s"] == pytest.approx(
        cal["flops_per_token"] / cal["seconds_per_token"])


def test_bad_trace_config() -> None:
    with pytest.raises(ConfigError, match="traces.top_k"):
        tr.TraceConfig(top_k=9).validate()
    with pytest.raises(ConfigError, match="traces.num_heads"):
        tr.TraceConfig(hidden_size=30, num_heads=4).validate()
