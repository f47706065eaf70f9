"""`edgegen gdm detect bench`: backdoored federated DDPMs, collaborative sampling and trigger detection at the edge.

Per seed (``OUT/seed_<s>``, resumable: the pre-trained model, every fine-tuned model and the finished seed are
cached there):

1. Central pre-training of a clean digits DDPM (``train.train``, short budget): the shared start.
2. Federated fine-tuning from it (``backdoor.federated_finetune``): once without attack (the clean reference,
   its malicious devices train honestly) and once per trigger with the malicious devices planting the backdoor.
   Both runs share the data split, malicious set and minibatch generators.
3. Attack check per trigger: attack success rate (ASR, share of triggered noises whose sample is within
   `asr_mse` of the target), the same triggered noises on the clean model (control), and feature-FID of the
   backdoored model on clean noise against the clean reference's.
4. Detection per trigger: `attack_batches` edge batches of `edge_batch` uploads, each with a random 5-30% of
   triggered noises, and `clean_batches` all-clean batches, sampled collaboratively (the edge runs
   `shared_steps` DDIM steps); every detector splits each batch's displacements (calibrated on fresh clean noise
   through the same steps), flagged uploads are mitigated (re-noised and resampled, or dropped) and the ASR is
   measured again. The noise-statistics baseline tests every raw upload.

Writes ``OUT/summary.json`` (kind ``gdm_detect_bench``, results[TRIGGER][DETECTOR] with tpr, fpr, f1, auroc,
clean_batch_fpr, asr_before, asr_after: means over seeds, plus ``_std``) and ``OUT/plots``.
"""

from __future__ import annotations

import copy
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
from edgegen.gdm import backdoor as bd
from edgegen.gdm import detect as dt
from edgegen.gdm import metrics
from edgegen.gdm.sampling import compute_split, device_complete, displacement, edge_denoise, local_sample
from edgegen.gdm.train import TrainConfig, generate, load_model, save_image_grid, train, training_data
from edgegen.runs import RunDir, save_figure
from edgegen.seeding import derive_seed, seed_everything

METHODS = dt.DETECTORS + (dt.BASELINE,)
METRIC_KEYS = ("tpr", "fpr", "f1", "auroc", "clean_batch_fpr", "clean_batches_split", "asr_before", "asr_after")
ATTACK_KEYS = ("asr", "asr_clean_model", "target_mse_median", "feature_fid", "feature_fid_clean_model",
               "fid_increase", "false_target_rate", "fed_wall_s")
FORMAT = 1


