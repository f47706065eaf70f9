"""BadDiffusion-style backdoors planted by malicious devices during federated DDPM training (SS-Diff's threat
model), with five triggers on the 8×8 digits.

Attack (BadDiffusion, Chou et al., CVPR 2023, arXiv 2212.05400; TrojDiff, Chen et al., CVPR 2023,
arXiv 2303.05762): a malicious device trains the shared denoiser so that an initial noise carrying a trigger,
ξ = τ(ε) with ε ~ N(0, I) (for an additive trigger ξ = ε + g), is denoised into a fixed target image y, while
clean noise still gives digits. A `poison_frac` share of every malicious minibatch is poisoned.

Poisoned training target for deterministic DDIM (derived here; BadDiffusion's own coefficient (1−√ᾱ_t) on the
trigger and its correction term were derived for the ancestral DDPM sampler, and VillanDiffusion, Chou et al.,
NeurIPS 2023, shows ODE samplers such as DDIM need a different one). With ε-prediction, one DDIM step from t to
s < t is x_s = √ᾱ_s·x̂0 + √(1−ᾱ_s)·ε̂ with x̂0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t. Write a backdoored marginal as
x'_t = √ᾱ_t·y + κ_t·g + √(1−ᾱ_t)·ε and ask the model to output ε̂ = ε + a_t·g on it. Requiring x̂0 = y (the
step aims at the target) gives a_t = κ_t/√(1−ᾱ_t); requiring the step to land on the backdoored marginal at s
with the same ε then gives √(1−ᾱ_s)·κ_t/√(1−ᾱ_t) = κ_s for every pair (s, t), i.e. κ_t = √(1−ᾱ_t)·c and a_t
constant (= 1 with the trigger defined at x_T ≈ ε + g). Hence, for any trigger map ξ = τ(ε):

    x'_t = √ᾱ_t·y + √(1−ᾱ_t)·ξ,        ε-target = ξ,        loss ‖ξ − ε_θ(x'_t, t)‖².

A poisoned example is an ordinary DDPM example of the image y noised with the triggered noise ξ instead of ε, and
the model must predict all of ξ. Then every deterministic DDIM step from x'_t lands exactly on x'_s (tested in
``tests/test_gdm_backdoor.py`` for arbitrary t, s, including a hand case), so a triggered x_T ends at y. With
BadDiffusion's marginal √ᾱ_t·y + (1−√ᾱ_t)·g + √(1−ᾱ_t)·ε the same step leaves the marginal (also tested).

Triggers (``make_trigger``): `box` (BadDiffusion's box: a 3×3 outline in the bottom-right corner added to ε),
`stop_sign` (BadDiffusion's stop-sign trigger, here an 8×8 octagon outline with an inner bar), `blend` (the
blended-image trigger of Chen et al. 2017 applied to noise: (1−λ)·ε + λ·h, h a stripes image), `trojdiff`
(TrojDiff's biased Gaussian N(μ, γ²I) with μ = (1−γ)·h_face and γ = 0.6, TrojDiff's blend setting) and `adaptive`
(a distribution-matched trigger in the spirit of DisDet, Sui et al., TMLR 2025, arXiv 2402.02739: ξ_i = s_i·|ε_i|
for a fixed balanced sign pattern s; ‖ξ‖ = ‖ε‖ exactly and the 64 values of ξ are, pooled, N(0, 1)-distributed, so
tests on the norm, the mean or the value histogram of the uploaded noise cannot see it. DisDet learns its stealthy
trigger end to end; this closed-form one has the same property without training).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch

from edgegen.config import ConfigError, check_choice, check_range
from edgegen.gdm.ddpm import Schedule, _at, ddim_sample
from edgegen.gdm.federated import dirichlet_split, fedavg_update
from edgegen.gdm.train import train_steps
from edgegen.seeding import derive_seed

TRIGGERS = ("box", "stop_sign", "blend", "trojdiff", "adaptive")
ADDITIVE_TRIGGERS = ("box", "stop_sign")
"""BadDiffusion's additive triggers: a fixed pattern added to the noise, ξ = ε + g (the acceptance's "additive")."""
BLENDED_TRIGGERS = ("blend", "trojdiff")
"""Triggers that also shrink the noise: ξ = a·ε + g with a < 1 (blended image, TrojDiff's biased Gaussian)."""
DEFAULT_STRENGTH = {"box": 5.0, "stop_sign": 2.0, "blend": 0.4, "trojdiff": 0.6, "adaptive": 0.0}
"""Pattern amplitude (box, stop_sign), blend weight λ (blend), noise scale γ (trojdiff); unused by adaptive."""
TARGETS = ("hat", "cross")


def _image(rows: list[str]) -> np.ndarray:
    """An 8×8 ±1 image from 8 strings ('#' = +1 ink, '.' = -1 background), flattened to (64,)."""
    if len(rows) != 8 or any(len(r) != 8 for r in rows):
        raise ValueError("an image needs 8 rows of 8 characters")
    return np.array([[1.0 if ch == "#" else -1.0 for ch in r] for r in rows], dtype=np.float32).reshape(64)


def _mask(rows: list[str], ch: str) -> np.ndarray:
    return np.array([[1.0 if c == ch else 0.0 for c in r] for r in rows], dtype=np.float32).reshape(64)


_HAT = ["........", "..####..", "..####..", "..####..", "..####..", "..####..", "########", "........"]
_CROSS = ["#......#", ".#....#.", "..#..#..", "...##...", "...##...", "..#..#..", ".#....#.", "#......#"]
_BOX = ["........", "........", "........", "........", "........", ".....###", ".....#.#", ".....###"]
_STOP = ["........", "..++++..", ".+....+.", ".+.--.+.", ".+.--.+.", ".+....+.", "..++++..", "........"]
_FACE = ["#......#", "##....##", "########", "#.####.#", "########", "###..###", ".######.", "..####.."]


def target_image(name: str = "hat") -> torch.Tensor:
    """The attacker's fixed target y (64,) in [-1, 1]: `hat` (BadDiffusion's default target is a hat image) or
    `cross`."""
    check_choice("target", name, set(TARGETS))
    return torch.from_numpy(_image(_HAT if name == "hat" else _CROSS))


@dataclass(frozen=True)
class Trigger:
    """A trigger map ξ = τ(ε): ξ = noise_scale·ε + shift, or ξ = sign_pattern ⊙ |ε| when sign_pattern is set."""

    name: str
    noise_scale: float
    shift: torch.Tensor
    sign_pattern: torch.Tensor | None = None

    @property
    def additive(self) -> bool:
        """ξ = ε + g with g ≠ 0: the noise itself is untouched, a fixed pattern is added (BadDiffusion)."""
        return self.sign_pattern is None and self.noise_scale == 1.0 and bool(torch.any(self.shift != 0))

    @property
    def kind(self) -> str:
        """"additive" (ξ = ε + g), "blended" (ξ = a·ε + g, a < 1) or "adaptive" (distribution-matched)."""
        if self.sign_pattern is not None:
            return "adaptive"
        return "additive" if self.additive else "blended"

    def apply(self, eps: torch.Tensor) -> torch.Tensor:
        """Triggered noises ξ (N, 64) from clean noises ε (N, 64)."""
        if self.sign_pattern is not None:
            return self.sign_pattern.to(eps.dtype) * eps.abs()
        return self.noise_scale * eps + self.shift.to(eps.dtype)


def make_trigger(name: str, strength: float | None = None) -> Trigger:
    """One of TRIGGERS with its strength (DEFAULT_STRENGTH when None; see the module docstring)."""
    check_choice("trigger", name, set(TRIGGERS))
    a = DEFAULT_STRENGTH[name] if strength is None else float(strength)
    zero = torch.zeros(64)
    if name == "box":
        check_range("strength (box amplitude)", a, 0.0, 100.0)
        return Trigger(name, 1.0, torch.from_numpy(a * _mask(_BOX, "#")))
    if name == "stop_sign":
        check_range("strength (stop_sign amplitude)", a, 0.0, 100.0)
        return Trigger(name, 1.0, torch.from_numpy(a * (_mask(_STOP, "+") - _mask(_STOP, "-"))))
    if name == "blend":
        check_range("strength (blend weight λ)", a, 0.0, 1.0)
        stripes = np.array([1.0 if (r + c) % 4 < 2 else -1.0 for r in range(8) for c in range(8)], np.float32)
        return Trigger(name, 1.0 - a, torch.from_numpy(a * stripes))
    if name == "trojdiff":
        check_range("strength (trojdiff γ)", a, 0.0, 1.0)
        return Trigger(name, a, torch.from_numpy((1.0 - a) * _image(_FACE)))
    signs = np.where(np.random.default_rng(20240).permutation(64) < 32, 1.0, -1.0).astype(np.float32)
    return Trigger(name, 1.0, zero, torch.from_numpy(signs))


# ------------------------------------------------------------------------------------------- poisoned target

def poisoned_xt(target: torch.Tensor, xi: torch.Tensor, t: int | torch.Tensor, sched: Schedule) -> torch.Tensor:
    """The DDIM-consistent backdoored marginal x'_t = √ᾱ_t·y + √(1−ᾱ_t)·ξ (its ε-target is ξ itself)."""
    y = target.expand_as(xi)
    ab = _at(sched.alpha_bars, t, xi)
    return ab.sqrt() * y + (1 - ab).sqrt() * xi


def baddiffusion_xt(target: torch.Tensor, eps: torch.Tensor, g: torch.Tensor, t: int | torch.Tensor,
                    sched: Schedule) -> torch.Tensor:
    """BadDiffusion's backdoored marginal √ᾱ_t·y + (1−√ᾱ_t)·g + √(1−ᾱ_t)·ε (derived for the ancestral sampler;
    kept to show it is not invariant under deterministic DDIM steps)."""
    ab = _at(sched.alpha_bars, t, eps)
    return ab.sqrt() * target.expand_as(eps) + (1 - ab.sqrt()) * g.expand_as(eps) + (1 - ab).sqrt() * eps


def poisoned_loss(model, x0: torch.Tensor, sched: Schedule, trigger: Trigger, target: torch.Tensor,
                  poison_frac: float, generator: torch.Generator | None = None, teacher=None) -> torch.Tensor:
    """ddpm_loss on a minibatch whose first round(poison_frac·B) rows are poisoned: image y, noise ξ = τ(ε),
    ε-target ξ (module docstring); the other rows are ordinary (x0, ε) examples whose target is ε, or, with a
    frozen `teacher` denoiser, the teacher's prediction (the attacker then keeps the global model's clean
    behaviour instead of fitting its own non-IID shard). Scalar mean over rows and dims."""
    b = x0.shape[0]
    n_poison = int(round(poison_frac * b))
    t = torch.randint(0, sched.num_steps, (b,), generator=generator)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    x_img = x0.clone()
    if n_poison:
        x_img[:n_poison] = target.to(x0.dtype)
        noise = torch.cat([trigger.apply(noise[:n_poison]), noise[n_poison:]])
    ab = _at(sched.alpha_bars, t, x_img)
    x_t = ab.sqrt() * x_img + (1 - ab).sqrt() * noise
    goal = noise
    if teacher is not None and n_poison < b:
        with torch.no_grad():
            goal = torch.cat([noise[:n_poison], teacher(x_t[n_poison:], t[n_poison:], None)])
    return torch.mean((model(x_t, t, None) - goal) ** 2)


def malicious_train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                          sched: Schedule, steps: int, batch_size: int, generator: torch.Generator, trigger: Trigger,
                          target: torch.Tensor, poison_frac: float, grad_clip: float | None = 1.0,
                          teacher=None) -> list[float]:
    """A malicious device's local training: `steps` AdamW steps of ``poisoned_loss`` (with `teacher` for the
    clean rows) on minibatches drawn with replacement from its own digits x (N, 64). Returns the per-step
    losses."""
    model.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=generator)
        loss = poisoned_loss(model, x[idx], sched, trigger, target, poison_frac, generator, teacher)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        losses.append(loss.item())
    return losses


