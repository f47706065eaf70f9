"""`edgegen moe bench` / `edgegen moe traces`: Lyapunov online device scheduling of MoE expert microservices.

Bench (one job per seed, every policy on the same random slots: common random numbers)
    1. Gate traces of the small MoE LM (:mod:`.traces`, cached) and the expert-FFN timing on this CPU.
    2. ``iid`` model (finite-state i.i.d., :mod:`.system`): every policy for ``slots`` slots; C* by the LP over
       stationary randomised policies and B from the model; the bound C* + B/V is checked per V and seed.
    3. ``trace`` model (tokens in trace order, Rayleigh fading): every policy for ``slots`` slots.
    4. Overload: the trace model at ``overload_load`` > 1 (more offered calls than Σ_d S_d): no policy can be
       stable; the trajectories show how the backlog grows.
Policies: ``lyapunov_v<V>`` for every V in ``v_values`` and the baselines greedy, jsq, round_robin, random, static
(:mod:`.lyapunov`). Metrics per policy: time-average cost per slot (the Lyapunov penalty, ms-equivalent: latency_ms +
w_E·energy_mj), MoE latency and device energy per token, time-average total backlog Σ_d Q_d (expert calls), its
Little's-law delay, the backlog growth rate over the last half of the run, and the scheduler's decision time per
slot (all layers, measured around the Python decision function).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgegen.config import ConfigError, check_range
from edgegen.jobs import earlier_wall_s, run_jobs
from edgegen.microservices.moe import lyapunov as ly
from edgegen.microservices.moe.system import EdgeSystem, SystemConfig
from edgegen.microservices.moe.traces import TraceConfig, calibrate_expert_ffn, load_or_build, plot_trace_stats
from edgegen.runs import RunDir, current_command, save_figure
from edgegen.seeding import derive_seed

SEED_FORMAT = 1


@dataclass(frozen=True)
class MoEBenchConfig:
    """Lyapunov scheduling of MoE expert microservices vs baselines, V sweep and bound check."""

    out: Path = Path("runs/moe")
    """Bench directory (finished seeds are skipped on a re-run)."""
    seeds: int = 3
    """Seeds (each: its own random slots, shared by every policy)."""
    first_seed: int = 0
    """Seeds are first_seed .. first_seed + seeds - 1."""
    v_values: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 20.0, 50.0, 100.0)
    """Lyapunov V sweep (LyDROO's default V = 20 should be among them; the backlog grows ∝ V, so a larger V needs
    more slots to reach its steady state)."""
    baselines: tuple[str, ...] = ly.BASELINES
    """Baseline policies to run."""
    slots: int = 6000
    """Slots per policy in the iid and trace models."""
    overload_load: float = 1.2
    """Offered load of the overload case (> 1)."""
    overload_slots: int = 1500
    """Slots of the overload case."""
    system: SystemConfig = dataclasses.field(default_factory=SystemConfig)
    """Edge system."""
    traces: TraceConfig = dataclasses.field(default_factory=TraceConfig)
    """The traced MoE LM."""
    cache_dir: Path = Path("runs/cache")
    """Where the trained MoE LM and its traces are cached."""
    calibration_repeats: int = 30
    """Timed repetitions of the expert FFN (median)."""
    workers: int = 1
    """Parallel seed jobs (> 1: Ray tasks on this machine)."""
    ray_address: str | None = None
    """Run the jobs on this Ray cluster instead."""
    quiet: bool = False
    """No progress bars."""

    def validate(self) -> MoEBenchConfig:
        check_range("seeds", self.seeds, 1, 1000)
        check_range("first_seed", self.first_seed, 0, 2**31 - 1000)
        if not self.v_values:
            raise ConfigError("v_values must hold at least one V")
        for i, v in enumerate(self.v_values):
            check_range(f"v_values[{i}]", v, 1e-6, 1e9)
        for b in self.baselines:
            if b not in ly.BASELINES:
                raise ConfigError(f"baselines: unknown policy {b!r}; choose from {list(ly.BASELINES)}")
        check_range("slots", self.slots, 10, 10**8)
        check_range("overload_load", self.overload_load, 1.0, 100.0)
        check_range("overload_slots", self.overload_slots, 10, 10**8)
        check_range("calibration_repeats", self.calibration_repeats, 1, 10**6)
        check_range("workers", self.workers, 1, 1024)
        self.traces.validate()
        self.system.validate(self.traces.top_k)
        return self

    def policies(self) -> list[str]:
        return [ly.policy_id(v) for v in self.v_values] + list(self.baselines)

    def overload_policies(self) -> list[str]:
        v = ly.LYDROO_DEFAULT_V if ly.LYDROO_DEFAULT_V in self.v_values else self.v_values[len(self.v_values) // 2]
        return list(dict.fromkeys([ly.policy_id(v), ly.policy_id(max(self.v_values)), *self.baselines]))


# --------------------------------------------------------------------------- environment and simulation


def draw_environment(system: EdgeSystem, experts: np.ndarray, source: str, slots: int, seed: int) -> dict:
    """Random state of every slot, drawn once and shared by every policy: token arrival, the token's experts
    (L, k) and each device's fading power (``iid``: finite levels; ``trace``: Rayleigh via wireless)."""
    from edgegen import wireless

    rng = np.random.default_rng(derive_seed(seed, "moe-env", source))
    flat = experts.reshape(-1, *experts.shape[2:])  # (tokens, L, k), sequences back to back
    arrive = rng.random(slots) < system.cfg.token_arrival_prob
    m = system.cfg.num_devices
    if source == "iid":
        token = rng.integers(0, len(flat), size=slots)
        levels = np.asarray(system.cfg.fading_levels, float)
        fading = levels[rng.integers(0, len(levels), size=(slots, m))]
    elif source == "trace":
        token = (int(rng.integers(0, len(flat))) + np.cumsum(arrive) - 1) % len(flat)
        fading = np.asarray(wireless.rayleigh_power_gain(rng, size=(slots, m)))
    else:
        raise ConfigError(f"source must be 'iid' or 'trace', got {source!r}")
    return {"arrive": arrive, "experts": flat[token], "fading": fading}


