import math

import numpy as np
import pytest

from edgegen.gdm import allocation as al


def problem(n: int = 3, deadline_s: float = 3.0, **kw) -> al.AllocationProblem:
    args = dict(cycles=np.full(n, 5e8), payload_bits=np.full(n, 1e6), gain=np.full(n, 1e-11),
                cpu_hz_max=np.full(n, 1e9), tx_power_w_max=np.full(n, 0.2), bandwidth_hz=1e6, deadline_s=deadline_s)
    args.update(kw)
    return al.AllocationProblem(**args)


def test_single_device_matches_a_dense_grid_over_the_upload_time():
    # one device gets the whole band: E(t) = κc³/(T-t)² + (B·N0/g)·t·(2^{L/(B·t)} - 1), minimised on a grid
    p = problem(1, deadline_s=2.0)
    sol = al.solve_kkt(p)
    n0 = 10 ** (-174 / 10) * 1e-3
    t_max = p.deadline_s - p.cycles[0] / p.cpu_hz_max[0]
    t = np.linspace(1e-3, t_max, 400_001)
    amp = 1e6 * n0 / 1e-11  # B·N0/g
    e = p.kappa * p.cycles[0] ** 3 / (p.deadline_s - t) ** 2 + amp * t * np.expm1(math.log(2) / t)  # L/B = 1 s
    power_ok = amp * np.expm1(math.log(2) / t) <= 0.2
    assert sol.bandwidth_share[0] == pytest.approx(1.0, abs=1e-6)
    assert sol.energy_j == pytest.approx(float(np.min(e[power_ok])), rel=1e-6)
    assert sol.round_time_s == pytest.approx(p.deadline_s, rel=1e-9)  # the deadline is tight


def test_identical_devices_split_the_band_equally():
    sol = al.solve_kkt(problem(4))
    assert np.allclose(sol.bandwidth_share, 0.25, rtol=1e-6)
    assert np.allclose(sol.cpu_hz, sol.cpu_hz[0]) and np.allclose(sol.tx_power_w, sol.tx_power_w[0])


def test_share_at_max_power_solves_its_equation():
    m, k = np.array([0.1, 1.0, 5.0]), np.array([10.0, 3.0, 5.5])
    b = al._share_at_max_power(m, k)
    assert np.allclose(b * np.log1p(k / b), m, rtol=1e-10)
    assert np.isinf(al._share_at_max_power(np.array([2.0]), np.array([1.0])))[0]  # needs more than infinite band


def test_kkt_matches_slsqp_and_beats_max_power_on_random_instances():
    check = al.allocation_check(num_instances=4, seed=1, num_devices=3)
    assert check["max_abs_rel_gap_vs_slsqp"] < 1e-4
    assert check["energy_ratio_vs_max_power_max"] < 1.0
    assert check["min_deadline_slack_frac"] > -1e-9


def test_far_device_under_a_tight_deadline_transmits_at_max_power():
    # device 2 is 40 dB weaker; at a deadline just above the least feasible one it must use P_max
    p = problem(3, gain=np.array([1e-11, 1e-11, 1e-15]))
    p = p.with_deadline(1.02 * al.min_feasible_deadline_s(p))
    kkt, ref = al.solve_kkt(p), al.solve_slsqp(p, starts=3)
    assert kkt.tx_power_w[2] == pytest.approx(0.2, rel=1e-6)
    assert kkt.energy_j == pytest.approx(ref.energy_j, rel=1e-4)
    assert kkt.round_time_s <= p.deadline_s * (1 + 1e-9) and kkt.bandwidth_share.sum() <= 1 + 1e-12


def test_energy_falls_as_the_deadline_grows_and_stays_below_the_baseline():
    p = problem(3, gain=np.array([1e-11, 3e-12, 1e-12]))
    t_base = al.max_power_baseline(p).round_time_s
    energies = [al.solve_kkt(p.with_deadline(f * t_base)).energy_j for f in (1.0, 1.5, 3.0)]
    assert energies[0] > energies[1] > energies[2]
    assert energies[0] <= al.max_power_baseline(p).energy_j


def test_infeasible_deadline_names_the_least_feasible_one():
    p = problem(3)
    t_min = al.min_feasible_deadline_s(p)
    with pytest.raises(al.InfeasibleDeadline, match="least feasible deadline"):
        al.solve_kkt(p.with_deadline(0.99 * t_min))
    assert al.solve_kkt(p.with_deadline(1.001 * t_min)).round_time_s <= 1.001 * t_min * (1 + 1e-9)
    with pytest.raises(al.InfeasibleDeadline):
        al.solve_kkt(p.with_deadline(0.4))  # below the compute time c/f_max = 0.5 s


def test_optimal_levels_round_up_to_powers_of_two():
    assert al.optimal_levels([2, 3, 4, 5, 200]).tolist() == [2, 4, 4, 8, 256]
    with pytest.raises(ValueError, match="min_levels"):
        al.optimal_levels([1])


def test_bad_problem_fields_are_named():
    with pytest.raises(ValueError, match="cycles"):
        problem(2, cycles=np.array([1e8, -1.0]))
    with pytest.raises(ValueError, match="gain"):
        problem(2, gain=np.array([1e-11]))
    with pytest.raises(ValueError, match="deadline_s"):
        problem(2, deadline_s=0.0)


def test_baseline_and_evaluate_use_the_wireless_formulas():
    p = problem(2)
    base = al.max_power_baseline(p)
    n0 = 10 ** (-174 / 10) * 1e-3
    rate = 0.5e6 * math.log2(1 + 1e-11 * 0.2 / (0.5e6 * n0))
    assert base.upload_time_s[0] == pytest.approx(1e6 / rate)
    assert base.energy_j == pytest.approx(2 * (1e-28 * 5e8 * 1e18 + 0.2 * 1e6 / rate))
    assert base.round_time_s == pytest.approx(0.5 + 1e6 / rate)
