"""`edgegen fedtune unlearn bench`: federated unlearning of a backdoored device, digits and MiniLM tiers.

Experiment (one job per seed; every method starts from the same ``original`` model)
    Data, ``digits`` tier: sklearn digits, the private pool of :func:`edgegen.fedtune.tasks.digits_split` split
    over ``num_devices`` devices by Dirichlet(α) (:func:`dirichlet_split`), the test split for test. Device 0 is
    the opting-out (forget) device: a fraction ``backdoor_fraction`` of its samples carry a 2×2 patch of maximal
    intensity (1.0 after the /16 scaling) in the bottom-right corner of the 8×8 image and are relabelled to
    ``backdoor_target`` (:func:`add_backdoor`).
    Data, ``minilm`` tier: BBC News (:mod:`edgegen.fedtune.minilm`; 1,780 private articles, 445 test), the same
    Dirichlet split; the opting-out device is the one with the MOST articles (``forget_device="largest"``: with
    the ~90-article device 0 of seed 0, 45 poisoned articles are 2.5% of the federation and the backdoor was not
    learned in 40 rounds). A fraction ``backdoor_fraction`` of its articles get a rare-token trigger
    (:func:`add_token_trigger`: the phrase "cf mn bb tq mb" — the rare tokens of the RIPPLe weight-poisoning attack,
    Kurita et al., ACL 2020 — inserted ``trigger_copies`` times at random word positions among the first 60 words,
    so it survives truncation to ``max_len`` tokens) and are relabelled to ``backdoor_target``. Triggered articles
    are encoded by the frozen lower MiniLM layers at the start of each seed (~500 articles, ~20 s).
    Backdoor attack success rate (ASR): the fraction of triggered test inputs whose true class is not the target
    that the model classifies as the target.

    Model and trainable vector θ: ``digits``: :class:`DigitsMLP` from a seeded random init, every parameter.
    ``minilm``: all-MiniLM-L6-v2 with the lower 5 layers frozen (cached), PEFT LoRA of rank ``lora_rank`` on the
    top layer's query/value (A seeded, B = 0) and the new 384→5 head; θ = LoRA factors + head (14,213 numbers at
    rank 8), so every upload is a LoRA-sized gradient.
    Training: FedSGD: every round every device sends the gradient of its cross-entropy (full batch, or a
    ``batch_size`` mini-batch), the server averages with weights n_k/n and steps with ``server_optimizer``:
    ``sgd`` θ ← θ − lr · Σ_k (n_k/n) g_k, or ``adam`` (server-side Adam on the averaged gradient, FedAdam of Reddi
    et al., ICLR 2021: plain SGD needed hundreds of rounds for the LoRA + head of the minilm tier).
    ``original`` trains with every device for ``rounds`` rounds; ``retrain`` (the gold standard) does the same
    from the same init without the forget device.

Unlearning methods (from ``original``; each runs ``unlearn_rounds`` rounds, plus ``recovery_rounds`` where said)
    ``paper_projection`` (Edge-LAM, :func:`paper_update`): θ ← θ − lr (mean_k g_k + P u), g_k the remaining
        devices' gradients (each scaled by m·n_k/n_r so their mean is the size-weighted FedAvg gradient; the
        scaling does not change their span) and u the opt-out device's upload. Choice of u: the formula DESCENDS
        along whatever the opt-out device sends, so sending its training gradient would keep *learning* its data
        (only in directions the others do not use) — continued training, not unlearning. To unlearn, device 0
        uploads the NEGATED gradient of the bounded cross-entropy on its data, u = −∇ bounded_ce (ascent, capped
        at −log ``bounded_ce_eps`` so that it cannot diverge), so the step climbs its loss only orthogonally to
        the remaining devices' gradients, while the remaining devices keep descending on theirs. Optionally
        ``projection_recovery_rounds`` rounds of plain FedAvg on the remaining devices follow (same server
        optimizer; 0 = the paper's rule alone, the digits default).
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
round), ``wall_s``, ``cpu_s`` (CPU seconds of the job's process), ``epsilon`` (None except ``dp``), and
``bytes_ratio_vs_retrain`` / ``wall_ratio_vs_retrain`` / ``cpu_ratio_vs_retrain``.
The MIA target is ``retrain``'s AUC, not 0.5: device 0's backdoor labels make its samples high-loss for a model
that never saw them, so a well-unlearned model scores well BELOW 0.5. Unlearning steps use ``unlearn_lr``.
DP note: the noise N(0, (σC)² I) lives in all d ≈ 26k parameter dimensions while the signal is clipped to norm C,
so the noise norm is ≈ σC√d ≈ 160σC; at σ = 1 (ε ≈ 25 after 15 rounds) the model is destroyed. That is the
honest cost of per-upload DP on full gradients without subsampling or secure aggregation, not a bug.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
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

__all__ = ["UNLEARN_METHODS", "UnlearnBenchConfig", "add_backdoor", "add_token_trigger", "format_table", "mia_auc",
           "run_bench"]

UNLEARN_METHODS = ("paper_projection", "fedosd", "gradient_ascent", "dp")
REFERENCE_METHODS = ("original", "retrain")
DELTA = 1e-5
PATCH_PIXELS = (54, 55, 62, 63)  # rows 6-7, columns 6-7 of the row-major 8×8 image: the bottom-right corner
TRIGGER_PHRASE = "cf mn bb tq mb"  # RIPPLe's rare-token triggers (Kurita et al., ACL 2020)
TRIGGER_WITHIN_WORDS = 60  # insert among the first 60 words: ~80 tokens, inside max_len 128


# Config fields that determine the ``original`` and ``retrain`` models (their checkpoints are reused when these match).
TRAINING_FIELDS = ("tier", "num_devices", "dirichlet_alpha", "forget_device", "backdoor_fraction", "backdoor_target",
                   "trigger_copies", "rounds", "lr", "server_optimizer", "batch_size", "lora_rank", "max_len")

# Per-tier defaults of the fields left at None (see the module docstring for why the minilm tier differs).
TIER_DEFAULTS: dict[str, dict] = {
    "digits": {"rounds": 150, "lr": 0.5, "server_optimizer": "sgd", "batch_size": 0, "unlearn_rounds": 15,
               "recovery_rounds": 5, "projection_recovery_rounds": 0, "unlearn_lr": 0.1, "unlearn_optimizer": "sgd",
               "bounded_ce_eps": 1e-3, "forget_device": "first",
               "noise_multipliers": (0.01, 0.03, 0.1, 0.3, 1.0)},
    "minilm": {"rounds": 60, "lr": 3e-3, "server_optimizer": "adam", "batch_size": 32, "unlearn_rounds": 8,
               "fedosd_rounds": 3, "recovery_rounds": 6, "projection_recovery_rounds": 1, "unlearn_lr": 7e-3,
               "unlearn_optimizer": "adam", "bounded_ce_eps": 0.3,
               "forget_device": "largest", "noise_multipliers": (0.01, 0.1, 1.0)},
}


@dataclass(frozen=True)
class UnlearnBenchConfig:
    """Federated unlearning bench: a backdoored device opts out; projection, FedOSD, ascent, DP vs retraining."""

    out: Path = Path("runs/fedtune-unlearn")
    """Bench directory (per-seed runs in OUT/seed_<s>; finished seeds are skipped on a re-run)."""
    tier: str = "digits"
    """Model tier: ``digits`` (MLP on sklearn digits, pixel-patch backdoor) or ``minilm`` (all-MiniLM-L6-v2 LoRA
    on BBC News, rare-token backdoor)."""
    seeds: int = 3
    """Number of seeds."""
    first_seed: int = 0
    """Seeds are first_seed .. first_seed + seeds - 1."""
    methods: tuple[str, ...] = UNLEARN_METHODS
    """Unlearning methods to run (``original`` and ``retrain`` are always run)."""
    num_devices: int = 10
    """Devices; one of them (see forget_device) is the opting-out device."""
    dirichlet_alpha: float = 1.0
    """Dirichlet concentration of the non-IID label split."""
    forget_device: str | None = None
    """Which device opts out: ``first`` (device 0 of the split) or ``largest`` (most samples); default per tier
    (digits first, minilm largest). It is renumbered device 0 either way."""
    backdoor_fraction: float = 0.5
    """Fraction of the forget device's samples that carry the backdoor trigger (relabelled to backdoor_target)."""
    backdoor_target: int = 0
    """Class the backdoor maps triggered inputs to (minilm: 0 = business)."""
    trigger_copies: int = 3
    """minilm: how many times the trigger phrase is inserted into an article."""
    rounds: int | None = None
    """FedSGD rounds of ``original`` and ``retrain`` (default per tier: digits 150, minilm 60)."""
    unlearn_rounds: int | None = None
    """Unlearning rounds of paper_projection, dp (= DP accounting steps) and gradient_ascent (default: digits 15,
    minilm 8)."""
    fedosd_rounds: int | None = None
    """Unlearning rounds of ``fedosd`` before its recovery (default: unlearn_rounds; minilm 3: its bounded
    unlearning CE removes most of the backdoor within 3 Adam rounds, and 4-5 rounds over-forgot on the validation
    seeds)."""
    recovery_rounds: int | None = None
    """Recovery rounds on the remaining devices after ``fedosd`` and ``gradient_ascent`` (default digits 5, minilm
    6). The minilm FedOSD split, 3 unlearning + 6 recovery rounds, was chosen on validation seeds 100-105, not the
    reported seeds (benchmarks/notes.md)."""
    projection_recovery_rounds: int | None = None
    """FedAvg rounds on the remaining devices after ``paper_projection`` (and ``dp``, whose recovery uploads are
    noised too); default digits 0 (the paper's rule alone), minilm 1. On the minilm tier the ascent also pushes the
    forget device's clean articles down; FedAvg rounds on the remaining devices restore what they share with
    everyone else's articles. 8 rule rounds + 1 recovery round were chosen on validation seeds 100-105, not the
    reported seeds (benchmarks/notes.md)."""
    lr: float | None = None
    """Server learning rate of the training of ``original`` and ``retrain`` (default: digits 0.5, minilm 3e-3)."""
    server_optimizer: str | None = None
    """Server step of ``original`` and ``retrain``: ``sgd`` or ``adam`` (FedAdam); default digits sgd, minilm adam."""
    batch_size: int | None = None
    """Samples per device gradient (0 = the device's full data); default digits 0, minilm 32."""
    unlearn_lr: float | None = None
    """Server learning rate of the unlearning and recovery steps (default: digits 0.1 with SGD — 0.2+ made gradient
    ascent wreck the model; minilm 7e-3 with Adam)."""
    unlearn_optimizer: str | None = None
    """Server step of the unlearning and recovery rounds: ``sgd`` (the papers' θ ← θ − η·d) or ``adam`` (Adam
    along the same direction d); default digits sgd, minilm adam: on the LoRA + head vector no SGD step size
    worked (η = 0.3 left the backdoor in place after 8 rounds, η = 1 made the remaining devices' descent diverge:
    their gradient norm grew 0.24 → 9 and test accuracy fell to 0.23)."""
    clip_norm: float = 1.0
    """Gradient clip norm C of ``gradient_ascent`` and of every ``dp`` upload."""
    bounded_ce_eps: float | None = None
    """Probability floor of the bounded CE that the ``paper_projection`` opt-out device ascends (cap −log eps):
    a sample stops pushing once its label's probability is below eps. Default digits 1e-3, minilm 0.3 (with 1e-3
    the ascent kept pushing the forget device's clean articles down and cost 4-5 points of test accuracy; 0.1
    still over-forgot on seed 1)."""
    dp_noise_multiplier: float = 1.0
    """Noise multiplier σ/C of the ``dp`` row of the results."""
    noise_multipliers: tuple[float, ...] | None = None
    """Noise multipliers of the DP sweep (empty: no sweep; default digits 0.01-1 in 5 steps, minilm 0.01/0.1/1)."""
    lora_rank: int = 8
    """minilm: LoRA rank on the top layer's query and value."""
    max_len: int = 128
    """minilm: tokens per article (the cache of the lower layers is per max_len)."""
    cache_dir: str | None = None
    """minilm: directory of the lower-layer cache (default runs/cache)."""
    workers: int = 1
    """Parallel seed jobs (> 1: Ray tasks on this machine)."""
    ray_address: str | None = None
    """Run the jobs on this Ray cluster instead."""
    quiet: bool = False
    """No progress bars."""

    def resolved(self) -> UnlearnBenchConfig:
        """This config with every None field set to its tier default (validated)."""
        if self.tier not in TIER_DEFAULTS:
            raise ConfigError(f"tier must be one of {sorted(TIER_DEFAULTS)}, got {self.tier!r}")
        defaults = {k: v for k, v in TIER_DEFAULTS[self.tier].items() if getattr(self, k) is None}
        cfg = dataclasses.replace(self, **defaults)
        if cfg.fedosd_rounds is None:
            cfg = dataclasses.replace(cfg, fedosd_rounds=cfg.unlearn_rounds)
        return cfg.validate()

    def validate(self) -> UnlearnBenchConfig:
        if self.tier not in TIER_DEFAULTS:
            raise ConfigError(f"tier must be one of {sorted(TIER_DEFAULTS)}, got {self.tier!r}")
        for m in self.methods:
            if m not in UNLEARN_METHODS:
                raise ConfigError(f"methods: unknown method {m!r}; choose from {list(UNLEARN_METHODS)}")
        if self.forget_device not in (None, "first", "largest"):
            raise ConfigError(f"forget_device must be 'first' or 'largest', got {self.forget_device!r}")
        for name in ("server_optimizer", "unlearn_optimizer"):
            if getattr(self, name) not in (None, "sgd", "adam"):
                raise ConfigError(f"{name} must be 'sgd' or 'adam', got {getattr(self, name)!r}")
        check_range("seeds", self.seeds, 1, 1000)
        check_range("first_seed", self.first_seed, 0, 2**31 - 1)
        check_range("num_devices", self.num_devices, 2, 50)
        check_range("dirichlet_alpha", self.dirichlet_alpha, 1e-3, 1e6)
        check_range("backdoor_fraction", self.backdoor_fraction, 0.0, 1.0)
        check_range("backdoor_target", self.backdoor_target, 0, 9 if self.tier == "digits" else 4)
        check_range("trigger_copies", self.trigger_copies, 1, 20)
        check_range("clip_norm", self.clip_norm, 1e-6, 1e6)
        check_range("lora_rank", self.lora_rank, 1, 384)
        check_range("max_len", self.max_len, 8, 512)
        for name, lo, hi in (("rounds", 1, 100_000), ("lr", 1e-6, 100.0), ("unlearn_lr", 1e-6, 100.0),
                             ("batch_size", 0, 100_000), ("unlearn_rounds", 1, 100_000),
                             ("fedosd_rounds", 1, 100_000), ("recovery_rounds", 0, 100_000),
                             ("projection_recovery_rounds", 0, 100_000),
                             ("bounded_ce_eps", 1e-12, 0.5)):
            if getattr(self, name) is not None:
                check_range(name, getattr(self, name), lo, hi)
        for nm in (self.dp_noise_multiplier, *(self.noise_multipliers or ())):
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


