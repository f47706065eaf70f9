"""`edgegen gdm ddpo`: DDPO fine-tuning runs of the digits DDPM over seeds, with the issue's acceptance checks.

Runs (ids in summary.json): one per name in `reward` (``class``: p(target digit); ``class_set``: Σ p over a set of
digits, the single reward that collapses; ``diversity``: the same plus the group diversity reward;
``multitask``: a class-conditional model, each condition rewarded by its own class probability; ``brightness``,
``jpeg``; ``mixed``: the class-conditional model with brightness for even and JPEG compressibility for odd digit
conditions, run twice: ``mixed`` with per-condition advantage tracking and ``mixed_batch`` with advantages z-scored
over the whole batch), plus the λ sweep ``class_lam<λ>``: the ``class`` run with the pretraining-loss regulariser of
weight λ.
Every run starts from the same base model (``OUT/base_uncond`` or ``OUT/base_cond``: ``train.train`` with the
default recipe, trained once when missing) and is resumable (``OUT/<run>/seed_<s>``: checkpoint every
`ckpt_every` epochs, a finished seed is skipped).

Per run and seed: reward before/after (the task reward, without the diversity bonus, on `eval_samples` fresh
samples), normalised class entropy after, feature-FID of the fine-tuned samples against the base model's samples
(drift from the base distribution), per-update approx-KL (``ddpo.per_update_kl``) and training wall time, plus
the wall time at which the sampled batch's mean reward first reached `reward_target`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edgegen.config import ConfigError, check_choice, check_range
from edgegen.gdm import ddpo, metrics
from edgegen.gdm.train import TrainConfig, load_model, save_image_grid, train, training_data
from edgegen.runs import RunDir, save_figure

RESULT_KEYS = ("reward_before", "reward_after", "class_entropy_before", "class_entropy_after", "feature_fid_after",
               "approx_kl_mean", "approx_kl_max", "clip_frac_mean", "wall_s", "wall_to_target_s")


@dataclass(frozen=True)
class DDPOBenchConfig:
    """DDPO fine-tuning runs over seeds (see the module docstring for the run ids)."""

    out: Path = Path("runs/gdm-ddpo")
    """Bench directory."""
    reward: tuple[str, ...] = ("class", "class_set", "diversity", "multitask", "mixed", "brightness", "jpeg")
    """Rewards to run (one run each; mixed: two, per-condition and batch-wide advantages): class, class_set,
    diversity, brightness, jpeg, multitask, mixed."""
    lambdas: tuple[float, ...] = (10.0, 100.0)
    """Pretraining-loss weights λ of the sweep on the `class` reward (λ = 0 is the `class` run; empty: no sweep)."""
    epochs: int = 150
    """Epochs per run."""
    seeds: int = 3
    """Seeds per run."""
    first_seed: int = 0
    """Seeds are first_seed .. first_seed + seeds − 1."""
    ddpo: ddpo.DDPOConfig = dataclasses.field(default_factory=ddpo.DDPOConfig)
    """DDPO settings shared by every run (reward, seed and epochs are set per run)."""
    base_train_steps: int = 12000
    """Training steps of the base models (the diffusion core's default recipe)."""
    reward_target: float = 0.9
    """Acceptance: the `class` reward to reach."""
    max_wall_s: float = 600.0
    """Acceptance: within this many seconds of fine-tuning."""
    max_approx_kl: float = 1e-3
    """Acceptance: per-update approx-KL after the first epoch at most this."""
    min_entropy: float = 0.6
    """Acceptance: normalised class entropy of the `diversity` run at least this."""
    ckpt_every: int = 25
    """Checkpoint every this many epochs."""
    workers: int = 1
    """Runs at a time (Ray tasks of one CPU each when > 1)."""
    ray_address: str | None = None
    """Ray cluster address (default: local)."""
    quiet: bool = False
    """Disable progress bars."""

    def validate(self) -> DDPOBenchConfig:
        if not self.reward and not self.lambdas:
            raise ConfigError("reward must name at least one reward (or lambdas a sweep)")
        for r in self.reward:
            check_choice("reward", r, set(ddpo.REWARDS))
        for lam in self.lambdas:
            check_range("lambdas", lam, 0.0, 1e6)
        for name in ("epochs", "seeds", "first_seed", "base_train_steps", "ckpt_every", "workers"):
            if not isinstance(getattr(self, name), int):
                raise ConfigError(f"{name} must be an integer, got {getattr(self, name)!r}")
        check_range("epochs", self.epochs, 1, 100_000)
        check_range("seeds", self.seeds, 1, 1000)
        check_range("base_train_steps", self.base_train_steps, 1, 10**7)
        check_range("ckpt_every", self.ckpt_every, 1, 100_000)
        check_range("workers", self.workers, 1, 256)
        for run in self.runs():
            self.run_config(run, self.first_seed).validate()
        return self

    def runs(self) -> list[str]:
        ids = [i for r in self.reward for i in (("mixed", "mixed_batch") if r == "mixed" else (r,))]
        return [*ids, *(f"class_lam{lam:g}" for lam in self.lambdas if lam > 0)]

    def run_config(self, run: str, seed: int) -> ddpo.DDPOConfig:
        if run.startswith("class_lam"):
            return dataclasses.replace(self.ddpo, reward="class", pretrain_weight=float(run[len("class_lam"):]),
                                       epochs=self.epochs, seed=seed)
        if run in ("mixed", "mixed_batch"):
            return dataclasses.replace(self.ddpo, reward="mixed", per_condition=run == "mixed", epochs=self.epochs,
                                       seed=seed)
        return dataclasses.replace(self.ddpo, reward=run, epochs=self.epochs, seed=seed)


# ------------------------------------------------------------------------------------------------- one run

def base_dir(cfg: DDPOBenchConfig, conditional: bool) -> Path:
    return cfg.out / ("base_cond" if conditional else "base_uncond")


def ensure_base(cfg: DDPOBenchConfig, conditional: bool) -> Path:
    """Train the base model once (the core's default recipe, seed 0) unless OUT/base_* holds it."""
    path = base_dir(cfg, conditional)
    if not (path / "summary.json").exists():
        train(TrainConfig(seed=0, conditional=conditional, train_steps=cfg.base_train_steps), path, quiet=cfg.quiet)
    return path


def _save_ckpt(run: RunDir, model, optimizer, rows: list[dict], wall_s: float) -> None:
    tmp = run.ckpt / "ddpo.pt.tmp"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rows": json.dumps(rows),
                "wall_s": wall_s}, tmp)
    tmp.replace(run.ckpt / "ddpo.pt")


