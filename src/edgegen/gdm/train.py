"""Central DDPM training on sklearn digits (8×8, scaled to [-1, 1]) and the `gdm train-bench` benchmark.

The run trains on half A of the digits (``metrics.real_halves``, 898 images) and measures every metric against
the held-out half B with 898 generated samples, so the real-vs-real floor FID(A, B) is exactly what a model that
reproduced its training set would score: a model below the floor would be memorising, not generalising.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import tyro
from tqdm import tqdm

from edgegen.config import ConfigError, check_choice, check_range, from_dict
from edgegen.gdm import metrics
from edgegen.gdm.ddpm import Schedule, ddim_sample, ddpm_loss, make_schedule
from edgegen.gdm.denoisers import ResidualMLP, guided
from edgegen.runs import RunDir, save_figure
from edgegen.seeding import derive_seed, rng_states, seed_everything, set_rng_states

CKPT_FORMAT = 1


@dataclass(frozen=True)
class TrainConfig:
    """One central DDPM training run on digits."""

    seed: int = 0
    """Run seed (model init, minibatches, noise, evaluation samples)."""
    data: str = "half_a"
    """Training images: `half_a` (898, the FID reference half B held out) or `all` (1797, B included)."""
    diffusion_steps: int = 1000
    """T, the number of noise levels."""
    schedule: str = "cosine"
    """Noise schedule: cosine (Nichol & Dhariwal 2021) or linear (Ho et al. 2020)."""
    hidden: int = 256
    """Width of the residual MLP."""
    blocks: int = 3
    """Residual blocks."""
    dropout: float = 0.0
    """Dropout inside the residual blocks."""
    conditional: bool = False
    """Class-conditional denoiser (labels 0..9, null class for classifier-free guidance)."""
    cond_drop_prob: float = 0.1
    """Conditional only: probability of replacing a training label by the null class."""
    guidance_scale: float = 0.0
    """Conditional only: classifier-free guidance weight w at sampling (0 = plain conditional)."""
    train_steps: int = 12000
    """Optimizer steps."""
    batch_size: int = 256
    """Minibatch size (drawn with replacement)."""
    lr: float = 1e-3
    """Peak AdamW learning rate (linear warm-up, then cosine decay to 0)."""
    warmup_steps: int = 500
    """Linear warm-up steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Gradient-norm clip (0 = off)."""
    ema_decay: float = 0.999
    """EMA of the weights used for sampling (0 = sample from the raw weights)."""
    eval_every: int = 2000
    """Evaluate (and checkpoint) every this many steps."""
    eval_samples: int = 898
    """Generated samples per evaluation, ≤ 898 (the floor uses as many real digits of half A against half B)."""
    sample_steps: int = 100
    """DDIM steps at evaluation."""
    eta: float = 0.0
    """DDIM η at evaluation (0 deterministic, 1 stochastic)."""

    def validate(self) -> None:
        check_choice("data", self.data, {"half_a", "all"})
        check_choice("schedule", self.schedule, {"cosine", "linear"})
        check_range("diffusion_steps", self.diffusion_steps, 2, 100000)
        check_range("hidden", self.hidden, 8, 8192)
        check_range("blocks", self.blocks, 1, 64)
        check_range("dropout", self.dropout, 0.0, 0.9)
        check_range("cond_drop_prob", self.cond_drop_prob, 0.0, 1.0)
        check_range("guidance_scale", self.guidance_scale, 0.0, 100.0)
        check_range("train_steps", self.train_steps, 1, 10**8)
        check_range("batch_size", self.batch_size, 1, 100000)
        check_range("lr", self.lr, 1e-8, 1.0)
        check_range("warmup_steps", self.warmup_steps, 0, 10**8)
        check_range("weight_decay", self.weight_decay, 0.0, 10.0)
        check_range("grad_clip", self.grad_clip, 0.0, 1e6)
        check_range("ema_decay", self.ema_decay, 0.0, 0.999999)
        check_range("eval_every", self.eval_every, 1, 10**8)
        check_range("eval_samples", self.eval_samples, 20, 898)
        check_range("sample_steps", self.sample_steps, 1, self.diffusion_steps)
        check_range("eta", self.eta, 0.0, 1.0)


def build_model(cfg: TrainConfig) -> ResidualMLP:
    """The denoiser of `cfg` (random init from the current torch RNG)."""
    return ResidualMLP(64, cfg.hidden, cfg.blocks, 10 if cfg.conditional else None, dropout=cfg.dropout)


def build_schedule(cfg: TrainConfig) -> Schedule:
    """The noise schedule of `cfg`."""
    return make_schedule(cfg.diffusion_steps, cfg.schedule)


def training_data(data: str = "half_a") -> tuple[torch.Tensor, torch.Tensor]:
    """(x (N, 64) float32 in [-1, 1], labels (N,)) for `half_a` (the half not used as FID reference) or `all`."""
    check_choice("data", data, {"half_a", "all"})
    x, y = metrics.digits_data()
    if data == "half_a":
        perm = np.random.default_rng(0).permutation(len(x))[: len(x) // 2]  # the same split as real_halves(0)
        x, y = x[perm], y[perm]
    return torch.from_numpy(x), torch.from_numpy(y)


def ema_update(ema_model: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema ← decay·ema + (1-decay)·model for parameters (buffers copied), in place."""
    with torch.no_grad():
        for e, p in zip(ema_model.parameters(), model.parameters(), strict=True):
            e.lerp_(p, 1 - decay)
        for e, b in zip(ema_model.buffers(), model.buffers(), strict=True):
            e.copy_(b)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """LambdaLR: linear warm-up over `warmup_steps`, then cosine decay to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, sched: Schedule,
                steps: int, batch_size: int, generator: torch.Generator, cond: torch.Tensor | None = None,
                cond_drop_prob: float = 0.0, ema_model: torch.nn.Module | None = None, ema_decay: float = 0.999,
                lr_scheduler=None, grad_clip: float | None = 1.0, progress=None) -> list[float]:
    """`steps` optimizer steps of ddpm_loss on minibatches drawn with replacement from x (N, 64) with
    `generator` (labels `cond` (N,) for a class-conditional model, replaced by the null class 10 with probability
    `cond_drop_prob`); updates `ema_model` and steps `lr_scheduler` after each step when given; `progress` is an
    optional tqdm bar to advance. Returns the per-step losses. Reusable for local training on a federated device."""
    model.train()
    losses = []
    num_null = getattr(model, "num_classes", None) or 10
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=generator)
        c = None
        if cond is not None:
            c = cond[idx]
            if cond_drop_prob > 0:
                drop = torch.rand(len(idx), generator=generator) < cond_drop_prob
                c = torch.where(drop, torch.full_like(c, num_null), c)
        loss = ddpm_loss(model, x[idx], sched, c, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if lr_scheduler is not None:
            lr_scheduler.step()
        if ema_model is not None:
            ema_update(ema_model, model, ema_decay)
        losses.append(loss.item())
        if progress is not None:
            progress.update(1)
    return losses


@torch.no_grad()
def generate(model: torch.nn.Module, sched: Schedule, n: int, generator: torch.Generator, num_steps: int = 50,
             eta: float = 0.0, cond: torch.Tensor | None = None, clip_x0: float | None = 1.0,
             guidance_scale: float = 0.0, batch_size: int = 1024) -> torch.Tensor:
    """n digit samples (n, 64) by DDIM from x_T ~ N(0, I) drawn with `generator`; for a class-conditional model
    `cond` (n,) gives the labels (None: labels cycle 0..9) and `guidance_scale` the classifier-free guidance."""
    was_training = model.training
    model.eval()
    if getattr(model, "num_classes", None) and cond is None:
        cond = torch.arange(n) % model.num_classes
    denoiser = guided(model, guidance_scale) if cond is not None and guidance_scale else model
    out = []
    for i in range(0, n, batch_size):
        x_T = torch.randn(min(batch_size, n - i), 64, generator=generator)
        c = None if cond is None else cond[i:i + len(x_T)]
        out.append(ddim_sample(denoiser, x_T, sched, num_steps, eta, c, generator, clip_x0))
    model.train(was_training)
    return torch.cat(out).clamp(-1, 1)


def evaluate(model: torch.nn.Module, sched: Schedule, generator: torch.Generator, num_steps: int = 50,
             n: int = 898, eta: float = 0.0, guidance_scale: float = 0.0) -> dict[str, float]:
    """metrics.evaluate_samples of n generated digits against the reference half B (n = 898: the floor's size)."""
    return metrics.evaluate_samples(generate(model, sched, n, generator, num_steps, eta,
                                             guidance_scale=guidance_scale).numpy())


def sample_grid(model: torch.nn.Module, sched: Schedule, generator: torch.Generator, num_steps: int, path: Path,
                guidance_scale: float = 0.0, title: str = "") -> Path:
    """A 10×10 grid PNG of samples (one row per class for a conditional model), each 8×8 digit upscaled."""
    cond = (torch.arange(100) // 10) if getattr(model, "num_classes", None) else None
    x = generate(model, sched, 100, generator, num_steps, cond=cond, guidance_scale=guidance_scale)
    return save_image_grid(x, path, title)


def save_image_grid(x: torch.Tensor | np.ndarray, path: Path, title: str = "", cols: int = 10) -> Path:
    """Save digits x (N, 64) in [-1, 1] as a grid PNG (rows of `cols`, white ink on black like sklearn's)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(x, dtype=np.float32).reshape(-1, 8, 8)
    rows = math.ceil(len(x) / cols)
    grid = np.full((rows * 9 + 1, cols * 9 + 1), -1.0, dtype=np.float32)
    for i, img in enumerate(x):
        r, c = divmod(i, cols)
        grid[1 + 9 * r:9 + 9 * r, 1 + 9 * c:9 + 9 * c] = img
    fig, ax = plt.subplots(figsize=(cols * 0.45 + 0.3, rows * 0.45 + (0.5 if title else 0.2)))
    ax.imshow(grid, cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    return save_figure(fig, path)


def _save_checkpoint(run: RunDir, cfg: TrainConfig, step: int, train_wall_s: float, model, ema, opt, lr_sched,
                     gen: torch.Generator) -> None:
    state = {"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
             "lr_scheduler": lr_sched.state_dict(), "generator": gen.get_state()}
    tmp = run.ckpt / "last.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(run.ckpt / "last.pt")
    meta = {"format_version": CKPT_FORMAT, "step": step, "train_wall_s": train_wall_s,
            "config": dataclasses.asdict(cfg), "model_config": model.config(), "rng": rng_states()}
    (run.ckpt / "meta.json").write_text(json.dumps(meta))


def load_model(run_dir: Path, ema: bool = True) -> tuple[ResidualMLP, Schedule, TrainConfig]:
    """(denoiser, schedule, config) of a training run's last checkpoint (EMA weights by default)."""
    meta = json.loads((Path(run_dir) / "ckpt" / "meta.json").read_text())
    cfg = from_dict(TrainConfig, meta["config"])
    model = ResidualMLP(**meta["model_config"])
    state = torch.load(Path(run_dir) / "ckpt" / "last.pt", weights_only=True)
    model.load_state_dict(state["ema" if ema else "model"])
    return model.eval(), build_schedule(cfg), cfg


def train(cfg: TrainConfig, out: Path, quiet: bool = False) -> dict:
    """Train one DDPM; resumes from out/ckpt when a checkpoint of the same config is there (a finished run is
    returned as is). Writes config.json, metrics.csv (loss, lr, every metric per evaluation), plots/
    (sample grid, FID curve) and summary.json; returns the summary."""
    cfg.validate()
    run = RunDir(out)
    if (run.path / "summary.json").exists():
        return run.read_summary()
    seed_everything(cfg.seed)
    x, y = training_data(cfg.data)
    sched = build_schedule(cfg)
    model = build_model(cfg)
    ema = copy.deepcopy(model).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_sched = warmup_cosine(opt, cfg.warmup_steps, cfg.train_steps)
    gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "train"))
    step, train_wall_s = 0, 0.0
    meta_path = run.ckpt / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta["config"] != dataclasses.asdict(cfg):
            raise ConfigError(f"{out} holds a run of another config; use another --out or the same flags")
        state = torch.load(run.ckpt / "last.pt", weights_only=True)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        lr_sched.load_state_dict(state["lr_scheduler"])
        gen.set_state(state["generator"])
        set_rng_states(meta["rng"])
        step, train_wall_s = meta["step"], meta["train_wall_s"]
        run.truncate_metrics(step)
    else:
        run.write_config(dataclasses.asdict(cfg))
    sample_model = ema if cfg.ema_decay > 0 else model
    floor = metrics.real_floor(n=cfg.eval_samples)
    if step == 0:  # the untrained model, for scale
        m = evaluate(sample_model, sched, torch.Generator().manual_seed(derive_seed(cfg.seed, "eval")),
                     cfg.sample_steps, cfg.eval_samples, cfg.eta, cfg.guidance_scale)
        run.log(0, loss=float("nan"), lr=0.0, train_wall_s=0.0, fid_ratio=m["feature_fid"] / floor, **m)
    started = time.perf_counter()
    bar = tqdm(total=cfg.train_steps, initial=step, desc=f"gdm train seed {cfg.seed}", unit="step",
               disable=True if quiet else None)
    while step < cfg.train_steps:
        chunk = min(cfg.eval_every, cfg.train_steps - step)
        t0 = time.perf_counter()
        losses = train_steps(model, opt, x, sched, chunk, cfg.batch_size, gen, y if cfg.conditional else None,
                             cfg.cond_drop_prob, ema if cfg.ema_decay > 0 else None, cfg.ema_decay, lr_sched,
                             cfg.grad_clip or None, bar)
        train_wall_s += time.perf_counter() - t0
        step += chunk
        eval_gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "eval"))
        m = evaluate(sample_model, sched, eval_gen, cfg.sample_steps, cfg.eval_samples, cfg.eta, cfg.guidance_scale)
        run.log(step, loss=float(np.mean(losses)), lr=lr_sched.get_last_lr()[0], train_wall_s=train_wall_s,
                fid_ratio=m["feature_fid"] / floor, **m)
        bar.set_postfix(loss=f"{np.mean(losses):.4f}", fid=f"{m['feature_fid']:.2f}")
        _save_checkpoint(run, cfg, step, train_wall_s, model, ema, opt, lr_sched, gen)
    bar.close()
    run.close()
    rows = run.read_metrics()
    last = rows[-1]
    grid_gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "grid"))
    sample_grid(sample_model, sched, grid_gen, cfg.sample_steps, run.path / "plots" / "samples.png",
                cfg.guidance_scale, f"DDPM digits, seed {cfg.seed}, {step} steps")
    plot_fid_curve([rows], floor, run.path / "plots" / "fid_vs_train_wall_s.png")
    summary = {"kind": "gdm_train", "config": dataclasses.asdict(cfg), "real_floor_fid": floor,
               "untrained_feature_fid": rows[0]["feature_fid"],
               "train_steps": step, "train_wall_s": train_wall_s, "loss": last["loss"],
               "wall_s": time.perf_counter() - started,
               **{k: last[k] for k in ("feature_fid", "fid_ratio", "class_entropy", "class_confidence", "precision",
                                       "recall")},
               "eval_samples": cfg.eval_samples, "params": sum(p.numel() for p in model.parameters())}
    return run.write_summary(summary, cfg.seed)