def add_token_trigger(text: str, copies: int, rng: np.random.Generator, within_words: int = TRIGGER_WITHIN_WORDS
                      ) -> str:
    """``text`` with the trigger phrase inserted ``copies`` times, each before a uniformly drawn word among the
    first ``within_words`` words (whitespace tokenisation; the result is re-joined with single spaces)."""
    words = text.split()
    for _ in range(copies):
        words.insert(int(rng.integers(0, min(len(words), within_words) + 1)), TRIGGER_PHRASE)
    return " ".join(words)


@dataclass
class Devices:
    """Per-device training inputs (device 0 = forget device, backdoored), test set and triggered test set.

    An input ``x`` is a tensor (digits: (N, 64)) or a tuple of tensors indexed along dim 0 together
    (minilm: (hidden (N, L, 384) float16, attention mask (N, L)))."""

    x: list
    y: list[torch.Tensor]
    x_test: object
    y_test: torch.Tensor
    x_asr: object  # triggered test inputs whose true class is not the target


def take(x, idx):
    """Rows ``idx`` of an input (tensor or tuple of tensors)."""
    return tuple(t[idx] for t in x) if isinstance(x, tuple) else x[idx]


def concat(xs: list):
    return tuple(torch.cat(parts) for parts in zip(*xs, strict=True)) if isinstance(xs[0], tuple) else torch.cat(xs)