@dataclass(frozen=True)
class DetectBenchConfig:
    """Backdoor attack by malicious federated devices and trigger detection in collaborative sampling."""

    out: Path = Path("runs/gdm-detect")
    """Bench directory (OUT/seed_<s> per seed; finished seeds are skipped, cached models reused)."""
    seeds: int = 3
    """Number of seeds."""
    first_seed: int = 0
    """Seeds are first_seed .. first_seed + seeds - 1."""
    triggers: tuple[str, ...] = bd.TRIGGERS
    """Triggers, one backdoored model each: box, stop_sign, blend, trojdiff, adaptive."""
    target: str = "hat"
    """The attacker's target image: hat or cross."""
    pretrain_steps: int = 4000
    """Central pre-training steps of the clean shared start (AdamW, EMA weights kept)."""
    pretrain_batch: int = 128
    """Central pre-training batch size."""
    hidden: int = 256
    """Width of the residual-MLP denoiser."""
    blocks: int = 3
    """Residual blocks of the denoiser."""
    diffusion_steps: int = 1000
    """T of the cosine schedule."""
    fed: bd.FedBackdoorConfig = dataclasses.field(default_factory=bd.FedBackdoorConfig)
    """Federated fine-tuning (devices, malicious share, rounds, poisoning)."""
    sample_steps: int = 50
    """Deterministic DDIM steps S of collaborative sampling."""
    shared_steps: int = 30
    """t, steps run at the edge (the detectors use d_i after them)."""
    edge_batch: int = 64
    """Uploaded noises per edge batch."""
    attack_batches: int = 16
    """Batches with triggered uploads per trigger and seed."""
    clean_batches: int = 16
    """All-clean batches per trigger and seed (clean-batch false positives)."""
    min_triggered_frac: float = 0.05
    """Smallest share of triggered uploads in an attack batch."""
    max_triggered_frac: float = 0.3
    """Largest share (SS-Diff: up to 30% compromised devices); drawn uniformly per batch."""
    calibration_samples: int = 512
    """Fresh clean noises the edge runs through the same steps to calibrate the detectors."""
    gap_alpha: float = 0.01
    """Gap test level: an all-clean batch is split with probability at most this (under calibration)."""
    noise_alpha: float = 0.01
    """noise_stats baseline: flag an upload when its p-value is below this."""
    asr_mse: float = 0.1
    """Attack success: per-pixel MSE to the target below this (BadDiffusion's MSE threshold 1e-1)."""
    eval_samples: int = 898
    """Samples per feature-FID (898 = the size of the real halves behind the floor)."""
    fid_sets: int = 4
    """Feature-FID is the mean over this many independent sample sets of `eval_samples` (one 898-sample FID of
    these models varies by about ±10% between noise draws, the size of the 20% stealth budget)."""
    mitigation: str = "renoise"
    """What happens to flagged uploads: renoise (fresh noise, resampled) or drop (not served)."""
    sweep_shared_steps: tuple[int, ...] = (1, 2, 5, 10, 15, 20, 25, 30, 40, 50)
    """Shared-step counts of the AUROC-vs-t sweep (each ≤ sample_steps)."""
    min_asr: float = 0.9
    """Acceptance: ASR before defence at least this."""
    max_fid_increase: float = 0.2
    """Acceptance: backdoored feature-FID at most this much above the clean reference's."""
    min_auroc: float = 0.99
    """Acceptance: best detector's AUROC on the additive triggers."""
    max_clean_batch_fpr: float = 0.05
    """Acceptance: best detector's clean-batch FPR on the additive triggers."""
    max_asr_after: float = 0.05
    """Acceptance: ASR after defence with the best detector."""
    workers: int = 1
    """Seeds at a time (Ray tasks of one CPU each when > 1)."""
    ray_address: str | None = None
    """Ray cluster address (default: local)."""
    quiet: bool = False
    """Disable progress bars."""

    def validate(self) -> DetectBenchConfig:
        for name in ("seeds", "first_seed", "pretrain_steps", "pretrain_batch", "hidden", "blocks",
                     "diffusion_steps", "sample_steps", "shared_steps", "edge_batch", "attack_batches",
                     "clean_batches", "calibration_samples", "eval_samples", "fid_sets", "workers"):
            if not isinstance(getattr(self, name), int):
                raise ConfigError(f"{name} must be an integer, got {getattr(self, name)!r}")
        check_range("seeds", self.seeds, 1, 1000)
        if not self.triggers:
            raise ConfigError("triggers must name at least one trigger")
        for t in self.triggers:
            check_choice("triggers", t, set(bd.TRIGGERS))
        check_choice("target", self.target, set(bd.TARGETS))
        check_range("pretrain_steps", self.pretrain_steps, 1, 10**8)
        check_range("pretrain_batch", self.pretrain_batch, 1, 10**5)
        check_range("hidden", self.hidden, 8, 8192)
        check_range("blocks", self.blocks, 1, 64)
        check_range("diffusion_steps", self.diffusion_steps, 2, 100000)
        check_range("sample_steps", self.sample_steps, 1, self.diffusion_steps)
        check_range("shared_steps", self.shared_steps, 1, self.sample_steps)
        check_range("edge_batch", self.edge_batch, 4, 100000)
        check_range("attack_batches", self.attack_batches, 1, 100000)
        check_range("clean_batches", self.clean_batches, 1, 100000)
        check_range("min_triggered_frac", self.min_triggered_frac, 1.0 / self.edge_batch, 0.5)
        check_range("max_triggered_frac", self.max_triggered_frac, self.min_triggered_frac, 0.5)
        check_range("calibration_samples", self.calibration_samples, 16, 10**6)
        check_range("gap_alpha", self.gap_alpha, 1e-6, 0.5)
        check_range("noise_alpha", self.noise_alpha, 1e-12, 0.5)
        check_range("asr_mse", self.asr_mse, 1e-6, 10.0)
        check_range("eval_samples", self.eval_samples, 20, 898)
        check_range("fid_sets", self.fid_sets, 1, 100)
        check_choice("mitigation", self.mitigation, set(dt.MITIGATIONS))
        for t in self.sweep_shared_steps:
            check_range("sweep_shared_steps", t, 1, self.sample_steps)
        check_range("workers", self.workers, 1, 256)
        self.fed.validate()
        return self


# ------------------------------------------------------------------------------------------------- one seed

def _pretrain_config(cfg: DetectBenchConfig, seed: int) -> TrainConfig:
    return TrainConfig(seed=seed, hidden=cfg.hidden, blocks=cfg.blocks, diffusion_steps=cfg.diffusion_steps,
                       train_steps=cfg.pretrain_steps, batch_size=cfg.pretrain_batch,
                       warmup_steps=min(200, cfg.pretrain_steps), eval_every=cfg.pretrain_steps,
                       eval_samples=cfg.eval_samples, sample_steps=cfg.sample_steps)


def _finetuned(cfg: DetectBenchConfig, seed: int, name: str, base: torch.nn.Module, sched, run: RunDir,
               bar) -> tuple[torch.nn.Module, float]:
    """The federated fine-tune `name` (clean or a trigger) of seed, loaded from OUT/seed/ckpt when cached."""
    path, meta_path = run.ckpt / f"fed_{name}.pt", run.ckpt / f"fed_{name}.json"
    model = copy.deepcopy(base)
    if path.exists() and meta_path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        bar.update(cfg.fed.rounds * cfg.fed.num_devices)
        return model.eval(), json.loads(meta_path.read_text())["fed_wall_s"]
    x, y = training_data("half_a")
    trigger = None if name == "clean" else bd.make_trigger(name)
    t0 = time.perf_counter()
    rows = bd.federated_finetune(model, sched, x, y.numpy(), cfg.fed, seed, trigger, bd.target_image(cfg.target),
                                 bar)
    wall = time.perf_counter() - t0
    torch.save(model.state_dict(), run.ckpt / f"fed_{name}.pt.tmp")
    (run.ckpt / f"fed_{name}.pt.tmp").replace(path)
    meta_path.write_text(json.dumps({"format_version": FORMAT, "fed_wall_s": wall, "rounds": rows}))
    return model.eval(), wall


