"""Exact and heuristic solvers of the CoT deployment problem on :class:`~.problem.Tables`.

- :func:`solve_milp`: exact MILP, flow formulation (scipy ``milp`` / HiGHS). Binary y_ij (step i served by device j)
  and continuous flows z_ijk ∈ [0, 1] on the edges (i, j) → (i+1, k) of the layered graph:
      min Σ_ij (comp_ij + [i=0]·in_j + [i=N-1]·out_j)·y_ij + Σ_ijk comm_ijk·z_ijk
      s.t. Σ_j y_ij = 1 ∀i;   Σ_k z_ijk = y_ij,  Σ_j z_ijk = y_{i+1,k} ∀i<N-1;   Σ_i r_i·y_ij ≤ C_j ∀j.
  With y integral the flow conservation makes z the indicator of the served pair, so z needs no integrality.
  Reports the HiGHS status, the optimum (or incumbent), the dual bound and the MIP gap.
- :func:`viterbi_dp`: exact shortest served path WITHOUT capacities (a relaxation: a lower bound).
- :func:`greedy_fastest`, :func:`greedy_min_latency`: constructive heuristics in chain order.
- :func:`local_search`: capacity repair then best-improvement over segment moves (steps a..b → device j, which
  includes single-step relocation), swaps of two steps' devices and exchanges of two blocks' devices.
- :func:`brute_force`: enumeration of all M^N served paths (tiny instances; the tests' reference).
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from edgegen.microservices.cot.problem import Tables, overflow_bytes, path_latency_s

HIGHS_STATUS = {0: "optimal", 1: "time_limit", 2: "infeasible", 3: "unbounded", 4: "error"}


def _fits(t: Tables, used: np.ndarray, i: int, rtol: float = 1e-9) -> np.ndarray:
    return used + t.mem[i] <= t.cap * (1 + rtol)


def solve_milp(t: Tables, time_limit_s: float = 60.0, mip_rel_gap: float = 1e-6) -> dict:
    """Exact MILP (module docstring). Keys: serve, latency_s, status, dual_bound_s, mip_gap, wall_ms, nodes."""
    started = time.perf_counter()
    n, m = t.n_steps, t.n_devices
    ny, nz = n * m, (n - 1) * m * m
    cost_y = t.comp.copy()
    cost_y[0] += t.inp
    cost_y[-1] += t.out
    c = np.concatenate([cost_y.ravel(), t.comm.ravel()])
    rows, cols, vals, lo, hi = [], [], [], [], []
    r = 0
    for i in range(n):  # Σ_j y_ij = 1
        rows += [r] * m
        cols += list(range(i * m, (i + 1) * m))
        vals += [1.0] * m
        lo.append(1.0)
        hi.append(1.0)
        r += 1
    for i in range(n - 1):
        base = ny + i * m * m
        for j in range(m):  # out-flow of (i, j) = y_ij
            rows += [r] * (m + 1)
            cols += [base + j * m + k for k in range(m)] + [i * m + j]
            vals += [1.0] * m + [-1.0]
            lo.append(0.0)
            hi.append(0.0)
            r += 1
        for k in range(m):  # in-flow of (i+1, k) = y_{i+1,k}
            rows += [r] * (m + 1)
            cols += [base + j * m + k for j in range(m)] + [(i + 1) * m + k]
            vals += [1.0] * m + [-1.0]
            lo.append(0.0)
            hi.append(0.0)
            r += 1
    for j in range(m):  # capacity
        rows += [r] * n
        cols += [i * m + j for i in range(n)]
        vals += list(t.mem)
        lo.append(-np.inf)
        hi.append(float(t.cap[j]))
        r += 1
    a = sp.csr_array((vals, (rows, cols)), shape=(r, ny + nz))
    integrality = np.concatenate([np.ones(ny), np.zeros(nz)])
    res = milp(c, integrality=integrality, bounds=Bounds(0.0, 1.0), constraints=LinearConstraint(a, lo, hi),
               options={"time_limit": float(time_limit_s), "mip_rel_gap": mip_rel_gap, "disp": False})
    wall_ms = 1e3 * (time.perf_counter() - started)
    status = HIGHS_STATUS.get(res.status, "error")
    out = {"status": status, "wall_ms": wall_ms, "serve": None, "latency_s": None,
           "dual_bound_s": getattr(res, "mip_dual_bound", None), "mip_gap": getattr(res, "mip_gap", None),
           "nodes": getattr(res, "mip_node_count", None)}
    if res.x is not None:
        serve = res.x[:ny].reshape(n, m).argmax(axis=1)
        out["serve"] = serve
        out["latency_s"] = path_latency_s(t, serve)
    return out


def viterbi_dp(t: Tables) -> dict:
    """Shortest served path ignoring capacities (Viterbi over the layered graph). Keys: serve, latency_s, feasible."""
    started = time.perf_counter()
    n = t.n_steps
    value = t.inp + t.comp[0]
    back = np.zeros((n, t.n_devices), dtype=int)
    for i in range(1, n):
        cand = value[:, None] + t.comm[i - 1]  # (prev j, next k)
        back[i] = cand.argmin(axis=0)
        value = cand.min(axis=0) + t.comp[i]
    value = value + t.out
    serve = np.zeros(n, dtype=int)
    serve[-1] = int(value.argmin())
    for i in range(n - 1, 0, -1):
        serve[i - 1] = back[i, serve[i]]
    return {"serve": serve, "latency_s": path_latency_s(t, serve), "feasible": overflow_bytes(t, serve) == 0.0,
            "wall_ms": 1e3 * (time.perf_counter() - started)}


def _greedy(t: Tables, score) -> np.ndarray:
    used = np.zeros(t.n_devices)
    serve = np.zeros(t.n_steps, dtype=int)
    for i in range(t.n_steps):
        s = score(i, serve).astype(float)
        fits = _fits(t, used, i)
        j = int(np.where(fits, s, np.inf).argmin()) if fits.any() else int((t.cap - used).argmax())
        serve[i] = j
        used[j] += t.mem[i]
    return serve


def greedy_fastest(t: Tables) -> np.ndarray:
    """Each step in chain order on the fastest device that still has room."""
    return _greedy(t, lambda i, serve: t.comp[i])


def greedy_min_latency(t: Tables) -> np.ndarray:
    """Each step in chain order on the device with room that adds the least latency (hand-off + compute)."""
    def score(i, serve):
        s = t.comp[i] + (t.inp if i == 0 else t.comm[i - 1, serve[i - 1]])
        return s + t.out if i == t.n_steps - 1 else s
    return _greedy(t, score)


def greedy(t: Tables) -> dict:
    """Best of the two greedy heuristics (feasible first, then lower latency)."""
    started = time.perf_counter()
    cands = [greedy_fastest(t), greedy_min_latency(t)]
    best = min(cands, key=lambda s: (overflow_bytes(t, s) > 0, path_latency_s(t, s)))
    return {"serve": best, "latency_s": path_latency_s(t, best), "feasible": overflow_bytes(t, best) == 0.0,
            "wall_ms": 1e3 * (time.perf_counter() - started)}


def brute_force(t: Tables) -> dict:
    """Optimal feasible served path by enumeration (M^N paths; tiny instances only)."""
    if t.n_devices ** t.n_steps > 2_000_000:
        raise ValueError(f"brute_force: {t.n_devices}^{t.n_steps} paths is too many")
    best, best_serve = np.inf, None
    for serve in itertools.product(range(t.n_devices), repeat=t.n_steps):
        s = np.array(serve)
        if overflow_bytes(t, s) > 0:
            continue
        lat = path_latency_s(t, s)
        if lat < best:
            best, best_serve = lat, s
    return {"serve": best_serve, "latency_s": None if best_serve is None else best}


# --------------------------------------------------------------------------- local search


def _edge_in(t: Tables, serve: np.ndarray, a: int) -> np.ndarray:
    """(M,) cost of entering step a on each device from its predecessor."""
    return t.inp if a == 0 else t.comm[a - 1, serve[a - 1]]


def _segment_moves(t: Tables, serve: np.ndarray, used: np.ndarray, a: int):
    """Latency delta and overflow after moving steps a..b (every b ≥ a) to every device: arrays (N-a, M)."""
    n, m = t.n_steps, t.n_devices
    cur = serve[a:]
    idx = np.arange(a, n)
    comp_new = np.cumsum(t.comp[a:], axis=0)  # (L, M) Σ_{i=a..b} comp[i, j]
    comp_old = np.cumsum(t.comp[idx, cur])
    comm_old = np.concatenate([[0.0], np.cumsum(t.comm[idx[:-1], cur[:-1], cur[1:]])])  # internal hand-offs a..b
    left_new = _edge_in(t, serve, a)
    left_old = left_new[serve[a]]
    right_new = np.empty((n - a, m))
    right_old = np.empty(n - a)
    for b in range(a, n):
        right_new[b - a] = t.out if b == n - 1 else t.comm[b, :, serve[b + 1]]
        right_old[b - a] = right_new[b - a, serve[b]]
    delta = (left_new[None] + comp_new + right_new) - (left_old + comp_old + comm_old + right_old)[:, None]
    onehot = np.zeros((n - a, m))
    onehot[np.arange(n - a), cur] = t.mem[a:]
    removed = np.cumsum(onehot, axis=0)  # (L, M) memory leaving each device
    seg = np.cumsum(t.mem[a:])  # (L,)
    after = used[None] - removed  # loads without the segment
    base = np.maximum(after - t.cap[None], 0.0)
    overflow = base.sum(axis=1, keepdims=True) - base + np.maximum(after + seg[:, None] - t.cap[None], 0.0)
    return delta, overflow


def _swap_moves(t: Tables, serve: np.ndarray, used: np.ndarray):
    """Best swap of two steps' devices that keeps capacity: (delta, p, q) or None."""
    n = t.n_steps
    if n < 2:
        return None
    reloc = np.empty((n, t.n_devices))  # relocate step i alone, neighbours fixed
    for i in range(n):
        r = t.comp[i] + _edge_in(t, serve, i) + (t.out if i == n - 1 else t.comm[i, :, serve[i + 1]])
        reloc[i] = r - r[serve[i]]
    d = reloc[:, serve]  # d[p, q] = cost of moving p onto q's device
    delta = d + d.T
    mem, dev = t.mem, serve
    ok_p = used[dev][:, None] - mem[:, None] + mem[None, :] <= t.cap[dev][:, None] * (1 + 1e-9)
    ok = ok_p & ok_p.T & (dev[:, None] != dev[None, :])
    np.fill_diagonal(ok, False)
    for p in range(n - 1):  # adjacent pairs: exact re-evaluation
        delta[p, p + 1] = delta[p + 1, p] = np.inf
        if ok[p, p + 1]:
            s = serve.copy()
            s[p], s[p + 1] = s[p + 1], s[p]
            delta[p, p + 1] = path_latency_s(t, s) - path_latency_s(t, serve)
    delta = np.where(ok, delta, np.inf)
    p, q = np.unravel_index(int(delta.argmin()), delta.shape)
    return float(delta[p, q]), int(p), int(q)