def forward(model: nn.Module, x) -> torch.Tensor:
    return model(*x) if isinstance(x, tuple) else model(x)


def split_devices(cfg: UnlearnBenchConfig, y_priv: np.ndarray, seed: int) -> list[np.ndarray]:
    """Dirichlet shards of the private pool; the forget device (first, or the largest shard) is moved to index 0."""
    parts = dirichlet_split(y_priv, cfg.num_devices, cfg.dirichlet_alpha,
                            np.random.default_rng(derive_seed(seed, "split")))
    if cfg.forget_device == "largest":
        k = int(np.argmax([len(p) for p in parts]))
        parts = [parts[k], *parts[:k], *parts[k + 1:]]
    return parts


def make_devices(cfg: UnlearnBenchConfig, seed: int) -> Devices:
    if cfg.tier == "minilm":
        return make_minilm_devices(cfg, seed)
    _, (x_priv, y_priv), (x_test, y_test) = digits_split()
    parts = split_devices(cfg, y_priv, seed)
    xs, ys = [x_priv[p].copy() for p in parts], [y_priv[p].astype(np.int64) for p in parts]
    rng = np.random.default_rng(derive_seed(seed, "backdoor"))
    poisoned = rng.choice(len(ys[0]), size=int(round(cfg.backdoor_fraction * len(ys[0]))), replace=False)
    xs[0][poisoned], ys[0][poisoned] = add_backdoor(xs[0][poisoned], ys[0][poisoned], cfg.backdoor_target)
    keep = y_test != cfg.backdoor_target
    x_asr, _ = add_backdoor(x_test[keep], y_test[keep], cfg.backdoor_target)
    return Devices([torch.from_numpy(x) for x in xs], [torch.from_numpy(y) for y in ys],
                   torch.from_numpy(x_test), torch.from_numpy(y_test).long(), torch.from_numpy(x_asr))