def simulate(system: EdgeSystem, env: dict, policy: str, seed: int, service: np.ndarray | None = None) -> dict:
    """Run one policy over the slots of ``env``; returns metrics and the total-backlog trajectory."""
    service = system.service if service is None else np.asarray(service, float)
    m = system.cfg.num_devices
    rng = np.random.default_rng(derive_seed(seed, "moe-policy", policy))
    rr = np.zeros(system.replicas.shape[:2], dtype=np.int64)
    latency_ms, energy_mj = system.call_costs(env["fading"])
    queue = np.zeros(m)
    slots = len(env["arrive"])
    backlog = np.empty(slots)
    cost = np.zeros(slots)
    tok_latency, tok_energy, decide_us = [], [], []
    w = system.cfg.energy_weight_s_per_j
    for t in range(slots):
        arrivals = np.zeros(m)
        if env["arrive"][t]:
            layers = system.layer_slots(env["experts"][t], latency_ms[t], energy_mj[t])
            t0 = time.perf_counter_ns()
            decision = ly.decide_slot(policy, layers, queue, w, system.replicas, rng, rr)
            decide_us.append((time.perf_counter_ns() - t0) / 1e3)
            cost[t], lat, en, arrivals = ly.slot_outcome(layers, decision, m, w)
            tok_latency.append(lat)
            tok_energy.append(en)
        queue = ly.queue_update(queue, arrivals, service)
        backlog[t] = queue.sum()  # backlog at the start of slot t + 1
    half = np.arange(slots // 2, slots)
    slope = float(np.polyfit(half, backlog[half], 1)[0]) if len(half) > 1 else 0.0
    du = np.array(decide_us) if decide_us else np.zeros(1)
    return {"cost_mean": float(cost.mean()), "latency_ms_mean": float(np.mean(tok_latency or [0.0])),
            "energy_j_mean": 1e-3 * float(np.mean(tok_energy or [0.0])), "backlog_mean": float(backlog.mean()),
            "backlog_final": float(backlog[-1]), "backlog_slope_per_slot": slope,
            "queue_delay_ms": float(backlog.mean() / service.sum() * system.cfg.slot_ms),
            "device_backlog_final": queue.tolist(),
            "decision_time_us_p50": float(np.percentile(du, 50)), "decision_time_us_p99": float(np.percentile(du, 99)),
            "decision_time_us_mean": float(du.mean()), "tokens": len(tok_latency), "slots": slots,
            "trajectory": backlog.astype(np.float32)}


# --------------------------------------------------------------------------- bench


def build_system(cfg: MoEBenchConfig, calibration: dict, load: float | None = None) -> EdgeSystem:
    sys_cfg = cfg.system if load is None else dataclasses.replace(cfg.system, load=load)
    t = cfg.traces
    return EdgeSystem(sys_cfg, calibration, t.num_layers, t.num_experts, t.top_k)


def compute_bound(system: EdgeSystem, experts: np.ndarray) -> dict:
    """C* (LP over stationary randomised policies of the finite-state i.i.d. model) and B."""
    t0 = time.perf_counter()
    case_prob, action_case, action_cost, action_arr = system.lp_cases(experts)
    lp = ly.stationary_lp(case_prob, action_case, action_cost, action_arr, system.service)
    return {"C_star": lp.c_star, "B": ly.drift_constant_b(system.max_arrivals, system.service),
            "lp_status": lp.status, "lp_message": lp.message, "lp_cases": len(case_prob),
            "lp_actions": len(action_case), "lp_wall_s": time.perf_counter() - t0,
            "device_load_at_optimum": lp.device_load.tolist(), "service": system.service.tolist(),
            "max_arrivals": system.max_arrivals.tolist()}


def run_seed(cfg: MoEBenchConfig, seed: int, command: str) -> dict:
    """Every policy on the iid and trace models, and the overload case, for one seed (skipped when done)."""
    out = cfg.out / f"seed_{seed}"
    if (out / "summary.json").exists():
        done = json.loads((out / "summary.json").read_text())
        if done.get("format") == SEED_FORMAT:
            return done
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    traces = load_or_build(cfg.traces, cfg.cache_dir)
    calibration = load_calibration(cfg)  # measured once by run_bench, read back here
    system = build_system(cfg, calibration)
    run = RunDir(out, tensorboard=False)
    result: dict = {"kind": "moe_seed", "format": SEED_FORMAT}
    trajectories = {}
    for source in ("iid", "trace"):
        env = draw_environment(system, traces["experts"], source, cfg.slots, seed)
        result[source] = {}
        for policy in cfg.policies():
            r = simulate(system, env, policy, seed)
            trajectories[f"{source}/{policy}"] = r.pop("trajectory")
            result[source][policy] = r
    over = build_system(cfg, calibration, load=cfg.overload_load)
    env = draw_environment(over, traces["experts"], "trace", cfg.overload_slots, seed)
    result["overload"] = {}
    for policy in cfg.overload_policies():
        r = simulate(over, env, policy, seed)
        trajectories[f"overload/{policy}"] = r.pop("trajectory")
        result["overload"][policy] = r
    np.savez_compressed(out / "trajectories.npz", **trajectories)
    run.write_config({"bench": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)), "seed": seed})
    return run.write_summary(result, seed, command)


