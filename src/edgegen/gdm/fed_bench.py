"""`edgegen gdm fed bench`: fp32 FedAvg (FedDiff-style) vs fixed-Q vs dynamic-Q federated DDPM training on
non-IID digits × seeds, plus the allocation check (KKT vs SLSQP and vs max power/frequency on random instances).

Each run is ``OUT/<method>/seed_<s>`` (finished runs are skipped and interrupted ones resume from their per-round
checkpoint); the allocation check is cached in ``OUT/allocation_check.json``. Writes ``OUT/summary.json`` (kind
``gdm_fed_bench``) and ``OUT/plots/{fid_vs_rounds,energy_vs_rounds,samples}.png``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgegen.config import ConfigError, check_range
from edgegen.gdm import allocation
from edgegen.gdm.federated import METHODS, GdmFedConfig, run
from edgegen.jobs import run_jobs, start_bench
from edgegen.runs import RunDir, save_figure
from edgegen.seeding import derive_seed

AGG_KEYS = ("feature_fid", "fid_ratio", "class_entropy", "precision", "recall", "uplink_bytes", "uplink_bytes_fp32",
            "bits_per_entry_mean", "energy_j", "energy_max_power_j", "energy_fp32_max_power_j", "round_time_s",
            "deadline_s", "wall_s")


@dataclass(frozen=True)
class GdmFedBenchConfig:
    """Quantized federated diffusion training bench (SS-Diff / arXiv 2403.04430 on digits)."""

    out: Path = Path("runs/gdm-fed-bench")
    """Bench directory."""
    seeds: int = 3
    """Seeds per method."""
    first_seed: int = 0
    """Seeds are first_seed .. first_seed + seeds - 1."""
    methods: tuple[str, ...] = METHODS
    """Methods to compare (fp32_fedavg is the reference of the acceptance ratios)."""
    fed: GdmFedConfig = dataclasses.field(default_factory=GdmFedConfig)
    """Shared federated configuration (its method and seed are set per run)."""
    allocation_instances: int = 60
    """Random instances of the allocation check (KKT vs SLSQP vs max power)."""
    allocation_seed: int = 0
    """Seed of the allocation check's instances."""
    max_fid_increase: float = 0.10
    """Acceptance: dynamic_q's mean feature-FID may exceed fp32_fedavg's by at most this fraction."""
    min_byte_reduction: float = 4.0
    """Acceptance: fp32_fedavg uplink bytes / dynamic_q uplink bytes must be at least this."""
    max_allocation_gap: float = 1e-4
    """Acceptance: |E_KKT - E_SLSQP| / E_SLSQP on every instance must be at most this."""
    workers: int = 1
    """Parallel jobs (> 1: Ray tasks on this machine)."""
    ray_address: str | None = None
    """Run the jobs on this Ray cluster instead."""
    quiet: bool = False
    """No progress bars."""

    def validate(self) -> GdmFedBenchConfig:
        for m in self.methods:
            if m not in METHODS:
                raise ConfigError(f"methods: unknown method {m!r}; choose from {list(METHODS)}")
        check_range("seeds", self.seeds, 1, 1000)
        check_range("allocation_instances", self.allocation_instances, 0, 100000)
        check_range("workers", self.workers, 1, 1024)
        check_range("max_fid_increase", self.max_fid_increase, 0.0, 100.0)
        check_range("min_byte_reduction", self.min_byte_reduction, 0.0, 1e6)
        check_range("max_allocation_gap", self.max_allocation_gap, 0.0, 1.0)
        self.fed.validate()
        return self

    def run_config(self, method: str, seed: int) -> GdmFedConfig:
        return dataclasses.replace(self.fed, method=method, seed=seed)


def run_job(cfg: GdmFedBenchConfig, method: str, seed: int, command: str) -> dict:
    return run(cfg.run_config(method, seed), cfg.out / method / f"seed_{seed}", quiet=cfg.quiet, command=command)


def allocation_check_cached(cfg: GdmFedBenchConfig) -> dict | None:
    if cfg.allocation_instances == 0:
        return None
    path = cfg.out / "allocation_check.json"
    if path.exists():
        cached = json.loads(path.read_text())
        if cached.get("instances") == cfg.allocation_instances and cached.get("seed") == cfg.allocation_seed:
            return cached
    started = time.perf_counter()
    check = allocation.allocation_check(cfg.allocation_instances, cfg.allocation_seed)
    check["wall_s"] = time.perf_counter() - started
    path.write_text(json.dumps(check, indent=2))
    return check


