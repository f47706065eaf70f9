"""Quantized federated DDPM training on non-IID digits with energy-optimal per-round resource allocation.

SS-Diff (IEEE IoT J. 2024) / arXiv 2403.04430 on the 8×8 sklearn digits, one round after another:

1. K devices hold Dirichlet(α) label-skewed shares of the training half of the digits (``dirichlet_split``).
2. Each round a random subset of ``participation``·K devices is drawn; each starts from the global denoiser and
   runs ``local_steps`` AdamW steps of the ε-prediction DDPM loss on its own digits (``train.train_steps``).
3. Each device uploads its model update Δ_j = w_j - w (the edge knows w, so sending Δ_j is sending w_j),
   full precision (``fp32_fedavg``) or stochastically quantized (``quantize.quantize_state``) with a level
   Q_j that is the same for everyone (``fixed_q``) or set by the device's own accuracy demand ε_j
   (``dynamic_q``: the smallest Q = 2^b with error bound ≤ ε_j·‖Δ_j‖², ``quantize.levels_for_error``; the
   demands ε_j are drawn log-uniformly per device, the "on-demand" quantization of arXiv 2403.04430).
4. The edge dequantizes and aggregates: w ← w + Σ_j (n_j / Σ n) Δ̂_j (FedAvg weights by sample count).
5. Energy and time of the round through ``edgegen.wireless``: 3GPP path loss at fixed device distances with
   Rayleigh fading redrawn every round, OFDMA uplink. The deadline of the round is ``deadline_factor`` × the
   round time of the FedDiff-style policy (fp32 payload, every device at f_max and P_max with equal band
   shares); ``fp32_fedavg`` runs that policy, the quantized methods get the energy-optimal allocation of
   ``allocation.solve_kkt`` at the same deadline. Compute per round c_j = cycles_per_flop · 6 · params ·
   batch_size · local_steps (the usual ≈6 FLOPs per parameter per sample of a forward + backward pass).

In this simulation Q_j is computed from the update of the round before the allocation is solved; a deployed
device would announce ⌈log2 Q_j⌉ (one byte) before the round. Every random draw is derived from
(seed, round, device), so the three methods see the same participants, channels, minibatches and diffusion noise
(common random numbers) and a run resumes exactly from its per-round checkpoint.
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

from edgegen import wireless
from edgegen.config import ConfigError, check_choice, check_range, from_dict
from edgegen.gdm import allocation, metrics
from edgegen.gdm import quantize as qz
from edgegen.gdm.ddpm import make_schedule
from edgegen.gdm.denoisers import ResidualMLP
from edgegen.gdm.train import generate, save_image_grid, train_steps, training_data
from edgegen.runs import RunDir
from edgegen.seeding import derive_seed, seed_everything

METHODS = ("fp32_fedavg", "fixed_q", "dynamic_q")
CKPT_FORMAT = 1
FLOPS_PER_PARAM_SAMPLE = 6.0
"""Forward + backward FLOPs per parameter per training sample (2 forward + 4 backward)."""


@dataclass(frozen=True)
class GdmFedConfig:
    """One federated DDPM training run on non-IID digits."""

    method: str = "dynamic_q"
    """fp32_fedavg (full precision, max power and frequency), fixed_q (one Q for all, optimal allocation) or
    dynamic_q (per-device on-demand Q, optimal allocation)."""
    seed: int = 0
    """Run seed (data split, init, participation, channels, minibatches, quantization noise, evaluation)."""
    num_devices: int = 10
    """K, devices holding data."""
    participation: float = 0.5
    """Share of the K devices drawn at random each round (at least one)."""
    dirichlet_alpha: float = 0.5
    """Dirichlet concentration of the per-device label mix (small: more non-IID)."""
    rounds: int = 40
    """Federated rounds."""
    local_steps: int = 60
    """Local AdamW steps per participating device per round."""
    batch_size: int = 64
    """Local minibatch size (drawn with replacement from the device's digits)."""
    lr: float = 2e-3
    """Local AdamW learning rate (fresh optimizer every round: stateless clients)."""
    hidden: int = 128
    """Width of the residual-MLP denoiser."""
    blocks: int = 2
    """Residual blocks of the denoiser."""
    diffusion_steps: int = 1000
    """T, the number of noise levels (cosine schedule)."""
    fixed_levels: int = 256
    """fixed_q: quantization levels Q of every upload (256 = 8 bits, meets the strictest demand)."""
    error_demand_min: float = 0.005
    """dynamic_q: smallest per-device demand ε_j (allowed E‖Δ-Δ̂‖² / ‖Δ‖²)."""
    error_demand_max: float = 0.05
    """dynamic_q: largest per-device demand ε_j (demands are log-uniform in [min, max])."""
    min_levels: int = 4
    """dynamic_q: fewest levels a device may use."""
    max_levels: int = 256
    """dynamic_q: most levels a device may use."""
    eval_every: int = 10
    """Evaluate feature-FID every this many rounds (and after the last)."""
    eval_samples: int = 898
    """Generated samples per evaluation (898 = the size of the real halves behind the floor)."""
    sample_steps: int = 50
    """DDIM steps at evaluation."""
    bandwidth_hz: float = 1e6
    """Total OFDMA uplink band B (Hz)."""
    noise_psd_dbm_per_hz: float = -174.0
    """Noise power spectral density N0 (dBm/Hz)."""
    distance_km_min: float = 0.05
    """Nearest device distance to the edge server (km)."""
    distance_km_max: float = 0.3
    """Farthest device distance (km); distances are uniform in [min, max], fixed per seed."""
    min_fading_gain: float = 0.1
    """Rayleigh |h|² is floored here (a device in a deeper fade is assumed to wait for a better slot)."""
    tx_power_w_max: float = 0.2
    """P_max of every device (W)."""
    cpu_hz_min: float = 1e9
    """Slowest device's f_max (Hz); each device's f_max is uniform in [cpu_hz_min, cpu_hz_max]."""
    cpu_hz_max: float = 2e9
    """Fastest device's f_max (Hz)."""
    kappa: float = 1e-28
    """Effective switched capacitance κ (compute energy κ·c·f²)."""
    cycles_per_flop: float = 1.0
    """CPU cycles per FLOP of local training."""
    deadline_factor: float = 1.0
    """Round deadline = this × the FedDiff-style round time (fp32, max power and frequency, equal shares)."""

    def validate(self) -> GdmFedConfig:
        check_choice("method", self.method, set(METHODS))
        check_range("num_devices", self.num_devices, 1, 1000)
        check_range("participation", self.participation, 1e-6, 1.0)
        check_range("dirichlet_alpha", self.dirichlet_alpha, 1e-3, 1e6)
        check_range("rounds", self.rounds, 1, 10**6)
        check_range("local_steps", self.local_steps, 1, 10**6)
        check_range("batch_size", self.batch_size, 1, 10**5)
        check_range("lr", self.lr, 1e-8, 1.0)
        check_range("hidden", self.hidden, 8, 8192)
        check_range("blocks", self.blocks, 1, 64)
        check_range("diffusion_steps", self.diffusion_steps, 2, 100000)
        check_range("fixed_levels", self.fixed_levels, 2, qz.MAX_LEVELS)
        check_range("error_demand_min", self.error_demand_min, 1e-12, 1e6)
        check_range("error_demand_max", self.error_demand_max, self.error_demand_min, 1e6)
        check_range("min_levels", self.min_levels, 2, qz.MAX_LEVELS)
        check_range("max_levels", self.max_levels, self.min_levels, qz.MAX_LEVELS)
        check_range("eval_every", self.eval_every, 1, 10**6)
        check_range("eval_samples", self.eval_samples, 20, 100000)
        check_range("sample_steps", self.sample_steps, 1, self.diffusion_steps)
        check_range("bandwidth_hz", self.bandwidth_hz, 1.0, 1e12)
        check_range("noise_psd_dbm_per_hz", self.noise_psd_dbm_per_hz, -250.0, 0.0)
        check_range("distance_km_min", self.distance_km_min, 1e-3, 1e3)
        check_range("distance_km_max", self.distance_km_max, self.distance_km_min, 1e3)
        check_range("min_fading_gain", self.min_fading_gain, 0.0, 1.0)
        check_range("tx_power_w_max", self.tx_power_w_max, 1e-6, 1e3)
        check_range("cpu_hz_min", self.cpu_hz_min, 1e3, 1e12)
        check_range("cpu_hz_max", self.cpu_hz_max, self.cpu_hz_min, 1e12)
        check_range("kappa", self.kappa, 1e-40, 1e-10)
        check_range("cycles_per_flop", self.cycles_per_flop, 1e-6, 1e6)
        check_range("deadline_factor", self.deadline_factor, 1.0, 1e6)
        for name in ("seed", "num_devices", "rounds", "local_steps", "batch_size", "hidden", "blocks",
                     "diffusion_steps", "fixed_levels", "min_levels", "max_levels", "eval_every", "eval_samples",
                     "sample_steps"):
            if not isinstance(getattr(self, name), int):
                raise ConfigError(f"{name} must be an integer, got {getattr(self, name)!r}")
        return self

    @property
    def devices_per_round(self) -> int:
        return max(1, round(self.participation * self.num_devices))


def dirichlet_split(labels: np.ndarray, num_devices: int, alpha: float, rng: np.random.Generator,
                    min_size: int = 10) -> list[np.ndarray]:
    """Label-skewed split: the indices of each class go to the devices in Dirichlet(α·1_K) proportions; redrawn
    until every device holds at least ``min_size`` examples."""
    if num_devices * min_size > len(labels):
        raise ValueError(f"{num_devices} devices × min_size {min_size} exceed the {len(labels)} examples")
    for _ in range(1000):
        parts: list[list[int]] = [[] for _ in range(num_devices)]
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(num_devices, alpha)))[:-1] * len(idx)).astype(int)
            for j, chunk in enumerate(np.split(idx, cuts)):
                parts[j].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    raise RuntimeError(f"no Dirichlet(α={alpha}) split gave every device >= {min_size} examples in 1000 draws")