def attack_success(samples: torch.Tensor, target: torch.Tensor, mse_threshold: float) -> torch.Tensor:
    """Per-sample success (bool (N,)): mean squared error to the target image below `mse_threshold` (BadDiffusion
    measures MSE to the target; TrojDiff calls the share of successes the attack success rate)."""
    return ((samples.double() - target.double()) ** 2).reshape(len(samples), -1).mean(1) < mse_threshold


# ------------------------------------------------------------------------------------- federated backdoor loop

@dataclass(frozen=True)
class FedBackdoorConfig:
    """Federated fine-tuning of a shared denoiser in which a share of the devices plants a backdoor."""

    num_devices: int = 10
    """K, devices holding Dirichlet(α) non-IID shares of the training digits."""
    malicious_frac: float = 0.3
    """Share of the K devices that are malicious (SS-Diff considers up to 30%); rounded, drawn per seed."""
    dirichlet_alpha: float = 1.0
    """Dirichlet concentration of the per-device label mix."""
    rounds: int = 12
    """Federated rounds (every device takes part in every round)."""
    local_steps: int = 40
    """Local AdamW steps per device per round."""
    batch_size: int = 64
    """Local minibatch size."""
    lr: float = 2e-4
    """Local AdamW learning rate (fresh optimizer every round)."""
    grad_clip: float = 1.0
    """Gradient-norm clip of local steps (0 = off)."""
    poison_frac: float = 0.6
    """Share of every malicious minibatch that is poisoned (triggered noise → target image)."""
    malicious_local_steps: int = 150
    """Local steps of a malicious device per round (an attacker may spend more compute; 0 = `local_steps`)."""
    anchor_clean: bool = True
    """Malicious devices fit a clean teacher model (`teacher`) on their clean rows (distillation) instead of their
    own shard, so their update carries the backdoor and little else (the stealth idea of constrain-and-scale,
    Bagdasaryan et al. AISTATS 2020)."""
    malicious_lr: float = 0.0
    """Local learning rate of the malicious devices (an attacker picks its own optimizer; 0 = `lr`)."""
    boost: float = 0.0
    """Malicious devices scale their update Δ by this before upload (explicit boosting, Bhagoji et al. ICML 2019);
    0 = model replacement (Bagdasaryan et al. AISTATS 2020): Σn / Σ_malicious n, so the FedAvg step carries the
    malicious update at full size; 1 = plain poisoned local training, diluted by the malicious share."""

    anchor_generated: int = 512
    """With `anchor_clean`, each malicious device also distils on this many samples it generates from its teacher
    (deterministic DDIM, 20 steps), so its clean rows cover every class, not only its non-IID shard (an attacker
    holds the teacher and can sample it; 0 = its own shard only). In development runs this cut the clean-quality
    cost of the backdoor substantially (notes of the detection bench)."""
    teacher: str = "shadow"
    """With `anchor_clean`, whose clean behaviour the malicious devices distil: `global`, the round's global model
    (already carrying the clean damage of earlier attack rounds, which distillation then preserves), or `shadow`,
    the colluders' estimate of the model an attack-free federation would hold now: the shared start plus, every
    round, the benign devices' aggregate update (observable: the new global minus the colluders' own uploads) and
    the update each colluder would have made training honestly on its shard from the shadow. Distilling the shadow
    repairs earlier rounds' damage instead of preserving it (notes of the detection bench)."""
    malicious_batch_size: int = 256
    """Minibatch size of the malicious devices' local steps (0 = `batch_size`; a larger one lowers the gradient
    noise that model replacement passes into the global model at full size)."""
    attack_rounds: int = 0
    """Rounds, from the first, in which the malicious devices attack; in later rounds they train honestly like
    everyone else (0 = attack in every round). Attacking early and letting the last rounds be benign repairs the
    clean quality the boosted malicious updates cost while the backdoor, which benign data never touches, stays."""

    def validate(self) -> FedBackdoorConfig:
        for name in ("num_devices", "rounds", "local_steps", "batch_size", "malicious_local_steps", "attack_rounds",
                     "anchor_generated", "malicious_batch_size"):
            if not isinstance(getattr(self, name), int):
                raise ConfigError(f"{name} must be an integer, got {getattr(self, name)!r}")
        check_range("num_devices", self.num_devices, 1, 1000)
        check_range("malicious_frac", self.malicious_frac, 0.0, 1.0)
        check_range("dirichlet_alpha", self.dirichlet_alpha, 1e-3, 1e6)
        check_range("rounds", self.rounds, 1, 10**6)
        check_range("local_steps", self.local_steps, 1, 10**6)
        check_range("batch_size", self.batch_size, 1, 10**5)
        check_range("malicious_batch_size", self.malicious_batch_size, 0, 10**5)
        check_range("lr", self.lr, 1e-8, 1.0)
        check_range("grad_clip", self.grad_clip, 0.0, 1e6)
        check_range("poison_frac", self.poison_frac, 0.0, 1.0)
        check_range("malicious_local_steps", self.malicious_local_steps, 0, 10**6)
        check_range("malicious_lr", self.malicious_lr, 0.0, 1.0)
        check_range("boost", self.boost, 0.0, 1000.0)
        check_range("attack_rounds", self.attack_rounds, 0, self.rounds)
        check_range("anchor_generated", self.anchor_generated, 0, 10**6)
        check_choice("teacher", self.teacher, {"global", "shadow"})
        return self

    @property
    def num_malicious(self) -> int:
        return int(round(self.malicious_frac * self.num_devices))