def run_job(cfg: DDPOBenchConfig, name: str, seed: int, command: str) -> dict:
    """One (run, seed): before/after evaluation around ``ddpo.train_ddpo``; returns its summary."""
    torch.set_num_threads(1)
    dcfg = cfg.run_config(name, seed)
    out = cfg.out / name / f"seed_{seed}"
    run = RunDir(out, tensorboard=False)
    config = json.loads(json.dumps(dataclasses.asdict(dcfg), default=str))
    if (out / "summary.json").exists() and run.read_summary().get("ddpo") == config:
        return run.read_summary()
    if (out / "config.json").exists() and run.read_config() != config:
        raise ConfigError(f"{out} holds a run of other settings; use another --out")
    run.write_config(config)
    model, sched, _ = load_model(base_dir(cfg, dcfg.conditional))
    eval_gen = torch.Generator().manual_seed(seed * 7919 + 1)
    before = ddpo.evaluate(model, sched, dcfg, eval_gen)
    x_data, y_data = training_data("half_a")
    optimizer = torch.optim.Adam(model.parameters(), lr=dcfg.lr)
    rows, wall = [], 0.0
    if (run.ckpt / "ddpo.pt").exists():
        saved = torch.load(run.ckpt / "ddpo.pt", weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        rows, wall = json.loads(saved["rows"]), saved["wall_s"]
    bar = tqdm(total=dcfg.epochs, initial=len(rows), desc=f"ddpo {name} seed {seed}", unit="epoch",
               disable=True if cfg.quiet or cfg.workers > 1 else None)
    started = time.perf_counter() - wall

    def on_epoch(epoch: int, row: dict, opt) -> None:
        row["wall_s"] = time.perf_counter() - started
        rows.append(row)
        bar.update(1)
        bar.set_postfix(reward=f"{row['reward']:.3f}", kl=f"{row['approx_kl']:.1e}")
        if (epoch + 1) % cfg.ckpt_every == 0 or epoch + 1 == dcfg.epochs:
            _save_ckpt(run, model, opt, rows, row["wall_s"])

    ddpo.train_ddpo(model, sched, dcfg, x_data, y_data, on_epoch, start_epoch=len(rows), optimizer=optimizer)
    bar.close()
    eval_gen = torch.Generator().manual_seed(seed * 7919 + 1)
    after = ddpo.evaluate(model, sched, dcfg, eval_gen)
    for row in rows:  # metrics.csv written in one go (the first row truncates the file)
        run.log(row["epoch"], **{k: v for k, v in row.items() if k != "epoch"})
    later = [r for r in rows if r["epoch"] > 1]
    summary = {"kind": "gdm_ddpo_run", "run": name, "ddpo": config,
               "reward_before": before["reward"], "reward_after": after["reward"],
               "class_entropy_before": before["class_entropy"], "class_entropy_after": after["class_entropy"],
               "feature_fid_after": metrics.feature_fid(after["samples"].numpy(), before["samples"].numpy()),
               "approx_kl_mean": float(np.mean([r["approx_kl"] for r in later])) if later else math.nan,
               "approx_kl_max": float(max(r["approx_kl"] for r in later)) if later else math.nan,
               "clip_frac_mean": float(np.mean([r["clip_frac"] for r in rows])),
               "wall_s": rows[-1]["wall_s"] if rows else 0.0,
               "wall_to_target_s": (ddpo.first_reaching(rows, "reward", cfg.reward_target)
                                    if dcfg.reward in ddpo.PROB_REWARDS else math.nan),
               "curve": [{k: v for k, v in r.items() if k in ("epoch", "reward", "approx_kl", "wall_s")
                          or k.startswith("reward_") and k != "reward_total"} for r in rows]}
    if dcfg.conditional:
        summary["class_consistency_before"] = before["class_consistency"]
        summary["class_consistency_after"] = after["class_consistency"]
    if before["tasks"]:
        summary["tasks_before"], summary["tasks_after"] = before["tasks"], after["tasks"]
    save_grids(out, f"{name}, seed {seed}", before["samples"], after["samples"], dcfg.conditional)
    return run.write_summary(summary, seed, command)


def grid_order(conditional: bool, n: int = 100) -> torch.Tensor:
    """Indices of the samples of a 10×10 grid out of n. ``evaluate`` gives sample i the condition i mod 10, so for
    a conditional model row c holds samples c, c + 10, …, c + 90 (one row per digit condition); indices ≥ n (a
    smaller evaluation) are left out."""
    idx = torch.arange(100)
    idx = idx.reshape(10, 10).T.reshape(-1) if conditional else idx
    return idx[idx < n]


def save_grids(out: Path, title: str, before: torch.Tensor, after: torch.Tensor, conditional: bool) -> None:
    """OUT/plots/samples_before.png and samples_after.png (10×10, one row per condition when conditional)."""
    order = grid_order(conditional, len(after))
    for tag, x in (("before", before), ("after", after)):
        save_image_grid(x[order], out / "plots" / f"samples_{tag}.png", f"{title}: {tag}")


# --------------------------------------------------------------------------------------------------- bench

def _mean_std(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(np.mean(v)), float(np.std(v))


def acceptance(cfg: DDPOBenchConfig, results: dict) -> dict:
    out: dict = {}
    if "class" in results:
        r = results["class"]
        walls = r["wall_to_target_s_per_seed"]
        reached = all(math.isfinite(w) and w <= cfg.max_wall_s for w in walls)
        out["class_reward"] = {"reward_before": r["reward_before"], "reward_after": r["reward_after"],
                               "wall_to_target_s_max": float(max(walls)), "approx_kl_max": r["approx_kl_max_max"],
                               "met": bool(reached and r["reward_after"] >= cfg.reward_target
                                           and r["approx_kl_max_max"] <= cfg.max_approx_kl)}
    if "diversity" in results:
        out["diversity"] = {"class_entropy_after": results["diversity"]["class_entropy_after"],
                            "single_reward_entropy_after": results.get("class_set", {}).get("class_entropy_after"),
                            "met": bool(results["diversity"]["class_entropy_after"] >= cfg.min_entropy)}
    return out


def run_bench(cfg: DDPOBenchConfig) -> dict:
    """Every (run, seed), then OUT/summary.json (kind ``gdm_ddpo_bench``) and the plots."""
    import os

    import edgegen
    from edgegen.jobs import run_jobs, start_bench

    cfg.validate()
    command, seeds, earlier_s, started = start_bench(cfg)
    os.environ.setdefault("EDGEGEN_CACHE", str(Path("runs/cache").resolve()))  # same cache for Ray workers
    metrics.digits_classifier()  # train + cache the reward / metric classifier before any worker starts
    base_wall = {}
    for conditional in sorted({cfg.run_config(r, 0).conditional for r in cfg.runs()}):
        path = ensure_base(cfg, conditional)
        base_wall["cond" if conditional else "uncond"] = json.loads((path / "summary.json").read_text())
    jobs = [(cfg, name, s, command) for name in cfg.runs() for s in seeds]
    done = run_jobs(run_job, jobs, cfg.workers, cfg.ray_address, cfg.quiet,
                    describe=lambda job, r: f"{job[1]} seed {job[2]}: reward {r['reward_after']:.3f}")
    results, curves = {}, {}
    for name in cfg.runs():
        per = [done[(cfg, name, s, command)] for s in seeds]
        res = {}
        for k in RESULT_KEYS:
            res[k], res[f"{k}_std"] = _mean_std([p[k] for p in per])
            res[f"{k}_per_seed"] = [p[k] for p in per]
        res["approx_kl_max_max"] = float(max(p["approx_kl_max"] for p in per))
        res["pretrain_weight"] = per[0]["ddpo"]["pretrain_weight"]
        res["reward_kind"] = per[0]["ddpo"]["reward"]
        res["per_condition"] = per[0]["ddpo"]["per_condition"]
        for k in ("class_consistency_before", "class_consistency_after"):
            if k in per[0]:
                res[k], res[f"{k}_std"] = _mean_std([p[k] for p in per])
        for k in ("tasks_before", "tasks_after"):
            if k in per[0]:
                res[k] = {t: _mean_std([p[k][t] for p in per]) for t in per[0][k]}
        results[name] = res
        curves[name] = [p["curve"] for p in per]
    summary = {"kind": "gdm_ddpo_bench", "seeds": cfg.seeds, "first_seed": cfg.first_seed, "runs": cfg.runs(),
               "config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)), "results": results,
               "base": {k: {"feature_fid": v.get("feature_fid"), "train_wall_s": v.get("train_wall_s")}
                        for k, v in base_wall.items()},
               "command": command, "workers": cfg.workers, "edgegen_version": edgegen.__version__}
    summary["acceptance"] = acceptance(cfg, results)
    summary["bench_wall_s"] = earlier_s + time.perf_counter() - started
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    plot_curves(cfg, curves)
    plot_task_curves(cfg, curves)
    plot_lambda(cfg, results)
    plot_grids(cfg, seeds[0])
    return summary


# ------------------------------------------------------------------------------------------------------ plots

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _band(ax, per: list[list[dict]], key: str, label: str, **kw):
    """Mean of `key` over seeds against epoch with a min-max band; returns the line."""
    n = min(len(c) for c in per)
    epochs = [row["epoch"] for row in per[0][:n]]
    v = np.array([[row[key] for row in c[:n]] for c in per])
    (line,) = ax.plot(epochs, v.mean(0), label=label, **kw)
    ax.fill_between(epochs, v.min(0), v.max(0), color=line.get_color(), alpha=0.2)
    return line


def plot_curves(cfg: DDPOBenchConfig, curves: dict) -> Path:
    """Mean batch reward of the probability rewards against epoch (band: min-max over seeds) and per-update
    approx-KL of every run (the brightness / JPEG tasks: ``plot_task_curves``)."""
    plt = _plt()
    fig, (ax, ax_kl) = plt.subplots(1, 2, figsize=(10, 3.6))
    colors = plt.get_cmap("tab10").colors
    for i, (name, per) in enumerate(curves.items()):
        n = min(len(c) for c in per)
        epochs = [row["epoch"] for row in per[0][:n]]
        kl = np.array([[row["approx_kl"] for row in c[:n]] for c in per])
        color = colors[i % len(colors)]
        if cfg.run_config(name, 0).reward in ddpo.PROB_REWARDS:
            _band(ax, per, "reward", name, color=color)
        ax_kl.semilogy(epochs[1:], np.maximum(kl.mean(0)[1:], 1e-9), color=color, lw=0.9, label=name)
    ax.axhline(cfg.reward_target, color="k", ls=":", lw=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("batch reward (probability)")
    ax.legend(fontsize=7)
    ax_kl.legend(fontsize=6, ncol=2)
    ax_kl.axhline(cfg.max_approx_kl, color="k", ls=":", lw=0.8)
    ax_kl.set_xlabel("epoch")
    ax_kl.set_ylabel("approx-KL per update")
    for a in (ax, ax_kl):
        a.grid(alpha=0.3)
    return save_figure(fig, cfg.out / "plots" / "reward_vs_epoch.png")


def plot_task_curves(cfg: DDPOBenchConfig, curves: dict) -> Path | None:
    """Brightness and JPEG compressibility against epoch: the single-reward runs next to the same task inside the
    `mixed` multitask runs (per-condition vs batch-wide advantages)."""
    panels = {}
    for name, per in curves.items():
        kind = cfg.run_config(name, 0).reward
        if kind in ("brightness", "jpeg"):
            panels.setdefault(kind, []).append((name, per, "reward"))
        elif kind == "mixed":
            for task in ddpo.MIXED_TASKS:
                panels.setdefault(task, []).append((f"{name} ({task} conditions)", per, f"reward_{task}"))
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    labels = {"brightness": "brightness (mean intensity, 0-1)", "jpeg": "compressibility (−JPEG kB)"}
    for ax, (task, series) in zip(axes[0], sorted(panels.items()), strict=True):
        for label, per, key in series:
            _band(ax, per, key, label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(labels[task])
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return save_figure(fig, cfg.out / "plots" / "task_rewards_vs_epoch.png")


def plot_lambda(cfg: DDPOBenchConfig, results: dict) -> Path | None:
    """Reward after vs feature-FID to the base model, one point per λ (error bars: std over seeds)."""
    points = [(r["pretrain_weight"], r) for name, r in results.items()
              if name == "class" or name.startswith("class_lam")]
    if len(points) < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for lam, r in sorted(points, key=lambda p: p[0]):
        ax.errorbar(r["feature_fid_after"], r["reward_after"], xerr=r["feature_fid_after_std"],
                    yerr=r["reward_after_std"], marker="o", capsize=3, label=f"λ = {lam:g}")
    ax.set_xlabel("feature-FID to the base model's samples (drift)")
    ax.set_ylabel(f"reward after (p(digit {cfg.ddpo.target_class}))")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save_figure(fig, cfg.out / "plots" / "lambda_tradeoff.png")


def plot_grids(cfg: DDPOBenchConfig, seed: int) -> Path:
    """The first seed's sample grids before and after, one row of panels per run."""
    plt = _plt()
    runs = cfg.runs()
    fig, axes = plt.subplots(len(runs), 2, figsize=(7, 3.4 * len(runs)), squeeze=False)
    for row, name in zip(axes, runs, strict=True):
        for ax, tag in zip(row, ("before", "after"), strict=True):
            ax.imshow(plt.imread(cfg.out / name / f"seed_{seed}" / "plots" / f"samples_{tag}.png"))
            ax.set_axis_off()
    return save_figure(fig, cfg.out / "plots" / "samples_before_after.png")


# ----------------------------------------------------------------------------------------------------- report

def format_table(summary: dict) -> str:
    lines = ["| run | λ | reward before | reward after | class entropy after | feature-FID to base | approx-KL per "
             "update (mean / max) | clip fraction | fine-tuning wall (s) | wall to target (s, max over seeds) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in summary["results"].items():
        to_target = max(r["wall_to_target_s_per_seed"])
        entropy = r["class_entropy_after"] + 0.0  # no "-0.000"
        lines.append(f"| {name} | {r['pretrain_weight']:g} | {r['reward_before']:.3f} | {r['reward_after']:.3f} ± "
                     f"{r['reward_after_std']:.3f} | {entropy:.3f} | {r['feature_fid_after']:.2f} | "
                     f"{r['approx_kl_mean']:.1e} / {r['approx_kl_max']:.1e} | {r['clip_frac_mean']:.2f} | "
                     f"{r['wall_s']:.0f} | {'–' if not math.isfinite(to_target) else f'{to_target:.0f}'} |")
    return "\n".join(lines)


def report_section(run_dir: Path, summary: dict, figures: Path, out_dir: Path) -> list[str]:
    """BENCHMARKS.md section of a ``gdm_ddpo_bench`` run."""
    from edgegen.report import copy_plots

    c, d = summary["config"], summary["config"]["ddpo"]
    lines = [f"### DDPO fine-tuning of the digits DDPM: `{run_dir}`", "",
             f"{summary['seeds']} seed(s) per run, {c['epochs']} epochs of {d['batch_size']} trajectories "
             f"(DDIM η = {d['eta']:g}, {d['sample_steps']} steps), Adam lr {d['lr']:g}, clip range "
             f"{d['clip_range']:g}, {d['batch_size'] // d['train_batch']} update(s) per epoch, advantages z-scored "
             f"{'per condition' if d['per_condition'] else 'over the batch'}"
             f"{' (`mixed` per condition, `mixed_batch` over the batch)' if 'mixed' in summary['runs'] else ''} "
             f"and clipped to ±{d['adv_clip']:g}. Target digit {d['target_class']}; digit set "
             f"{tuple(d['target_classes'])} for class_set / diversity (diversity weight {d['diversity_weight']:g}, "
             f"groups of {d['group_size']}). Base models: the core's default recipe "
             + ", ".join(f"{k} feature-FID {v['feature_fid']:.2f}" for k, v in summary["base"].items()
                         if v.get("feature_fid") is not None)
             + ". Rewards before/after on fresh samples of the same sampler (probabilities, except brightness in "
             "[0, 1], jpeg in −kB and mixed, the mean over its two tasks: see the task lines below the table); "
             "class entropy = entropy of the "
             "predicted-digit histogram / log 10; feature-FID against the base model's samples. Values: mean over "
             "seeds.", "", f"Command: `{summary.get('command', '')}`; bench wall time "
             f"{summary['bench_wall_s'] / 60:.1f} min ({summary['workers']} run(s) at a time).", "",
             format_table(summary), ""]
    acc = summary["acceptance"]
    if "class_reward" in acc:
        a = acc["class_reward"]
        wall = a["wall_to_target_s_max"]
        lines.append(f"- target-digit reward {a['reward_before']:.3f} → {a['reward_after']:.3f} (≥ "
                     f"{c['reward_target']:g}), reached within "
                     f"{'never' if not math.isfinite(wall) else f'{wall:.0f} s'} of fine-tuning on every seed "
                     f"(≤ {c['max_wall_s']:.0f} s), per-update approx-KL after the first epoch at most "
                     f"{a['approx_kl_max']:.1e} (≤ {c['max_approx_kl']:g}): **{'met' if a['met'] else 'not met'}**.")
    if "diversity" in acc:
        a = acc["diversity"]
        single = a["single_reward_entropy_after"]
        lines.append(f"- digit set with the diversity reward: normalised class entropy {a['class_entropy_after']:.3f} "
                     f"(≥ {c['min_entropy']:g}) vs {'–' if single is None else f'{single:.3f}'} with the single "
                     f"set reward: **{'met' if a['met'] else 'not met'}**.")
    lines += mixed_lines(summary)
    return lines + copy_plots(run_dir, figures, out_dir) + [""]


def mixed_lines(summary: dict) -> list[str]:
    """One line per `mixed` run: each task's reward before → after and how well the digits keep their class."""
    lines = []
    for name, r in summary["results"].items():
        if r.get("reward_kind") != "mixed" or "tasks_after" not in r:
            continue
        units = {"reward_brightness": "brightness", "reward_jpeg": "compressibility (−kB)"}
        tasks = "; ".join(f"{units.get(t, t)} {r['tasks_before'][t][0]:.3f} → {r['tasks_after'][t][0]:.3f} ± "
                          f"{r['tasks_after'][t][1]:.3f}" for t in r["tasks_after"])
        lines.append(f"- {name} (one conditional model, brightness for even and compressibility for odd digits, "
                     f"advantages z-scored {'per condition' if r['per_condition'] else 'over the whole batch'}): "
                     f"{tasks}; p(condition's digit) {r['class_consistency_before']:.3f} → "
                     f"{r['class_consistency_after']:.3f}.")
    return lines