def load_calibration(cfg: MoEBenchConfig) -> dict:
    """The expert-FFN timing of this bench (measured once, kept in OUT/calibration.json for re-runs)."""
    path = cfg.out / "calibration.json"
    if path.exists():
        cal = json.loads(path.read_text())
        if (cal["hidden_size"], cal["ffn_size"]) == (cfg.system.expert_hidden_size, cfg.system.expert_ffn_size):
            return cal
    cal = calibrate_expert_ffn(cfg.system.expert_hidden_size, cfg.system.expert_ffn_size, cfg.calibration_repeats)
    path.write_text(json.dumps(cal, indent=2))
    return cal


def _agg(runs: list[dict], v: float | None) -> dict:
    out = {"V": v}
    for key in ("cost_mean", "latency_ms_mean", "energy_j_mean", "backlog_mean", "backlog_final",
                "backlog_slope_per_slot", "queue_delay_ms", "decision_time_us_p50", "decision_time_us_p99",
                "decision_time_us_mean"):
        vals = np.array([r[key] for r in runs], float)
        out[key] = float(vals.mean())
        if key in ("cost_mean", "backlog_mean", "latency_ms_mean", "energy_j_mean", "backlog_slope_per_slot"):
            out[key.replace("_mean", "") + "_std"] = float(vals.std())
    out["cost_per_seed"] = [r["cost_mean"] for r in runs]
    out["backlog_per_seed"] = [r["backlog_mean"] for r in runs]
    return out