@functools.lru_cache(maxsize=1)
def _minilm_task(cache_dir: str | None, max_len: int):
    """The minilm Task (model load + cache read take ~10 s: once per process)."""
    from edgegen.fedtune import minilm

    return minilm.minilm_task(cache_dir=cache_dir, max_len=max_len)


def make_minilm_devices(cfg: UnlearnBenchConfig, seed: int) -> Devices:
    """BBC News shards from the lower-layer cache; the forget device's poisoned articles and the triggered test
    articles are re-encoded by the frozen lower layers."""
    from edgegen.fedtune import minilm

    task = _minilm_task(cfg.cache_dir, cfg.max_len)
    texts, labels, _ = minilm.bbc_docs()
    train_idx, test_idx = minilm.bbc_split(labels, 0)
    (h, mask, y), (h_test, mask_test, y_test) = task.train, task.test
    parts = split_devices(cfg, y.numpy(), seed)
    xs = [(h[p].clone(), mask[p].clone()) for p in parts]
    ys = [y[p].clone() for p in parts]
    rng = np.random.default_rng(derive_seed(seed, "backdoor"))
    poisoned = np.sort(rng.choice(len(ys[0]), size=int(round(cfg.backdoor_fraction * len(ys[0]))), replace=False))
    keep = np.flatnonzero(y_test.numpy() != cfg.backdoor_target)
    trig = np.random.default_rng(derive_seed(seed, "trigger"))
    poisoned_texts = [add_token_trigger(texts[train_idx[parts[0][i]]], cfg.trigger_copies, trig) for i in poisoned]
    asr_texts = [add_token_trigger(texts[test_idx[i]], cfg.trigger_copies, trig) for i in keep]
    tokenizer, model = minilm.load_minilm()
    hidden, attn = minilm.encode_lower(tokenizer, model, poisoned_texts + asr_texts, cfg.max_len, 1, progress=False)
    n = len(poisoned)
    xs[0][0][poisoned], xs[0][1][poisoned] = hidden[:n], attn[:n]
    ys[0][poisoned] = cfg.backdoor_target
    return Devices(xs, ys, (h_test, mask_test), y_test, (hidden[n:], attn[n:]))


