"""`edgegen fedtune kd bench`: local-only, shared-without-KD, KD and per-modality FedAvg × seeds, plus a
small sweep of the KD temperature T and the task weight λ. Each run is ``OUT/<name>/seed_<s>``; finished
runs are skipped on a re-run."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgegen.config import ConfigError, check_range
from edgegen.fedtune.distill import KD_METHODS, KDConfig, minilm_sentence_embeddings, run
from edgegen.jobs import earlier_wall_s, run_jobs
from edgegen.runs import RunDir, current_command, save_figure


@dataclass(frozen=True)
class KDBenchConfig:
    """Knowledge-distillation federated fine-tuning bench (BBC News: MiniLM embeddings vs TF-IDF)."""

    out: Path = Path("runs/fedtune-kd")
    """Bench directory."""
    methods: tuple[str, ...] = KD_METHODS
    """Methods to compare."""
    seeds: int = 3
    """Seeds per method and sweep point."""
    first_seed: int = 0
    """Seeds are first_seed .. first_seed + seeds - 1."""
    temperature: float = 2.0
    """KD temperature of the main comparison."""
    lam: float = 1.0
    """λ (local task-loss weight) of the main comparison."""
    sweep_temperatures: tuple[float, ...] = (1.0, 2.0, 4.0)
    """KD temperatures of the sweep (empty: no sweep)."""
    sweep_lams: tuple[float, ...] = (0.5, 1.0, 2.0)
    """λ values of the sweep."""
    frozen_encoder_ablation: bool = True
    """Also run every method with the encoders frozen at their aligned initialisation (encoder_lr_scale 0)."""
    rounds: int = 30
    """Federated rounds."""
    cache_dir: str = "runs/cache"
    """MiniLM activation / embedding cache."""
    workers: int = 1
    """Parallel jobs (> 1: Ray tasks on this machine)."""
    ray_address: str | None = None
    """Run the jobs on this Ray cluster instead."""
    quiet: bool = False
    """No progress bars."""

    def validate(self) -> KDBenchConfig:
        for m in self.methods:
            if m not in KD_METHODS:
                raise ConfigError(f"methods: unknown method {m!r}; choose from {list(KD_METHODS)}")
        check_range("seeds", self.seeds, 1, 1000)
        check_range("workers", self.workers, 1, 1024)
        for name in self.jobs_by_name():
            self.kd_config(name, self.first_seed).validate()
        return self

    def jobs_by_name(self) -> dict[str, tuple[str, float, float, float]]:
        """Run name → (method, T, λ, encoder lr scale): the methods at (temperature, lam), every sweep point
        of KD, then (ablation) every method with frozen encoders as ``<method>_frozen_enc``."""
        named = {m: (m, self.temperature, self.lam, 1.0) for m in self.methods}
        for t in self.sweep_temperatures:
            for lam in self.sweep_lams:
                if not ("kd" in self.methods and (t, lam) == (self.temperature, self.lam)):  # that one is `kd`
                    named[sweep_name(t, lam)] = ("kd", t, lam, 1.0)
        if self.frozen_encoder_ablation:
            named.update({f"{m}_frozen_enc": (m, self.temperature, self.lam, 0.0) for m in self.methods})
        return named

    def kd_config(self, name: str, seed: int) -> KDConfig:
        method, t, lam, enc = self.jobs_by_name()[name]
        return KDConfig(method=method, seed=seed, temperature=t, lam=lam, encoder_lr_scale=enc, rounds=self.rounds,
                        cache_dir=self.cache_dir)


def sweep_name(temperature: float, lam: float) -> str:
    return f"kd_T{temperature:g}_lam{lam:g}"


def run_job(cfg: KDBenchConfig, name: str, seed: int, command: str) -> dict:
    out = cfg.out / name / f"seed_{seed}"
    if (out / "summary.json").exists():
        return json.loads((out / "summary.json").read_text())
    return run(cfg.kd_config(name, seed), out, quiet=cfg.quiet, command=command)


def run_bench(cfg: KDBenchConfig) -> dict:
    cfg.validate()
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "bench_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
    minilm_sentence_embeddings(cfg.cache_dir)  # build the embedding cache once, before workers start
    command = current_command()
    seeds = range(cfg.first_seed, cfg.first_seed + cfg.seeds)
    jobs = [(cfg, name, s, command) for name in cfg.jobs_by_name() for s in seeds]
    earlier_s = earlier_wall_s(cfg.out)
    started = time.perf_counter()
    results = run_jobs(run_job, jobs, cfg.workers, cfg.ray_address, cfg.quiet,
                       describe=lambda job, r: f"{job[1]} seed {job[2]}: acc {r['test_acc']:.3f}")
    by_name = {(j[1], j[2]): r for j, r in results.items()}
    summary = {"kind": "fedtune_kd_bench", "seeds": cfg.seeds, "temperature": cfg.temperature, "lam": cfg.lam,
               "config": dataclasses.asdict(cfg.kd_config(cfg.methods[0], cfg.first_seed)),
               "results": {m: aggregate_runs([by_name[(m, s)] for s in seeds]) for m in cfg.methods},
               "sweep": {n: {"temperature": t, "lam": lam, **aggregate_runs([by_name[(n, s)] for s in seeds])}
                         for n, (_, t, lam, enc) in cfg.jobs_by_name().items() if n not in cfg.methods and enc > 0},
               "frozen_encoders": {n: aggregate_runs([by_name[(n, s)] for s in seeds])
                                   for n, (_, _, _, enc) in cfg.jobs_by_name().items() if enc == 0},
               "command": command, "bench_wall_s": earlier_s + time.perf_counter() - started, "workers": cfg.workers}
    if "kd" in cfg.methods and cfg.temperature in cfg.sweep_temperatures and cfg.lam in cfg.sweep_lams:
        point = {"temperature": cfg.temperature, "lam": cfg.lam, **summary["results"]["kd"]}
        summary["sweep"] = dict(sorted({**summary["sweep"], sweep_name(cfg.temperature, cfg.lam): point}.items(),
                                       key=lambda item: (item[1]["temperature"], item[1]["lam"])))
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    plot_per_modality(cfg, summary)
    return summary


def aggregate_runs(runs: list[dict]) -> dict:
    acc = np.array([r["test_acc"] for r in runs])
    delay = float(np.mean([r["round_delay_s_mean"] for r in runs]))
    delay_equal = float(np.mean([r["round_delay_equal_s_mean"] for r in runs]))
    mods = list(runs[0]["per_modality_acc"])
    out = {"test_acc_mean": float(acc.mean()), "test_acc_std": float(acc.std()), "test_acc_per_seed": acc.tolist(),
           "per_modality_acc": {m: float(np.mean([r["per_modality_acc"][m] for r in runs])) for m in mods},
           "per_modality_acc_std": {m: float(np.std([r["per_modality_acc"][m] for r in runs])) for m in mods},
           "bytes_per_round": float(np.mean([r["bytes_per_round"] for r in runs])),
           "round_delay_s_mean": delay, "round_delay_equal_s_mean": delay_equal,
           "delay_ratio_vs_equal": delay / delay_equal if delay_equal > 0 else 1.0}
    if "local_path_acc" in runs[0]:
        out["local_path_acc"] = {m: float(np.mean([r["local_path_acc"][m] for r in runs])) for m in mods}
    return out


def plot_per_modality(cfg: KDBenchConfig, summary: dict) -> list[Path]:
    """One panel per modality: mean test accuracy over seeds vs round, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mods = list(next(iter(summary["results"].values()))["per_modality_acc"])
    fig, axes = plt.subplots(1, len(mods), figsize=(6 * len(mods), 4.2), squeeze=False)
    for ax, mod in zip(axes[0], mods, strict=True):
        for m, r in summary["results"].items():
            curves = [RunDir(cfg.out / m / f"seed_{s}", tensorboard=False).read_metrics()
                      for s in range(cfg.first_seed, cfg.first_seed + cfg.seeds)]
            n = min(len(c) for c in curves)
            y = np.array([[row[f"acc_{mod}"] for row in c[:n]] for c in curves])
            ax.plot(np.arange(1, n + 1), y.mean(0), label=f"{m} ({r['per_modality_acc'][mod]:.3f})")
        ax.set_title(f"{mod} devices (T={summary['temperature']:g}, λ={summary['lam']:g})")
        ax.set_xlabel("round")
        ax.set_ylabel("test accuracy, mean over the modality's devices")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    return [save_figure(fig, cfg.out / "plots" / "accuracy_per_modality.png")]


def format_table(summary: dict) -> str:
    mods = list(next(iter(summary["results"].values()))["per_modality_acc"])
    rows = ["| run | test accuracy (mean ± std) | " + " | ".join(mods) + " | bytes / round | round delay s | "
            "equal split s | ratio |", "|---|---|" + "---|" * len(mods) + "---|---|---|---|"]
    for name, r in {**summary["results"], **summary["sweep"], **summary.get("frozen_encoders", {})}.items():
        rows.append(f"| {name} | {r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f} | "
                    + " | ".join(f"{r['per_modality_acc'][m]:.4f}" for m in mods)
                    + f" | {r['bytes_per_round'] / 1e6:.2f} MB | {r['round_delay_s_mean']:.2f} | "
                    f"{r['round_delay_equal_s_mean']:.2f} | {r['delay_ratio_vs_equal']:.3f} |")
    return "\n".join(rows)