def policy_v(policy: str) -> float | None:
    kind, v = ly.parse_policy(policy)
    return 0.0 if kind == "jsq" else v


def run_bench(cfg: MoEBenchConfig) -> dict:
    cfg.validate()
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "bench_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
    command = current_command()
    earlier_s = earlier_wall_s(cfg.out)
    started = time.perf_counter()
    traces = load_or_build(cfg.traces, cfg.cache_dir, quiet=cfg.quiet)
    calibration = load_calibration(cfg)
    system = build_system(cfg, calibration)
    bound = compute_bound(system, traces["experts"])
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
    jobs = [(cfg, s, command) for s in seeds]
    results = run_jobs(run_seed, jobs, cfg.workers, cfg.ray_address, cfg.quiet,
                       describe=lambda job, r: f"seed {job[1]} done")
    per_seed = [results[j] for j in jobs]
    summary: dict = {"kind": "moe_bench", "seeds": cfg.seeds, "first_seed": cfg.first_seed, "slots": cfg.slots,
                     "v_values": list(cfg.v_values), "slot_ms": cfg.system.slot_ms, "load": cfg.system.load}
    for source, key in (("iid", "results"), ("trace", "trace_results")):
        summary[key] = {p: _agg([r[source][p] for r in per_seed], policy_v(p)) for p in cfg.policies()}
    for p, r in summary["results"].items():
        kind, v = ly.parse_policy(p)
        if kind == "lyapunov":
            r["bound"] = bound["C_star"] + bound["B"] / v
            r["bound_holds_every_seed"] = bool(max(r["cost_per_seed"]) <= r["bound"])
    summary["overload"] = {"load": cfg.overload_load, "slots": cfg.overload_slots,
                           "results": {p: _agg([r["overload"][p] for r in per_seed], policy_v(p))
                                       for p in cfg.overload_policies()}}
    summary["bound"] = bound
    summary["traces"] = {"fingerprint": cfg.traces.fingerprint(), "cache_dir": str(traces["dir"]),
                         "train": traces["train"], "config": dataclasses.asdict(cfg.traces),
                         **{k: v for k, v in traces["stats"].items() if k != "coactivation"}}
    summary["calibration"] = calibration
    summary["system"] = {"num_devices": system.cfg.num_devices, "service_calls_per_slot": system.service.tolist(),
                         "compute_ms_per_call": (1e3 * system.compute_s).tolist(),
                         "compute_energy_mj_per_call": (1e3 * system.compute_energy_j).tolist(),
                         "mean_calls_per_slot": system.mean_calls_per_slot,
                         "flops_per_call": system.flops_per_call,
                         "config": json.loads(json.dumps(dataclasses.asdict(cfg.system)))}
    summary["acceptance"] = acceptance(summary)
    summary.update({"command": command, "bench_wall_s": earlier_s + time.perf_counter() - started,
                    "workers": cfg.workers})
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    plot_trace_stats(traces["stats"], cfg.out / "plots" / "trace_stats.png")
    plot_bound(summary, cfg.out / "plots" / "cost_backlog_vs_v.png")
    plot_tradeoff(summary, cfg.out / "plots" / "cost_vs_backlog.png")
    plot_trajectories(cfg, summary, cfg.out / "plots" / "queue_trajectories.png")
    return summary


# --------------------------------------------------------------------------- acceptance checks


