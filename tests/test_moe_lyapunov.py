"""Tests of edgegen.microservices.moe.lyapunov on hand-computed slots: assignment, policies, queues, B, C*, bound."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgegen.microservices.moe import lyapunov as ly

LIN = np.array([[1.0, 5.0, 2.0], [4.0, 1.0, 3.0]])
LAT = np.array([[10.0, 1.0, 2.0], [1.0, 10.0, 8.0]])
ALL = np.ones((2, 3), dtype=bool)


@pytest.mark.parametrize(("weight", "cols", "obj"), [
    (0.0, [0, 1], 2.0),  # pure linear: 1 + 1
    (0.4, [0, 1], 6.0),  # 2 + 0.4·10 beats (2, 0): 6 + 0.4·2 = 6.8
    (1.0, [2, 0], 8.0),  # 6 + 1·2
    (10.0, [1, 0], 19.0),  # 9 + 10·1
])
def test_assign_min_max_hand_values(weight, cols, obj) -> None:
    got, value = ly.assign_min_max(LIN, LAT, weight, ALL)
    assert got.tolist() == cols
    assert value == pytest.approx(obj)


def test_assign_min_max_respects_allowed_and_reports_infeasible() -> None:
    allowed = np.array([[True, False, False], [True, True, False]])  # row 0 can only use column 0
    cols, value = ly.assign_min_max(LIN, LAT, 1.0, allowed)
    assert cols.tolist() == [0, 1] and value == pytest.approx(2.0 + 10.0)
    with pytest.raises(ValueError, match="no feasible assignment"):
        ly.assign_min_max(LIN, LAT, 1.0, np.array([[True, False, False], [True, False, False]]))


def test_assign_min_max_matches_brute_force_on_random_slots() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        j, m = rng.integers(1, 4), rng.integers(3, 6)
        lin, lat = rng.random((j, m)) * 5, rng.random((j, m)) * 5
        allowed = rng.random((j, m)) < 0.7
        w = float(rng.choice([0.0, 0.3, 1.0, 5.0]))
        combos = ly.enumerate_assignments(allowed)
        if not combos:
            with pytest.raises(ValueError):
                ly.assign_min_max(lin, lat, w, allowed)
            continue
        rows = np.arange(j)
        best = min(lin[rows, list(c)].sum() + w * lat[rows, list(c)].max() for c in combos)
        cols, value = ly.assign_min_max(lin, lat, w, allowed)
        assert value == pytest.approx(best)
        assert allowed[rows, cols].all() and len(set(cols.tolist())) == j


def test_enumerate_assignments_hand() -> None:
    allowed = np.array([[True, True, False], [False, True, True]])
    assert ly.enumerate_assignments(allowed) == [(0, 1), (0, 2), (1, 2)]


def one_layer(latency, energy, allowed=None, experts=(0,)) -> ly.LayerSlot:
    latency = np.atleast_2d(np.asarray(latency, float))
    energy = np.atleast_2d(np.asarray(energy, float))
    allowed = np.ones(latency.shape, bool) if allowed is None else np.asarray(allowed, bool)
    return ly.LayerSlot(np.asarray(experts), allowed, latency, energy, np.ones(latency.shape[0]))


def test_lyapunov_layer_trades_queue_against_cost() -> None:
    layer = one_layer([2.0, 5.0], [0.0, 0.0])
    q = np.array([10.0, 0.0])
    # V = 1: device 0 costs 10 + 1·2 = 12, device 1 costs 0 + 1·5 = 5
    assert ly.lyapunov_layer(layer, q, 1.0, 0.0).tolist() == [1]
    # V = 10: 10 + 20 = 30 vs 0 + 50 = 50
    assert ly.lyapunov_layer(layer, q, 10.0, 0.0).tolist() == [0]
    # energy weight 1 and energies (4, 0) at V = 10: 10 + 10·(2 + 4) = 70 vs 50
    assert ly.lyapunov_layer(one_layer([2.0, 5.0], [4.0, 0.0]), q, 10.0, 1.0).tolist() == [1]


def test_greedy_ignores_queues_and_jsq_ignores_cost() -> None:
    layer = one_layer([2.0, 5.0], [0.0, 0.0])
    q = np.array([100.0, 0.0])
    assert ly.greedy_layer(layer, 0.0).tolist() == [0]
    assert ly.jsq_layer(layer, q, np.random.default_rng(0)).tolist() == [1]
    # equal queues: JSQ breaks the tie at random (both devices get picked over many draws)
    picks = {int(ly.jsq_layer(layer, np.zeros(2), np.random.default_rng(s))[0]) for s in range(20)}
    assert picks == {0, 1}


def test_decide_slot_static_round_robin_random() -> None:
    replicas = np.array([[[1, 2], [2, 0]]])  # layer 0: expert 0 on (1, 2), expert 1 on (2, 0)
    allowed = np.zeros((1, 3), bool)
    allowed[0, [1, 2]] = True
    layer = ly.LayerSlot(np.array([0]), allowed, np.ones((1, 3)), np.zeros((1, 3)), np.ones(1))
    rng, rr = np.random.default_rng(0), np.zeros((1, 2), dtype=np.int64)
    static = [ly.decide_slot("static", [(0, layer)], np.zeros(3), 0.0, replicas, rng, rr)[0][0] for _ in range(3)]
    assert static == [1, 1, 1]
    cyc = [ly.decide_slot("round_robin", [(0, layer)], np.zeros(3), 0.0, replicas, rng, rr)[0][0] for _ in range(4)]
    assert cyc == [1, 2, 1, 2] and rr[0].tolist() == [4, 0]
    rand = {ly.decide_slot("random", [(0, layer)], np.zeros(3), 0.0, replicas, np.random.default_rng(s), rr)[0][0]
            for s in range(20)}
    assert rand == {1, 2}
    # static with a conflict: both experts' primaries are device 2 -> one moves to its other replica
    both = np.zeros((2, 3), bool)
    both[0, [2, 1]] = True
    both[1, [2, 0]] = True
    reps = np.array([[[2, 1], [2, 0]]])
    two = ly.LayerSlot(np.array([0, 1]), both, np.ones((2, 3)), np.zeros((2, 3)), np.ones(2))
    got = ly.decide_slot("static", [(0, two)], np.zeros(3), 0.0, reps, rng, rr)[0]
    assert sorted(got.tolist()) in ([1, 2], [0, 2]) and 2 in got.tolist()


def test_policy_ids() -> None:
    assert ly.policy_id(20.0) == "lyapunov_v20" and ly.policy_id(0.5) == "lyapunov_v0.5"
    assert ly.parse_policy("lyapunov_v20") == ("lyapunov", 20.0)
    assert ly.parse_policy("jsq") == ("jsq", None)
    with pytest.raises(ValueError, match="unknown policy"):
        ly.parse_policy("fastest")


def test_slot_outcome_hand_values() -> None:
    # layer 0: two calls on devices (0, 1) with latencies 3 and 5 ms, energies 1 and 2 mJ
    l0 = ly.LayerSlot(np.array([0, 1]), np.ones((2, 3), bool), np.array([[3.0, 9, 9], [9, 5.0, 9]]),
                      np.array([[1.0, 9, 9], [9, 2.0, 9]]), np.ones(2))
    # layer 1: one call on device 1, 4 ms, 0.5 mJ
    l1 = ly.LayerSlot(np.array([0]), np.ones((1, 3), bool), np.array([[9, 4.0, 9]]), np.array([[9, 0.5, 9]]),
                      np.ones(1))
    cost, lat, en, arr = ly.slot_outcome([(0, l0), (1, l1)], [np.array([0, 1]), np.array([1])], 3, 2.0)
    assert lat == pytest.approx(5.0 + 4.0)  # max of layer 0 + layer 1
    assert en == pytest.approx(3.5)
    assert cost == pytest.approx(9.0 + 2.0 * 3.5)
    assert arr.tolist() == [1.0, 2.0, 0.0]
    with pytest.raises(ValueError, match="twice"):
        ly.slot_outcome([(0, l0)], [np.array([1, 1])], 3, 0.0)


def test_queue_update_and_b() -> None:
    assert ly.queue_update([1.0, 0.2], [2.0, 0.0], [0.5, 0.5]).tolist() == [2.5, 0.0]
    # ½ [max(1, 4 − 1)² + max(3, 2 − 3)²] = ½ (9 + 9)
    assert ly.drift_constant_b(np.array([4.0, 2.0]), np.array([1.0, 3.0])) == pytest.approx(9.0)


def test_stationary_lp_hand_values() -> None:
    # one case (prob 1), one call per slot: device 0 costs 1, device 1 costs 3
    args = (np.array([1.0]), np.array([0, 0]), np.array([1.0, 3.0]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert ly.stationary_lp(*args, np.array([1.0, 1.0])).c_star == pytest.approx(1.0)
    half = ly.stationary_lp(*args, np.array([0.5, 0.5]))  # device 0 can take only half the calls
    assert half.c_star == pytest.approx(0.5 * 1 + 0.5 * 3)
    assert half.device_load.tolist() == pytest.approx([0.5, 0.5])
    bad = ly.stationary_lp(*args, np.array([0.2, 0.2]))
    assert bad.status != 0 and bad.c_star == float("inf")
    # two equiprobable cases with mirrored costs: each case uses its cheap device, C* = 1
    two = ly.stationary_lp(np.array([0.5, 0.5]), np.array([0, 0, 1, 1]), np.array([1.0, 3.0, 3.0, 1.0]),
                           np.array([[1.0, 0], [0, 1.0], [1.0, 0], [0, 1.0]]), np.array([0.6, 0.6]))
    assert two.c_star == pytest.approx(1.0)


def test_drift_plus_penalty_meets_neely_bound_on_a_small_iid_system() -> None:
    """Two devices, one call per slot, costs drawn i.i.d. from two states: the time-average cost of the
    drift-plus-penalty rule stays below C* + B/V, approaches C* as V grows, and its backlog grows with V."""
    states = [(np.array([1.0, 4.0]), 0.7), (np.array([3.0, 2.0]), 0.3)]  # (latency per device, probability)
    service = np.array([0.45, 0.65])
    case_prob = np.array([p for _, p in states])
    c_star = ly.stationary_lp(case_prob, np.array([0, 0, 1, 1]), np.concatenate([s for s, _ in states]),
                              np.array([[1.0, 0], [0, 1.0]] * 2), service).c_star
    b = ly.drift_constant_b(np.ones(2), service)
    rng = np.random.default_rng(1)
    draws = rng.random(5000) < states[0][1]
    costs, backlogs = [], []
    for v in (0.5, 2.0, 8.0):
        q, total, backlog = np.zeros(2), 0.0, 0.0
        for first in draws:
            lat = states[0][0] if first else states[1][0]
            layer = one_layer(lat, [0.0, 0.0])
            d = int(ly.lyapunov_layer(layer, q, v, 0.0)[0])
            total += lat[d]
            arrivals = np.zeros(2)
            arrivals[d] = 1.0
            q = ly.queue_update(q, arrivals, service)
            backlog += q.sum()
        costs.append(total / len(draws))
        backlogs.append(backlog / len(draws))
        assert costs[-1] <= c_star + b / v
    assert costs[0] > costs[1] > costs[2] > c_star - 0.05  # below C* only by the backlog built up (transient)
    assert backlogs[0] < backlogs[1] < backlogs[2]


def test_enumerate_matches_itertools_semantics() -> None:
    allowed = np.ones((2, 2), bool)
    assert ly.enumerate_assignments(allowed) == [c for c in itertools.product(range(2), repeat=2) if c[0] != c[1]]
