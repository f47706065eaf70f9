"""MILP and Viterbi DP against brute force on tiny instances; greedy and local search contracts."""

import numpy as np
import pytest

from edgegen.microservices.cot import solvers
from edgegen.microservices.cot.problem import InstanceConfig, Tables, generate, overflow_bytes, path_latency_s


def tiny_instances():
    for seed in range(6):
        rng = np.random.default_rng(seed)
        n, m = int(rng.integers(2, 6)), int(rng.integers(2, 4))
        slack = [1.0, 1.3, 2.5][seed % 3]  # tight capacities: DP infeasible, MILP branches, or nothing feasible
        yield generate(n, m, rng, InstanceConfig(capacity_slack=slack)).tables()


@pytest.mark.parametrize("t", list(tiny_instances()))
def test_milp_matches_brute_force(t):
    bf = solvers.brute_force(t)
    res = solvers.solve_milp(t, time_limit_s=30)
    if bf["serve"] is None:
        assert res["status"] == "infeasible" and res["serve"] is None
        return
    assert res["status"] == "optimal"
    assert overflow_bytes(t, res["serve"]) == 0.0
    assert res["latency_s"] == pytest.approx(bf["latency_s"], rel=1e-7)
    assert res["dual_bound_s"] == pytest.approx(bf["latency_s"], rel=1e-5)


@pytest.mark.parametrize("t", list(tiny_instances()))
def test_dp_matches_uncapacitated_brute_force(t):
    free = Tables(t.comp, t.comm, t.inp, t.out, t.mem, np.full(t.n_devices, np.inf))
    bf = solvers.brute_force(free)
    dp = solvers.viterbi_dp(t)
    assert dp["latency_s"] == pytest.approx(bf["latency_s"], rel=1e-9)
    capacitated = solvers.brute_force(t)["latency_s"]
    assert capacitated is None or dp["latency_s"] <= capacitated + 1e-12  # a relaxation: a lower bound
    assert dp["feasible"] == (overflow_bytes(t, dp["serve"]) == 0.0)


def test_milp_hand_instance_and_infeasible():
    # 2 steps, 2 devices, compute 1 / 5 on device 0 / 1, hand-off 0 <-> 1 costs 1; device 0 holds one step only
    comp = np.array([[1.0, 5.0], [1.0, 5.0]])
    comm = np.array([[[0.0, 1.0], [1.0, 0.0]]])
    t = Tables(comp, comm, np.zeros(2), np.zeros(2), np.array([1.0, 1.0]), np.array([1.0, 2.0]))
    res = solvers.solve_milp(t)
    assert res["latency_s"] == pytest.approx(1 + 1 + 5)  # one step on each device
    assert solvers.viterbi_dp(t)["latency_s"] == pytest.approx(2.0)  # both on device 0, infeasible
    full = Tables(comp, comm, np.zeros(2), np.zeros(2), np.array([3.0, 3.0]), np.array([1.0, 2.0]))
    assert solvers.solve_milp(full)["status"] == "infeasible"


def test_greedy_and_local_search():
    rng = np.random.default_rng(5)
    for _ in range(5):
        t = generate(8, 5, rng).tables()
        g = solvers.greedy(t)
        assert g["feasible"]
        ls = solvers.local_search(t, g["serve"])
        assert overflow_bytes(t, ls) == 0.0
        assert path_latency_s(t, ls) <= g["latency_s"] + 1e-12
        assert path_latency_s(t, ls) >= solvers.solve_milp(t)["latency_s"] - 1e-9
    # repair: everything on one device overflows; local search makes it feasible
    t = generate(8, 5, np.random.default_rng(1), InstanceConfig(capacity_slack=1.3)).tables()
    start = np.zeros(8, dtype=int)
    assert overflow_bytes(t, start) > 0
    assert overflow_bytes(t, solvers.local_search(t, start)) == 0.0