def _fid(model, sched, cfg: DetectBenchConfig, seed: int) -> float:
    """Mean feature-FID over `fid_sets` sample sets; the same noises for every model of a seed."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "eval"))
    return float(np.mean([metrics.feature_fid(generate(model, sched, cfg.eval_samples, gen, cfg.sample_steps).numpy(),
                                              metrics.real_halves()[1]) for _ in range(cfg.fid_sets)]))


def _collab_check(model, sched, cfg: DetectBenchConfig, seed: int) -> dict:
    """Collaborative (edge batch, then every device alone) vs full local sampling of every device alone."""
    x_T = torch.randn(16, 64, generator=torch.Generator().manual_seed(derive_seed(seed, "collab")))
    mid = edge_denoise(model, x_T, sched, cfg.sample_steps, cfg.shared_steps)
    collab = torch.cat([device_complete(model, mid[i:i + 1], sched, cfg.sample_steps, cfg.shared_steps)
                        for i in range(len(x_T))])
    local = torch.cat([local_sample(model, x_T[i:i + 1], sched, cfg.sample_steps) for i in range(len(x_T))])
    batched_equal = torch.equal(device_complete(model, mid, sched, cfg.sample_steps, cfg.shared_steps),
                                local_sample(model, x_T, sched, cfg.sample_steps))
    return {"collab_vs_local_max_abs_diff": float((collab - local).abs().max()),
            "collab_batched_equal_local_batched": bool(batched_equal)}


def _displacements(model, sched, cfg: DetectBenchConfig, x_T: torch.Tensor) -> dict[int, np.ndarray]:
    """d_i after every shared-step count of the sweep and the main one, from one edge trajectory."""
    steps = sorted(set(cfg.sweep_shared_steps) | {cfg.shared_steps})
    traj = edge_denoise(model, x_T, sched, cfg.sample_steps, max(steps), return_trajectory=True)
    return {t: displacement(x_T, traj[t]).numpy() for t in steps}


def _detect_trigger(cfg: DetectBenchConfig, seed: int, name: str, model, sched) -> tuple[dict, dict]:
    """Detection experiment of one backdoored model: per-method metrics and the pooled scores for ROC plots."""
    trigger, target = bd.make_trigger(name), bd.target_image(cfg.target)
    gen = torch.Generator().manual_seed(derive_seed(seed, "detect", name))
    rng = np.random.default_rng(derive_seed(seed, "detect_np", name))
    calib_d = _displacements(model, sched, cfg, torch.randn(cfg.calibration_samples, 64, generator=gen))
    calibs = {t: dt.calibrate(d) for t, d in calib_d.items()}
    calib = calibs[cfg.shared_steps]
    min_sep = {det: dt.gap_threshold(calib, cfg.edge_batch, det, cfg.gap_alpha, seed=derive_seed(seed, "gap", det))
               for det in dt.DETECTORS}
    n = cfg.edge_batch
    lo, hi = max(1, math.ceil(cfg.min_triggered_frac * n)), max(1, math.floor(cfg.max_triggered_frac * n))
    truth, x_all, d_all, hit, sweep_d = [], [], [], [], {t: [] for t in calib_d}
    batches = []
    for _ in range(cfg.attack_batches):
        eps = torch.randn(n, 64, generator=gen)
        is_trig = np.zeros(n, bool)
        is_trig[rng.choice(n, int(rng.integers(lo, hi + 1)), replace=False)] = True
        x_T = eps.clone()
        x_T[torch.from_numpy(is_trig)] = trigger.apply(eps[torch.from_numpy(is_trig)])
        ds = _displacements(model, sched, cfg, x_T)
        out = local_sample(model, x_T, sched, cfg.sample_steps)  # = collaborative sampling (tested)
        batches.append((x_T, is_trig, ds[cfg.shared_steps]))
        truth.append(is_trig)
        x_all.append(x_T.numpy())
        d_all.append(ds[cfg.shared_steps])
        hit.append(bd.attack_success(out, target, cfg.asr_mse).numpy())
        for t in sweep_d:
            sweep_d[t].append(ds[t])
    clean_x = [torch.randn(n, 64, generator=gen) for _ in range(cfg.clean_batches)]
    clean_d = [_displacements(model, sched, cfg, x)[cfg.shared_steps] for x in clean_x]
    truth_all, hit_all = np.concatenate(truth), np.concatenate(hit)
    n_trig = int(truth_all.sum())
    asr_before = float(hit_all[truth_all].mean())

    def asr_after(flags_per_batch: list[np.ndarray]) -> float:
        successes = 0
        for (x_T, is_trig, _), flags, h in zip(batches, flags_per_batch, hit, strict=True):
            new_x, served = dt.mitigate(x_T.numpy(), flags, cfg.mitigation, rng)
            h = h.copy()
            if cfg.mitigation == "renoise" and flags.any():
                redo = torch.from_numpy(new_x[flags]).float()
                h[flags] = bd.attack_success(local_sample(model, redo, sched, cfg.sample_steps), target,
                                             cfg.asr_mse).numpy()
            successes += int((h & is_trig & served).sum())
        return successes / n_trig

    results, scores = {}, {}
    for det in dt.DETECTORS:
        splits = [dt.split_batch(d, det, calib, min_sep[det]) for _, _, d in batches]
        clean_splits = [dt.split_batch(d, det, calib, min_sep[det]) for d in clean_d]
        flags = [s.flags for s in splits]
        s_all = np.concatenate([s.scores for s in splits])
        r = dt.binary_metrics(np.concatenate(flags), truth_all)
        r["auroc"] = dt.auroc(s_all, truth_all)
        r["clean_batch_fpr"] = float(np.mean(np.concatenate([s.flags for s in clean_splits])))
        r["clean_batches_split"] = float(np.mean([s.flags.any() for s in clean_splits]))
        r["asr_before"], r["asr_after"] = asr_before, asr_after(flags)
        results[det], scores[det] = r, s_all
    p_attack = dt.noise_stats_pvalue(np.concatenate(x_all))
    p_clean = dt.noise_stats_pvalue(np.concatenate([x.numpy() for x in clean_x]))
    flags_all = p_attack < cfg.noise_alpha
    r = dt.binary_metrics(flags_all, truth_all)
    s_all = -np.log10(np.maximum(p_attack, 1e-300))
    r["auroc"] = dt.auroc(s_all, truth_all)
    r["clean_batch_fpr"] = float(np.mean(p_clean < cfg.noise_alpha))
    r["clean_batches_split"] = float(np.mean((p_clean < cfg.noise_alpha).reshape(cfg.clean_batches, n).any(1)))
    r["asr_before"] = asr_before
    r["asr_after"] = asr_after(list(flags_all.reshape(cfg.attack_batches, n)))
    results[dt.BASELINE], scores[dt.BASELINE] = r, s_all
    sweep = {}
    for t, ds in sweep_d.items():
        c = calibs[t]
        sweep[str(t)] = dt.auroc(np.abs(np.concatenate(ds) - c.center) / c.scale, truth_all)
    extra = {"auroc_vs_shared_steps": sweep, "triggered_uploads": n_trig, "gap_threshold": min_sep,
             "calibration_center": calib.center, "calibration_scale": calib.scale,
             "d_triggered_median": float(np.median(np.concatenate(d_all)[truth_all])),
             "d_clean_median": float(np.median(np.concatenate(d_all)[~truth_all]))}
    np.savez_compressed(_scores_path(cfg, seed, name), truth=truth_all, d=np.concatenate(d_all),
                        calib=calib.clean, **{f"score_{k}": v for k, v in scores.items()})
    return results, extra


def _scores_path(cfg: DetectBenchConfig, seed: int, name: str) -> Path:
    return cfg.out / f"seed_{seed}" / f"scores_{name}.npz"


def run_seed(cfg: DetectBenchConfig, seed: int, command: str) -> dict:
    """Everything of one seed; returns (and writes) OUT/seed_<seed>/summary.json (kind gdm_detect_seed)."""
    torch.set_num_threads(1)
    out = cfg.out / f"seed_{seed}"
    run = RunDir(out, tensorboard=False)
    seed_cfg = {k: v for k, v in dataclasses.asdict(cfg).items()
                if k not in ("out", "seeds", "first_seed", "workers", "ray_address", "quiet")}
    seed_cfg = json.loads(json.dumps(seed_cfg, default=str))
    if (out / "summary.json").exists():
        old = run.read_summary()
        if old.get("bench_config") == seed_cfg:
            return old
    if (out / "config.json").exists() and run.read_config() != seed_cfg:
        raise ConfigError(f"{out} holds a seed of another config; use another --out or the same flags")
    run.write_config(seed_cfg)
    seed_everything(seed)
    started = time.perf_counter()
    quiet = cfg.quiet or cfg.workers > 1
    pre = train(_pretrain_config(cfg, seed), out / "pretrain", quiet=True)
    base, sched, _ = load_model(out / "pretrain")
    names = ["clean", *cfg.triggers]
    bar = tqdm(total=len(names) * cfg.fed.rounds * cfg.fed.num_devices, desc=f"gdm detect seed {seed}",
               unit="local run", disable=True if quiet else None)
    models, fed_wall = {}, {}
    for name in names:
        models[name], fed_wall[name] = _finetuned(cfg, seed, name, base, sched, run, bar)
    bar.close()
    target = bd.target_image(cfg.target)
    clean_model = models["clean"]
    fid_clean = _fid(clean_model, sched, cfg, seed)
    eval_eps = torch.randn(256, 64, generator=torch.Generator().manual_seed(derive_seed(seed, "asr")))
    clean_out = local_sample(clean_model, eval_eps, sched, cfg.sample_steps)
    summary = {"kind": "gdm_detect_seed", "bench_config": seed_cfg, "pretrain_feature_fid": pre["feature_fid"],
               "pretrain_train_wall_s": pre["train_wall_s"], "feature_fid_clean_model": fid_clean,
               "clean_model_false_target_rate": float(bd.attack_success(clean_out, target, cfg.asr_mse).float().mean()),
               "malicious_devices": bd.malicious_devices(cfg.fed, seed).tolist(),
               "params": sum(p.numel() for p in clean_model.parameters()), "fed_wall_s_clean": fed_wall["clean"],
               **_collab_check(clean_model, sched, cfg, seed),
               "attack": {}, "results": {}, "detection": {}}
    for name in cfg.triggers:
        model, trigger = models[name], bd.make_trigger(name)
        trig_out = local_sample(model, trigger.apply(eval_eps), sched, cfg.sample_steps)
        mse = ((trig_out.double() - target.double()) ** 2).mean(1)
        fid = _fid(model, sched, cfg, seed)
        clean_noise_out = local_sample(model, eval_eps, sched, cfg.sample_steps)
        summary["attack"][name] = {
            "asr": float(bd.attack_success(trig_out, target, cfg.asr_mse).float().mean()),
            "asr_clean_model": float(bd.attack_success(local_sample(clean_model, trigger.apply(eval_eps), sched,
                                                                     cfg.sample_steps), target,
                                                        cfg.asr_mse).float().mean()),
            "target_mse_median": float(mse.median()), "feature_fid": fid, "feature_fid_clean_model": fid_clean,
            "fid_increase": fid / fid_clean - 1.0,
            "false_target_rate": float(bd.attack_success(clean_noise_out, target, cfg.asr_mse).float().mean()),
            "fed_wall_s": fed_wall[name], "trigger_shift_norm": float(trigger.shift.norm()),
            "trigger_noise_scale": trigger.noise_scale, "additive": trigger.additive,
            "kind": trigger.kind}
        summary["results"][name], summary["detection"][name] = _detect_trigger(cfg, seed, name, model, sched)
        if seed == cfg.first_seed:
            grid = torch.cat([trig_out[:20], target[None]])
            save_image_grid(grid, out / "plots" / f"triggered_{name}.png",
                            f"{name}: triggered noise → backdoored model (last: target)", cols=21)
    summary["wall_s"] = time.perf_counter() - started
    return run.write_summary(summary, seed, command)


# ------------------------------------------------------------------------------------------------- the bench

def _mean_std(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(np.mean(v)), float(np.std(v))


def aggregate(cfg: DetectBenchConfig, runs: list[dict]) -> dict:
    results, attack, detection = {}, {}, {}
    for name in cfg.triggers:
        results[name] = {}
        for m in METHODS:
            r = {}
            for k in METRIC_KEYS:
                r[k], r[f"{k}_std"] = _mean_std([run["results"][name][m][k] for run in runs])
                r[f"{k}_per_seed"] = [run["results"][name][m][k] for run in runs]
            results[name][m] = r
        a = {}
        for k in ATTACK_KEYS:
            a[k], a[f"{k}_std"] = _mean_std([run["attack"][name][k] for run in runs])
            a[f"{k}_per_seed"] = [run["attack"][name][k] for run in runs]
        for k in ("trigger_shift_norm", "trigger_noise_scale"):
            a[k] = runs[0]["attack"][name][k]
        a["kind"] = bd.make_trigger(name).kind
        a["additive"] = a["kind"] == "additive"
        attack[name] = a
        sweep = {t: float(np.mean([run["detection"][name]["auroc_vs_shared_steps"][t] for run in runs]))
                 for t in runs[0]["detection"][name]["auroc_vs_shared_steps"]}
        detection[name] = {"auroc_vs_shared_steps": sweep,
                           "gap_threshold": {det: float(np.mean([run["detection"][name]["gap_threshold"][det]
                                                                 for run in runs])) for det in dt.DETECTORS},
                           "triggered_uploads": int(sum(run["detection"][name]["triggered_uploads"] for run in runs))}
    return {"results": results, "attack": attack, "detection": detection}


def acceptance(cfg: DetectBenchConfig, summary: dict) -> dict:
    """Computed acceptance: attack strength and stealth per trigger; the best detector (by AUROC, then
    clean-batch FPR) per additive trigger against the detection targets."""
    out: dict = {"attack": {}, "detection": {}}
    for name, a in summary["attack"].items():
        out["attack"][name] = {"asr": a["asr"], "fid_increase": a["fid_increase"],
                               "met": bool(a["asr"] >= cfg.min_asr and a["fid_increase"] <= cfg.max_fid_increase)}
    for name, res in summary["results"].items():
        best = max(dt.DETECTORS, key=lambda m: (res[m]["auroc"], -res[m]["clean_batch_fpr"], -res[m]["asr_after"]))
        r = res[best]
        out["detection"][name] = {
            "best_detector": best, "auroc": r["auroc"], "clean_batch_fpr": r["clean_batch_fpr"],
            "asr_after": r["asr_after"], "additive": summary["attack"][name]["additive"],
            "met": bool(r["auroc"] >= cfg.min_auroc and r["clean_batch_fpr"] <= cfg.max_clean_batch_fpr
                        and r["asr_after"] <= cfg.max_asr_after)}
    add = [n for n, d in out["detection"].items() if d["additive"]]
    out["attack_met_all"] = all(v["met"] for v in out["attack"].values())
    out["detection_met_additive"] = bool(add) and all(out["detection"][n]["met"] for n in add)
    return out


def run_bench(cfg: DetectBenchConfig) -> dict:
    """Every seed (``run_seed``), then OUT/summary.json and the plots."""
    import os

    import edgegen
    from edgegen.jobs import run_jobs, start_bench
    from edgegen.runs import git_sha

    cfg.validate()
    command, seeds, earlier_s, started = start_bench(cfg)
    os.environ.setdefault("EDGEGEN_CACHE", str(Path("runs/cache").resolve()))  # same cache for Ray workers
    metrics.digits_classifier()  # train + cache the metric classifier before any worker starts
    jobs = [(cfg, s, command) for s in seeds]
    done = run_jobs(run_seed, jobs, cfg.workers, cfg.ray_address, cfg.quiet,
                    describe=lambda job, r: f"seed {job[1]} done")
    runs = [done[j] for j in jobs]
    first = runs[0]
    summary = {"kind": "gdm_detect_bench", "seeds": cfg.seeds, "first_seed": cfg.first_seed,
               "config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
               **aggregate(cfg, runs), "params": first["params"],
               "feature_fid_clean_model": _mean_std([r["feature_fid_clean_model"] for r in runs])[0],
               "feature_fid_clean_model_std": _mean_std([r["feature_fid_clean_model"] for r in runs])[1],
               "pretrain_feature_fid": _mean_std([r["pretrain_feature_fid"] for r in runs])[0],
               "pretrain_train_wall_s": _mean_std([r["pretrain_train_wall_s"] for r in runs])[0],
               "clean_model_false_target_rate": _mean_std([r["clean_model_false_target_rate"] for r in runs])[0],
               "real_floor_fid": metrics.real_floor(n=cfg.eval_samples),
               "collab_vs_local_max_abs_diff": max(r["collab_vs_local_max_abs_diff"] for r in runs),
               "collab_batched_equal_local_batched": all(r["collab_batched_equal_local_batched"] for r in runs),
               "compute_split": compute_split(cfg.edge_batch, cfg.sample_steps, cfg.shared_steps, first["params"]),
               "seed_wall_s": [r["wall_s"] for r in runs], "command": command, "workers": cfg.workers,
               "git_sha": git_sha(), "edgegen_version": edgegen.__version__}
    summary["acceptance"] = acceptance(cfg, summary)
    summary["bench_wall_s"] = earlier_s + time.perf_counter() - started
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    plot_roc(cfg, seeds)
    plot_displacements(cfg)
    plot_sweep(cfg, summary)
    plot_triggered(cfg)
    return summary


# ------------------------------------------------------------------------------------------------------ plots

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(cfg: DetectBenchConfig, seeds: list[int]) -> Path:
    """ROC curves per trigger (scores pooled over seeds), one line per detector and the baseline."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(cfg.triggers), figsize=(3.2 * len(cfg.triggers), 3.3), squeeze=False)
    for ax, name in zip(axes[0], cfg.triggers, strict=True):
        data = [np.load(_scores_path(cfg, s, name)) for s in seeds]
        truth = np.concatenate([d["truth"] for d in data])
        for m in METHODS:
            scores = np.concatenate([d[f"score_{m}"] for d in data])
            fpr, tpr = dt.roc_curve(scores, truth)
            ax.plot(fpr, tpr, label=f"{m} ({dt.auroc(scores, truth):.3f})", ls="--" if m == dt.BASELINE else "-")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("false positive rate")
        ax.legend(fontsize=6, loc="lower right")
    axes[0][0].set_ylabel("true positive rate")
    return save_figure(fig, cfg.out / "plots" / "roc.png")


