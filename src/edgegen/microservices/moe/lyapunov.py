"""Lyapunov drift-plus-penalty scheduling of expert microservices: pure per-slot functions (numpy + scipy only).

Model (one slot t; :mod:`edgegen.microservices.moe.system` builds the inputs)
    A token passes L MoE layers; at layer l the gate activates J ≤ k experts ("calls"). Call j may run on any
    device d holding a replica of its expert (``allowed[j, d]``); each device runs at most one call per layer (the
    k experts of a layer run in parallel on k distinct devices, Edge-LAM / WDMoE). Call j on device d takes
    ``latency_ms[j, d]`` (send the hidden state + expert FFN + return the result) and costs the device
    ``energy_mj[j, d]``; it adds ``work[j]`` (expert calls, 1 per token) to device d's queue.
    Slot cost  C(t) = Σ_l [ max_j latency_ms[j, d_j] + w_E · Σ_j energy_mj[j, d_j] ]   (ms-equivalent; w_E is the
               energy weight in ms per mJ = s per J). The functions below are unit-agnostic; ms and mJ put the
               interesting range of V around LyDROO's default V = 20.
    Arrivals   A_d(t) = Σ_l Σ_{j: d_j = d} work[j];   queues  Q_d(t+1) = max(Q_d(t) + A_d(t) − S_d, 0)
    (the queue update of LyDROO, Bi, Huang, Wang, Zhang, IEEE TWC 2021: Q(t+1) = max(Q(t) + A(t) − b(t), 0)).

Drift-plus-penalty (Neely, *Stochastic Network Optimization with Application to Communication and Queueing
Systems*, Morgan & Claypool 2010, ch. 3-4): with L(Q) = ½ Σ_d Q_d², the one-slot drift satisfies
Δ(t) ≤ B + Σ_d Q_d (A_d − S_d) with B = ½ Σ_d max (A_d − S_d)² (:func:`drift_constant_b`); every slot choose the
action minimising Σ_d Q_d(t)·A_d(t) + V·C(t) (S_d does not depend on the action). For i.i.d. random states
ω(t) and Q(0) = 0 this gives, for every horizon T (Neely 2010, Theorem 4.8),
    (1/T) Σ_t E[C(t)] ≤ C* + B/V     and     time-average backlog O(V) (when a strictly feasible policy exists),
where C* is the least time-average cost of any stationary randomised policy that keeps E[A_d] ≤ S_d
(:func:`stationary_lp`). V trades cost against backlog; LyDROO's default is V = 20.

The per-slot problem separates over layers (Q is fixed within a slot and everything else is a sum over
layers). Per layer it is an assignment with a bottleneck term, min Σ_j c[j, d_j] + w · max_j ℓ[j, d_j] over
one-to-one maps; :func:`assign_min_max` solves it exactly by enumerating the threshold of the max and solving each
restricted linear assignment with scipy's ``linear_sum_assignment`` (the Hungarian/Jonker-Volgenant method).
Baselines (:data:`BASELINES`): ``greedy`` (min cost, queues ignored: V → ∞), ``jsq`` (join the shortest queues:
V = 0, ties broken at random), ``round_robin`` (cycle through each expert's replicas), ``random`` (a uniformly
random feasible device per call), ``static`` (each expert always on its primary replica; a conflict moves a call
to another replica).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

BASELINES = ("greedy", "jsq", "round_robin", "random", "static")
LYDROO_DEFAULT_V = 20.0  # LyDROO.py (github revenol/LyDROO): V = 20


class LayerSlot(NamedTuple):
    """One MoE layer of one slot: J activated experts (calls) × M devices."""

    experts: np.ndarray  # (J,) expert ids (for round-robin / static bookkeeping)
    allowed: np.ndarray  # (J, M) bool: device holds a replica of the call's expert
    latency_ms: np.ndarray  # (J, M) send + compute + return time of the call on the device
    energy_mj: np.ndarray  # (J, M) device energy of the call (compute + transmit)
    work: np.ndarray  # (J,) work added to the serving device's queue (expert calls)


def policy_id(v: float) -> str:
    """``lyapunov_v<V>`` with V printed compactly (``lyapunov_v20``, ``lyapunov_v0.5``)."""
    return f"lyapunov_v{v:g}"


def parse_policy(name: str) -> tuple[str, float | None]:
    """``("lyapunov", V)`` for ``lyapunov_v<V>``, ``(name, None)`` for a baseline; ValueError otherwise."""
    if name.startswith("lyapunov_v"):
        v = float(name[len("lyapunov_v"):])
        if not v >= 0:
            raise ValueError(f"policy {name!r}: V must be >= 0")
        return "lyapunov", v
    if name in BASELINES:
        return name, None
    raise ValueError(f"unknown policy {name!r}; choose lyapunov_v<V> or one of {list(BASELINES)}")


# --------------------------------------------------------------------------- assignment


def _lsa(cost: np.ndarray, feasible: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Min-cost one-to-one assignment of rows to columns using only feasible entries (None if impossible)."""
    big = 1.0 + 2.0 * (np.abs(cost[feasible]).sum() if feasible.any() else 0.0)
    rows, cols = linear_sum_assignment(np.where(feasible, cost, big))
    if not feasible[rows, cols].all():
        return None
    out = np.empty(cost.shape[0], dtype=np.int64)
    out[rows] = cols
    return out, float(cost[rows, cols].sum())