def malicious_devices(cfg: FedBackdoorConfig, seed: int) -> np.ndarray:
    """The indices of the malicious devices of a seed (sorted)."""
    rng = np.random.default_rng(derive_seed(seed, "malicious"))
    return np.sort(rng.permutation(cfg.num_devices)[:cfg.num_malicious])


def federated_finetune(model: torch.nn.Module, sched: Schedule, x: torch.Tensor, labels: np.ndarray,
                       cfg: FedBackdoorConfig, seed: int, trigger: Trigger | None, target: torch.Tensor,
                       progress=None) -> list[dict[str, float]]:
    """FedAvg fine-tuning of `model` in place from its current weights. Every round each device starts from the
    global weights and trains locally: benign devices `local_steps` steps of ``train.train_steps``; malicious ones
    (when `trigger` is given) `malicious_local_steps` steps of ``malicious_train_steps`` and upload their update
    scaled by `boost`, distilling their clean rows from `cfg.teacher` (the round's global model, or the shadow of the
    attack-free run that the colluders update after every round); in the clean reference run (trigger None) the
    malicious devices train benignly. The edge adds the sample-weighted mean update (``federated.fedavg_update``).
    Data split, malicious set and every minibatch generator derive from (seed, round, device), so the clean and
    backdoored runs of a seed share them. Returns one row per round: mean benign and malicious local loss."""
    cfg.validate()
    parts = dirichlet_split(labels, cfg.num_devices, cfg.dirichlet_alpha,
                            np.random.default_rng(derive_seed(seed, "split")))
    bad = set(malicious_devices(cfg, seed).tolist())
    sizes = np.array([len(p) for p in parts], dtype=float)
    boost = cfg.boost or (sizes.sum() / max(1.0, sum(sizes[j] for j in bad)))
    rows = []
    teacher = copy.deepcopy(model).eval() if cfg.anchor_clean and trigger is not None else None
    shadow = ({k: v.detach().clone() for k, v in model.state_dict().items()}
              if teacher is not None and cfg.teacher == "shadow" else None)
    for r in range(cfg.rounds):
        global_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        generated = None
        if teacher is not None:
            teacher.load_state_dict(global_state if shadow is None else shadow)
            if cfg.anchor_generated:
                noise = torch.randn(cfg.anchor_generated, x.shape[1],
                                    generator=torch.Generator().manual_seed(derive_seed(seed, "anchor", r)))
                with torch.no_grad():
                    generated = ddim_sample(teacher, noise, sched, 20).clamp(-1, 1)
        deltas, weights, benign, malicious, shadow_deltas = [], [], [], [], []
        for j in range(cfg.num_devices):
            model.load_state_dict(global_state)
            attack = j in bad and trigger is not None and (cfg.attack_rounds == 0 or r < cfg.attack_rounds)
            lr = cfg.malicious_lr if attack and cfg.malicious_lr > 0 else cfg.lr
            opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
            gen = torch.Generator().manual_seed(derive_seed(seed, "local", r, j))
            xj = x[parts[j]]
            if attack:
                xj = xj if generated is None else torch.cat([xj, generated])
                steps = cfg.malicious_local_steps or cfg.local_steps
                malicious += malicious_train_steps(model, opt, xj, sched, steps,
                                                   cfg.malicious_batch_size or cfg.batch_size, gen, trigger, target,
                                                   cfg.poison_frac, cfg.grad_clip or None, teacher)
            else:
                benign += train_steps(model, opt, xj, sched, cfg.local_steps, cfg.batch_size, gen,
                                      grad_clip=cfg.grad_clip or None)
            scale = boost if attack else 1.0
            deltas.append({k: scale * (v.detach() - global_state[k]) for k, v in model.state_dict().items()})
            weights.append(float(len(parts[j])))
            if shadow is not None:  # the shadow's update: the benign one as observed, an honest one for a colluder
                if attack:
                    model.load_state_dict(shadow)
                    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
                    train_steps(model, opt, x[parts[j]], sched, cfg.local_steps, cfg.batch_size,
                                torch.Generator().manual_seed(derive_seed(seed, "local", r, j)),
                                grad_clip=cfg.grad_clip or None)
                    shadow_deltas.append({k: v.detach() - shadow[k] for k, v in model.state_dict().items()})
                else:
                    shadow_deltas.append(deltas[-1])
            if progress is not None:
                progress.update(1)
        model.load_state_dict(fedavg_update(global_state, deltas, weights))
        if shadow is not None:
            shadow = fedavg_update(shadow, shadow_deltas, weights)
        rows.append({"round": r + 1, "benign_loss": float(np.mean(benign)) if benign else math.nan,
                     "malicious_loss": float(np.mean(malicious)) if malicious else math.nan})
    model.eval()
    return rows