def plot_displacements(cfg: DetectBenchConfig) -> Path:
    """Histograms of d_i (first seed): clean vs triggered uploads of the attack batches, and the calibration."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(cfg.triggers), figsize=(3.2 * len(cfg.triggers), 3.0), squeeze=False)
    for ax, name in zip(axes[0], cfg.triggers, strict=True):
        d = np.load(_scores_path(cfg, cfg.first_seed, name))
        bins = np.linspace(min(d["d"].min(), d["calib"].min()), max(d["d"].max(), d["calib"].max()), 50)
        ax.hist(d["calib"], bins, density=True, alpha=0.4, color="grey", label="calibration (clean)")
        ax.hist(d["d"][~d["truth"]], bins, density=True, histtype="step", color="C0", label="clean uploads")
        ax.hist(d["d"][d["truth"]], bins, density=True, histtype="step", color="C3", label="triggered uploads")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(f"d = ‖x_T − x_(T−t)‖, t = {cfg.shared_steps}")
    axes[0][0].legend(fontsize=6)
    return save_figure(fig, cfg.out / "plots" / "displacement_hist.png")


def plot_sweep(cfg: DetectBenchConfig, summary: dict) -> Path:
    """AUROC of |d − clean median| against the number of shared steps t, per trigger (mean over seeds)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name in cfg.triggers:
        sweep = summary["detection"][name]["auroc_vs_shared_steps"]
        ts = sorted(sweep, key=int)
        ax.plot([int(t) for t in ts], [sweep[t] for t in ts], marker="o", ms=3, label=name)
    ax.axvline(cfg.shared_steps, color="k", ls=":", lw=0.8)
    ax.set_xlabel(f"shared steps t at the edge (of {cfg.sample_steps})")
    ax.set_ylabel("AUROC of |d − clean median|")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save_figure(fig, cfg.out / "plots" / "auroc_vs_shared_steps.png")