def _loglog_slope(x: list[float], y: list[float]) -> float | None:
    pts = [(a, b) for a, b in zip(x, y, strict=True) if a > 0 and b > 0]
    if len(pts) < 2:
        return None
    lx, lyv = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(lx, lyv, 1)[0])


def acceptance(summary: dict, growth_per_slot: float = 0.01) -> dict:
    """The issue's acceptance checks, computed from the summary (a queue "grows" when the total backlog's
    linear trend over the last half of the run exceeds ``growth_per_slot`` expert calls per slot)."""
    res, bound = summary["results"], summary["bound"]
    lyap = sorted(((r["V"], p) for p, r in res.items() if p.startswith("lyapunov_v")))
    vs = [v for v, _ in lyap]
    costs = [res[p]["cost_mean"] for _, p in lyap]
    backlogs = [res[p]["backlog_mean"] for _, p in lyap]
    out: dict = {"growth_threshold_per_slot": growth_per_slot,
                 "bound_holds_every_v_every_seed": all(res[p]["bound_holds_every_seed"] for _, p in lyap),
                 "cost_gap_loglog_slope": _loglog_slope(vs, [c - bound["C_star"] for c in costs]),
                 "backlog_loglog_slope": _loglog_slope(vs, backlogs),
                 "cost_nonincreasing_in_v": bool(np.all(np.diff(costs) <= 1e-9)),
                 "backlog_nondecreasing_in_v": bool(np.all(np.diff(backlogs) >= -1e-9)),
                 "v_with_cost_below_c_star": [v for v, c in zip(vs, costs, strict=True) if c < bound["C_star"]]}
    for model, key in (("iid", "results"), ("trace", "trace_results")):
        r = summary[key]
        grows = {p: r[p]["backlog_slope_per_slot"] > growth_per_slot for p in r}
        stable_lyap = [p for _, p in lyap if not grows[p]]
        entry = {"growing": sorted(p for p, g in grows.items() if g), "lyapunov_stable": stable_lyap,
                 "greedy_grows": grows.get("greedy")}
        if "jsq" in r:
            jsq = r["jsq"]
            comparable = [p for _, p in lyap if r[p]["backlog_mean"] <= 2.0 * jsq["backlog_mean"] + 1.0]
            if comparable:
                best = min(comparable, key=lambda p: r[p]["cost_mean"])
                entry.update({"lyapunov_at_jsq_backlog": best, "its_cost": r[best]["cost_mean"],
                              "its_backlog": r[best]["backlog_mean"], "jsq_cost": jsq["cost_mean"],
                              "jsq_backlog": jsq["backlog_mean"],
                              "cost_cut_vs_jsq_pct": 100 * (1 - r[best]["cost_mean"] / jsq["cost_mean"])})
        out[model] = entry
    slot_us = summary["slot_ms"] * 1e3
    worst = max(r["decision_time_us_p99"] for r in res.values())
    out["lyapunov_decision_time_us_p50_worst"] = max(res[p]["decision_time_us_p50"] for _, p in lyap)
    out["decision_time_us_p99_worst"] = worst
    out["decision_time_fraction_of_slot"] = worst / slot_us
    return out