def run_bench(cfg: GdmFedBenchConfig) -> dict:
    cfg.validate()
    command, seeds, earlier_s, started = start_bench(cfg)
    jobs = [(cfg, m, s, command) for s in seeds for m in cfg.methods]
    results = run_jobs(run_job, jobs, cfg.workers, cfg.ray_address, cfg.quiet,
                       describe=lambda job, r: f"{job[1]} seed {job[2]}: FID {r['feature_fid']:.2f}")
    by_run = {(j[1], j[2]): r for j, r in results.items()}
    check = allocation_check_cached(cfg)
    summary = {"kind": "gdm_fed_bench", "seeds": cfg.seeds, "first_seed": cfg.first_seed,
               "config": dataclasses.asdict(cfg.fed), "params": next(iter(by_run.values()))["params"],
               "real_floor_fid": next(iter(by_run.values()))["real_floor_fid"],
               "results": {m: aggregate([by_run[(m, s)] for s in seeds]) for m in cfg.methods},
               "allocation_check": check, "command": command, "workers": cfg.workers,
               "bench_wall_s": earlier_s + time.perf_counter() - started}
    summary["acceptance"] = acceptance(summary, cfg)
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    plot_curves(cfg, summary)
    plot_samples(cfg)
    return summary


def aggregate(runs: list[dict]) -> dict:
    out: dict = {}
    for k in AGG_KEYS:
        v = np.array([r[k] for r in runs], dtype=float)
        out[k] = float(v.mean())
        out[f"{k}_std"] = float(v.std())
    out["feature_fid_per_seed"] = [float(r["feature_fid"]) for r in runs]
    return out


def acceptance(summary: dict, cfg: GdmFedBenchConfig) -> dict:
    res, check = summary["results"], summary["allocation_check"]
    out: dict = {}
    if "fp32_fedavg" in res and "dynamic_q" in res:
        ref, dyn = res["fp32_fedavg"], res["dynamic_q"]
        out["byte_reduction_dynamic_vs_fp32"] = ref["uplink_bytes"] / dyn["uplink_bytes"]
        out["fid_increase_dynamic_vs_fp32"] = dyn["feature_fid"] / ref["feature_fid"] - 1.0
        out["energy_ratio_dynamic_vs_fp32"] = dyn["energy_j"] / ref["energy_j"]
        out["quantization_met"] = bool(out["byte_reduction_dynamic_vs_fp32"] >= cfg.min_byte_reduction
                                       and out["fid_increase_dynamic_vs_fp32"] <= cfg.max_fid_increase)
    if check is not None:
        out["allocation_max_abs_rel_gap_vs_slsqp"] = check["max_abs_rel_gap_vs_slsqp"]
        out["allocation_energy_ratio_vs_max_power_mean"] = check["energy_ratio_vs_max_power_mean"]
        out["allocation_met"] = bool(check["instances"] >= 50
                                     and check["max_abs_rel_gap_vs_slsqp"] <= cfg.max_allocation_gap
                                     and check["energy_ratio_vs_max_power_max"] < 1.0)
    return out