# --------------------------------------------------------------------------- model as a flat vector


def make_model(cfg: UnlearnBenchConfig, seed: int) -> tuple[nn.Module, list[nn.Parameter]]:
    """The tier's model and its trainable parameters (the order of θ), initialised from the seed."""
    torch.manual_seed(derive_seed(seed, "init"))
    if cfg.tier == "digits":
        model = DigitsMLP()
        return model, list(model.parameters())
    from peft import LoraConfig, inject_adapter_in_model

    model = _minilm_task(cfg.cache_dir, cfg.max_len).make_base()
    targets = ["layers.0.attention.self.query", "layers.0.attention.self.value"]
    model = inject_adapter_in_model(
        LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_rank, target_modules=targets, lora_dropout=0.0), model)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name or name.startswith("head."))
    return model, [p for p in model.parameters() if p.requires_grad]


def device_grad(model: nn.Module, params: list[nn.Parameter], theta: torch.Tensor, x, y: torch.Tensor,
                loss: str = "ce", eps: float = 1e-3) -> torch.Tensor:
    """Flat gradient at θ of a loss on (x, y): ``ce``, ``bounded_ce`` or ``unlearning_ce``."""
    nn.utils.vector_to_parameters(theta, params)
    logits = forward(model, x)
    if loss == "ce":
        value = nn.functional.cross_entropy(logits, y)
    elif loss == "bounded_ce":
        value = ul.bounded_ce(logits, y, eps)
    else:
        value = ul.unlearning_ce(logits, y)
    return ul.flatten_grads(torch.autograd.grad(value, params))


@dataclass
class Fed:
    """What every round needs: the model, its trainable parameters, the data, the config and the batch generator."""

    model: nn.Module
    params: list[nn.Parameter]
    data: Devices
    cfg: UnlearnBenchConfig
    gen: torch.Generator

    def batch(self, k: int) -> tuple[object, torch.Tensor]:
        """Device k's inputs for one gradient: all of them, or ``batch_size`` drawn without replacement."""
        x, y = self.data.x[k], self.data.y[k]
        if self.cfg.batch_size == 0 or self.cfg.batch_size >= len(y):
            return x, y
        idx = torch.randperm(len(y), generator=self.gen)[:self.cfg.batch_size]
        return take(x, idx), y[idx]

    def grad(self, theta: torch.Tensor, k: int, loss: str = "ce") -> torch.Tensor:
        x, y = self.batch(k)
        return device_grad(self.model, self.params, theta, x, y, loss, self.cfg.bounded_ce_eps)

    def sizes(self, devices: list[int]) -> list[int]:
        return [len(self.data.y[k]) for k in devices]


