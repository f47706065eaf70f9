import math

import pytest
import torch

from edgegen.gdm import quantize as qz


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_levels_are_the_evenly_spaced_grid_over_the_range():
    x = torch.tensor([0.0, 0.25, 0.5, 1.0])  # range [0, 1], Q = 5 → Δ = 0.25: every entry is on the grid
    idx, lo, hi = qz.quantize(x, 5, gen())
    assert (lo, hi) == (0.0, 1.0)
    assert idx.tolist() == [0, 1, 2, 4]
    assert torch.equal(qz.dequantize(idx, lo, hi, 5), x)
    assert qz.error_variance(x, 5) == 0.0


def test_randomized_rounding_picks_only_the_two_neighbours_with_the_right_odds():
    # x = 0.3 on the grid {0, 0.5, 1} (Q = 3 over [0, 1] via the end points): p = 0.6 of rounding up to 0.5
    x = torch.cat([torch.tensor([0.0, 1.0]), torch.full((20000,), 0.3)])
    xh = qz.quantize_dequantize(x, 3, gen(1))[2:]
    assert set(xh.unique().tolist()) == {0.0, 0.5}
    assert abs(float((xh == 0.5).double().mean()) - 0.6) < 0.015  # ±4.3σ of a Bernoulli(0.6) mean over 20k


def test_monte_carlo_unbiased_and_exact_error_variance():
    x = torch.randn(200, generator=gen(2))
    levels, draws = 4, 4000
    g = gen(3)
    samples = torch.stack([qz.quantize_dequantize(x, levels, g).double() for _ in range(draws)])
    step = float(x.max() - x.min()) / (levels - 1)
    # per entry the estimator's std is ≤ Δ/2/√draws; 5 of those is a generous but failing-on-bias tolerance
    assert torch.all((samples.mean(0) - x.double()).abs() < 5 * (step / 2) / math.sqrt(draws))
    mc_err = float(((samples - x.double()) ** 2).sum(1).mean())
    exact = qz.error_variance(x, levels)
    assert mc_err == pytest.approx(exact, rel=0.03)
    assert exact <= qz.error_bound(x.numel(), float(x.max() - x.min()), levels)


def test_error_bound_is_attained_at_midpoints_and_holds_for_every_level_count():
    # hand value: entries at the midpoints of [0, 1] split into 2 intervals (Q = 3): p = 1/2, Δ = 1/2
    x = torch.tensor([0.0, 0.25, 0.75, 1.0])
    assert qz.error_variance(x, 3) == pytest.approx(2 * 0.25 * 0.25)  # two midpoints · Δ²/4
    assert qz.error_bound(4, 1.0, 3) == pytest.approx(4 * 1.0 / (4 * 4))  # S·r²/(4(Q-1)²) = 1/4
    y = torch.randn(1000, generator=gen(4)) * 3
    for levels in (2, 3, 16, 255, 256, 4096):
        assert qz.error_variance(y, levels) <= qz.error_bound(y.numel(), float(y.max() - y.min()), levels)


def test_constant_tensor_is_sent_exactly():
    x = torch.full((7,), 2.5)
    assert torch.equal(qz.quantize_dequantize(x, 2, gen()), x)
    assert qz.error_variance(x, 2) == 0.0


def test_payload_bits_and_bytes():
    assert qz.bits_per_entry(2) == 1 and qz.bits_per_entry(3) == 2 and qz.bits_per_entry(256) == 8
    assert qz.bits_per_entry(257) == 9
    assert qz.payload_bits(1000, 16) == 1000 * 4 + 64
    assert qz.payload_bits(1000, None) == 32 * 1000
    state = {"w": torch.zeros(10, 10), "b": torch.zeros(10)}
    assert qz.state_payload_bits(state, 256) == 110 * 8 + 2 * 64
    deq, bits = qz.quantize_state(state, 256, gen())
    assert bits == 110 * 8 + 2 * 64 and set(deq) == {"w", "b"}
    _, full = qz.quantize_state(state, None, gen())
    assert full == 110 * 32


def test_levels_for_error_is_the_smallest_power_of_two_meeting_the_bound():
    state = {"w": torch.tensor([0.0, 1.0, 0.5, 0.5])}  # S = 4, r = 1: bound = 1/(Q-1)²
    # ε = 0.01 → Q - 1 ≥ 10 → Q ≥ 11 → 16
    q = qz.levels_for_error(state, 0.01)
    assert q == 16
    assert qz.state_error_bound(state, q) <= 0.01 < qz.state_error_bound(state, q // 2)
    assert qz.levels_for_error(state, 1e-12, max_levels=256) == 256
    assert qz.levels_for_error(state, 10.0, min_levels=4) == 4


@pytest.mark.parametrize("bad", [1, 0, 2**16 + 1, 2.0, True])
def test_bad_level_counts_raise(bad):
    with pytest.raises(ValueError, match="levels"):
        qz.quantize(torch.ones(3), bad, gen())