def fedavg_update(global_state: dict[str, torch.Tensor], deltas: list[dict[str, torch.Tensor]],
                  weights: list[float]) -> dict[str, torch.Tensor]:
    """w + Σ_j (n_j / Σ n)·Δ_j."""
    total = float(sum(weights))
    return {k: v + sum((w / total) * d[k] for d, w in zip(deltas, weights, strict=True))
            for k, v in global_state.items()}


def sq_norm(tensors: dict[str, torch.Tensor]) -> float:
    return float(sum(t.double().pow(2).sum() for t in tensors.values()))


@dataclass
class Devices:
    """Static per-device facts of a run (drawn from the seed)."""

    data: list[np.ndarray]
    distance_km: np.ndarray
    cpu_hz_max: np.ndarray
    error_demand: np.ndarray


def make_devices(cfg: GdmFedConfig, labels: np.ndarray) -> Devices:
    rng = np.random.default_rng(derive_seed(cfg.seed, "devices"))
    data = dirichlet_split(labels, cfg.num_devices, cfg.dirichlet_alpha, rng)
    k = cfg.num_devices
    return Devices(data, rng.uniform(cfg.distance_km_min, cfg.distance_km_max, k),
                   rng.uniform(cfg.cpu_hz_min, cfg.cpu_hz_max, k),
                   np.exp(rng.uniform(math.log(cfg.error_demand_min), math.log(cfg.error_demand_max), k)))