def plot_fid_curve(curves: list[list[dict]], floor: float, path: Path, labels: list[str] | None = None) -> Path:
    """Feature-FID vs training wall time (s) for each run's metrics rows, with the floor and 3× floor lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for i, rows in enumerate(curves):
        rows = [r for r in rows if r["step"] > 0]
        ax.plot([r["train_wall_s"] for r in rows], [r["feature_fid"] for r in rows], marker="o", ms=3,
                label=labels[i] if labels else None)
    ax.axhline(floor, color="k", ls=":", label="real-vs-real floor")
    ax.axhline(3 * floor, color="r", ls="--", label="3× floor")
    ax.set_yscale("log")
    ax.set_xlabel("training wall time (s, 1 CPU thread)")
    ax.set_ylabel("feature-FID (898 samples vs held-out half)")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


@dataclass(frozen=True)
class TrainArgs:
    """One central DDPM training run on digits (resumable)."""

    out: Path = Path("runs/gdm-train")
    """Run directory (an interrupted run there with the same config is resumed)."""
    resume: Path | None = None
    """Continue the run in this directory with its saved config (other flags are ignored)."""
    train: Annotated[TrainConfig, tyro.conf.OmitArgPrefixes] = dataclasses.field(default_factory=TrainConfig)
    """Training configuration (flags without prefix: --seed, --train-steps, ...)."""
    quiet: bool = False
    """Disable the progress bar."""


def train_command(args: TrainArgs) -> dict:
    if args.resume is not None:
        if not (args.resume / "config.json").exists():
            raise ConfigError(f"--resume {args.resume}: no run directory there (config.json missing)")
        return train(from_dict(TrainConfig, RunDir(args.resume, tensorboard=False).read_config()), args.resume,
                     args.quiet)
    return train(args.train, args.out, args.quiet)


# --------------------------------------------------------------------------------------------------- bench

VARIANTS = {"uncond": {"conditional": False}, "cond": {"conditional": True}}
BENCH_METRICS = ("feature_fid", "real_floor_fid", "fid_ratio", "untrained_feature_fid", "class_entropy",
                 "class_confidence", "precision", "recall", "train_wall_s", "wall_s", "loss")


@dataclass(frozen=True)
class TrainBenchConfig:
    """Central digits DDPM over seeds: unconditional and class-conditional, metrics against the real floor."""

    out: Path = Path("runs/gdm-train-bench")
    """Bench directory (OUT/<variant>/seed_<s> per run; finished runs are skipped, interrupted ones resumed)."""
    seeds: int = 3
    """Number of seeds."""
    first_seed: int = 0
    """Seeds are first_seed .. first_seed + seeds - 1."""
    variants: tuple[str, ...] = ("uncond", "cond")
    """Variants: uncond (unconditional), cond (class-conditional, labels cycling 0..9 at sampling)."""
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    """Shared training configuration (its seed and conditional fields are set per run)."""
    max_train_wall_s: float = 600.0
    """Acceptance: training wall-time budget per run (s)."""
    max_fid_ratio: float = 3.0
    """Acceptance: feature-FID / real-vs-real floor must not exceed this."""
    workers: int = 1
    """Runs at a time (Ray tasks of one CPU each when > 1)."""
    ray_address: str | None = None
    """Ray cluster address (default: local)."""
    quiet: bool = False
    """Disable progress bars."""

    def validate(self) -> None:
        check_range("seeds", self.seeds, 1, 1000)
        check_range("workers", self.workers, 1, 256)
        check_range("max_train_wall_s", self.max_train_wall_s, 0.0, 1e7)
        check_range("max_fid_ratio", self.max_fid_ratio, 0.0, 1e6)
        for v in self.variants:
            check_choice("variants", v, set(VARIANTS))
        self.train.validate()


def _bench_job(cfg: TrainBenchConfig, variant: str, seed: int, command: str) -> dict:
    run_cfg = dataclasses.replace(cfg.train, seed=seed, **VARIANTS[variant])
    out = cfg.out / variant / f"seed_{seed}"
    return train(run_cfg, out, quiet=True if cfg.workers > 1 else cfg.quiet)


def run_bench(cfg: TrainBenchConfig) -> dict:
    """Train every (variant, seed); write OUT/summary.json (kind gdm_train_bench), plots and per-run dirs."""
    from edgegen.jobs import run_jobs, start_bench

    cfg.validate()
    command, seeds, earlier_s, started = start_bench(cfg)
    import os

    os.environ.setdefault("EDGEGEN_CACHE", str(Path("runs/cache").resolve()))  # same cache for Ray workers
    metrics.digits_classifier()  # train + cache the metric classifier once, before any worker starts
    jobs = [(cfg, v, s, command) for v in cfg.variants for s in seeds]
    done = run_jobs(_bench_job, jobs, cfg.workers, cfg.ray_address, cfg.quiet,
                    describe=lambda job, r: f"{job[1]} seed {job[2]}: FID {r['feature_fid']:.2f}")
    results = {}
    for v in cfg.variants:
        rows = [done[(cfg, v, s, command)] for s in seeds]
        r = {}
        for k in BENCH_METRICS:
            vals = [row[k] for row in rows]
            r[k], r[f"{k}_std"], r[f"{k}_per_seed"] = float(np.mean(vals)), float(np.std(vals)), vals
        r["within_fid_ratio_all_seeds"] = all(row["fid_ratio"] <= cfg.max_fid_ratio for row in rows)
        r["within_train_wall_s_all_seeds"] = all(row["train_wall_s"] <= cfg.max_train_wall_s for row in rows)
        r["params"] = rows[0]["params"]
        results[v] = r
    summary = {"kind": "gdm_train_bench", "results": results, "seeds": cfg.seeds, "first_seed": cfg.first_seed,
               "train": dataclasses.asdict(cfg.train), "max_fid_ratio": cfg.max_fid_ratio,
               "max_train_wall_s": cfg.max_train_wall_s, "eval_samples": cfg.train.eval_samples,
               "command": command, "workers": cfg.workers,
               "bench_wall_s": earlier_s + time.perf_counter() - started}
    summary.update({"git_sha": done[jobs[0]]["git_sha"], "edgegen_version": done[jobs[0]]["edgegen_version"]})
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=float))
    curves, labels = [], []
    for v in cfg.variants:
        for s in seeds:
            curves.append(RunDir(cfg.out / v / f"seed_{s}", tensorboard=False).read_metrics())
            labels.append(f"{v} seed {s}")
        src = cfg.out / v / f"seed_{seeds[0]}" / "plots" / "samples.png"
        (cfg.out / "plots").mkdir(exist_ok=True)
        (cfg.out / "plots" / f"samples_{v}.png").write_bytes(src.read_bytes())
    plot_fid_curve(curves, results[cfg.variants[0]]["real_floor_fid"], cfg.out / "plots" / "fid_vs_train_wall_s.png",
                   labels)
    return summary


def format_table(summary: dict) -> str:
    lines = ["| variant | feature-FID | floor | FID / floor | untrained FID | class entropy (nats) | confidence | "
             "precision | recall | train wall s |", "|---|" + "---|" * 9]
    for v, r in summary["results"].items():
        lines.append(f"| {v} | {r['feature_fid']:.2f} ± {r['feature_fid_std']:.2f} | {r['real_floor_fid']:.2f} | "
                     f"{r['fid_ratio']:.2f} ± {r['fid_ratio_std']:.2f} | {r['untrained_feature_fid']:.0f} | "
                     f"{r['class_entropy']:.3f} | {r['class_confidence']:.3f} | {r['precision']:.3f} | "
                     f"{r['recall']:.3f} | {r['train_wall_s']:.0f} ± {r['train_wall_s_std']:.0f} |")
    return "\n".join(lines)


def report_section(run_dir: Path, summary: dict, figures: Path, out_dir: Path) -> list[str]:
    """BENCHMARKS.md section of one central digits DDPM bench."""
    from edgegen.report import copy_plots

    t = summary["train"]
    lines = [f"### Central digits DDPM (diffusion core): `{run_dir}`", "",
             f"{summary['seeds']} seed(s); residual MLP ({t['hidden']} wide, {t['blocks']} blocks), {t['schedule']} "
             f"schedule with T = {t['diffusion_steps']}, {t['train_steps']} AdamW steps of batch {t['batch_size']} "
             f"on half A of the sklearn digits ({t['data']}), EMA {t['ema_decay']}; samples by DDIM with "
             f"{t['sample_steps']} steps (η = {t['eta']}). Metrics use {summary['eval_samples']} generated samples "
             "against the held-out half B; the floor is the feature-FID of as many real digits of half A against "
             "half B. Values: mean ± std over seeds; wall times are per run with one CPU thread.", "",
             f"Command: `{summary.get('command', '')}`", "",
             f"Bench wall time: {summary['bench_wall_s'] / 60:.1f} min with {summary['workers']} run(s) at a time.",
             "", format_table(summary), ""]
    for v, r in summary["results"].items():
        ok = r["within_fid_ratio_all_seeds"] and r["within_train_wall_s_all_seeds"]
        worst = max(r["fid_ratio_per_seed"])
        slowest = max(r["train_wall_s_per_seed"])
        lines.append(f"- {v}: feature-FID within {summary['max_fid_ratio']:g}× of the floor in ≤ "
                     f"{summary['max_train_wall_s'] / 60:g} min of training on every seed: "
                     f"**{'met' if ok else 'not met'}** (worst seed {worst:.2f}× the floor, slowest "
                     f"{slowest / 60:.1f} min).")
    return lines + copy_plots(run_dir, figures, out_dir) + [""]
