"""Tests of edgegen.microservices.moe.system: placement, per-call latency/energy by hand, service, LP cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgegen.config import ConfigError
from edgegen.microservices.moe import lyapunov as ly
from edgegen.microservices.moe.system import EdgeSystem, SystemConfig, placement

CAL = {"flops_per_s": 4e9, "hidden_size": 1024, "ffn_size": 3584}


def small_system(**kw) -> EdgeSystem:
    base = dict(device_speed_factors=(2.0, 1.0, 1.0), device_distance_m=(100.0, 200.0, 300.0), replicas=2)
    return EdgeSystem(SystemConfig(**{**base, **kw}), CAL, num_layers=2, num_experts=3, top_k=2)


def test_placement_is_cyclic_primary_first() -> None:
    p = placement(num_layers=2, num_experts=3, num_devices=4, replicas=2)
    assert p[0, 0].tolist() == [0, 1]
    assert p[0, 2].tolist() == [2, 3]
    assert p[1, 2].tolist() == [3, 0]  # (e + l + r) mod M
    s = small_system()  # M = 3, R = 2: layer 1, expert 2 on devices (2 + 1) mod 3 = 0 and (2 + 1 + 1) mod 3 = 1
    assert s.replicas[1, 2].tolist() == [0, 1]
    assert s.holds[1, 2].tolist() == [True, True, False]


def test_holds_matches_replicas() -> None:
    s = small_system()
    for layer in range(2):
        for e in range(3):
            assert set(np.flatnonzero(s.holds[layer, e]).tolist()) == set(s.replicas[layer, e].tolist())


def test_call_costs_by_hand() -> None:
    cfg = SystemConfig(device_speed_factors=(2.0, 1.0, 1.0), device_distance_m=(100.0, 200.0, 300.0), replicas=2)
    s = EdgeSystem(cfg, CAL, num_layers=2, num_experts=3, top_k=2)
    lat_ms, en_mj = s.call_costs(np.array([1.0, 0.5, 2.0]))
    d, fading, speed = 1, 0.5, 1.0  # check device 1
    gain = 10 ** (-(128.1 + 37.6 * math.log10(0.2)) / 10) * fading
    band = 10e6 / 3
    n0 = 10 ** (-174 / 10) * 1e-3
    payload = 1024 * 16
    down = band * math.log2(1 + 1.0 * gain / (band * n0))
    up = band * math.log2(1 + 0.2 * gain / (band * n0))
    flops = 2 * 3 * 1024 * 3584
    compute_s = flops / (speed * 4e9)
    cycles = flops / (4e9 / 2.4e9)
    energy = 1e-28 * (speed * 2.4e9) ** 2 * cycles + 0.2 * payload / up
    assert lat_ms[d] == pytest.approx(1e3 * (payload / down + compute_s + payload / up), rel=1e-9)
    assert en_mj[d] == pytest.approx(1e3 * energy, rel=1e-9)
    # the 2x faster device computes in half the time and spends 4x the compute energy per call (κ f² · cycles)
    assert s.compute_s[0] == pytest.approx(s.compute_s[1] / 2)
    assert s.compute_energy_j[0] == pytest.approx(4 * s.compute_energy_j[1])


def test_service_follows_load_and_speed() -> None:
    s = small_system(load=0.5, token_arrival_prob=0.75)
    assert s.mean_calls_per_slot == pytest.approx(0.75 * 2 * 2)
    assert s.service.sum() == pytest.approx(3.0 / 0.5)
    assert s.service.tolist() == pytest.approx([3.0, 1.5, 1.5])
    assert s.max_arrivals.tolist() == [2.0, 2.0, 2.0]


def test_layer_slots_shape_and_allowed() -> None:
    s = small_system()
    lat, en = s.call_costs(np.ones(3))
    layers = s.layer_slots(np.array([[0, 2], [1, 0]]), lat, en)
    assert [idx for idx, _ in layers] == [0, 1]
    l0 = layers[0][1]
    assert l0.allowed.tolist() == [s.holds[0, 0].tolist(), s.holds[0, 2].tolist()]
    assert l0.latency_ms.shape == (2, 3) and l0.work.tolist() == [1.0, 1.0]


def test_lp_cases_probabilities_and_actions() -> None:
    s = small_system(fading_levels=(0.5, 1.5))
    experts = np.array([[[0, 1], [1, 2]], [[1, 0], [2, 1]], [[0, 2], [1, 2]]])  # 3 tokens (N, L, k)
    case_prob, action_case, action_cost, action_arr = s.lp_cases(experts)
    assert case_prob.sum() == pytest.approx(s.cfg.token_arrival_prob * 2)  # every layer sums to p_token
    assert np.all(action_arr.sum(1) == 2)  # two calls per layer
    assert set(np.unique(action_case).tolist()) == set(range(len(case_prob)))
    # the cheapest action of every case costs at least the max single-call latency of that case
    assert np.all(action_cost > 0)
    lp = ly.stationary_lp(case_prob, action_case, action_cost, action_arr, s.service)
    assert lp.status == 0 and np.all(lp.device_load <= s.service + 1e-6)


@pytest.mark.parametrize(("kw", "field"), [
    (dict(device_distance_m=(1.0, 2.0)), "device_distance_m"),
    (dict(replicas=1), "system.replicas"),
    (dict(load=0.0), "system.load"),
    (dict(fading_levels=()), "fading_levels"),
])
def test_bad_config_names_the_field(kw, field) -> None:
    with pytest.raises(ConfigError, match=field):
        small_system(**kw)
