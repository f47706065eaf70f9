"""DDPM / DDIM maths on tensors: noise schedules, forward noising, the ε-prediction loss and samplers.

Conventions (used by every gdm module):

- Timesteps are integers ``t ∈ {0, …, T-1}``; ``alpha_bars[t] = ∏_{s≤t} (1 - betas[s])`` and
  ``x_t = √ᾱ_t·x0 + √(1-ᾱ_t)·ε`` (Ho et al. 2020, eq. 4). The pseudo-timestep ``-1`` is the clean data (ᾱ = 1).
- A denoiser is any callable ``model(x_t, t, cond) -> ε̂`` with ``x_t`` of shape (B, …), ``t`` a LongTensor (B,)
  and ``cond`` None or a LongTensor (B,) of class labels.
- One sampler step goes from timestep ``t`` to an earlier ``t_prev`` (DDIM, Song et al. 2021, eq. 12):
  ``x_prev = √ᾱ_prev·x̂0 + √(1-ᾱ_prev-σ²)·ε̂ + σ·z`` with
  ``σ = η·√((1-ᾱ_prev)/(1-ᾱ_t))·√(1-ᾱ_t/ᾱ_prev)``. η = 0 is deterministic DDIM; η = 1 over every timestep is
  exactly ancestral DDPM with the posterior variance β̃_t. So every step is a Gaussian policy
  N(x_prev; mean, σ²I) whose log-probability DDPO (Black et al. 2023) needs; the final step to ``-1`` has σ = 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from edgegen.config import ConfigError, check_choice

Denoiser = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


@dataclass(frozen=True)
class Schedule:
    """A noise schedule of T steps (float32 tensors of shape (T,))."""

    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bars: torch.Tensor

    @property
    def num_steps(self) -> int:
        return int(self.betas.shape[0])


def make_schedule(num_steps: int = 1000, kind: str = "cosine", beta_start: float = 1e-4,
                  beta_end: float = 0.02) -> Schedule:
    """The ``linear`` schedule of Ho et al. 2020 (β from 1e-4 to 0.02 at T = 1000, both scaled by 1000/T for other
    T as in Nichol & Dhariwal 2021) or their ``cosine`` schedule ᾱ(t) = f(t)/f(0), f(t) = cos²((t/T+s)/(1+s)·π/2),
    s = 0.008, with β clipped to 0.999."""
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ConfigError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    check_choice("kind", kind, {"cosine", "linear"})
    if kind == "linear":
        scale = 1000.0 / num_steps
        betas = torch.linspace(beta_start * scale, min(beta_end * scale, 0.999), num_steps, dtype=torch.float64)
    else:
        s = 0.008
        steps = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    alphas = 1 - betas
    return Schedule(betas.float(), alphas.float(), torch.cumprod(alphas, 0).float())


def _at(values: torch.Tensor, t: int | torch.Tensor, like: torch.Tensor, at_minus_one: float = 1.0) -> torch.Tensor:
    """values[t] shaped to broadcast against `like` (B, …); t = -1 gives `at_minus_one`."""
    t = torch.as_tensor(t, dtype=torch.long)
    out = torch.where(t < 0, torch.tensor(at_minus_one, dtype=values.dtype), values[t.clamp(min=0)])
    if out.dim() == 0:
        return out.to(like.dtype)
    return out.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def _t_batch(t: int | torch.Tensor, batch: int) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.long)
    return t.expand(batch) if t.dim() == 0 else t


def q_sample(x0: torch.Tensor, t: int | torch.Tensor, noise: torch.Tensor, sched: Schedule) -> torch.Tensor:
    """Forward noising x_t = √ᾱ_t·x0 + √(1-ᾱ_t)·noise; `t` an int or a LongTensor (B,)."""
    ab = _at(sched.alpha_bars, t, x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def ddpm_loss(model: Denoiser, x0: torch.Tensor, sched: Schedule, cond: torch.Tensor | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """The simplified ε-prediction loss E_{t,ε}‖ε - ε̂(x_t, t)‖² (Ho et al. 2020, eq. 14), t ~ U{0..T-1},
    averaged over batch and dimensions (a scalar)."""
    t = torch.randint(0, sched.num_steps, (x0.shape[0],), generator=generator)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    return torch.mean((model(q_sample(x0, t, noise, sched), t, cond) - noise) ** 2)


def gaussian_logprob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor | float) -> torch.Tensor:
    """log N(x; mean, std²I) summed over all but the batch dimension: shape (B,). Requires std > 0."""
    std = torch.as_tensor(std, dtype=x.dtype)
    per = -((x - mean) ** 2) / (2 * std**2) - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return per.expand_as(x).reshape(x.shape[0], -1).sum(1)


def ddim_step(model: Denoiser, x_t: torch.Tensor, t: int | torch.Tensor, t_prev: int | torch.Tensor, sched: Schedule,
              eta: float = 0.0, cond: torch.Tensor | None = None, noise: torch.Tensor | None = None,
              clip_x0: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step x_t → x_{t_prev} (t_prev < t, -1 = clean data): returns (x_prev, mean, std), x_prev = mean + std·noise
    (noise None: x_prev = mean). `t`, `t_prev` are ints or LongTensors (B,); std has shape (B, 1, …) or ().
    `clip_x0` clamps the predicted x̂0 to [-clip_x0, clip_x0] (and re-derives ε̂ from it) as DDPM/DDIM code does
    for data in [-1, 1]. Differentiable w.r.t. the model parameters (recompute PPO log-probs with this)."""
    ab_t, ab_prev = _at(sched.alpha_bars, t, x_t), _at(sched.alpha_bars, t_prev, x_t)
    eps = model(x_t, _t_batch(t, x_t.shape[0]), cond)
    x0 = (x_t - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)
        eps = (x_t - ab_t.sqrt() * x0) / (1 - ab_t).sqrt()
    std = eta * ((1 - ab_prev) / (1 - ab_t)).sqrt() * (1 - ab_t / ab_prev).clamp(min=0).sqrt()
    mean = ab_prev.sqrt() * x0 + (1 - ab_prev - std**2).clamp(min=0).sqrt() * eps
    x_prev = mean if noise is None else mean + std * noise
    return x_prev, mean, std


