"""DDPO: RL fine-tuning of a diffusion model with a PPO-style clipped objective, at CPU scale.

Denoising as a multi-step MDP (Black et al., "Training diffusion models with reinforcement learning", arXiv
2305.13301; Zhang et al., "Large-scale reinforcement learning for diffusion models", arXiv 2401.12244): the state is
(x_t, t, c), the action is x_{t-1}, the policy is the sampler's Gaussian step p_θ(x_{t-1} | x_t, c) (DDIM with
η = 1, i.e. the DDPM posterior on the strided timesteps), and the reward r(x_0, c) arrives after the last step.
One epoch:

1. sample a batch of trajectories with the current model, storing every state and the log-probability of every
   stochastic step (``sample_trajectories``; the first hop from pure noise and the last hop to clean data are
   deterministic, see ``policy_timesteps``);
2. score the final samples with the reward (``gdm/rewards.py``); z-score the rewards over the whole batch
   (Zhang et al. normalise per batch, not per prompt; ``per_condition`` tracks each condition instead, as DDPO
   does per prompt) and clip the advantages to ±``adv_clip``;
3. for ``inner_epochs`` passes over the batch in minibatches of ``train_batch`` trajectories: recompute every
   step's log-probability with the current weights and minimise the clipped surrogate
   E[max(−A·ρ, −A·clip(ρ, 1 ± ε))] with ρ = exp(log p_new − log p_old) over all (trajectory, step) pairs, plus
   λ·(pretraining ε-prediction loss on the digits) when ``pretrain_weight`` λ > 0 (Zhang et al.'s regulariser
   against reward hacking); log approx-KL = ½·E[(log p_new − log p_old)²] and the clip fraction.

The step log-probabilities are 64-dimensional Gaussians, so a small change of the mean moves them a lot; like
DDPO (clip range 1e-4 with Stable Diffusion) we keep the learning rate small and the clip range tight.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import torch

from edgegen.config import ConfigError, check_choice, check_range
from edgegen.gdm import rewards as rw
from edgegen.gdm.ddpm import Schedule, ddim_step, ddim_timesteps, ddpm_loss, gaussian_logprob, sample_loop

REWARDS = ("class", "class_set", "diversity", "brightness", "jpeg", "multitask", "mixed")
"""class: p(target_class); class_set: Σ p over target_classes; diversity: class_set + diversity_weight ×
diversity_gain over groups; brightness; jpeg (compressibility); multitask: conditional model, condition c's
reward is p(c | x); mixed: conditional model, conditions of different objectives (``MIXED_TASKS``)."""

PROB_REWARDS = ("class", "class_set", "diversity", "multitask")
"""Rewards that are probabilities in [0, 1] (the others have their own units: JPEG kB, mixed scales)."""

MIXED_TASKS = {"brightness": (0, 2, 4, 6, 8), "jpeg": (1, 3, 5, 7, 9)}
"""The `mixed` multitask: even digit conditions are rewarded by brightness ([0, 1]), odd ones by JPEG
compressibility (−kB, about −0.5 … −1): two objectives of different scale trained jointly in one model, the case
per-condition advantage tracking (``per_condition``) exists for."""


@dataclass(frozen=True)
class DDPOConfig:
    """One DDPO fine-tuning run."""

    reward: str = "class"
    """Reward (see REWARDS): class, class_set, diversity, brightness, jpeg, multitask."""
    target_class: int = 3
    """Digit rewarded by `class`."""
    target_classes: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Digits rewarded by `class_set` and `diversity`."""
    diversity_weight: float = 1.0
    """Weight of the diversity gain in the `diversity` reward."""
    group_size: int = 16
    """Samples per group of the distribution-level diversity reward (must divide batch_size)."""
    epochs: int = 150
    """Sampling + training epochs."""
    batch_size: int = 1024
    """Trajectories sampled per epoch."""
    sample_steps: int = 10
    """Sampler hops per trajectory; the first and the last are deterministic (see ``policy_timesteps``)."""
    eta: float = 1.0
    """DDIM η of the policy (1 = DDPM posterior; must be > 0 for log-probabilities)."""
    lr: float = 2e-5
    """Adam learning rate."""
    clip_range: float = 1e-2
    """PPO clip range ε of the per-step ratio."""
    adv_clip: float = 5.0
    """Advantages are clipped to ±this after z-scoring."""
    per_condition: bool = False
    """Z-score rewards per condition (multitask, mixed) instead of over the whole batch."""
    inner_epochs: int = 1
    """Passes over each sampled batch."""
    train_batch: int = 512
    """Trajectories per gradient step (all their steps together); batch_size / train_batch updates per epoch
    (DDPO makes two)."""
    pretrain_weight: float = 0.0
    """λ of the pretraining ε-prediction loss on the digits training half added to the PPO loss."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip."""
    eval_samples: int = 1024
    """Samples for the before/after evaluation."""
    seed: int = 0
    """Seed of sampling and minibatch order."""

    def validate(self) -> DDPOConfig:
        check_choice("reward", self.reward, set(REWARDS))
        check_range("target_class", self.target_class, 0, 9)
        if not self.target_classes or any(not 0 <= c <= 9 for c in self.target_classes):
            raise ConfigError(f"target_classes must be digits 0-9, got {self.target_classes!r}")
        for name in ("epochs", "batch_size", "sample_steps", "group_size", "inner_epochs", "train_batch",
                     "eval_samples"):
            if not isinstance(getattr(self, name), int):
                raise ConfigError(f"{name} must be an integer, got {getattr(self, name)!r}")
        check_range("epochs", self.epochs, 0, 100_000)
        check_range("batch_size", self.batch_size, 2, 100_000)
        check_range("sample_steps", self.sample_steps, 3, 999)
        check_range("eta", self.eta, 1e-3, 10.0)
        check_range("lr", self.lr, 1e-8, 1.0)
        check_range("clip_range", self.clip_range, 1e-6, 1.0)
        check_range("adv_clip", self.adv_clip, 0.1, 1e6)
        check_range("inner_epochs", self.inner_epochs, 1, 100)
        check_range("train_batch", self.train_batch, 1, self.batch_size)
        check_range("pretrain_weight", self.pretrain_weight, 0.0, 1e6)
        check_range("max_grad_norm", self.max_grad_norm, 1e-6, 1e6)
        check_range("eval_samples", self.eval_samples, 16, 100_000)
        check_range("diversity_weight", self.diversity_weight, 0.0, 1e6)
        if self.reward == "diversity":
            if self.batch_size % self.group_size or self.eval_samples % self.group_size:
                raise ConfigError(f"group_size ({self.group_size}) must divide batch_size ({self.batch_size}) and "
                                  f"eval_samples ({self.eval_samples})")
            if len(self.target_classes) < 2:
                raise ConfigError("the diversity reward needs at least two target_classes")
        return self

    @property
    def conditional(self) -> bool:
        return self.reward in ("multitask", "mixed")