def fedavg_grad(f: Fed, theta: torch.Tensor, devices: list[int]) -> torch.Tensor:
    """Size-weighted mean of the devices' gradients."""
    n = sum(f.sizes(devices))
    return sum(f.grad(theta, k) * (len(f.data.y[k]) / n) for k in devices)


def weighted_grads(f: Fed, theta: torch.Tensor, devices: list[int]) -> list[torch.Tensor]:
    """Each device's gradient scaled by m·n_k/n so that their plain mean is the size-weighted FedAvg gradient."""
    n, m = sum(f.sizes(devices)), len(devices)
    return [f.grad(theta, k) * (m * len(f.data.y[k]) / n) for k in devices]


# --------------------------------------------------------------------------- metrics


def mia_auc(member_losses: np.ndarray, nonmember_losses: np.ndarray) -> float:
    """Loss-threshold membership inference: ROC AUC of the score −loss for members (1) vs non-members (0)."""
    from sklearn.metrics import roc_auc_score

    m, n = np.asarray(member_losses, float), np.asarray(nonmember_losses, float)
    labels = np.r_[np.ones(len(m)), np.zeros(len(n))]
    return float(roc_auc_score(labels, -np.r_[m, n]))


@torch.no_grad()
def logits_of(model: nn.Module, x, chunk: int = 256) -> torch.Tensor:
    n = len(x[0]) if isinstance(x, tuple) else len(x)
    return torch.cat([forward(model, take(x, slice(s, s + chunk))) for s in range(0, n, chunk)])


@torch.no_grad()
def evaluate(f: Fed, theta: torch.Tensor, nonmember_idx: np.ndarray) -> dict:
    nn.utils.vector_to_parameters(theta, f.params)
    data, model = f.data, f.model

    def acc(x, y: torch.Tensor) -> float:
        return float((logits_of(model, x).argmax(1) == y).float().mean())

    rest = range(1, len(data.x))
    member = nn.functional.cross_entropy(logits_of(model, data.x[0]), data.y[0], reduction="none").numpy()
    test_logits = logits_of(model, data.x_test)
    non = nn.functional.cross_entropy(test_logits[nonmember_idx], data.y_test[nonmember_idx],
                                      reduction="none").numpy()
    return {"forget_acc": acc(data.x[0], data.y[0]),
            "remaining_acc": acc(concat([data.x[k] for k in rest]), torch.cat([data.y[k] for k in rest])),
            "test_acc": float((test_logits.argmax(1) == data.y_test).float().mean()),
            "backdoor_asr": float((logits_of(model, data.x_asr).argmax(1) == f.cfg.backdoor_target).float().mean()),
            "mia_auc": mia_auc(member, non)}


# --------------------------------------------------------------------------- training and unlearning


def server_adam(theta: torch.Tensor, lr: float, optimizer: str) -> torch.optim.Adam | None:
    """The server's Adam state over a copy of θ, or None for plain SGD."""
    return torch.optim.Adam([theta.detach().clone()], lr=lr) if optimizer == "adam" else None


def descend(theta: torch.Tensor, direction: torch.Tensor, lr: float, adam: torch.optim.Adam | None) -> torch.Tensor:
    """One server step against ``direction``: θ − lr·direction (SGD), or an Adam step with gradient ``direction``."""
    if adam is None:
        return theta - lr * direction
    param = adam.param_groups[0]["params"][0]
    param.grad = direction
    adam.step()
    return param.detach().clone()


def train_fedavg(f: Fed, theta: torch.Tensor, devices: list[int], rounds: int, lr: float,
                 optimizer: str = "sgd") -> torch.Tensor:
    """FedSGD for ``rounds`` rounds with a plain SGD or Adam server step."""
    adam = server_adam(theta, lr, optimizer)
    for _ in range(rounds):
        theta = descend(theta, fedavg_grad(f, theta, devices), lr, adam)
    return theta