def build_model(cfg: GdmFedConfig) -> ResidualMLP:
    torch.manual_seed(derive_seed(cfg.seed, "init"))
    return ResidualMLP(64, cfg.hidden, cfg.blocks)


def _evaluate(model: ResidualMLP, sched, cfg: GdmFedConfig) -> dict[str, float]:
    gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "eval"))
    x = generate(model, sched, cfg.eval_samples, gen, cfg.sample_steps)
    return metrics.evaluate_samples(x.numpy())


def run(cfg: GdmFedConfig, out: Path, quiet: bool = False, command: str | None = None) -> dict:
    """Train one federated DDPM (resuming from out/ckpt when a checkpoint of the same config is there; a finished
    run is returned as is). Writes config.json, metrics.csv (one row per round), plots/samples.png and
    summary.json (kind ``gdm_fed``); returns the summary."""
    cfg.validate()
    run_dir = RunDir(out)
    if (run_dir.path / "summary.json").exists():
        return run_dir.read_summary()
    seed_everything(cfg.seed)
    x_all, y_all = training_data("half_a")
    devices = make_devices(cfg, y_all.numpy())
    sched = make_schedule(cfg.diffusion_steps, "cosine")
    model = build_model(cfg)
    params = sum(p.numel() for p in model.parameters())
    cycles = np.full(cfg.num_devices, cfg.cycles_per_flop * FLOPS_PER_PARAM_SAMPLE * params * cfg.batch_size
                     * cfg.local_steps)
    path_gain = np.asarray(wireless.channel_gain(devices.distance_km, fading="none"))
    start_round, wall_s = 0, 0.0
    meta_path = run_dir.ckpt / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta["config"] != dataclasses.asdict(cfg):
            raise ConfigError(f"{out} holds a run of another config; use another --out or the same flags")
        model.load_state_dict(torch.load(run_dir.ckpt / "last.pt", weights_only=True))
        start_round, wall_s = meta["round"], meta["wall_s"]
        run_dir.truncate_metrics(start_round)
    else:
        run_dir.write_config(dataclasses.asdict(cfg))
    floor = metrics.real_floor()
    if start_round == 0:
        m0 = _evaluate(model, sched, cfg)
        run_dir.log(0, **_round_row(), **m0, fid_ratio=m0["feature_fid"] / floor)
    started = time.perf_counter()
    bar = tqdm(range(start_round, cfg.rounds), initial=start_round, total=cfg.rounds, unit="round",
               desc=f"gdm fed {cfg.method} seed {cfg.seed}", disable=True if quiet else None)
    for r in bar:
        t0 = time.perf_counter()
        row = _one_round(cfg, r, model, sched, x_all, devices, cycles, path_gain)
        if (r + 1) % cfg.eval_every == 0 or r + 1 == cfg.rounds:
            m = _evaluate(model, sched, cfg)
            row.update(m, fid_ratio=m["feature_fid"] / floor)
            bar.set_postfix(fid=f"{m['feature_fid']:.2f}")
        wall_s += time.perf_counter() - t0
        row["wall_s"] = wall_s
        run_dir.log(r + 1, **row)
        torch.save(model.state_dict(), run_dir.ckpt / "last.pt.tmp")
        (run_dir.ckpt / "last.pt.tmp").replace(run_dir.ckpt / "last.pt")
        meta_path.write_text(json.dumps({"format_version": CKPT_FORMAT, "round": r + 1, "wall_s": wall_s,
                                         "config": dataclasses.asdict(cfg), "model_config": model.config()}))
    bar.close()
    run_dir.close()
    rows = [row for row in run_dir.read_metrics() if row["step"] > 0]
    last = rows[-1]
    grid_gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "grid"))
    save_image_grid(generate(model, sched, 50, grid_gen, cfg.sample_steps), run_dir.path / "plots" / "samples.png",
                    f"{cfg.method}, seed {cfg.seed}, {cfg.rounds} rounds")
    total_entries = sum(row["entries_sent"] for row in rows)
    summary = {
        "kind": "gdm_fed", "method": cfg.method, "config": dataclasses.asdict(cfg), "params": params,
        "real_floor_fid": floor, "rounds": cfg.rounds,
        **{k: last[k] for k in ("feature_fid", "fid_ratio", "class_entropy", "class_confidence", "precision",
                                "recall")},
        "uplink_bytes": sum(row["uplink_bytes"] for row in rows),
        "uplink_bytes_fp32": sum(row["uplink_bytes_fp32"] for row in rows),
        "bits_per_entry_mean": 8 * sum(row["uplink_bytes"] for row in rows) / total_entries,
        "energy_j": sum(row["energy_j"] for row in rows),
        "energy_max_power_j": sum(row["energy_max_power_j"] for row in rows),
        "energy_fp32_max_power_j": sum(row["energy_fp32_max_power_j"] for row in rows),
        "round_time_s": float(np.mean([row["round_time_s"] for row in rows])),
        "deadline_s": float(np.mean([row["deadline_s"] for row in rows])),
        "wall_s": last["wall_s"], "train_wall_s_this_process": time.perf_counter() - started,
    }
    return run_dir.write_summary(summary, cfg.seed, command)