# ----------------------------------------------------------------------------------------------- rewards

def reward_fn(cfg: DDPOConfig, x0: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    """The run's reward of final samples x0 (N, 64) with conditions `cond` (N,) or None, (N,)."""
    if cfg.reward == "brightness":
        return rw.brightness(x0)
    if cfg.reward == "jpeg":
        return rw.jpeg_compressibility(x0)
    if cfg.reward == "mixed":
        return mixed_reward(x0, cond)
    from edgegen.gdm.metrics import digit_probs

    probs = digit_probs(x0)
    if cfg.reward == "class":
        return rw.class_prob(x0, [cfg.target_class], probs)
    if cfg.reward == "multitask":
        return probs.gather(1, cond.long()[:, None])[:, 0]
    target = rw.class_prob(x0, cfg.target_classes, probs)
    if cfg.reward == "class_set":
        return target
    return target + cfg.diversity_weight * rw.diversity_gain(probs, cfg.target_classes, cfg.group_size)


def mixed_reward(x0: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """The `mixed` reward: brightness for the conditions in MIXED_TASKS["brightness"], JPEG compressibility for
    those in MIXED_TASKS["jpeg"], (N,)."""
    r = torch.zeros(len(x0))
    for task, fn in (("brightness", rw.brightness), ("jpeg", rw.jpeg_compressibility)):
        m = torch.isin(cond, torch.tensor(MIXED_TASKS[task]))
        if m.any():
            r[m] = fn(x0[m])
    return r


def task_breakdown(cfg: DDPOConfig, x0: torch.Tensor, cond: torch.Tensor | None, r: torch.Tensor) -> dict:
    """Mean reward of each task of a `mixed` run given its rewards r (N,) ({} for the other rewards)."""
    if cfg.reward != "mixed":
        return {}
    return {f"reward_{task}": float(r[torch.isin(cond, torch.tensor(cs))].mean()) for task, cs in MIXED_TASKS.items()}


def task_reward(cfg: DDPOConfig, x0: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    """The task part of the reward, without the diversity bonus (what the before/after tables report)."""
    if cfg.reward == "diversity":
        return reward_fn(dataclasses.replace(cfg, reward="class_set"), x0, cond)
    return reward_fn(cfg, x0, cond)


def advantages(r: torch.Tensor, clip: float, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Z-scored rewards (over the batch, or within each value of `groups`), clipped to ±clip. A set of equal
    rewards gets advantage 0."""
    r = r.double()
    if groups is None:
        a = (r - r.mean()) / (r.std(unbiased=False) + 1e-8)
    else:
        a = torch.zeros_like(r)
        for g in torch.unique(groups):
            m = groups == g
            a[m] = (r[m] - r[m].mean()) / (r[m].std(unbiased=False) + 1e-8)
    return a.clamp(-clip, clip).float()


def ppo_clip_loss(logp_new: torch.Tensor, logp_old: torch.Tensor, adv: torch.Tensor,
                  clip_range: float) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped surrogate (Schulman et al. 2017) to minimise: mean of max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)),
    ρ = exp(log p_new − log p_old), elementwise over any shape; plus approx-KL ½·mean((Δ log p)²) and the share
    of clipped ratios."""
    ratio = torch.exp(logp_new - logp_old)
    loss = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - clip_range, 1 + clip_range)).mean()
    with torch.no_grad():
        diff = logp_new - logp_old
        stats = {"approx_kl": float(0.5 * (diff**2).mean()),
                 "clip_frac": float(((ratio - 1).abs() > clip_range).float().mean())}
    return loss, stats


# ---------------------------------------------------------------------------------------------- sampling

@dataclass
class Trajectories:
    """A batch of sampled trajectories: the states before and after every stochastic step and their log-probs."""

    x0: torch.Tensor
    """Final samples (B, 64) in [-1, 1]."""
    states: torch.Tensor
    """x_t before each stochastic step (B, K, 64), K = sample_steps − 2."""
    actions: torch.Tensor
    """x_{t_prev} after each stochastic step (B, K, 64)."""
    logprobs: torch.Tensor
    """log p_θold(action | state) (B, K)."""
    timesteps: list[int]
    """The K + 1 timesteps of the stochastic part: step k goes from timesteps[k] to timesteps[k + 1]."""
    cond: torch.Tensor | None
    """Conditions (B,) or None."""


def policy_timesteps(sched: Schedule, sample_steps: int) -> list[int]:
    """The sampler's timesteps: the DDIM stride from T−1 without its last entry t = 0, then −1 (clean data).

    The policy acts on every hop but the first and the last, which are deterministic (η = 0): at t = T−1 the
    cosine schedule's ᾱ is ≈ 0, so the first hop's x̂0 estimate, and with it the mean of a stochastic step, moves
    a lot with the weights; a hop into t = 0 would have σ of a few thousandths, an "action" with almost no noise
    whose log-probability explodes under any change of the mean (both measured: they dominated the approx-KL).
    The last hop jumps from the last stride point straight to clean data, as DDIM's final step does."""
    ts = ddim_timesteps(sched.num_steps, sample_steps + 1)
    return ts[:-1] + [-1]


def sample_trajectories(model, sched: Schedule, cfg: DDPOConfig, n: int, generator: torch.Generator,
                        cond: torch.Tensor | None = None) -> Trajectories:
    """n trajectories of the policy from fresh noise (no gradient): a deterministic first hop, `sample_steps` − 2
    stochastic η > 0 steps (the actions), a deterministic hop to clean data (``policy_timesteps``)."""
    ts = policy_timesteps(sched, cfg.sample_steps)
    x_T = torch.randn(n, 64, generator=generator)
    x = sample_loop(model, x_T, sched, ts[:2], 0.0, cond, clip_x0=1.0)
    trace = sample_loop(model, x, sched, ts[1:-1], cfg.eta, cond, generator, clip_x0=1.0, return_logprobs=True,
                        return_trajectory=True)
    x0 = sample_loop(model, trace.x, sched, ts[-2:], 0.0, cond, clip_x0=1.0)
    traj = torch.stack(trace.trajectory, 1)  # (n, K + 1, 64)
    return Trajectories(x0.clamp(-1, 1), traj[:, :-1], traj[:, 1:], trace.logprobs, ts[1:-1], cond)


def step_logprobs(model, sched: Schedule, cfg: DDPOConfig, states: torch.Tensor, actions: torch.Tensor,
                  timesteps: list[int], cond: torch.Tensor | None) -> torch.Tensor:
    """log p_θ(action | state) of every (trajectory, step) pair with the current weights, (B, K) (differentiable)."""
    b, k, d = states.shape
    t = torch.tensor(timesteps[:k]).repeat(b)
    t_prev = torch.tensor(timesteps[1:k + 1]).repeat(b)
    c = None if cond is None else cond.repeat_interleave(k)
    _, mean, std = ddim_step(model, states.reshape(b * k, d), t, t_prev, sched, cfg.eta, c, None, 1.0)
    return gaussian_logprob(actions.reshape(b * k, d), mean, std).reshape(b, k)


# --------------------------------------------------------------------------------------------- training

def evaluate(model, sched: Schedule, cfg: DDPOConfig, generator: torch.Generator) -> dict:
    """Task reward (mean), normalised class entropy and the samples themselves on `eval_samples` draws; for a
    conditional model also the mean p(c | x) of the conditions ("class_consistency") and, for `mixed`, each
    task's mean reward (``task_breakdown``)."""
    from edgegen.gdm.metrics import digit_probs

    cond = (torch.arange(cfg.eval_samples) % 10) if cfg.conditional else None
    x = sample_trajectories(model, sched, cfg, cfg.eval_samples, generator, cond).x0
    probs = digit_probs(x)
    r = task_reward(cfg, x, cond)
    out = {"reward": float(r.mean()), "class_entropy": rw.normalised_class_entropy(probs), "samples": x,
           "tasks": task_breakdown(cfg, x, cond, r)}
    if cond is not None:
        out["class_consistency"] = float(probs.gather(1, cond[:, None])[:, 0].mean())
    return out


def train_ddpo(model, sched: Schedule, cfg: DDPOConfig, pretrain_data: torch.Tensor | None = None,
               pretrain_labels: torch.Tensor | None = None, on_epoch=None, start_epoch: int = 0,
               optimizer: torch.optim.Optimizer | None = None) -> list[dict]:
    """Fine-tune `model` in place for epochs start_epoch … cfg.epochs − 1; returns one row per epoch (mean reward
    of the sampled batch, approx-KL, clip fraction, loss, wall). `on_epoch(epoch, row, optimizer)` is called after
    every epoch (checkpointing, progress)."""
    cfg.validate()
    if cfg.pretrain_weight > 0 and pretrain_data is None:
        raise ConfigError("pretrain_weight > 0 needs the pretraining data")
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=cfg.lr)
    rows = []
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        model.eval()
        cond = torch.randint(0, 10, (cfg.batch_size,), generator=gen) if cfg.conditional else None
        traj = sample_trajectories(model, sched, cfg, cfg.batch_size, gen, cond)
        r = reward_fn(cfg, traj.x0, cond)
        adv = advantages(r, cfg.adv_clip, cond if cfg.per_condition else None)
        model.train()
        stats = []
        for _ in range(cfg.inner_epochs):
            order = torch.randperm(cfg.batch_size, generator=gen)
            for i in range(0, cfg.batch_size, cfg.train_batch):
                idx = order[i:i + cfg.train_batch]
                c = None if cond is None else cond[idx]
                logp = step_logprobs(model, sched, cfg, traj.states[idx], traj.actions[idx], traj.timesteps, c)
                loss, st = ppo_clip_loss(logp, traj.logprobs[idx], adv[idx, None].expand_as(logp), cfg.clip_range)
                if cfg.pretrain_weight > 0:
                    j = torch.randint(0, len(pretrain_data), (64,), generator=gen)
                    y = None if pretrain_labels is None or not cfg.conditional else pretrain_labels[j]
                    loss = loss + cfg.pretrain_weight * ddpm_loss(model, pretrain_data[j], sched, y, gen)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                stats.append({**st, "loss": float(loss.detach())})
        model.eval()
        with torch.no_grad():  # how far the whole epoch's updates moved the policy on (part of) its own batch
            m = min(64, cfg.batch_size)
            lp = step_logprobs(model, sched, cfg, traj.states[:m], traj.actions[:m], traj.timesteps,
                               None if cond is None else cond[:m])
            epoch_kl = float(0.5 * ((lp - traj.logprobs[:m]) ** 2).mean())
        r_task = task_reward(cfg, traj.x0, cond)
        row = {"epoch": epoch + 1, "reward": float(r_task.mean()), "reward_total": float(r.mean()),
               **task_breakdown(cfg, traj.x0, cond, r_task),
               **{k: float(sum(s[k] for s in stats) / len(stats)) for k in ("clip_frac", "loss")},
               "approx_kl": per_update_kl(stats, epoch_kl), "approx_kl_max": max(s["approx_kl"] for s in stats),
               "approx_kl_epoch": epoch_kl,
               "epoch_wall_s": time.perf_counter() - t0}
        rows.append(row)
        if on_epoch is not None:
            on_epoch(epoch, row, optimizer)
    return rows


def per_update_kl(stats: list[dict], epoch_kl: float) -> float:
    """Approx-KL per update: the in-loop approx-KL of every minibatch but the first of the epoch (each measures
    how far the preceding updates moved the policy; the first is 0 by construction), or the whole epoch's KL when
    the epoch made a single update."""
    later = [s["approx_kl"] for s in stats[1:]]
    return float(sum(later) / len(later)) if later else epoch_kl


def first_reaching(rows: list[dict], key: str, threshold: float, wall_key: str = "wall_s") -> float:
    """The cumulative `wall_key` at the first row whose `key` is at least `threshold` (nan if none)."""
    for row in rows:
        if row[key] >= threshold:
            return float(row[wall_key])
    return math.nan