def assign_min_max(linear: np.ndarray, latency: np.ndarray, latency_weight: float,
                   allowed: np.ndarray) -> tuple[np.ndarray, float]:
    """Exact minimiser of ``Σ_j linear[j, d_j] + latency_weight · max_j latency[j, d_j]`` over maps of the J rows
    to distinct allowed columns. Returns (column per row, objective).

    Method: the optimum's max latency equals some entry T; for each candidate T in ascending order (starting at
    the smallest T that leaves every row a column) solve the linear assignment restricted to entries ≤ T and add
    ``latency_weight · (achieved max)``; stop once the unrestricted linear optimum plus ``latency_weight · T``
    cannot beat the best found. Raises ValueError when no feasible assignment exists.
    """
    allowed = np.asarray(allowed, dtype=bool)
    full = _lsa(linear, allowed)
    if full is None:
        raise ValueError("no feasible assignment: some call has no free device holding its expert")
    if latency_weight == 0.0:
        return full[0], full[1]
    lin_floor = full[1]
    lat_rows = np.where(allowed, latency, np.inf)
    start = np.max(lat_rows.min(axis=1))
    best: tuple[np.ndarray, float] | None = None
    for t in np.unique(latency[allowed]):
        if t < start:
            continue
        if best is not None and lin_floor + latency_weight * t >= best[1]:
            break
        sol = _lsa(linear, allowed & (latency <= t))
        if sol is None:
            continue
        cols, lin = sol
        obj = lin + latency_weight * float(latency[np.arange(len(cols)), cols].max())
        if best is None or obj < best[1] - 1e-15:
            best = (cols, obj)
    assert best is not None  # the largest threshold admits the unrestricted solution
    return best


# --------------------------------------------------------------------------- per-slot policies


def lyapunov_layer(layer: LayerSlot, queue: np.ndarray, v: float, energy_weight: float) -> np.ndarray:
    """Drift-plus-penalty choice for one layer: argmin Σ_j Q_{d_j}·work_j + V·(max_j latency + w_E Σ_j energy)
    (``energy_weight`` = w_E)."""
    linear = queue[None, :] * layer.work[:, None] + v * energy_weight * layer.energy_mj
    return assign_min_max(linear, layer.latency_ms, v, layer.allowed)[0]


def greedy_layer(layer: LayerSlot, energy_weight: float) -> np.ndarray:
    """Min-cost choice ignoring queues (the V → ∞ limit of drift-plus-penalty)."""
    return assign_min_max(energy_weight * layer.energy_mj, layer.latency_ms, 1.0, layer.allowed)[0]


