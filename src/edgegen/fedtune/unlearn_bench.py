"""`edgegen fedtune unlearn bench`: federated unlearning of a backdoored device on the digits tier.

Experiment (one job per seed; every method starts from the same ``original`` model)
    Data: sklearn digits, the private pool of :func:`edgegen.fedtune.tasks.digits_split` split over
    ``num_devices`` devices by Dirichlet(α) (:func:`dirichlet_split`), the test split for test. Device 0 is the
    opting-out (forget) device: a fraction ``backdoor_fraction`` of its samples carry a 2×2 patch of maximal
    intensity (1.0 after the /16 scaling) in the bottom-right corner of the 8×8 image and are relabelled to
    ``backdoor_target`` (:func:`add_backdoor`). Backdoor attack success rate (ASR): the fraction of patched test
    images whose true class is not the target that the model classifies as the target.

    Training: :class:`DigitsMLP` from a seeded random init, FedAvg with gradients: every round every device
    sends the full-batch gradient of its cross-entropy, the server steps θ ← θ − lr · Σ_k (n_k/n) g_k.
    ``original`` trains with every device for ``rounds`` rounds; ``retrain`` (the gold standard) does the same
    from the same init without device 0.

Unlearning methods (from ``original``; each runs ``unlearn_rounds`` rounds, plus ``recovery_rounds`` where said)
    ``paper_projection`` (Edge-LAM, :func:`paper_update`): θ ← θ − lr (mean_k g_k + P u), g_k the remaining
        devices' gradients (each scaled by m·n_k/n_r so their mean is the size-weighted FedAvg gradient; the
        scaling does not change their span) and u the opt-out device's upload. Choice of u: the formula DESCENDS
        along whatever the opt-out device sends, so sending its training gradient would keep *learning* its data
        (only in directions the others do not use) — continued training, not unlearning. To unlearn, device 0
        uploads the NEGATED gradient of the bounded cross-entropy on its data, u = −∇ bounded_ce (ascent, capped
        at −log ``bounded_ce_eps`` so that it cannot diverge), so the step climbs its loss only orthogonally to
        the remaining devices' gradients, while the remaining devices keep descending on theirs.
    ``fedosd`` (:func:`fedosd_direction`, ``ascent=False``): θ ← θ + lr · d with d = −‖g‖ P g/‖P g‖ and
        g = ∇ unlearning_ce on device 0's data (descending the bounded unlearning CE lowers p_y), then
        ``recovery_rounds`` rounds of FedAvg on the remaining devices with every gradient passed through
        :func:`recovery_gradient` (orthogonal to the unlearning displacement θ − θ_original).
    ``gradient_ascent`` (:func:`clipped_gradient_ascent_step`): ``unlearn_rounds`` steps of ascent on device 0's
        plain cross-entropy with the gradient clipped to ``clip_norm``, then ``recovery_rounds`` rounds of plain
        FedAvg on the remaining devices (the usual recipe; without them the ascent also wrecks the test accuracy).
        Only device 0 uploads during the ascent steps.
    ``dp``: ``paper_projection`` where every upload (remaining and opt-out) is clipped to ``clip_norm`` = C and
        gets N(0, (σ·C)²) noise, σ the noise multiplier, before the server forms the basis and the step. ε of each
        device's uploads: :func:`rdp_epsilon` (σ, sample_rate 1, steps ``unlearn_rounds``, δ = 1e-5). The
        ``dp`` row of the results uses ``dp_noise_multiplier``; ``dp_sweep`` has every ``noise_multipliers`` value.

Metrics per method: ``forget_acc`` (device 0's data, with its own — partly backdoor — labels), ``remaining_acc``
(the other devices' data), ``test_acc``, ``backdoor_asr``, ``mia_auc`` (loss-threshold membership inference:
ROC AUC of −loss separating device 0's samples from as many held-out test samples; 0.5 = no membership
signal), ``rounds``, ``bytes`` (float32: one gradient upload + one model download per participating device per
round), ``wall_s``, ``epsilon`` (None except ``dp``), and ``bytes_ratio_vs_retrain`` / ``wall_ratio_vs_retrain``.
The MIA target is ``retrain``'s AUC, not 0.5: device 0's backdoor labels make its samples high-loss for a model
that never saw them, so a well-unlearned model scores well BELOW 0.5. Unlearning steps use ``unlearn_lr``.
DP note: the noise N(0, (σC)² I) lives in all d ≈ 26k parameter dimensions while the signal is clipped to norm C,
so the noise norm is ≈ σC√d ≈ 160σC; at σ = 1 (ε ≈ 25 after 15 rounds) the model is destroyed. That is the
honest cost of per-upload DP on full gradients without subsampling or secure aggregation, not a bug.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgegen.config import ConfigError, check_range
from edgegen.fedtune import unlearn as ul
from edgegen.fedtune.tasks import DigitsMLP, digits_split, dirichlet_split
from edgegen.jobs import earlier_wall_s, run_jobs
from edgegen.runs import RunDir, current_command, save_figure
from edgegen.seeding import derive_seed, seed_everything

__all__ = ["UNLEARN_METHODS", "UnlearnBenchConfig", "add_backdoor", "format_table", "mia_auc", "run_bench"]

UNLEARN_METHODS = ("paper_projection", "fedosd", "gradient_ascent", "dp")
REFERENCE_METHODS = ("original", "retrain")
METRICS = ("forget_acc", "remaining_acc", "test_acc", "backdoor_asr", "mia_auc", "rounds", "bytes", "wall_s")
DELTA = 1e-5
PATCH_PIXELS = (54, 55, 62, 63)  # rows 6-7, columns 6-7 of the row-major 8×8 image: the bottom-right corner


@dataclass(frozen=True)
class UnlearnBenchConfig:
    """Federated unlearning bench: a backdoored device opts out; projection, FedOSD, ascent, DP vs retraining."""

    out: Path = Path("runs/fedtune-unlearn")
    """Bench directory (per-seed runs in OUT/seed_<s>; finished seeds are skipped on a re-run)."""
    tier: str = "digits"
    """Model tier; only ``digits`` is implemented (``minilm`` is not yet)."""
    seeds: int = 3
    """Number of seeds."""
    first_seed: int = 0
    """Seeds are first_seed .. first_seed + seeds - 1."""
    methods: tuple[str, ...] = UNLEARN_METHODS
    """Unlearning methods to run (``original`` and ``retrain`` are always run)."""
    num_devices: int = 10
    """Devices; device 0 is the opting-out device."""
    dirichlet_alpha: float = 1.0
    """Dirichlet concentration of the non-IID label split."""
    backdoor_fraction: float = 0.5
    """Fraction of device 0's samples that carry the backdoor patch (relabelled to backdoor_target)."""
    backdoor_target: int = 0
    """Class the backdoor maps patched images to."""
    rounds: int = 150
    """FedAvg rounds of ``original`` and ``retrain``."""
    unlearn_rounds: int = 15
    """Unlearning rounds of every unlearning method (and DP accounting steps)."""
    recovery_rounds: int = 5
    """Recovery rounds on the remaining devices after ``fedosd`` and ``gradient_ascent``."""
    lr: float = 0.5
    """Server learning rate of the FedAvg training of ``original`` and ``retrain``."""
    unlearn_lr: float = 0.1
    """Server learning rate of the unlearning and recovery steps (0.2+ made gradient ascent wreck the model)."""
    clip_norm: float = 1.0
    """Gradient clip norm C of ``gradient_ascent`` and of every ``dp`` upload."""
    bounded_ce_eps: float = 1e-3
    """Probability floor of the bounded CE that the ``paper_projection`` opt-out device ascends (cap −log eps)."""
    dp_noise_multiplier: float = 1.0
    """Noise multiplier σ/C of the ``dp`` row of the results."""
    noise_multipliers: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)
    """Noise multipliers of the DP sweep (empty: no sweep)."""
    workers: int = 1
    """Parallel seed jobs (> 1: Ray tasks on this machine)."""
    ray_address: str | None = None
    """Run the jobs on this Ray cluster instead."""
    quiet: bool = False
    """No progress bars."""

    def validate(self) -> UnlearnBenchConfig:
        if self.tier == "minilm":
            raise ConfigError("tier: 'minilm' is not implemented yet for the unlearning bench; use tier='digits'")
        if self.tier != "digits":
            raise ConfigError(f"tier must be 'digits' (the only implemented tier), got {self.tier!r}")
        for m in self.methods:
            if m not in UNLEARN_METHODS:
                raise ConfigError(f"methods: unknown method {m!r}; choose from {list(UNLEARN_METHODS)}")
        check_range("seeds", self.seeds, 1, 1000)
        check_range("first_seed", self.first_seed, 0, 2**31 - 1)
        check_range("num_devices", self.num_devices, 2, 50)
        check_range("dirichlet_alpha", self.dirichlet_alpha, 1e-3, 1e6)
        check_range("backdoor_fraction", self.backdoor_fraction, 0.0, 1.0)
        check_range("backdoor_target", self.backdoor_target, 0, 9)
        check_range("rounds", self.rounds, 1, 100_000)
        check_range("unlearn_rounds", self.unlearn_rounds, 1, 100_000)
        check_range("recovery_rounds", self.recovery_rounds, 0, 100_000)
        check_range("lr", self.lr, 1e-6, 100.0)
        check_range("unlearn_lr", self.unlearn_lr, 1e-6, 100.0)
        check_range("clip_norm", self.clip_norm, 1e-6, 1e6)
        check_range("bounded_ce_eps", self.bounded_ce_eps, 1e-12, 0.5)
        for nm in (self.dp_noise_multiplier, *self.noise_multipliers):
            check_range("noise_multipliers", nm, 1e-3, 1e3)
        check_range("workers", self.workers, 1, 1024)
        return self


