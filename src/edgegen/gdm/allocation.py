"""Energy-optimal CPU frequency, transmit power, bandwidth share and quantization level for one federated round.

The per-round problem of SS-Diff (IEEE IoT J. 2024) and of arXiv 2403.04430 ("On-demand Quantization for Green
Federated Generative Diffusion in Mobile Edge Networks"), with N participating devices sharing an OFDMA uplink of
``bandwidth_hz`` B (noise PSD N0 in W/Hz) under a round deadline T (``deadline_s``):

    minimise   Σ_j  E_j = κ·c_j·f_j²  +  P_j·L_j / R_j                     (J; compute + radio energy)
    over       f_j ∈ (0, f_max_j]  (``cpu_hz``),  P_j ∈ [0, P_max_j]  (``tx_power_w``),
               b_j ≥ 0 (``bandwidth_share``),  Q_j ≥ Q_min_j (quantization level)
    s.t.       c_j / f_j + L_j / R_j ≤ T                                  (each device meets the deadline)
               Σ_j b_j ≤ 1                                                 (OFDMA band)
    where      R_j = b_j·B·log2(1 + g_j·P_j / (b_j·B·N0))                  (bit/s; ``wireless.ofdma_rate_bps``)
               L_j = S·⌈log2 Q_j⌉ + 64·(number of tensors)                (bits; ``quantize.payload_bits``)
               c_j = C·D_j·I_j cycles (cycles per sample × samples × local passes), κ the switched capacitance.

Solution (KKT, closed form up to the multiplier μ of the band constraint, found by bisection):

1. Q_j: L_j only grows with ⌈log2 Q_j⌉ and every other term of E_j grows with L_j, so Q_j* is the smallest
   level meeting the device's demand, rounded up to a power of two (same bits, less error): ``optimal_levels``.
   A device's demand Q_min_j comes from its accuracy target via the bound E‖w-ŵ‖² ≤ S·r²/(4(Q-1)²)
   (``quantize.levels_for_error``).
2. f_j: E_j grows with f_j, so the deadline is tight, f_j = c_j / (T - t_j) with t_j the upload time; compute
   energy κ·c_j³/(T - t_j)².
3. With τ_j = t_j·b_j, the least power that sends L_j bits in t_j is P_j = (b_j·B·N0/g_j)·(2^{L_j/(B·τ_j)} - 1),
   so the radio energy A_j·τ_j·(2^{a_j/τ_j} - 1) (A_j = B·N0/g_j, a_j = L_j/B) depends on τ_j only and is convex
   and decreasing in it.
4. Stationarity in b_j of the Lagrangian Σ E_j + μ·(Σ b_j - 1) at fixed t_j: with z_j = a_j·ln2/τ_j,
   e^{z}(z - 1) = μ/(A_j·t_j) - 1, i.e.  z_j = 1 + W₀((μ/(A_j·t_j) - 1)/e)  (Lambert W, principal branch).
   P_j ≤ P_max_j is a lower bound on b_j (P falls as b grows): b_j ≥ b_min_j(t_j), the share whose max-power rate
   is L_j/t_j, also closed form: b_min = K/(x - 1), x = -W₋₁(-s·e^{-s})/s, s = a_j·ln2/(t_j·K), K = g_j·P_max_j/(B·N0).
   The objective is convex in b_j, so b_j* = max(b_unconstrained, b_min).
5. What is left of device j is one-dimensional in t_j and convex in log t_j (the whole problem is convex in
   (log t_j, log b_j)), minimised by golden-section search on [L_j/R_j(b=1, P_max), T - c_j/f_max].
6. Σ_j b_j*(μ) falls as μ grows: μ is set by bisection (on log μ) so that Σ_j b_j = 1 (more band always saves
   energy, so the band constraint is active).

Infeasible deadlines (a device that cannot finish even with the whole band at full power and frequency, or
devices that together need more than the band at full power and frequency) raise ``InfeasibleDeadline`` with the
least feasible deadline when the bandwidth is the bottleneck.

``solve_slsqp`` solves the same problem in the original variables (f_j, P_j, b_j) with scipy SLSQP as an
independent check, and ``max_power_baseline`` is the FedDiff-style policy (f_max, P_max, equal shares).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import lambertw

from edgegen import wireless

LN2 = math.log(2.0)


class InfeasibleDeadline(ValueError):
    """The deadline cannot be met even at maximum frequency and power with the best bandwidth split."""


@dataclass(frozen=True)
class AllocationProblem:
    """One round's allocation problem; per-device arrays have one entry per participating device."""

    cycles: np.ndarray
    """c_j: CPU cycles of the device's local training this round."""
    payload_bits: np.ndarray
    """L_j: uplink bits of the device's (quantized) model."""
    gain: np.ndarray
    """g_j: linear channel power gain to the edge server."""
    cpu_hz_max: np.ndarray
    """f_max_j: maximum CPU frequency (Hz)."""
    tx_power_w_max: np.ndarray
    """P_max_j: maximum transmit power (W)."""
    bandwidth_hz: float
    """B: total uplink band shared by OFDMA (Hz)."""
    deadline_s: float
    """T: round deadline (s)."""
    kappa: float = 1e-28
    """κ: effective switched capacitance of the CPUs (compute energy κ·c·f²)."""
    noise_psd_dbm_per_hz: float = -174.0
    """N0: noise power spectral density (dBm/Hz)."""

    def __post_init__(self):
        n = len(np.atleast_1d(self.cycles))
        for name in ("cycles", "payload_bits", "gain", "cpu_hz_max", "tx_power_w_max"):
            v = np.atleast_1d(np.asarray(getattr(self, name), dtype=float))
            if v.shape != (n,):
                raise ValueError(f"{name} must have one entry per device ({n}), got shape {v.shape}")
            if not np.all(np.isfinite(v)) or not np.all(v > 0):
                raise ValueError(f"{name} must be finite and > 0 for every device, got {v.tolist()}")
            object.__setattr__(self, name, v)
        for name in ("bandwidth_hz", "deadline_s", "kappa"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be finite and > 0, got {v!r}")
        if n == 0:
            raise ValueError("an allocation problem needs at least one device")

    @property
    def num_devices(self) -> int:
        return len(self.cycles)

    @property
    def noise_w_per_hz(self) -> float:
        return 10.0 ** (self.noise_psd_dbm_per_hz / 10.0) * 1e-3

    def with_deadline(self, deadline_s: float) -> AllocationProblem:
        return AllocationProblem(self.cycles, self.payload_bits, self.gain, self.cpu_hz_max, self.tx_power_w_max,
                                 self.bandwidth_hz, deadline_s, self.kappa, self.noise_psd_dbm_per_hz)


@dataclass(frozen=True)
class Allocation:
    """A per-device operating point with its time and energy (computed through ``edgegen.wireless``)."""

    cpu_hz: np.ndarray
    tx_power_w: np.ndarray
    bandwidth_share: np.ndarray
    compute_time_s: np.ndarray
    upload_time_s: np.ndarray
    compute_energy_j: np.ndarray
    tx_energy_j: np.ndarray
    multiplier: float = float("nan")
    """μ of the band constraint (KKT solution only)."""

    @property
    def energy_j(self) -> float:
        """Total energy of the round (J)."""
        return float(np.sum(self.compute_energy_j + self.tx_energy_j))

    @property
    def round_time_s(self) -> float:
        """The slowest device's compute + upload time (s)."""
        return float(np.max(self.compute_time_s + self.upload_time_s))


def evaluate(problem: AllocationProblem, cpu_hz, tx_power_w, bandwidth_share, multiplier: float = float("nan")
             ) -> Allocation:
    """Times and energies of an operating point, via ``edgegen.wireless``."""
    p = problem
    f, pw, b = (np.asarray(v, dtype=float) * np.ones(p.num_devices) for v in (cpu_hz, tx_power_w, bandwidth_share))
    rate = np.asarray(wireless.ofdma_rate_bps(np.clip(b, 0.0, 1.0), p.bandwidth_hz, pw, p.gain,
                                              p.noise_psd_dbm_per_hz))
    t_up = np.asarray(wireless.transmit_time_s(p.payload_bits, rate)) * np.ones(p.num_devices)
    t_cmp = np.asarray(wireless.compute_time_s(p.cycles, f)) * np.ones(p.num_devices)
    e_cmp = np.asarray(wireless.compute_energy_j(p.cycles, f, p.kappa)) * np.ones(p.num_devices)
    e_tx = np.asarray(wireless.transmit_energy_j(pw, t_up)) * np.ones(p.num_devices)
    return Allocation(f, pw, b, t_cmp, t_up, e_cmp, e_tx, multiplier)


def optimal_levels(min_levels) -> np.ndarray:
    """Q_j* = 2^⌈log2 Q_min_j⌉: the energy-optimal level for a device demanding at least Q_min_j levels."""
    q = np.atleast_1d(np.asarray(min_levels))
    if np.any(q < 2):
        raise ValueError(f"min_levels must be >= 2, got {q.tolist()}")
    return (2 ** np.ceil(np.log2(q.astype(float)))).astype(np.int64)


def max_power_baseline(problem: AllocationProblem) -> Allocation:
    """FedDiff-style operating point: every device at f_max and P_max with an equal share 1/N of the band."""
    n = problem.num_devices
    return evaluate(problem, problem.cpu_hz_max, problem.tx_power_w_max, np.full(n, 1.0 / n))


# --------------------------------------------------------------------------- KKT + bisection


def _share_at_max_power(m: np.ndarray, k: np.ndarray) -> np.ndarray:
    """b solving b·ln(1 + K/b) = m (the share whose max-power rate sends the payload in time); inf if m ≥ K."""
    s = m / k
    ok = s < 1.0
    s_ok = np.where(ok, s, 0.5)
    x = -lambertw(-s_ok * np.exp(-s_ok), -1).real / s_ok
    with np.errstate(divide="ignore"):
        return np.where(ok, k / np.maximum(x - 1.0, 1e-300), np.inf)


def _device_terms(t, mu, p: AllocationProblem, a, amp, k):
    """For upload times t (per device) and multiplier μ: (share b*, radio energy, Lagrangian term F)."""
    m = a * LN2 / t
    z = 1.0 + lambertw((mu / (amp * t) - 1.0) / math.e, 0).real
    b_free = np.where(z > 0, m / np.maximum(z, 1e-300), np.inf)
    b = np.maximum(b_free, _share_at_max_power(m, k))
    e_tx = amp * t * b * np.expm1(m / b)
    e_cmp = p.kappa * p.cycles**3 / (p.deadline_s - t) ** 2
    return b, e_tx, e_cmp + e_tx + mu * b


def _upload_time_bounds(p: AllocationProblem) -> tuple[np.ndarray, np.ndarray]:
    """[L/R(b=1, P_max), T - c/f_max]: the upload times any feasible point can use."""
    r_full = np.asarray(wireless.ofdma_rate_bps(1.0, p.bandwidth_hz, p.tx_power_w_max, p.gain,
                                                p.noise_psd_dbm_per_hz))
    return p.payload_bits / r_full, p.deadline_s - p.cycles / p.cpu_hz_max


def min_feasible_deadline_s(problem: AllocationProblem) -> float:
    """The least deadline any allocation can meet (full power and frequency, band split to equalise finish times)."""
    p = problem
    t_cmp = p.cycles / p.cpu_hz_max
    k = p.gain * p.tx_power_w_max / (p.bandwidth_hz * p.noise_w_per_hz)
    a = p.payload_bits / p.bandwidth_hz

    def band_needed(deadline: float) -> float:
        t = deadline - t_cmp
        if np.any(t <= 0):
            return np.inf
        return float(np.sum(_share_at_max_power(a * LN2 / t, k)))

    lo = float(np.max(t_cmp))
    hi = max(2.0 * lo, 1e-9)
    while band_needed(hi) > 1.0:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if band_needed(mid) <= 1.0 else (mid, hi)
    return hi


def _check_feasible(p: AllocationProblem) -> None:
    t_lo, t_hi = _upload_time_bounds(p)
    k = p.gain * p.tx_power_w_max / (p.bandwidth_hz * p.noise_w_per_hz)
    need = _share_at_max_power(p.payload_bits / p.bandwidth_hz * LN2 / np.maximum(t_hi, 1e-300), k)
    if np.any(t_hi <= t_lo) or float(np.sum(need)) > 1.0:
        raise InfeasibleDeadline(
            f"deadline_s={p.deadline_s:.6g} cannot be met by the {p.num_devices} devices even at maximum frequency "
            f"and power; the least feasible deadline is {min_feasible_deadline_s(p):.6g} s")


def _golden_min_log_t(p, mu, a, amp, k, t_lo, t_hi, iters: int):
    """Per device, minimise F(t; μ) over log t ∈ [log t_lo, log t_hi] (F is convex in log t)."""
    inv_phi = (math.sqrt(5.0) - 1.0) / 2.0
    lo, hi = np.log(t_lo), np.log(t_hi)
    x1, x2 = hi - inv_phi * (hi - lo), lo + inv_phi * (hi - lo)
    f1, f2 = _device_terms(np.exp(x1), mu, p, a, amp, k)[2], _device_terms(np.exp(x2), mu, p, a, amp, k)[2]
    for _ in range(iters):
        left = f1 <= f2  # minimum in [lo, x2]
        hi = np.where(left, x2, hi)
        lo = np.where(left, lo, x1)
        x1n = np.where(left, hi - inv_phi * (hi - lo), x2)
        x2n = np.where(left, x1, lo + inv_phi * (hi - lo))
        x1, x2 = x1n, x2n
        new = np.where(left, x1, x2)
        fn = _device_terms(np.exp(new), mu, p, a, amp, k)[2]
        f1, f2 = np.where(left, fn, f2), np.where(left, f1, fn)
    # the best of the last bracket and the end points (the optimum may sit on a bound)
    cands = np.stack([np.exp(x1), np.exp(x2), t_lo, t_hi])
    vals = np.stack([_device_terms(c, mu, p, a, amp, k)[2] for c in cands])
    return cands[np.argmin(vals, axis=0), np.arange(len(t_lo))]


def solve_kkt(problem: AllocationProblem, bisection_iters: int = 64, golden_iters: int = 64) -> Allocation:
    """The energy-optimal allocation by the KKT conditions (module docstring) with bisection on μ."""
    p = problem
    _check_feasible(p)
    a = p.payload_bits / p.bandwidth_hz
    amp = p.bandwidth_hz * p.noise_w_per_hz / p.gain
    k = p.gain * p.tx_power_w_max / (p.bandwidth_hz * p.noise_w_per_hz)
    t_lo, t_hi = _upload_time_bounds(p)
    t_lo = np.minimum(t_lo * (1 + 1e-12), t_hi)

    def shares(mu: float) -> tuple[np.ndarray, np.ndarray]:
        t = _golden_min_log_t(p, mu, a, amp, k, t_lo, t_hi, golden_iters)
        return t, _device_terms(t, mu, p, a, amp, k)[0]

    scale = float(np.sum(max_power_baseline(p).compute_energy_j + max_power_baseline(p).tx_energy_j))
    lo, hi = math.log(scale * 1e-9), math.log(scale * 1e3)
    while np.sum(shares(math.exp(lo))[1]) <= 1.0 and lo > math.log(scale) - 200:
        lo -= 10.0
    while np.sum(shares(math.exp(hi))[1]) > 1.0:
        if hi > math.log(scale) + 200:
            raise InfeasibleDeadline(f"deadline_s={p.deadline_s:.6g}: no band split found (bisection diverged)")
        hi += 10.0
    for _ in range(bisection_iters):
        mid = 0.5 * (lo + hi)
        if np.sum(shares(math.exp(mid))[1]) > 1.0:
            lo = mid
        else:
            hi = mid
    mu = math.exp(hi)  # feasible side: Σ b ≤ 1
    t, b = shares(mu)
    m = a * LN2 / t
    power = np.minimum(amp * b * np.expm1(m / b), p.tx_power_w_max)
    cpu = p.cycles / (p.deadline_s - t)
    return evaluate(p, np.minimum(cpu, p.cpu_hz_max), power, b, multiplier=mu)


# --------------------------------------------------------------------------- independent check: SLSQP


def solve_slsqp(problem: AllocationProblem, starts: int = 2, seed: int = 0) -> Allocation:
    """The same problem in the original variables (f_j/f_max, P_j/P_max, b_j), solved by scipy SLSQP from the
    max-power equal-share point and ``starts - 1`` random feasible-ish points; the best feasible result wins."""
    from scipy.optimize import minimize

    p = problem
    n = p.num_devices
    n0 = p.noise_w_per_hz
    base = max_power_baseline(p)
    e_scale = base.energy_j

    def unpack(x):
        return x[:n] * p.cpu_hz_max, x[n:2 * n] * p.tx_power_w_max, x[2 * n:]

    def rate_and_grads(pw, b):
        """R_j and its partial derivatives in P_j and b_j."""
        snr = p.gain * pw / (b * p.bandwidth_hz * n0)
        r = b * p.bandwidth_hz * np.log2(1.0 + snr)
        r_p = b * p.bandwidth_hz * snr / (pw * LN2 * (1.0 + snr))
        r_b = p.bandwidth_hz * (np.log2(1.0 + snr) - snr / (LN2 * (1.0 + snr)))
        return r, r_p, r_b

    scale_x = np.concatenate([p.cpu_hz_max, p.tx_power_w_max, np.ones(n)])

    def energy(x):
        f, pw, b = unpack(x)
        r = rate_and_grads(pw, b)[0]
        return float(np.sum(p.kappa * p.cycles * f**2 + pw * p.payload_bits / r)) / e_scale

    def energy_grad(x):
        f, pw, b = unpack(x)
        r, r_p, r_b = rate_and_grads(pw, b)
        g_f = 2 * p.kappa * p.cycles * f
        g_p = p.payload_bits / r - pw * p.payload_bits * r_p / r**2
        g_b = -pw * p.payload_bits * r_b / r**2
        return np.concatenate([g_f, g_p, g_b]) * scale_x / e_scale

    def slack(x):
        f, pw, b = unpack(x)
        return (p.deadline_s - p.cycles / f - p.payload_bits / rate_and_grads(pw, b)[0]) / p.deadline_s

    def slack_jac(x):
        f, pw, b = unpack(x)
        r, r_p, r_b = rate_and_grads(pw, b)
        jac = np.zeros((n, 3 * n))
        idx = np.arange(n)
        jac[idx, idx] = p.cycles / f**2 * p.cpu_hz_max
        jac[idx, n + idx] = p.payload_bits * r_p / r**2 * p.tx_power_w_max
        jac[idx, 2 * n + idx] = p.payload_bits * r_b / r**2
        return jac / p.deadline_s

    cons = [{"type": "ineq", "fun": slack, "jac": slack_jac},
            {"type": "ineq", "fun": lambda x: 1.0 - np.sum(x[2 * n:]),
             "jac": lambda x: np.concatenate([np.zeros(2 * n), -np.ones(n)])[None]}]
    bounds = [(1e-4, 1.0)] * (2 * n) + [(1e-7, 1.0)] * n
    rng = np.random.default_rng(seed)
    x0s = [np.concatenate([np.ones(2 * n), np.full(n, 1.0 / n)])]
    for _ in range(starts - 1):
        w = rng.dirichlet(np.ones(n))
        x0s.append(np.concatenate([rng.uniform(0.7, 1.0, n), rng.uniform(0.5, 1.0, n), 0.5 / n + 0.5 * w]))
    best = None
    for x0 in x0s:
        res = minimize(energy, x0, jac=energy_grad, method="SLSQP", bounds=bounds, constraints=cons,
                       options={"ftol": 1e-15, "maxiter": 500})
        x = np.clip(res.x, [lo for lo, _ in bounds], [hi for _, hi in bounds])
        if np.min(slack(x)) < -1e-9 or np.sum(x[2 * n:]) > 1.0 + 1e-9:
            continue
        if best is None or energy(x) < energy(best):
            best = x
    if best is None:
        raise RuntimeError("SLSQP found no feasible point")
    f, pw, b = unpack(best)
    return evaluate(p, f, pw, b)


# --------------------------------------------------------------------------- random instances and the check


def random_problem(rng: np.random.Generator, num_devices: int | None = None, deadline_factor: float | None = None,
                   bandwidth_hz: float = 1e6) -> AllocationProblem:
    """A random instance: 3-10 devices at 50-500 m (3GPP path loss, Rayleigh fading), f_max 1-2 GHz,
    P_max 0.1-0.2 W, 0.2-1 Gcycles of local training, a 20k-200k-parameter model sent at 2-8 or 32 bits per
    entry, and a deadline 1.05-2× the max-power equal-share round time (so the FedDiff baseline is feasible)."""
    n = int(rng.integers(3, 11)) if num_devices is None else num_devices
    dist_km = rng.uniform(0.05, 0.5, n)
    gain = np.asarray(wireless.channel_gain(dist_km, rng, "rayleigh"))
    gain = np.maximum(gain, 1e-3 * np.asarray(wireless.channel_gain(dist_km, fading="none")))  # no deep fades
    params = int(rng.integers(20_000, 200_000))
    bits = rng.choice([2, 4, 6, 8, 32], n)
    payload = params * bits + 64 * 10
    p = AllocationProblem(cycles=rng.uniform(0.2e9, 1e9, n), payload_bits=payload.astype(float), gain=gain,
                          cpu_hz_max=rng.uniform(1e9, 2e9, n), tx_power_w_max=rng.uniform(0.1, 0.2, n),
                          bandwidth_hz=bandwidth_hz, deadline_s=1.0)
    factor = rng.uniform(1.05, 2.0) if deadline_factor is None else deadline_factor
    return p.with_deadline(factor * max_power_baseline(p).round_time_s)


def allocation_check(num_instances: int = 50, seed: int = 0, num_devices: int | None = None) -> dict:
    """KKT vs SLSQP and vs the max-power baseline on random instances (same deadline for all three)."""
    rng = np.random.default_rng(seed)
    gaps, ratios, ratios_slsqp, worst_slack = [], [], [], []
    for i in range(num_instances):
        p = random_problem(rng, num_devices)
        kkt, ref, base = solve_kkt(p), solve_slsqp(p, seed=seed + i), max_power_baseline(p)
        gaps.append((kkt.energy_j - ref.energy_j) / ref.energy_j)
        ratios.append(kkt.energy_j / base.energy_j)
        ratios_slsqp.append(ref.energy_j / base.energy_j)
        worst_slack.append((p.deadline_s - kkt.round_time_s) / p.deadline_s)
    gaps_a = np.asarray(gaps)
    return {"instances": num_instances, "seed": seed,
            "max_abs_rel_gap_vs_slsqp": float(np.max(np.abs(gaps_a))),
            "max_rel_gap_vs_slsqp": float(np.max(gaps_a)),  # > 0: KKT worse than SLSQP
            "min_rel_gap_vs_slsqp": float(np.min(gaps_a)),  # < 0: KKT better than SLSQP
            "energy_ratio_vs_max_power_mean": float(np.mean(ratios)),
            "energy_ratio_vs_max_power_min": float(np.min(ratios)),
            "energy_ratio_vs_max_power_max": float(np.max(ratios)),
            "slsqp_energy_ratio_vs_max_power_mean": float(np.mean(ratios_slsqp)),
            "min_deadline_slack_frac": float(np.min(worst_slack))}