def jsq_layer(layer: LayerSlot, queue: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Join the shortest queues: argmin Σ_j Q_{d_j}·work_j (V = 0); equal queues are broken uniformly at random."""
    jitter = rng.random(layer.allowed.shape) * 1e-9 * (1.0 + float(np.abs(queue).max()))
    return assign_min_max(queue[None, :] * layer.work[:, None] + jitter, layer.latency_ms, 0.0, layer.allowed)[0]


def preferred_layer(layer: LayerSlot, preferred: np.ndarray) -> np.ndarray:
    """Each call on its ``preferred`` device when the devices are distinct; otherwise the assignment that keeps
    the most calls on their preferred device (the rest on other replicas)."""
    cost = (np.arange(layer.allowed.shape[1])[None, :] != np.asarray(preferred)[:, None]).astype(float)
    return assign_min_max(cost, layer.latency_ms, 0.0, layer.allowed)[0]


def random_layer(layer: LayerSlot, rng: np.random.Generator) -> np.ndarray:
    """A random feasible assignment (random costs on the allowed entries, then the assignment)."""
    return assign_min_max(rng.random(layer.allowed.shape), layer.latency_ms, 0.0, layer.allowed)[0]


def decide_slot(policy: str, layers: Sequence[tuple[int, LayerSlot]], queue: np.ndarray,
                energy_weight: float, replicas: np.ndarray, rng: np.random.Generator,
                rr_counter: np.ndarray) -> list[np.ndarray]:
    """Devices for every call of every layer of one slot under ``policy``.

    ``layers`` holds (layer index, :class:`LayerSlot`); ``replicas[l, e]`` lists expert e's devices at layer l,
    primary first; ``rr_counter[l, e]`` is round-robin state (advanced in place).
    """
    kind, v = parse_policy(policy)
    out = []
    for l_idx, layer in layers:
        if kind == "lyapunov":
            devices = lyapunov_layer(layer, queue, v, energy_weight)
        elif kind == "greedy":
            devices = greedy_layer(layer, energy_weight)
        elif kind == "jsq":
            devices = jsq_layer(layer, queue, rng)
        elif kind == "random":
            devices = random_layer(layer, rng)
        elif kind == "static":
            devices = preferred_layer(layer, replicas[l_idx, layer.experts, 0])
        else:  # round_robin
            reps = replicas[l_idx, layer.experts]
            turn = rr_counter[l_idx, layer.experts] % reps.shape[1]
            devices = preferred_layer(layer, reps[np.arange(len(turn)), turn])
            rr_counter[l_idx, layer.experts] += 1
        out.append(devices)
    return out


# --------------------------------------------------------------------------- slot accounting


def slot_outcome(layers: Sequence[tuple[int, LayerSlot]], decision: Sequence[np.ndarray], num_devices: int,
                 energy_weight: float) -> tuple[float, float, float, np.ndarray]:
    """(cost, latency_ms, energy_mj, arrivals per device) of a decision; latency = Σ_l max_j latency[j, d_j]."""
    arrivals = np.zeros(num_devices)
    latency = energy = 0.0
    for (_, layer), devices in zip(layers, decision, strict=True):
        rows = np.arange(len(devices))
        if not layer.allowed[rows, devices].all() or len(set(devices.tolist())) != len(devices):
            raise ValueError("decision uses a device without the expert's replica or a device twice in a layer")
        latency += float(layer.latency_ms[rows, devices].max())
        energy += float(layer.energy_mj[rows, devices].sum())
        np.add.at(arrivals, devices, layer.work)
    return latency + energy_weight * energy, latency, energy, arrivals


def queue_update(queue: np.ndarray, arrivals: np.ndarray, service: np.ndarray) -> np.ndarray:
    """Q(t+1) = max(Q(t) + A(t) − S, 0) elementwise."""
    return np.maximum(np.asarray(queue, float) + np.asarray(arrivals, float) - np.asarray(service, float), 0.0)


def drift_constant_b(max_arrivals: np.ndarray, service: np.ndarray) -> float:
    """B = ½ Σ_d max_{0 ≤ A_d ≤ A_max,d} (A_d − S_d)² = ½ Σ_d max(S_d, A_max,d − S_d)².

    From Q(t+1)² ≤ (Q + A − S)² for Q(t+1) = max(Q + A − S, 0), so Δ(t) ≤ B + Σ_d Q_d (A_d − S_d) for every
    action and state (Neely 2010, section 3.1.1).
    """
    a = np.asarray(max_arrivals, float)
    s = np.asarray(service, float)
    return float(0.5 * np.sum(np.maximum(s, a - s) ** 2))


# --------------------------------------------------------------------------- optimal stationary policy (LP)


class StationaryLP(NamedTuple):
    c_star: float
    device_load: np.ndarray  # E[A_d] under the optimal stationary policy
    status: int
    message: str


def stationary_lp(case_prob: np.ndarray, action_case: np.ndarray, action_cost: np.ndarray,
                  action_arrivals: np.ndarray, service: np.ndarray) -> StationaryLP:
    """C* = min Σ_c π_c Σ_{a∈c} y_a cost_a  s.t.  Σ_c π_c Σ_{a∈c} y_a A_a ≤ S,  Σ_{a∈c} y_a = 1,  y ≥ 0.

    ``case_prob[c]`` is the probability π_c of decision case c (a random-state value, e.g. one layer's experts and
    the channel states of their replica devices); ``action_case[a]`` the case of action a, ``action_cost[a]`` its
    cost and ``action_arrivals[a]`` its per-device arrivals (shape (num_actions, M)). y_a is the probability of
    choosing a in its case: a stationary randomised policy (Neely 2010, Theorem 4.5: the best such policy is optimal
    over all policies that keep the queues stable). Solved with scipy's HiGHS ``linprog``.
    """
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix

    case_prob = np.asarray(case_prob, float)
    action_case = np.asarray(action_case, np.int64)
    n = len(action_case)
    weight = case_prob[action_case]
    a_eq = csr_matrix((np.ones(n), (action_case, np.arange(n))), shape=(len(case_prob), n))
    a_ub = csr_matrix(np.asarray(action_arrivals, float).T * weight[None, :])
    res = linprog(weight * np.asarray(action_cost, float), A_ub=a_ub, b_ub=np.asarray(service, float),
                  A_eq=a_eq, b_eq=np.ones(len(case_prob)), bounds=(0, None), method="highs")
    if res.status != 0:
        return StationaryLP(float("inf"), np.full(len(service), np.nan), int(res.status), str(res.message))
    return StationaryLP(float(res.fun), a_ub @ res.x, 0, str(res.message))


def enumerate_assignments(allowed: np.ndarray) -> list[tuple[int, ...]]:
    """Every map of the J rows to distinct allowed columns (lexicographic order)."""
    options = [np.flatnonzero(row).tolist() for row in np.asarray(allowed, bool)]
    return [combo for combo in itertools.product(*options) if len(set(combo)) == len(combo)]