def ddim_timesteps(num_train_steps: int, num_steps: int) -> list[int]:
    """`num_steps` timesteps evenly spaced over [0, T-1], descending, starting at T-1 (any stride)."""
    if not 1 <= num_steps <= num_train_steps:
        raise ConfigError(f"num_steps must be in [1, {num_train_steps}] (the schedule's T), got {num_steps!r}")
    if num_steps == 1:
        return [num_train_steps - 1]
    return [round(i * (num_train_steps - 1) / (num_steps - 1)) for i in range(num_steps - 1, -1, -1)]


@dataclass
class SampleTrace:
    """A sampler run: final x, per-step log p(x_{t_prev} | x_t) of shape (B, S) (0 for deterministic steps, σ = 0),
    trajectory [x at timesteps[0], …, x at timesteps[-1]] (S+1 tensors) and the timesteps visited."""

    x: torch.Tensor
    logprobs: torch.Tensor | None
    trajectory: list[torch.Tensor] | None
    timesteps: list[int]


@torch.no_grad()
def sample_loop(model: Denoiser, x: torch.Tensor, sched: Schedule, timesteps: Sequence[int], eta: float = 0.0,
                cond: torch.Tensor | None = None, generator: torch.Generator | None = None,
                clip_x0: float | None = None, return_logprobs: bool = False,
                return_trajectory: bool = False) -> torch.Tensor | SampleTrace:
    """Run the DDIM/DDPM chain from `x` at timesteps[0] through every later entry of the strictly decreasing
    `timesteps` (its last entry -1 yields clean samples; stop earlier for partial denoising and continue later with
    the rest of the list, e.g. collaborative sampling across devices). Returns the final x, or a SampleTrace when
    `return_logprobs` or `return_trajectory`."""
    ts = [int(t) for t in timesteps]
    if len(ts) < 1 or any(b >= a for a, b in zip(ts, ts[1:], strict=False)) or ts[-1] < -1 or ts[0] >= sched.num_steps:
        raise ConfigError(f"timesteps must be strictly decreasing within [-1, {sched.num_steps - 1}], got {ts}")
    if eta < 0:
        raise ConfigError(f"eta must be >= 0, got {eta!r}")
    logps, traj = [], [x]
    for t, t_prev in zip(ts, ts[1:], strict=False):
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype) if eta > 0 and t_prev >= 0 else None
        x_new, mean, std = ddim_step(model, x, t, t_prev, sched, eta, cond, z, clip_x0)
        if return_logprobs:
            positive = bool(torch.all(torch.as_tensor(std) > 0))
            logps.append(gaussian_logprob(x_new, mean, std) if positive else torch.zeros(x.shape[0]))
        x = x_new
        if return_trajectory:
            traj.append(x)
    if not (return_logprobs or return_trajectory):
        return x
    logprobs = torch.stack(logps, 1) if return_logprobs and logps else (torch.zeros(x.shape[0], 0)
                                                                        if return_logprobs else None)
    return SampleTrace(x, logprobs, traj if return_trajectory else None, ts)


def ddim_sample(model: Denoiser, x_T: torch.Tensor, sched: Schedule, num_steps: int = 50, eta: float = 0.0,
                cond: torch.Tensor | None = None, generator: torch.Generator | None = None,
                clip_x0: float | None = None, return_logprobs: bool = False,
                return_trajectory: bool = False) -> torch.Tensor | SampleTrace:
    """DDIM sampling from an explicit x_T over `num_steps` evenly strided timesteps (ddim_timesteps) down to clean
    data; η = 0 deterministic, η = 1 stochastic (per-step log-probs with `return_logprobs`)."""
    ts = ddim_timesteps(sched.num_steps, num_steps) + [-1]
    return sample_loop(model, x_T, sched, ts, eta, cond, generator, clip_x0, return_logprobs, return_trajectory)


def ddpm_sample(model: Denoiser, x_T: torch.Tensor, sched: Schedule, cond: torch.Tensor | None = None,
                generator: torch.Generator | None = None, clip_x0: float | None = None,
                return_logprobs: bool = False, return_trajectory: bool = False) -> torch.Tensor | SampleTrace:
    """Ancestral DDPM sampling (Ho et al. 2020, Algorithm 2, σ_t² = β̃_t) over all T steps from an explicit x_T."""
    ts = list(range(sched.num_steps - 1, -1, -1)) + [-1]
    return sample_loop(model, x_T, sched, ts, 1.0, cond, generator, clip_x0, return_logprobs, return_trajectory)