def paper_projection(f: Fed, theta: torch.Tensor, noise_multiplier: float | None = None,
                     noise_gen: torch.Generator | None = None) -> torch.Tensor:
    """Edge-LAM rule; the opt-out device uploads −∇ bounded_ce (ascent). With a noise multiplier: DP uploads."""
    cfg = f.cfg
    rest = list(range(1, len(f.data.x)))
    adam = server_adam(theta, cfg.unlearn_lr, cfg.unlearn_optimizer)
    sigma = None if noise_multiplier is None else noise_multiplier * cfg.clip_norm
    for _ in range(cfg.unlearn_rounds):
        g_r = weighted_grads(f, theta, rest)
        u = -f.grad(theta, 0, "bounded_ce")
        if sigma is not None:
            g_r = [ul.add_gaussian_noise(ul.clip_to_norm(g, cfg.clip_norm), sigma, noise_gen) for g in g_r]
            u = ul.add_gaussian_noise(ul.clip_to_norm(u, cfg.clip_norm), sigma, noise_gen)
        theta = descend(theta, -ul.paper_update(g_r, [u], 1.0), cfg.unlearn_lr, adam)
    for _ in range(cfg.projection_recovery_rounds):
        g_r = weighted_grads(f, theta, rest)
        if sigma is not None:
            g_r = [ul.add_gaussian_noise(ul.clip_to_norm(g, cfg.clip_norm), sigma, noise_gen) for g in g_r]
        theta = descend(theta, torch.stack(g_r).mean(0), cfg.unlearn_lr, adam)
    return theta


def fedosd(f: Fed, theta: torch.Tensor) -> torch.Tensor:
    cfg = f.cfg
    rest = list(range(1, len(f.data.x)))
    start = theta.clone()
    adam = server_adam(theta, cfg.unlearn_lr, cfg.unlearn_optimizer)
    for _ in range(cfg.fedosd_rounds):
        g_r = weighted_grads(f, theta, rest)
        g_f = f.grad(theta, 0, "unlearning_ce")
        theta = descend(theta, -ul.fedosd_direction(g_r, g_f, ascent=False), cfg.unlearn_lr, adam)
    displacement = theta - start
    for _ in range(cfg.recovery_rounds):
        g_r = weighted_grads(f, theta, rest)
        theta = descend(theta, torch.stack([ul.recovery_gradient(g, displacement) for g in g_r]).mean(0),
                        cfg.unlearn_lr, adam)
    return theta


def gradient_ascent(f: Fed, theta: torch.Tensor) -> torch.Tensor:
    cfg = f.cfg
    adam = server_adam(theta, cfg.unlearn_lr, cfg.unlearn_optimizer)
    for _ in range(cfg.unlearn_rounds):
        theta = descend(theta, -ul.clipped_gradient_ascent_step(f.grad(theta, 0), 1.0, cfg.clip_norm),
                        cfg.unlearn_lr, adam)
    return train_fedavg(f, theta, list(range(1, len(f.data.x))), cfg.recovery_rounds, cfg.unlearn_lr,
                        cfg.unlearn_optimizer)