# --------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_bound(summary: dict, path: Path) -> Path:
    """Cost vs V with C* and C* + B/V (left) and backlog vs V (right), iid model, mean ± std over seeds."""
    plt = _plt()
    res, bound = summary["results"], summary["bound"]
    lyap = sorted((r["V"], r) for p, r in res.items() if p.startswith("lyapunov_v"))
    v = np.array([x for x, _ in lyap])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
    ax = axes[0]
    ax.errorbar(v, [r["cost_mean"] for _, r in lyap], [r["cost_std"] for _, r in lyap], marker="o",
                label="Lyapunov drift-plus-penalty (measured)")
    grid = np.geomspace(v.min(), v.max(), 200)
    ax.plot(grid, bound["C_star"] + bound["B"] / grid, "r--", label="C* + B/V (Neely 2010)")
    ax.axhline(bound["C_star"], color="k", lw=1, label=f"C* (LP) = {bound['C_star']:.4f}")
    for name, style in (("jsq", ":"), ("greedy", "-.")):
        if name in res:
            ax.axhline(res[name]["cost_mean"], color="gray", ls=style, label=f"{name}")
    ax.set_xscale("log")
    top = max(max(r["cost_mean"] for _, r in lyap), res.get("jsq", {}).get("cost_mean", 0)) * 1.3
    ax.set_ylim(bound["C_star"] * 0.9, top)
    ax.set_xlabel("V")
    ax.set_ylabel("time-average cost per slot (ms-equivalent)")
    ax.set_title("Cost vs V, finite-state i.i.d. model")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.errorbar(v, [r["backlog_mean"] for _, r in lyap], [r["backlog_std"] for _, r in lyap], marker="o",
                label="Lyapunov (measured)")
    if "jsq" in res:
        ax.axhline(res["jsq"]["backlog_mean"], color="gray", ls=":", label="jsq")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("V")
    ax.set_ylabel("time-average backlog Σ_d Q_d (expert calls)")
    ax.set_title("Backlog vs V: O(V)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    axes[0].grid(alpha=0.3)
    return save_figure(fig, path)


def plot_tradeoff(summary: dict, path: Path) -> Path:
    """Cost vs backlog of every policy in both models (the Lyapunov V sweep as a curve)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
    for ax, key, title in ((axes[0], "results", "finite-state i.i.d. model"),
                           (axes[1], "trace_results", "trace-driven model")):
        res = summary[key]
        lyap = sorted((r["V"], r) for p, r in res.items() if p.startswith("lyapunov_v"))
        ax.plot([r["backlog_mean"] for _, r in lyap], [r["cost_mean"] for _, r in lyap], "o-",
                label="lyapunov (V sweep)")
        for v, r in lyap:
            ax.annotate(f"V={v:g}", (r["backlog_mean"], r["cost_mean"]), fontsize=7)
        for p, r in res.items():
            if not p.startswith("lyapunov_v"):
                ax.plot(r["backlog_mean"], r["cost_mean"], "s", label=p)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("time-average backlog Σ_d Q_d (expert calls; grows without bound if unstable)")
        ax.set_ylabel("time-average cost per slot (ms-equivalent)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_trajectories(cfg: MoEBenchConfig, summary: dict, path: Path) -> Path:
    """Total backlog vs slot (first seed) in the iid, trace and overload runs."""
    plt = _plt()
    data = np.load(cfg.out / f"seed_{cfg.first_seed}" / "trajectories.npz")
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.3))
    v = cfg.overload_policies()[:2]
    show = list(dict.fromkeys([*v, "greedy", "jsq", "static"]))
    for ax, source, title in ((axes[0], "iid", "finite-state i.i.d. model"),
                              (axes[1], "trace", "trace-driven model"),
                              (axes[2], "overload", f"overload (load {summary['overload']['load']:g})")):
        for p in show:
            key = f"{source}/{p}"
            if key in data:
                ax.plot(data[key], label=p, lw=1)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_xlabel("slot")
        ax.set_ylabel("Σ_d Q_d (expert calls)")
        ax.set_title(title + f", seed {cfg.first_seed}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- tables and report


def _row(p: str, r: dict, bound_column: bool) -> str:
    v = "—" if r["V"] is None else f"{r['V']:g}"
    b = (f" {r['bound']:.3f} |" if "bound" in r else " — |") if bound_column else ""
    return (f"| {p} | {v} | {r['cost_mean']:.3f} ± {r['cost_std']:.3f} |{b} {r['latency_ms_mean']:.1f} | "
            f"{1e3 * r['energy_j_mean']:.2f} | {r['backlog_mean']:.2f} ± {r['backlog_std']:.2f} | "
            f"{r['backlog_slope_per_slot']:+.4f} | {r['queue_delay_ms']:.0f} | {r['decision_time_us_p50']:.0f} / "
            f"{r['decision_time_us_p99']:.0f} |")


def format_table(summary: dict, key: str = "results") -> str:
    """Markdown table of one model's policies (``results``: the i.i.d. model, with the bound column)."""
    with_bound = key == "results"
    head = ("| policy | V | cost / slot (mean ± std) |" + (" C* + B/V |" if with_bound else "")
            + " latency ms / token | device energy mJ / token | backlog Σ Q (calls) | backlog trend (calls/slot) "
            "| queue delay ms (Little) | decision µs p50 / p99 |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    rows += [_row(p, r, with_bound) for p, r in summary[key].items()]
    return "\n".join(rows)


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "—" if x is None else format(x, spec)


def report_section(run_dir: Path, summary: dict, figures: Path, out_dir: Path) -> list[str]:
    """BENCHMARKS.md section of a ``moe_bench`` run."""
    from edgegen.report import copy_plots

    b, acc, tr, cal = summary["bound"], acceptance(summary), summary["traces"], summary["calibration"]
    sysd = summary["system"]
    lines = [f"### MoE experts as microservices, Lyapunov online device scheduling: `{run_dir}`", "",
             f"{summary['seeds']} seed(s), {summary['slots']} slots of {summary['slot_ms']:g} ms per policy and "
             f"model, offered load {summary['load']:g}, {sysd['num_devices']} devices. "
             f"Command: `{summary.get('command', '')}`; bench wall time {summary['bench_wall_s'] / 60:.1f} min "
             f"({summary['workers']} job(s) at a time).", "",
             f"Gate traces: a SMALL model's traces — `MixtralForCausalLM` with {tr['train']['num_parameters']:,} "
             f"parameters ({tr['config']['num_layers']} layers, {tr['num_experts']} experts, top-{tr['top_k']}), "
             f"random init, trained here for {tr['train']['train_wall_s']:.0f} s on generated arithmetic / "
             f"comparison / reversal chains (held-out next-char loss {tr['train']['heldout_loss']:.3f} nats vs "
             f"{tr['train']['uniform_loss']:.3f} uniform, accuracy {tr['train']['heldout_next_char_acc']:.3f}); "
             f"{tr['tokens']} traced tokens.", "",
             "| layer | usage entropy / log E | max expert share | overlap of consecutive tokens' expert sets "
             "(independent tokens) | most frequent pair: share, lift | MI to next layer's top-1 (bits) |",
             "|---|---|---|---|---|---|"]
    mi = tr["cross_layer_mi_bits"] + [None]
    for layer in range(tr["num_layers"]):
        pair = tr["top_pair"][layer]
        lines.append(f"| {layer} | {tr['entropy_norm'][layer]:.3f} | {tr['max_share'][layer]:.3f} | "
                     f"{tr['locality_overlap'][layer]:.3f} ({tr['locality_overlap_independent'][layer]:.3f}) | "
                     f"{pair['experts']}: {pair['share']:.3f}, {pair['lift']:.2f} | "
                     + ("—" if mi[layer] is None else f"{mi[layer]:.3f}") + " |")
    lines += ["", f"Expert FFN timed on this CPU (one `MixtralExperts` expert, hidden {cal['hidden_size']}, FFN "
              f"{cal['ffn_size']}, one token, one thread): {1e3 * cal['seconds_per_token']:.2f} ms median = "
              f"{cal['flops_per_s'] / 1e9:.2f} GFLOP/s; device compute per call "
              + ", ".join(f"{x:.2f}" for x in sysd["compute_ms_per_call"]) + " ms; service S_d = "
              + ", ".join(f"{x:.2f}" for x in sysd["service_calls_per_slot"]) + " calls / slot.", "",
              f"**Finite-state i.i.d. model** (bound check). C* = {b['C_star']:.5f} (LP over stationary randomised "
              f"policies: {b['lp_cases']} cases, {b['lp_actions']} actions, HiGHS, {b['lp_wall_s']:.1f} s), "
              f"B = {b['B']:.2f} (calls²). Cost per slot = MoE latency ms + "
              f"{sysd['config']['energy_weight_s_per_j']:g} ms/mJ · device energy mJ (ms-equivalent; slots without a "
              "token cost 0).", "", format_table(summary, "results"), "",
              "**Trace-driven model** (tokens in trace order, Rayleigh fading; the i.i.d. bound does not apply).", "",
              format_table(summary, "trace_results"), "",
              f"**Overload** (trace model at load {summary['overload']['load']:g}, "
              f"{summary['overload']['slots']} slots): no policy can be stable.", "",
              "| policy | backlog trend (calls/slot) | final backlog | cost / slot |", "|---|---|---|---|"]
    for p, r in summary["overload"]["results"].items():
        lines.append(f"| {p} | {r['backlog_slope_per_slot']:+.3f} | {r['backlog_final']:.1f} | {r['cost_mean']:.4f} |")
    checks = [f"- measured cost ≤ C* + B/V for every V and every seed: **{acc['bound_holds_every_v_every_seed']}**.",
              f"- trade-off: log-log slope of (cost − C*) vs V = {_fmt(acc['cost_gap_loglog_slope'])} "
              f"(O(1/V) allows down to −1; over the V with cost > C*), of backlog vs V = "
              f"{_fmt(acc['backlog_loglog_slope'])} (O(V): ≤ 1); cost "
              f"non-increasing in V: {acc['cost_nonincreasing_in_v']}, backlog non-decreasing: "
              f"{acc['backlog_nondecreasing_in_v']}." + (
                  " Finite-horizon cost below C* at V = " + ", ".join(f"{v:g}" for v in acc["v_with_cost_below_c_star"])
                  + ": their queues were still filling at the end of the run (positive backlog trend), i.e. service "
                  "was borrowed; the bound C* ≤ long-run cost holds only in steady state."
                  if acc["v_with_cost_below_c_star"] else "")]
    for model in ("iid", "trace"):
        a = acc[model]
        line = (f"- {model} model: growing backlogs (trend > {acc['growth_threshold_per_slot']} calls/slot): "
                f"{', '.join(a['growing']) or 'none'}; greedy grows: **{a['greedy_grows']}**; Lyapunov stable at "
                f"{len(a['lyapunov_stable'])} of {len(summary['v_values'])} V values.")
        if "lyapunov_at_jsq_backlog" in a:
            line += (f" At comparable backlog (≤ 2 × JSQ's + 1 call) the cheapest Lyapunov run is "
                     f"`{a['lyapunov_at_jsq_backlog']}`: cost {a['its_cost']:.4f} vs JSQ {a['jsq_cost']:.4f} "
                     f"({a['cost_cut_vs_jsq_pct']:+.1f}% cut), backlog {a['its_backlog']:.2f} vs "
                     f"{a['jsq_backlog']:.2f}.")
        checks.append(line)
    checks.append(f"- decision time per slot (all {tr['num_layers']} layers, Python + scipy): Lyapunov p50 "
                  f"{acc['lyapunov_decision_time_us_p50_worst']:.0f} µs (worst V), worst p99 over all policies "
                  f"{acc['decision_time_us_p99_worst']:.0f} µs = {100 * acc['decision_time_fraction_of_slot']:.2f}% "
                  f"of the {summary['slot_ms']:g} ms slot.")
    lines += ["", "Acceptance checks (computed from summary.json):", "", *checks]
    return lines + copy_plots(run_dir, figures, out_dir) + [""]


# --------------------------------------------------------------------------- `edgegen moe traces`


@dataclass(frozen=True)
class TracesArgs:
    """Train (or load from the cache) the small MoE LM, record its gate traces and print their statistics."""

    out: Path = Path("runs/moe-traces")
    """Directory for stats.json and plots/trace_stats.png."""
    traces: TraceConfig = dataclasses.field(default_factory=TraceConfig)
    """The traced MoE LM."""
    cache_dir: Path = Path("runs/cache")
    """Model / trace cache."""
    quiet: bool = False
    """No progress bar."""


def run_traces(args: TracesArgs) -> dict:
    traces = load_or_build(args.traces, args.cache_dir, quiet=args.quiet)
    args.out.mkdir(parents=True, exist_ok=True)
    stats = {"fingerprint": args.traces.fingerprint(), "cache_dir": str(traces["dir"]), "train": traces["train"],
             **traces["stats"]}
    (args.out / "trace_stats.json").write_text(json.dumps(stats, indent=2))
    plot_trace_stats(traces["stats"], args.out / "plots" / "trace_stats.png")
    return stats