def _curves(cfg: GdmFedBenchConfig, method: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(rounds, mean over seeds of `key`) for the rows where `key` is logged."""
    per_seed = []
    for s in range(cfg.first_seed, cfg.first_seed + cfg.seeds):
        rows = RunDir(cfg.out / method / f"seed_{s}", tensorboard=False).read_metrics()
        per_seed.append({int(r["step"]): r[key] for r in rows if key in r})
    steps = sorted(set.intersection(*(set(p) for p in per_seed)))
    return np.array(steps), np.array([[p[t] for t in steps] for p in per_seed]).mean(0)


def plot_curves(cfg: GdmFedBenchConfig, summary: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for m in cfg.methods:
        x, y = _curves(cfg, m, "feature_fid")
        ax.plot(x, y, marker="o", ms=3, label=m)
    ax.axhline(summary["real_floor_fid"], color="k", ls=":", label="real-vs-real floor")
    ax.set_yscale("log")
    ax.set_xlabel("round")
    ax.set_ylabel(f"feature-FID (mean of {cfg.seeds} seeds)")
    ax.legend(fontsize=7)
    paths.append(save_figure(fig, cfg.out / "plots" / "fid_vs_rounds.png"))

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for m in cfg.methods:
        x, e = _curves(cfg, m, "energy_j")
        _, b = _curves(cfg, m, "uplink_bytes")
        keep = x > 0
        axes[0].plot(x[keep], np.cumsum(e[keep]), label=m)
        axes[1].plot(x[keep], np.cumsum(b[keep]) / 1e6, label=m)
    axes[0].set_ylabel("cumulative device energy (J)")
    axes[1].set_ylabel("cumulative uplink (MB)")
    for ax in axes:
        ax.set_xlabel("round")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    paths.append(save_figure(fig, cfg.out / "plots" / "energy_vs_rounds.png"))
    return paths


def plot_samples(cfg: GdmFedBenchConfig) -> Path:
    """50 samples of each method's final model (first seed), drawn from the same x_T."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgegen.gdm.ddpm import make_schedule
    from edgegen.gdm.denoisers import ResidualMLP
    from edgegen.gdm.train import generate

    fig, axes = plt.subplots(1, len(cfg.methods), figsize=(3.4 * len(cfg.methods), 2.0), squeeze=False)
    for ax, m in zip(axes[0], cfg.methods, strict=True):
        run_dir = cfg.out / m / f"seed_{cfg.first_seed}"
        meta = json.loads((run_dir / "ckpt" / "meta.json").read_text())
        model = ResidualMLP(**meta["model_config"])
        model.load_state_dict(torch.load(run_dir / "ckpt" / "last.pt", weights_only=True))
        sched = make_schedule(cfg.fed.diffusion_steps, "cosine")
        x = generate(model, sched, 50, torch.Generator().manual_seed(derive_seed(cfg.first_seed, "grid")),
                     cfg.fed.sample_steps).numpy().reshape(5, 10, 8, 8)
        grid = np.full((5 * 9 + 1, 10 * 9 + 1), -1.0)
        for r in range(5):
            for c in range(10):
                grid[1 + 9 * r:9 + 9 * r, 1 + 9 * c:9 + 9 * c] = x[r, c]
        ax.imshow(grid, cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(m, fontsize=9)
        ax.set_axis_off()
    return save_figure(fig, cfg.out / "plots" / "samples.png")


def format_table(summary: dict) -> str:
    res = summary["results"]
    ref = res.get("fp32_fedavg")
    rows = ["| method | feature-FID (mean ± std) | FID / floor | uplink MB | × fewer bytes than fp32 | bits / entry | "
            "energy J (allocation) | energy J (same payload, max power) | round time s |",
            "|---|---|---|---|---|---|---|---|---|"]
    for m, r in res.items():
        fewer = f"{ref['uplink_bytes'] / r['uplink_bytes']:.2f}" if ref else "—"
        rows.append(f"| {m} | {r['feature_fid']:.2f} ± {r['feature_fid_std']:.2f} | {r['fid_ratio']:.2f} | "
                    f"{r['uplink_bytes'] / 1e6:.2f} | {fewer} | {r['bits_per_entry_mean']:.2f} | "
                    f"{r['energy_j']:.4g} | {r['energy_max_power_j']:.4g} | {r['round_time_s']:.2f} |")
    return "\n".join(rows)


def report_section(run_dir: Path, summary: dict, figures: Path, out_dir: Path) -> list[str]:
    """BENCHMARKS.md section of a ``gdm_fed_bench`` run."""
    from edgegen.report import copy_plots

    c, acc, chk = summary["config"], summary["acceptance"], summary["allocation_check"]
    lines = [f"### Federated DDPM with dynamic stochastic quantization and energy-optimal allocation: `{run_dir}`", "",
             f"{summary['seeds']} seed(s); {c['num_devices']} devices with Dirichlet(α={c['dirichlet_alpha']:g}) "
             f"non-IID digits, {c['participation']:g} of them per round, {c['rounds']} rounds × {c['local_steps']} "
             f"local AdamW steps (batch {c['batch_size']}); residual-MLP denoiser, {summary['params']:,} parameters; "
             f"feature-FID of {c['eval_samples']} samples ({c['sample_steps']} DDIM steps) against the held-out half "
             f"(real-vs-real floor {summary['real_floor_fid']:.2f}). Energy and round time are summed / averaged "
             f"over rounds; every round's deadline is {c['deadline_factor']:g}× the FedDiff-style fp32 round time. "
             f"Command: `{summary.get('command', '')}`; bench wall time {summary['bench_wall_s'] / 60:.1f} min.", "",
             format_table(summary), ""]
    if "byte_reduction_dynamic_vs_fp32" in acc:
        lines += [f"dynamic_q vs fp32_fedavg: {acc['byte_reduction_dynamic_vs_fp32']:.2f}× fewer uplink bytes, "
                  f"feature-FID {100 * acc['fid_increase_dynamic_vs_fp32']:+.1f}%, device energy "
                  f"{acc['energy_ratio_dynamic_vs_fp32']:.3f}× — acceptance (≥ 4× fewer bytes at ≤ 10% worse FID) "
                  f"{'met' if acc['quantization_met'] else 'NOT met'}.", ""]
    if chk is not None:
        lines += [f"Allocation check on {chk['instances']} random instances (3-10 devices, seed {chk['seed']}): "
                  f"KKT + bisection vs scipy SLSQP max |relative energy gap| {chk['max_abs_rel_gap_vs_slsqp']:.2e} "
                  f"(KKT worse by at most {max(chk['max_rel_gap_vs_slsqp'], 0):.2e}); KKT energy / max-power "
                  "max-frequency equal-share energy at the same deadline: mean "
                  f"{chk['energy_ratio_vs_max_power_mean']:.3f}, range {chk['energy_ratio_vs_max_power_min']:.3f}-"
                  f"{chk['energy_ratio_vs_max_power_max']:.3f} — "
                  f"acceptance (≥ 50 instances, gap ≤ 1e-4, every ratio < 1) "
                  f"{'met' if acc.get('allocation_met') else 'NOT met'}.", ""]
    return lines + copy_plots(run_dir, figures, out_dir)