# --------------------------------------------------------------------------- data


def add_backdoor(x: np.ndarray, y: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Copies of flat 8×8 images ``x`` (N, 64) in [0, 1] with the bottom-right 2×2 patch set to 1.0 and labels
    set to ``target``."""
    xp = np.array(x, dtype=np.float32, copy=True)
    xp[:, list(PATCH_PIXELS)] = 1.0
    return xp, np.full(len(y), target, dtype=np.int64)


@dataclass
class Devices:
    """Per-device training tensors (device 0 = forget device, backdoored), test set and patched test set."""

    x: list[torch.Tensor]
    y: list[torch.Tensor]
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_asr: torch.Tensor  # patched test images whose true class is not the target


def make_devices(cfg: UnlearnBenchConfig, seed: int) -> Devices:
    _, (x_priv, y_priv), (x_test, y_test) = digits_split()
    parts = dirichlet_split(y_priv, cfg.num_devices, cfg.dirichlet_alpha,
                            np.random.default_rng(derive_seed(seed, "split")))
    xs, ys = [x_priv[p].copy() for p in parts], [y_priv[p].astype(np.int64) for p in parts]
    rng = np.random.default_rng(derive_seed(seed, "backdoor"))
    poisoned = rng.choice(len(ys[0]), size=int(round(cfg.backdoor_fraction * len(ys[0]))), replace=False)
    xs[0][poisoned], ys[0][poisoned] = add_backdoor(xs[0][poisoned], ys[0][poisoned], cfg.backdoor_target)
    keep = y_test != cfg.backdoor_target
    x_asr, _ = add_backdoor(x_test[keep], y_test[keep], cfg.backdoor_target)
    return Devices([torch.from_numpy(x) for x in xs], [torch.from_numpy(y) for y in ys],
                   torch.from_numpy(x_test), torch.from_numpy(y_test).long(), torch.from_numpy(x_asr))


# --------------------------------------------------------------------------- model as a flat vector


def init_params(seed: int) -> torch.Tensor:
    torch.manual_seed(derive_seed(seed, "init"))
    return nn.utils.parameters_to_vector(DigitsMLP().parameters()).detach()


def device_grad(model: nn.Module, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, loss: str = "ce",
                eps: float = 1e-3) -> torch.Tensor:
    """Flat full-batch gradient at θ of a loss on (x, y): ``ce``, ``bounded_ce`` or ``unlearning_ce``."""
    nn.utils.vector_to_parameters(theta, model.parameters())
    logits = model(x)
    if loss == "ce":
        value = nn.functional.cross_entropy(logits, y)
    elif loss == "bounded_ce":
        value = ul.bounded_ce(logits, y, eps)
    else:
        value = ul.unlearning_ce(logits, y)
    return ul.flatten_grads(torch.autograd.grad(value, list(model.parameters())))


def fedavg_grad(model: nn.Module, theta: torch.Tensor, data: Devices, devices: list[int]) -> torch.Tensor:
    """Size-weighted mean of the devices' gradients."""
    n = sum(len(data.y[k]) for k in devices)
    return sum(device_grad(model, theta, data.x[k], data.y[k]) * (len(data.y[k]) / n) for k in devices)


def weighted_grads(model: nn.Module, theta: torch.Tensor, data: Devices, devices: list[int]) -> list[torch.Tensor]:
    """Each device's gradient scaled by m·n_k/n so that their plain mean is the size-weighted FedAvg gradient."""
    n, m = sum(len(data.y[k]) for k in devices), len(devices)
    return [device_grad(model, theta, data.x[k], data.y[k]) * (m * len(data.y[k]) / n) for k in devices]


# --------------------------------------------------------------------------- metrics


def mia_auc(member_losses: np.ndarray, nonmember_losses: np.ndarray) -> float:
    """Loss-threshold membership inference: ROC AUC of the score −loss for members (1) vs non-members (0)."""
    from sklearn.metrics import roc_auc_score

    m, n = np.asarray(member_losses, float), np.asarray(nonmember_losses, float)
    labels = np.r_[np.ones(len(m)), np.zeros(len(n))]
    return float(roc_auc_score(labels, -np.r_[m, n]))


@torch.no_grad()
def evaluate(model: nn.Module, theta: torch.Tensor, data: Devices, target: int, nonmember_idx: np.ndarray) -> dict:
    nn.utils.vector_to_parameters(theta, model.parameters())

    def acc(x: torch.Tensor, y: torch.Tensor) -> float:
        return float((model(x).argmax(1) == y).float().mean())

    rest = range(1, len(data.x))
    x_rest, y_rest = torch.cat([data.x[k] for k in rest]), torch.cat([data.y[k] for k in rest])
    member = nn.functional.cross_entropy(model(data.x[0]), data.y[0], reduction="none").numpy()
    non = nn.functional.cross_entropy(model(data.x_test[nonmember_idx]), data.y_test[nonmember_idx],
                                      reduction="none").numpy()
    return {"forget_acc": acc(data.x[0], data.y[0]), "remaining_acc": acc(x_rest, y_rest),
            "test_acc": acc(data.x_test, data.y_test),
            "backdoor_asr": float((model(data.x_asr).argmax(1) == target).float().mean()),
            "mia_auc": mia_auc(member, non)}


# --------------------------------------------------------------------------- training and unlearning


def train_fedavg(model: nn.Module, theta: torch.Tensor, data: Devices, devices: list[int], rounds: int,
                 lr: float) -> torch.Tensor:
    for _ in range(rounds):
        theta = theta - lr * fedavg_grad(model, theta, data, devices)
    return theta


def paper_projection(model: nn.Module, theta: torch.Tensor, data: Devices, cfg: UnlearnBenchConfig,
                     noise_multiplier: float | None = None, gen: torch.Generator | None = None) -> torch.Tensor:
    """Edge-LAM rule; the opt-out device uploads −∇ bounded_ce (ascent). With a noise multiplier: DP uploads."""
    rest = list(range(1, len(data.x)))
    for _ in range(cfg.unlearn_rounds):
        g_r = weighted_grads(model, theta, data, rest)
        u = -device_grad(model, theta, data.x[0], data.y[0], "bounded_ce", cfg.bounded_ce_eps)
        if noise_multiplier is not None:
            sigma = noise_multiplier * cfg.clip_norm
            g_r = [ul.add_gaussian_noise(ul.clip_to_norm(g, cfg.clip_norm), sigma, gen) for g in g_r]
            u = ul.add_gaussian_noise(ul.clip_to_norm(u, cfg.clip_norm), sigma, gen)
        theta = theta + ul.paper_update(g_r, [u], cfg.unlearn_lr)
    return theta


def fedosd(model: nn.Module, theta: torch.Tensor, data: Devices, cfg: UnlearnBenchConfig) -> torch.Tensor:
    rest = list(range(1, len(data.x)))
    start = theta.clone()
    for _ in range(cfg.unlearn_rounds):
        g_r = weighted_grads(model, theta, data, rest)
        g_f = device_grad(model, theta, data.x[0], data.y[0], "unlearning_ce")
        theta = theta + cfg.unlearn_lr * ul.fedosd_direction(g_r, g_f, ascent=False)
    displacement = theta - start
    for _ in range(cfg.recovery_rounds):
        g_r = weighted_grads(model, theta, data, rest)
        theta = theta - cfg.unlearn_lr * torch.stack([ul.recovery_gradient(g, displacement) for g in g_r]).mean(0)
    return theta


def gradient_ascent(model: nn.Module, theta: torch.Tensor, data: Devices, cfg: UnlearnBenchConfig) -> torch.Tensor:
    for _ in range(cfg.unlearn_rounds):
        g_f = device_grad(model, theta, data.x[0], data.y[0])
        theta = theta + ul.clipped_gradient_ascent_step(g_f, cfg.unlearn_lr, cfg.clip_norm)
    return train_fedavg(model, theta, data, list(range(1, len(data.x))), cfg.recovery_rounds,
                        cfg.unlearn_lr)


def run_seed(cfg: UnlearnBenchConfig, seed: int, command: str) -> dict:
    """original, retrain and every unlearning method (plus the DP sweep) for one seed; skipped if finished."""
    out = cfg.out / f"seed_{seed}"
    if (out / "summary.json").exists():
        return json.loads((out / "summary.json").read_text())
    seed_everything(seed)
    data = make_devices(cfg, seed)
    model = DigitsMLP()
    d = sum(p.numel() for p in model.parameters())
    per_device_round = 2 * 4 * d  # float32 gradient up + model down
    k = cfg.num_devices
    nonmember_idx = np.random.default_rng(derive_seed(seed, "mia")).choice(
        len(data.y_test), size=min(len(data.y[0]), len(data.y_test)), replace=False)
    theta0 = init_params(seed)
    results: dict[str, dict] = {}

    def record(name: str, fn, rounds: int, device_rounds: int, epsilon: float | None = None) -> torch.Tensor:
        t = time.perf_counter()
        theta = fn()
        wall = time.perf_counter() - t
        results[name] = {**evaluate(model, theta, data, cfg.backdoor_target, nonmember_idx), "rounds": rounds,
                         "bytes": float(device_rounds * per_device_round), "wall_s": wall, "epsilon": epsilon}
        return theta

    theta_orig = record("original", lambda: train_fedavg(model, theta0, data, list(range(k)), cfg.rounds, cfg.lr),
                        cfg.rounds, k * cfg.rounds)
    record("retrain", lambda: train_fedavg(model, theta0, data, list(range(1, k)), cfg.rounds, cfg.lr),
           cfg.rounds, (k - 1) * cfg.rounds)
    u, r = cfg.unlearn_rounds, cfg.recovery_rounds
    if "paper_projection" in cfg.methods:
        record("paper_projection", lambda: paper_projection(model, theta_orig, data, cfg), u, k * u)
    if "fedosd" in cfg.methods:
        record("fedosd", lambda: fedosd(model, theta_orig, data, cfg), u + r, k * u + (k - 1) * r)
    if "gradient_ascent" in cfg.methods:
        record("gradient_ascent", lambda: gradient_ascent(model, theta_orig, data, cfg), u + r, u + (k - 1) * r)
    sweep = {}
    if "dp" in cfg.methods:
        for nm in dict.fromkeys((cfg.dp_noise_multiplier, *cfg.noise_multipliers)):
            gen = torch.Generator().manual_seed(derive_seed(seed, "dp", nm))
            name = f"dp_nm{nm:g}"
            with warnings.catch_warnings():  # Opacus: "optimal order is the smallest alpha" for small σ
                warnings.simplefilter("ignore", UserWarning)
                eps = ul.rdp_epsilon(nm, 1.0, u, DELTA)
            record(name, lambda nm=nm, gen=gen: paper_projection(model, theta_orig, data, cfg, nm, gen), u, k * u, eps)
            sweep[nm] = results.pop(name)
        results["dp"] = {**sweep[cfg.dp_noise_multiplier], "noise_multiplier": cfg.dp_noise_multiplier}
    ref = results["retrain"]
    for res in [*results.values(), *sweep.values()]:
        res["bytes_ratio_vs_retrain"] = res["bytes"] / ref["bytes"]
        res["wall_ratio_vs_retrain"] = res["wall_s"] / ref["wall_s"] if ref["wall_s"] > 0 else float("nan")
    run = RunDir(out, tensorboard=False)
    run.write_config(json.loads(json.dumps(dataclasses.asdict(cfg), default=str)))
    summary = {"results": results,
               "dp_sweep": [{"noise_multiplier": nm, **sweep[nm]} for nm in dict.fromkeys(cfg.noise_multipliers)
                            if nm in sweep],
               "params": d, "forget_samples": len(data.y[0])}
    return run.write_summary(summary, seed=seed, command=command)


# --------------------------------------------------------------------------- bench


def aggregate(rows: list[dict]) -> dict:
    """Mean over seeds of every metric, plus ``<metric>_std``; ``epsilon`` stays None when it is None."""
    out: dict = {}
    for key in rows[0]:
        vals = [r[key] for r in rows]
        if any(v is None for v in vals):
            out[key] = None
            continue
        out[key] = float(np.mean(vals))
        out[f"{key}_std"] = float(np.std(vals))
    return out


def run_bench(cfg: UnlearnBenchConfig) -> dict:
    cfg.validate()
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "bench_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
    command = current_command()
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
    earlier_s = earlier_wall_s(cfg.out)
    started = time.perf_counter()
    done = run_jobs(run_seed, [(cfg, s, command) for s in seeds], cfg.workers, cfg.ray_address, cfg.quiet,
                    describe=lambda job, r: f"seed {job[1]}: retrain ASR {r['results']['retrain']['backdoor_asr']:.2f}")
    per_seed = [done[(cfg, s, command)] for s in seeds]
    names = [*REFERENCE_METHODS, *(m for m in UNLEARN_METHODS if m in cfg.methods)]
    results = {m: aggregate([r["results"][m] for r in per_seed]) for m in names}
    sweep = []
    for i, point in enumerate(per_seed[0]["dp_sweep"]):
        sweep.append(aggregate([r["dp_sweep"][i] for r in per_seed]))
        sweep[-1]["noise_multiplier"] = point["noise_multiplier"]
    summary = {"kind": "fedtune_unlearn_bench", "tier": cfg.tier, "seeds": cfg.seeds, "results": results,
               "dp_sweep": sweep, "command": command,
               "bench_wall_s": earlier_s + time.perf_counter() - started, "workers": cfg.workers}
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    if sweep:
        plot_dp_sweep(cfg, summary)
    return summary


def plot_dp_sweep(cfg: UnlearnBenchConfig, summary: dict) -> Path:
    """Test accuracy and backdoor ASR of ``dp`` vs the noise multiplier (ε annotated); retrain as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sw = sorted(summary["dp_sweep"], key=lambda p: p["noise_multiplier"])
    nm = [p["noise_multiplier"] for p in sw]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, label, color in (("test_acc", "test accuracy", "C0"), ("backdoor_asr", "backdoor ASR", "C3")):
        ax.errorbar(nm, [p[key] for p in sw], yerr=[p[f"{key}_std"] for p in sw], marker="o", color=color,
                    label=f"dp projection: {label}", capsize=3)
        ax.axhline(summary["results"]["retrain"][key], color=color, ls="--", alpha=0.6, label=f"retrain: {label}")
    for p in sw:
        ax.annotate(f"ε={p['epsilon']:.3g}", (p["noise_multiplier"], p["test_acc"]), textcoords="offset points",
                    xytext=(0, 8), ha="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.08)
    ax.set_xlabel(f"noise multiplier σ/C (C = {cfg.clip_norm:g}, {cfg.unlearn_rounds} rounds, δ = {DELTA:g})")
    ax.set_ylabel("fraction")
    ax.set_title("DP projection unlearning: utility and backdoor removal vs noise")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, cfg.out / "plots" / "dp_noise_sweep.png")


def format_table(summary: dict) -> str:
    rows = ["| method | forget acc | remaining acc | test acc | backdoor ASR | MIA AUC | rounds | MB | wall s | "
            "bytes / retrain | wall / retrain | ε |", "|---|" + "---|" * 11]

    def pm(r: dict, k: str) -> str:
        return f"{r[k]:.3f} ± {r[f'{k}_std']:.3f}"

    def line(name: str, r: dict) -> str:
        eps = "–" if r["epsilon"] is None else f"{r['epsilon']:.3g}"
        return (f"| {name} | {pm(r, 'forget_acc')} | {pm(r, 'remaining_acc')} | {pm(r, 'test_acc')} | "
                f"{pm(r, 'backdoor_asr')} | {pm(r, 'mia_auc')} | {r['rounds']:g} | {r['bytes'] / 1e6:.1f} | "
                f"{r['wall_s']:.2f} | {r['bytes_ratio_vs_retrain']:.3f} | {r['wall_ratio_vs_retrain']:.3f} | {eps} |")

    for name, r in summary["results"].items():
        rows.append(line(name, r))
    for p in summary.get("dp_sweep", []):
        rows.append(line(f"dp σ/C={p['noise_multiplier']:g}", p))
    return "\n".join(rows)