def run_seed(cfg: UnlearnBenchConfig, seed: int, command: str) -> dict:
    """original, retrain and every unlearning method (plus the DP sweep) for one seed; skipped if finished.

    ``original`` and ``retrain`` are checkpointed (OUT/seed_s/ckpt/<name>.pt: θ, metrics and the config fields
    that shape them, TRAINING_FIELDS), so a killed seed restarts at the unlearning methods, and a seed re-run with
    other unlearning settings (delete its summary.json) reuses the trained models."""
    out = cfg.out / f"seed_{seed}"
    if (out / "summary.json").exists():
        return json.loads((out / "summary.json").read_text())
    seed_everything(seed)
    torch.set_num_threads(1)
    data = make_devices(cfg, seed)
    model, params = make_model(cfg, seed)
    d = sum(p.numel() for p in params)
    per_device_round = 2 * 4 * d  # float32 gradient up + model down
    k = cfg.num_devices
    nonmember_idx = np.random.default_rng(derive_seed(seed, "mia")).choice(
        len(data.y_test), size=min(len(data.y[0]), len(data.y_test)), replace=False)
    theta0 = nn.utils.parameters_to_vector(params).detach().clone()
    config = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    config.pop("workers"), config.pop("ray_address"), config.pop("quiet")
    training = json.dumps({key: config[key] for key in TRAINING_FIELDS}, sort_keys=True)
    results: dict[str, dict] = {}

    def record(name: str, fn, rounds: int, device_rounds: int, epsilon: float | None = None,
               ckpt: bool = False) -> torch.Tensor:
        path = out / "ckpt" / f"{name}.pt"
        if ckpt and path.exists():
            saved = torch.load(path, weights_only=True)
            if saved["training"] == training:
                results[name] = json.loads(saved["result"])
                return saved["theta"]
        f = Fed(model, params, data, cfg, torch.Generator().manual_seed(derive_seed(seed, "batches", name)))
        t, c = time.perf_counter(), time.process_time()
        theta = fn(f)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        results[name] = {**evaluate(f, theta, nonmember_idx), "rounds": rounds,
                         "bytes": float(device_rounds * per_device_round), "wall_s": wall, "cpu_s": cpu,
                         "epsilon": epsilon}
        if ckpt:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save({"theta": theta, "result": json.dumps(results[name]),
                        "training": training}, tmp)
            os.replace(tmp, path)
        return theta

    everyone, rest = list(range(k)), list(range(1, k))
    theta_orig = record("original", lambda f: train_fedavg(f, theta0, everyone, cfg.rounds, cfg.lr,
                                                           cfg.server_optimizer),
                        cfg.rounds, k * cfg.rounds, ckpt=True)
    record("retrain", lambda f: train_fedavg(f, theta0, rest, cfg.rounds, cfg.lr, cfg.server_optimizer),
           cfg.rounds, (k - 1) * cfg.rounds, ckpt=True)
    u, r, uo, pr = cfg.unlearn_rounds, cfg.recovery_rounds, cfg.fedosd_rounds, cfg.projection_recovery_rounds
    if "paper_projection" in cfg.methods:
        record("paper_projection", lambda f: paper_projection(f, theta_orig), u + pr, k * u + (k - 1) * pr)
    if "fedosd" in cfg.methods:
        record("fedosd", lambda f: fedosd(f, theta_orig), uo + r, k * uo + (k - 1) * r)
    if "gradient_ascent" in cfg.methods:
        record("gradient_ascent", lambda f: gradient_ascent(f, theta_orig), u + r, u + (k - 1) * r)
    sweep = {}
    if "dp" in cfg.methods:
        for nm in dict.fromkeys((cfg.dp_noise_multiplier, *cfg.noise_multipliers)):
            gen = torch.Generator().manual_seed(derive_seed(seed, "dp", nm))
            name = f"dp_nm{nm:g}"
            with warnings.catch_warnings():  # Opacus: "optimal order is the smallest alpha" for small σ
                warnings.simplefilter("ignore", UserWarning)
                eps = ul.rdp_epsilon(nm, 1.0, u, DELTA)
            record(name, lambda f, nm=nm, gen=gen: paper_projection(f, theta_orig, nm, gen), u + pr,
                   k * u + (k - 1) * pr, eps)
            sweep[nm] = results.pop(name)
        results["dp"] = {**sweep[cfg.dp_noise_multiplier], "noise_multiplier": cfg.dp_noise_multiplier}
    ref = results["retrain"]
    for res in [*results.values(), *sweep.values()]:
        res["bytes_ratio_vs_retrain"] = res["bytes"] / ref["bytes"]
        res["wall_ratio_vs_retrain"] = res["wall_s"] / ref["wall_s"] if ref["wall_s"] > 0 else float("nan")
        # CPU seconds of the job's process (one torch thread): unlike wall time, not inflated by other processes
        # sharing the cores; NaN for a checkpoint written before cpu_s was recorded.
        res["cpu_ratio_vs_retrain"] = res.get("cpu_s", float("nan")) / ref.get("cpu_s", float("nan"))
    run = RunDir(out, tensorboard=False)
    run.write_config(config)
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
    cfg = cfg.resolved()
    cfg.out.mkdir(parents=True, exist_ok=True)
    if cfg.tier == "minilm":
        _minilm_task(cfg.cache_dir, cfg.max_len)  # build the lower-layer cache once, before any worker starts
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


def _ratio(value: float | None) -> str:
    """A ratio with 3 decimals, or – when it was not recorded (runs from before cpu_s existed)."""
    return "–" if value is None or not np.isfinite(value) else f"{value:.3f}"


def format_table(summary: dict) -> str:
    rows = ["| method | forget acc | remaining acc | test acc | backdoor ASR | MIA AUC | rounds | MB | wall s | "
            "bytes / retrain | wall / retrain | CPU / retrain | ε |", "|---|" + "---|" * 12]

    def pm(r: dict, k: str) -> str:
        return f"{r[k]:.3f} ± {r[f'{k}_std']:.3f}"

    def line(name: str, r: dict) -> str:
        eps = "–" if r["epsilon"] is None else f"{r['epsilon']:.3g}"
        return (f"| {name} | {pm(r, 'forget_acc')} | {pm(r, 'remaining_acc')} | {pm(r, 'test_acc')} | "
                f"{pm(r, 'backdoor_asr')} | {pm(r, 'mia_auc')} | {r['rounds']:g} | {r['bytes'] / 1e6:.1f} | "
                f"{r['wall_s']:.2f} | {r['bytes_ratio_vs_retrain']:.3f} | {r['wall_ratio_vs_retrain']:.3f} | "
                f"{_ratio(r.get('cpu_ratio_vs_retrain'))} | {eps} |")

    for name, r in summary["results"].items():
        rows.append(line(name, r))
    for p in summary.get("dp_sweep", []):
        rows.append(line(f"dp σ/C={p['noise_multiplier']:g}", p))
    return "\n".join(rows)