def _block_swaps(t: Tables, serve: np.ndarray, used: np.ndarray):
    """Best exchange of the devices of two maximal runs (blocks of consecutive steps on one device) that keeps
    capacity: (delta, serve after) or None. Reorders whole blocks, which single-step and segment moves cannot."""
    cuts = np.flatnonzero(np.diff(serve)) + 1
    starts, ends = np.concatenate([[0], cuts]), np.concatenate([cuts, [t.n_steps]])
    if len(starts) < 2:
        return None
    mem = np.array([t.mem[a:b].sum() for a, b in zip(starts, ends, strict=True)])
    base = path_latency_s(t, serve)
    best = None
    for p in range(len(starts)):
        for q in range(p + 1, len(starts)):
            dp, dq = serve[starts[p]], serve[starts[q]]
            if dp == dq:
                continue
            if (used[dp] - mem[p] + mem[q] > t.cap[dp] * (1 + 1e-9)
                    or used[dq] - mem[q] + mem[p] > t.cap[dq] * (1 + 1e-9)):
                continue
            s = serve.copy()
            s[starts[p]:ends[p]] = dq
            s[starts[q]:ends[q]] = dp
            delta = path_latency_s(t, s) - base
            if best is None or delta < best[0]:
                best = (delta, s)
    return best