def _round_row(**values: float) -> dict[str, float]:
    """A metrics row with every per-round column (the first row fixes the CSV's columns)."""
    keys = ("loss", "participants", "uplink_bytes", "uplink_bytes_fp32", "entries_sent", "bits_per_entry_mean",
            "energy_j", "energy_max_power_j", "energy_fp32_max_power_j", "round_time_s", "deadline_s",
            "quant_rel_error")
    return {k: values.get(k, 0.0) for k in keys} | {"wall_s": values.get("wall_s", 0.0)}


def _one_round(cfg: GdmFedConfig, r: int, model: ResidualMLP, sched, x_all: torch.Tensor, devices: Devices,
               cycles: np.ndarray, path_gain: np.ndarray) -> dict[str, float]:
    """Local training, quantized upload, aggregation and the round's energy/time; updates `model` in place."""
    rng = np.random.default_rng(derive_seed(cfg.seed, "round", r))
    part = np.sort(rng.choice(cfg.num_devices, cfg.devices_per_round, replace=False))
    gain = path_gain[part] * np.maximum(rng.exponential(1.0, len(part)), cfg.min_fading_gain)
    global_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    deltas, weights, bits, levels, losses, errs = [], [], [], [], [], []
    for j in part:
        model.load_state_dict(global_state)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "local", r, int(j)))
        losses += train_steps(model, opt, x_all[devices.data[j]], sched, cfg.local_steps, cfg.batch_size, gen)
        delta = {k: v.detach() - global_state[k] for k, v in model.state_dict().items()}
        if cfg.method == "fp32_fedavg":
            q = None
        elif cfg.method == "fixed_q":
            q = cfg.fixed_levels
        else:
            demand = float(devices.error_demand[j]) * sq_norm(delta)
            q = qz.levels_for_error(delta, demand, cfg.min_levels, cfg.max_levels) if demand > 0 else cfg.min_levels
        qgen = torch.Generator().manual_seed(derive_seed(cfg.seed, "quant", r, int(j)))
        sent, b = qz.quantize_state(delta, q, qgen)
        errs.append(sq_norm({k: sent[k] - delta[k] for k in delta}) / max(sq_norm(delta), 1e-30))
        deltas.append(sent)
        weights.append(float(len(devices.data[j])))
        bits.append(b)
        levels.append(qz.FLOAT_BITS if q is None else qz.bits_per_entry(q))
    model.load_state_dict(fedavg_update(global_state, deltas, weights))

    entries = sum(t.numel() for t in global_state.values())
    fp32_bits = np.full(len(part), qz.state_payload_bits(global_state, None), dtype=float)
    problem = allocation.AllocationProblem(cycles[part], fp32_bits, gain, devices.cpu_hz_max[part],
                                           np.full(len(part), cfg.tx_power_w_max), cfg.bandwidth_hz, 1.0, cfg.kappa,
                                           cfg.noise_psd_dbm_per_hz)
    feddiff = allocation.max_power_baseline(problem)
    deadline_s = cfg.deadline_factor * feddiff.round_time_s
    problem = dataclasses.replace(problem, payload_bits=np.asarray(bits, dtype=float), deadline_s=deadline_s)
    if cfg.method == "fp32_fedavg":
        alloc = feddiff
    else:
        alloc = allocation.solve_kkt(problem)
    return _round_row(loss=float(np.mean(losses)), participants=len(part), uplink_bytes=sum(bits) / 8,
                      uplink_bytes_fp32=float(fp32_bits.sum()) / 8, entries_sent=entries * len(part),
                      bits_per_entry_mean=float(np.mean(levels)), energy_j=alloc.energy_j,
                      energy_max_power_j=allocation.max_power_baseline(problem).energy_j,
                      energy_fp32_max_power_j=feddiff.energy_j, round_time_s=alloc.round_time_s,
                      deadline_s=deadline_s, quant_rel_error=float(np.mean(errs)))


def load_config(run_dir: Path) -> GdmFedConfig:
    return from_dict(GdmFedConfig, RunDir(run_dir, tensorboard=False).read_config())
