"""`edgegen aigc bench`: every scheduler on the same AaaS-v0 episodes, seeds in parallel on Ray.

Layout: OUT/ALGO/seed_K/ is one RunDir per (algorithm, seed); OUT/summary.json aggregates them as
{"results": {ALGO: {return_mean, return_std, crash_steps_mean, train_wall_s_mean, env_steps, ...}}}
with mean and std taken over seeds (each seed's value = mean over its `test_episodes` test episodes),
and OUT/plots/ holds the learning curves (greedy return vs env steps and vs training wall seconds).
A finished job (summary.json present) is skipped on a re-run, and a killed D2SAC job resumes from its
checkpoint, so re-running the same command continues an interrupted bench.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgegen.aigc.d2sac import D2SACConfig
from edgegen.aigc.env import AaaSConfig, AaaSEnv, episode_stats, run_episode
from edgegen.aigc.heuristics import HEURISTICS
from edgegen.aigc.sb3 import SB3_ALGOS
from edgegen.config import ConfigError, check_range
from edgegen.jobs import run_jobs
from edgegen.runs import RunDir, current_command, save_figure
from edgegen.seeding import derive_seed

ALGOS = ("random", "round_robin", "crash_avoid", "prophet", "d2sac", "sac_discrete") + SB3_ALGOS


@dataclass(frozen=True)
class BenchConfig:
    """AaaS scheduler benchmark."""

    out: Path = Path("runs/aigc-bench")
    """Output directory (one run dir per algorithm and seed, plus summary.json and plots/)."""
    algos: tuple[str, ...] = ALGOS
    """Algorithms to run; ids: random, round_robin, crash_avoid, prophet, d2sac, sac_discrete,
    sb3_dqn, sb3_ppo, sb3_a2c, sb3_qrdqn."""
    total_env_steps: int = 100_000
    """Training budget per learned algorithm and seed, in env steps (heuristics need no training)."""
    seeds: int = 3
    """Number of seeds (run seeds first_seed .. first_seed + seeds - 1)."""
    first_seed: int = 0
    """First run seed."""
    asp_seed: int = 0
    """ASP set: 0 = canonical reference set, anything else = a new draw from the reference ranges."""
    test_episodes: int = 10
    """Greedy test episodes per seed (identical episodes for every algorithm)."""
    eval_every_env_steps: int = 10_000
    """Env steps between learning-curve points."""
    workers: int = 1
    """Parallel jobs; > 1 runs (algorithm, seed) jobs as Ray tasks, one CPU each."""
    ray_address: str | None = None
    """Ray cluster address (default: a local Ray started with `workers` CPUs)."""
    d2sac: D2SACConfig = field(default_factory=D2SACConfig)
    """D2SAC hyperparameters (total_env_steps and eval_every_env_steps are taken from the bench)."""
    quiet: bool = False
    """Disable progress bars."""

    def validate(self) -> None:
        unknown = [a for a in self.algos if a not in ALGOS]
        if unknown:
            raise ConfigError(f"unknown algorithm(s) {unknown}; known: {list(ALGOS)}")
        if not self.algos:
            raise ConfigError("algos must name at least one algorithm")
        check_range("total_env_steps", self.total_env_steps, 1, 1 << 40)
        check_range("seeds", self.seeds, 1, 10_000)
        check_range("test_episodes", self.test_episodes, 1, 100_000)
        check_range("eval_every_env_steps", self.eval_every_env_steps, 0, 1 << 40)
        check_range("workers", self.workers, 1, 4096)
        AaaSConfig(asp_seed=self.asp_seed).validate()

    def d2sac_config(self, algo: str) -> D2SACConfig:
        return dataclasses.replace(self.d2sac, actor="diffusion" if algo == "d2sac" else "mlp",
                                   total_env_steps=self.total_env_steps,
                                   eval_every_env_steps=self.eval_every_env_steps)


def episode_seeds(seed: int, episodes: int) -> list[int]:
    return [derive_seed(seed, "test", i) for i in range(episodes)]


def run_job(cfg: BenchConfig, algo: str, seed: int, command: str | None = None) -> dict:
    """Train (if learned) and test one algorithm with one seed; writes OUT/ALGO/seed_K/summary.json."""
    import torch

    torch.set_num_threads(1)
    run = RunDir(cfg.out / algo / f"seed_{seed}", tensorboard=algo not in HEURISTICS)
    if (run.path / "summary.json").exists():
        return run.read_summary()
    env_cfg = AaaSConfig(asp_seed=cfg.asp_seed)
    seeds = episode_seeds(seed, cfg.test_episodes)
    if algo in HEURISTICS:
        env, rng = AaaSEnv(env_cfg), np.random.default_rng(derive_seed(seed, "heuristic"))
        policy = HEURISTICS[algo]
        t0 = time.perf_counter()
        test = [run_episode(env, lambda obs: policy(env, rng), s) for s in seeds]
        result = {**episode_stats(test), "train_wall_s": 0.0, "env_steps": 0, "test_wall_s": time.perf_counter() - t0}
        run.write_config({"algo": algo, "env": dataclasses.asdict(env_cfg), "seed": seed})
    elif algo in ("d2sac", "sac_discrete"):
        from edgegen.aigc.d2sac import train

        result = train(cfg.d2sac_config(algo), env_cfg, seed, run, resume=True, progress=not cfg.quiet,
                       test_seeds=seeds)
    else:
        from edgegen.aigc.sb3 import train_sb3

        result = train_sb3(algo, env_cfg, seed, cfg.total_env_steps, run, obs_features=cfg.d2sac.obs_features,
                           eval_every_env_steps=cfg.eval_every_env_steps, test_seeds=seeds,
                           progress=False)
    run.close()
    return run.write_summary({"algo": algo, "asp_seed": cfg.asp_seed, **result}, seed=seed, command=command)


def run_bench(cfg: BenchConfig) -> dict:
    cfg.validate()
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "bench_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
    command = current_command()
    jobs = [(algo, seed) for algo in cfg.algos for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds)]
    # Longest jobs first so the parallel schedule ends together.
    order = sorted(jobs, key=lambda j: j[0] in HEURISTICS)
    results = run_jobs(run_job, [(cfg, a, s, command) for a, s in order], cfg.workers, cfg.ray_address, cfg.quiet,
                       describe=lambda job, r: f"{job[1]} seed {job[2]}: {r['return_mean']:.1f}")
    results = {(job[1], job[2]): r for job, r in results.items()}
    summary = {**aggregate(cfg, results), "command": command}
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    plot_curves(cfg, summary)
    return summary


def aggregate(cfg: BenchConfig, results: dict) -> dict:
    out: dict = {"results": {}, "asp_seed": cfg.asp_seed, "seeds": cfg.seeds, "test_episodes": cfg.test_episodes,
                 "total_env_steps": cfg.total_env_steps}
    for algo in cfg.algos:
        runs = [results[(a, s)] for a, s in sorted(results) if a == algo]  # seed order, not completion order
        per_seed = np.array([r["return_mean"] for r in runs])
        reach = [r.get("wall_s_to_95pct_prophet") for r in runs]
        out["results"][algo] = {
            "return_mean": float(per_seed.mean()),
            "return_std": float(per_seed.std()),
            "return_per_seed": per_seed.tolist(),
            "crash_steps_mean": float(np.mean([r["crash_steps_mean"] for r in runs])),
            "train_wall_s_mean": float(np.mean([r["train_wall_s"] for r in runs])),
            "env_steps": int(np.mean([r["env_steps"] for r in runs])),
            "seeds_reaching_95pct_prophet": sum(v is not None for v in reach),
            "wall_s_to_95pct_prophet_mean": float(np.mean([v for v in reach if v is not None]))
            if any(v is not None for v in reach) else None,
        }
    return out


HEURISTIC_STYLE = {"random": {"ls": ":", "color": "0.6"}, "round_robin": {"ls": "-.", "color": "0.5"},
                   "crash_avoid": {"ls": "--", "color": "0.5"}, "prophet": {"ls": "--", "color": "k"}}


def plot_curves(cfg: BenchConfig, summary: dict) -> list[Path]:
    """Greedy return vs env steps and vs training wall seconds (mean over seeds); heuristics as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for xkey, xlabel, name in (("step", "env steps", "return_vs_env_steps.png"),
                               ("train_wall_s", "training wall seconds (1 CPU core)", "return_vs_wall_s.png")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for algo in cfg.algos:
            res = summary["results"][algo]
            if algo in HEURISTICS:
                style = HEURISTIC_STYLE[algo]
                ax.axhline(res["return_mean"], lw=1.2, label=f"{algo} ({res['return_mean']:.0f})", **style)
                continue
            curves = [RunDir(cfg.out / algo / f"seed_{s}", tensorboard=False).read_metrics()
                      for s in range(cfg.first_seed, cfg.first_seed + cfg.seeds)]
            n = min(len(c) for c in curves)
            if n == 0:
                continue
            x = np.mean([[row[xkey] for row in c[:n]] for c in curves], axis=0)
            y = np.array([[row["eval_return"] for row in c[:n]] for c in curves])
            line, = ax.plot(x, y.mean(0), marker="o", ms=3, label=f"{algo} ({res['return_mean']:.0f})")
            ax.fill_between(x, y.min(0), y.max(0), color=line.get_color(), alpha=0.15)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("greedy episode return")
        ax.set_ylim(bottom=max(ax.get_ylim()[0], -300))
        ax.set_title(f"AaaS-v0 (asp_seed={cfg.asp_seed}), mean over {cfg.seeds} seed(s), band = min..max")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
        paths.append(save_figure(fig, cfg.out / "plots" / name))
    return paths


def format_table(summary: dict) -> str:
    rows = ["| algorithm | return (mean ± std over seeds) | crash steps / episode | train wall s | env steps |",
            "|---|---|---|---|---|"]
    for algo, r in summary["results"].items():
        rows.append(f"| {algo} | {r['return_mean']:.1f} ± {r['return_std']:.1f} | {r['crash_steps_mean']:.2f} | "
                    f"{r['train_wall_s_mean']:.0f} | {r['env_steps']} |")
    return "\n".join(rows)