def local_search(t: Tables, serve: np.ndarray, max_moves: int = 1000) -> np.ndarray:
    """Repair (drive the overflow to 0, preferring cheap moves) then best-improvement descent on the latency."""
    serve = np.asarray(serve, int).copy()
    n = t.n_steps
    for _ in range(max_moves):
        used = np.bincount(serve, weights=t.mem, minlength=t.n_devices)
        over = float(np.maximum(used - t.cap, 0.0).sum())
        best = (0.0, 0.0, None)  # (overflow change, latency delta, move)
        tol = 1e-12 * max(1.0, path_latency_s(t, serve))
        for a in range(n):
            delta, overflow = _segment_moves(t, serve, used, a)
            if over > 0:  # repair: largest overflow cut, then the cheapest such move
                key = (overflow - over) * 1e6 + delta / max(1e-12, np.abs(delta).max() + 1.0)
                k = int(key.argmin())
                b, j = divmod(k, t.n_devices)
                if overflow[b, j] < over - 1e-6 and (overflow[b, j] - over, delta[b, j]) < best[:2]:
                    best = (overflow[b, j] - over, delta[b, j], ("seg", a, a + b, j))
            else:
                cand = np.where(overflow <= 1e-6 * t.cap.mean(), delta, np.inf)
                k = int(cand.argmin())
                b, j = divmod(k, t.n_devices)
                if cand[b, j] < best[1] - tol:
                    best = (0.0, cand[b, j], ("seg", a, a + b, j))
        if over <= 0:
            sw = _swap_moves(t, serve, used)
            if sw is not None and sw[0] < best[1] - tol:
                best = (0.0, sw[0], ("swap", sw[1], sw[2]))
            bs = _block_swaps(t, serve, used)
            if bs is not None and bs[0] < best[1] - tol:
                best = (0.0, bs[0], ("blocks", bs[1]))
        move = best[2]
        if move is None:
            break
        if move[0] == "seg":
            serve[move[1]:move[2] + 1] = move[3]
        elif move[0] == "blocks":
            serve = move[1]
        else:
            p, q = move[1], move[2]
            serve[p], serve[q] = serve[q], serve[p]
    return serve
