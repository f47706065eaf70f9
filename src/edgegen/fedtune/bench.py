"""`edgegen fedtune lora bench`: every heterogeneous-rank method × seeds on one tier, summary + plots.

Each (method, seed) is one :func:`edgegen.fedtune.rounds.run` in ``OUT/<method>/seed_<s>``; a finished
run (summary.json present) is skipped on a re-run and an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgegen.config import ConfigError, check_range
from edgegen.fedtune.rounds import METHODS, FedConfig, run
from edgegen.jobs import earlier_wall_s, run_jobs
from edgegen.runs import RunDir, current_command, save_figure

# Per-tier defaults, chosen so a tier's whole bench fits the CPU budget (see BENCHMARKS.md for wall times).
# Device speeds: the digits MLP runs on microcontroller-class devices; MiniLM on phone-class devices.
TIER_DEFAULTS: dict[str, dict] = {
    "digits": {"rounds": 30, "local_steps": 10, "batch_size": 32, "lr": 3e-2, "eval_every": 1,
               "device_gflops": (0.5, 1.0, 2.0, 4.0), "total_bandwidth_hz": 1e6},
    "minilm": {"rounds": 12, "local_steps": 2, "batch_size": 16, "lr": 1e-2, "eval_every": 3,
               "device_gflops": (50.0, 100.0, 200.0, 400.0), "total_bandwidth_hz": 1e6},
}
TIER_METHODS = {"digits": METHODS, "minilm": tuple(m for m in METHODS if m != "full_ft")}


@dataclass(frozen=True)
class LoraBenchConfig:
    """Heterogeneous-rank federated LoRA bench."""

    tier: str = "digits"
    """digits (MLP on sklearn digits) or minilm (all-MiniLM-L6-v2 on BBC News)."""
    methods: tuple[str, ...] = ()
    """Methods to run (default: every method of the tier)."""
    seeds: int = 3
    """Seeds per method."""
    first_seed: int = 0
    """Seeds are first_seed .. first_seed + seeds - 1."""
    out: Path = Path("runs/fedtune-lora-digits")
    """Bench directory."""
    rounds: int | None = None
    """Federated rounds (default per tier: digits 30, minilm 12)."""
    local_steps: int | None = None
    """Local steps per round (default per tier)."""
    lr: float | None = None
    """Local learning rate (default per tier)."""
    selection: str = "all"
    """all, random or deadline (see FedConfig)."""
    clients_per_round: int = 10
    """Devices per round for selection=random; minimum for selection=deadline."""
    deadline_s: float = 1.0
    """Deadline for selection=deadline (s)."""
    bandwidth: str = "minmax"
    """equal or minmax; equal-share latency is logged in every run anyway."""
    dropout_prob: float = 0.0
    """Probability that a selected device fails mid-round."""
    cache_dir: str = "runs/cache"
    """MiniLM activation cache."""
    workers: int = 1
    """Parallel jobs (> 1 runs them as Ray tasks on this machine)."""
    ray_address: str | None = None
    """Run the jobs on this Ray cluster instead."""
    quiet: bool = False
    """No progress bars."""

    def validate(self) -> LoraBenchConfig:
        if self.tier not in TIER_DEFAULTS:
            raise ConfigError(f"tier must be one of {sorted(TIER_DEFAULTS)}, got {self.tier!r}")
        for m in self.methods:
            if m not in TIER_METHODS[self.tier]:
                raise ConfigError(f"methods: {m!r} is not a method of tier {self.tier}; choose from "
                                  f"{list(TIER_METHODS[self.tier])}")
        check_range("seeds", self.seeds, 1, 1000)
        check_range("workers", self.workers, 1, 1024)
        for m in self.method_list():  # every run's config must be valid before anything starts
            self.fed_config(m, self.first_seed)
        return self

    def method_list(self) -> tuple[str, ...]:
        return self.methods or TIER_METHODS[self.tier]

    def fed_config(self, method: str, seed: int) -> FedConfig:
        overrides = {k: v for k, v in (("rounds", self.rounds), ("local_steps", self.local_steps), ("lr", self.lr))
                     if v is not None}
        return FedConfig(tier=self.tier, method=method, seed=seed, selection=self.selection,
                         clients_per_round=self.clients_per_round, deadline_s=self.deadline_s,
                         bandwidth=self.bandwidth, dropout_prob=self.dropout_prob, cache_dir=self.cache_dir,
                         **{**TIER_DEFAULTS[self.tier], **overrides}).validate()


def run_job(cfg: LoraBenchConfig, method: str, seed: int, command: str) -> dict:
    out = cfg.out / method / f"seed_{seed}"
    if (out / "summary.json").exists():
        return json.loads((out / "summary.json").read_text())
    return run(cfg.fed_config(method, seed), out, quiet=cfg.quiet, command=command)


def run_bench(cfg: LoraBenchConfig) -> dict:
    cfg.validate()
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "bench_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
    command = current_command()
    seeds = range(cfg.first_seed, cfg.first_seed + cfg.seeds)
    jobs = [(cfg, m, s, command) for m in cfg.method_list() for s in seeds]
    if cfg.tier == "minilm":
        from edgegen.fedtune.minilm import minilm_task

        minilm_task(cache_dir=cfg.cache_dir)  # build the activation cache once, before workers start
    earlier_s = earlier_wall_s(cfg.out)
    started = time.perf_counter()
    results = run_jobs(run_job, jobs, cfg.workers, cfg.ray_address, cfg.quiet,
                       describe=lambda job, r: f"{job[1]} seed {job[2]}: acc {r['test_acc']:.3f}")
    summary = {**aggregate(cfg, {(j[1], j[2]): r for j, r in results.items()}), "command": command,
               "bench_wall_s": earlier_s + time.perf_counter() - started, "workers": cfg.workers}
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    plot_curves(cfg, summary)
    return summary


def aggregate(cfg: LoraBenchConfig, results: dict) -> dict:
    """Per method: accuracy mean ± std over seeds, bytes per run (mean over seeds), mean round latency."""
    out: dict = {"kind": "fedtune_lora_bench", "tier": cfg.tier, "seeds": cfg.seeds, "selection": cfg.selection,
                 "bandwidth": cfg.bandwidth,
                 "config": dataclasses.asdict(cfg.fed_config(cfg.method_list()[0], cfg.first_seed)), "results": {}}
    for m in cfg.method_list():
        runs = [results[(a, s)] for a, s in sorted(results) if a == m]
        acc = np.array([r["test_acc"] for r in runs])
        lat, lat_eq = (float(np.mean([r[k] for r in runs])) for k in ("round_latency_s_mean",
                                                                        "round_latency_equal_s_mean"))
        out["results"][m] = {
            "test_acc_mean": float(acc.mean()), "test_acc_std": float(acc.std()), "test_acc_per_seed": acc.tolist(),
            "uplink_bytes": float(np.mean([r["uplink_bytes"] for r in runs])),
            "downlink_bytes": float(np.mean([r["downlink_bytes"] for r in runs])),
            "round_latency_s_mean": lat, "round_latency_equal_s_mean": lat_eq,
            "latency_cut_vs_equal_pct": 100.0 * (1.0 - lat / lat_eq),
            "wall_s_mean": float(np.mean([r["wall_s"] for r in runs])),
            "wall_s_max": float(np.max([r["wall_s"] for r in runs])),
            "rejected": int(sum(r["rejected"] for r in runs)), "dropped": int(sum(r["dropped"] for r in runs)),
        }
    return out


def plot_curves(cfg: LoraBenchConfig, summary: dict) -> list[Path]:
    """Test accuracy vs rounds, vs cumulative bytes (up + down) and vs simulated time; mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_spec = [("accuracy_vs_rounds.png", "round", None),
                 ("accuracy_vs_bytes.png", "cumulative bytes (uplink + downlink)", "bytes"),
                 ("accuracy_vs_time.png", "simulated time (s)", "time")]
    paths = []
    for name, xlabel, kind in axes_spec:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for m in summary["results"]:
            curves = [[r for r in RunDir(cfg.out / m / f"seed_{s}", tensorboard=False).read_metrics()]
                      for s in range(cfg.first_seed, cfg.first_seed + cfg.seeds)]
            n = min(len(c) for c in curves)
            if n == 0:
                continue
            x_all = []
            for c in curves:
                if kind == "bytes":
                    x_all.append(np.cumsum([r["uplink_bytes"] + r["downlink_bytes"] for r in c[:n]]))
                elif kind == "time":
                    x_all.append(np.cumsum([r["round_latency_s"] for r in c[:n]]))
                else:
                    x_all.append(np.array([r["step"] for r in c[:n]]))
            keep = [i for i in range(n) if np.isfinite(curves[0][i]["test_acc"])]
            x = np.mean(x_all, axis=0)[keep]
            y = np.array([[c[i]["test_acc"] for i in keep] for c in curves])
            ax.plot(x, y.mean(0), marker="o", ms=2, label=f"{m} ({summary['results'][m]['test_acc_mean']:.3f})")
        ax.set_xlabel(xlabel)
        if kind == "bytes":
            ax.set_xscale("log")
        ax.set_ylabel("test accuracy (global model)")
        ax.set_title(f"fedtune LoRA, {cfg.tier} tier, mean over {cfg.seeds} seed(s)")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
        paths.append(save_figure(fig, cfg.out / "plots" / name))
    return paths


def format_table(summary: dict) -> str:
    rows = ["| method | test accuracy (mean ± std) | uplink MB / run | downlink MB / run | round latency s "
            "(allocation) | equal-bandwidth s | cut % |", "|---|---|---|---|---|---|---|"]
    for m, r in summary["results"].items():
        rows.append(f"| {m} | {r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f} | {r['uplink_bytes'] / 1e6:.2f} | "
                    f"{r['downlink_bytes'] / 1e6:.2f} | {r['round_latency_s_mean']:.3f} | "
                    f"{r['round_latency_equal_s_mean']:.3f} | {r['latency_cut_vs_equal_pct']:.1f} |")
    return "\n".join(rows)