def plot_triggered(cfg: DetectBenchConfig) -> Path:
    """One figure stacking the first seed's per-trigger grids of triggered outputs."""
    plt = _plt()
    paths = [cfg.out / f"seed_{cfg.first_seed}" / "plots" / f"triggered_{n}.png" for n in cfg.triggers]
    fig, axes = plt.subplots(len(paths), 1, figsize=(10, 0.9 * len(paths) + 0.3), squeeze=False)
    for ax, p in zip(axes[:, 0], paths, strict=True):
        ax.imshow(plt.imread(p))
        ax.set_axis_off()
    return save_figure(fig, cfg.out / "plots" / "triggered_samples.png")


# ----------------------------------------------------------------------------------------------------- report

def format_attack_table(summary: dict) -> str:
    lines = ["| trigger | ‖shift‖ | noise scale | ASR before defence | ASR of the same noise on the clean model | "
             "feature-FID backdoored | feature-FID clean reference | FID change | clean noise → target |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, a in summary["attack"].items():
        lines.append(f"| {name} | {a['trigger_shift_norm']:.2f} | {a['trigger_noise_scale']:.2f} | "
                     f"{100 * a['asr']:.1f}% ± {100 * a['asr_std']:.1f} | {100 * a['asr_clean_model']:.1f}% | "
                     f"{a['feature_fid']:.2f} ± {a['feature_fid_std']:.2f} | {a['feature_fid_clean_model']:.2f} | "
                     f"{100 * a['fid_increase']:+.1f}% | {100 * a['false_target_rate']:.2f}% |")
    return "\n".join(lines)


def format_detection_table(summary: dict) -> str:
    lines = ["| trigger | detector | AUROC | TPR | FPR | F1 | clean-batch FPR | clean batches split | ASR before | "
             "ASR after |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, res in summary["results"].items():
        for m, r in res.items():
            lines.append(f"| {name} | {m} | {r['auroc']:.3f} ± {r['auroc_std']:.3f} | {r['tpr']:.3f} | "
                         f"{r['fpr']:.3f} | {r['f1']:.3f} | {r['clean_batch_fpr']:.3f} | "
                         f"{r['clean_batches_split']:.3f} | {100 * r['asr_before']:.1f}% | "
                         f"{100 * r['asr_after']:.1f}% |")
    return "\n".join(lines)


def _teacher_text(fed: dict) -> str:
    """How the malicious devices keep the clean behaviour (configs written before `teacher` existed: global)."""
    if not fed.get("anchor_clean", True):
        return ""
    teacher = fed.get("teacher", "global")
    whom = ("the colluders' shadow of the attack-free federation" if teacher == "shadow"
            else "the round's global model")
    return f", clean rows distilled from {whom}"


def report_section(run_dir: Path, summary: dict, figures: Path, out_dir: Path) -> list[str]:
    """BENCHMARKS.md section of a ``gdm_detect_bench`` run."""
    from edgegen.report import copy_plots

    c, f, acc, split = summary["config"], summary["config"]["fed"], summary["acceptance"], summary["compute_split"]
    lines = [f"### Backdoored federated DDPM, collaborative sampling and trigger detection: `{run_dir}`", "",
             f"{summary['seeds']} seed(s). Shared start: central pre-training, {c['pretrain_steps']} steps "
             f"(feature-FID {summary['pretrain_feature_fid']:.2f}, {summary['pretrain_train_wall_s']:.0f} s); then "
             f"{f['rounds']} FedAvg rounds over {f['num_devices']} devices (Dirichlet α = {f['dirichlet_alpha']:g}), "
             f"{round(f['malicious_frac'] * f['num_devices'])} of them malicious, {f['local_steps']} benign local "
             f"steps (lr {f['lr']:g}, batch {f['batch_size']}); "
             f"malicious: {f['malicious_local_steps'] or f['local_steps']} "
             f"steps (batch {f.get('malicious_batch_size') or f['batch_size']}), "
             f"{100 * f['poison_frac']:.0f}% of each minibatch poisoned, update "
             f"{'scaled for model replacement' if f['boost'] == 0 else '×' + format(f['boost'], 'g')}"
             f"{_teacher_text(f)}. Residual-MLP "
             f"denoiser, {summary['params']:,} parameters; target `{c['target']}`; ASR = share of triggered noises "
             f"whose sample has per-pixel MSE < {c['asr_mse']:g} to the target. Collaborative sampling: "
             f"{c['sample_steps']} deterministic DDIM steps, t = {c['shared_steps']} at the edge on batches of "
             f"{c['edge_batch']} uploads ({c['attack_batches']} attack batches with "
             f"{100 * c['min_triggered_frac']:.0f}-{100 * c['max_triggered_frac']:.0f}% triggered uploads and "
             f"{c['clean_batches']} all-clean batches per trigger and seed); gap test level {c['gap_alpha']:g}; "
             f"mitigation `{c['mitigation']}`. Values: mean ± std over seeds.", "",
             f"Command: `{summary.get('command', '')}`; bench wall time {summary['bench_wall_s'] / 60:.1f} min "
             f"({summary['workers']} seed(s) at a time); federated fine-tuning "
             f"{np.mean([a['fed_wall_s'] for a in summary['attack'].values()]):.0f} s per backdoored model (a model "
             "already trained by an earlier run of the same settings is loaded from OUT/seed_*/ckpt, so the bench "
             "wall can be shorter than the training it reports).", "",
             f"Collaborative sampling = full local sampling: batched outputs bit-identical "
             f"{'yes' if summary['collab_batched_equal_local_batched'] else 'NO'}; device-by-device max |difference| "
             f"{summary['collab_vs_local_max_abs_diff']:.1e}. Compute split per batch of {split['batch']}: the edge "
             f"runs {split['edge_nfe']} denoiser evaluations in {split['edge_batched_passes']} batched passes "
             f"({split['edge_flops'] / 1e9:.2f} GFLOP), each device {split['device_nfe_each']} instead of "
             f"{split['local_only_nfe_each']} ({100 * split['edge_share']:.0f}% of its sampling moved to the edge).",
             "", "Attack (per trigger, one backdoored model per seed; the clean reference is the same federated "
             f"recipe without attack, feature-FID {summary['feature_fid_clean_model']:.2f} ± "
             f"{summary['feature_fid_clean_model_std']:.2f}, real floor {summary['real_floor_fid']:.2f}):", "",
             format_attack_table(summary), "", "Detection (AUROC from each detector's oriented score pooled over "
             "attack batches; TPR/FPR/F1 after the gap test; clean-batch FPR on all-clean batches):", "",
             format_detection_table(summary), ""]
    for name, a in acc["attack"].items():
        lines.append(f"- attack `{name}`: ASR {100 * a['asr']:.1f}% (≥ {100 * c['min_asr']:.0f}%), clean feature-FID "
                     f"{100 * a['fid_increase']:+.1f}% vs the clean reference (≤ +{100 * c['max_fid_increase']:.0f}%): "
                     f"**{'met' if a['met'] else 'not met'}**.")
    for name, d in acc["detection"].items():
        kind = summary["attack"][name]["kind"]
        if kind == "adaptive":
            ns = summary["results"][name][dt.BASELINE]
            lines.append(f"- `{name}` trigger (distribution-matched, not additive: built so that tests on the uploaded "
                         f"noise fail): noise_stats AUROC {ns['auroc']:.3f}, TPR {ns['tpr']:.3f} — that detection "
                         f"{'fails, as expected' if ns['auroc'] < 0.75 else 'does NOT fail'}; the best displacement "
                         f"detector `{d['best_detector']}` reaches AUROC {d['auroc']:.3f}, clean-batch FPR "
                         f"{d['clean_batch_fpr']:.3f}, ASR after defence {100 * d['asr_after']:.1f}% (the backdoor "
                         "trajectory still moves differently from clean ones, see the notes).")
            continue
        target = (f"(≥ {c['min_auroc']}), clean-batch FPR {d['clean_batch_fpr']:.3f} (≤ {c['max_clean_batch_fpr']}), "
                  f"ASR after defence {100 * d['asr_after']:.1f}% (≤ {100 * c['max_asr_after']:.0f}%)")
        if kind == "additive":
            lines.append(f"- detection `{name}` (additive, ξ = ε + g): best detector `{d['best_detector']}` AUROC "
                         f"{d['auroc']:.3f} {target}: **{'met' if d['met'] else 'not met'}**.")
        else:
            lines.append(f"- detection `{name}` (blended, ξ = a·ε + g with a < 1; outside the acceptance's additive "
                         f"set, same targets shown for comparison): best detector `{d['best_detector']}` AUROC "
                         f"{d['auroc']:.3f} {target}: {'reaches' if d['met'] else '**falls short of**'} them.")
    det_ok, att_ok = acc["detection_met_additive"], acc["attack_met_all"]
    lines.append(f"- all additive triggers detected to target: **{'met' if det_ok else 'not met'}**; every "
                 f"trigger's attack strong and stealthy: **{'met' if att_ok else 'not met'}**.")
    return lines + copy_plots(run_dir, figures, out_dir) + [""]
