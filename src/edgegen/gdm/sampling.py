"""Collaborative sampling at the edge: the edge runs the first t shared deterministic DDIM steps on a batch of
uploaded noises, the devices finish the remaining steps locally.

SS-Diff (IEEE IoT J. 2024, "secure and efficient collaborative sampling") and Du et al.'s distributed diffusion
(arXiv 2305.12040) split one DDIM chain of S steps: every device uploads its initial noise x_T^i, the edge batches
the N noises and runs the first t steps with the shared denoiser, returns x_{T-t}^i to each device, and each
device runs the last S - t steps alone. With η = 0 every step is a deterministic function of (x, t), so the split
changes where the work runs, not what is computed: collaborative output = full local sampling from the same x_T
(up to float round-off of batched vs single-row matrix products, which the tests bound). The edge also gets, for
free, the displacement d_i = ‖x_T^i − x_{T−t}^i‖₂ that `gdm/detect.py` uses to flag backdoor triggers.

Compute split: the edge evaluates the denoiser N·t times (in t batched forward passes), each device S − t times;
``compute_split`` reports both, in network evaluations (NFE) and in FLOPs at ≈ 2 FLOPs per parameter per
sample of a forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edgegen.config import ConfigError
from edgegen.gdm.ddpm import Denoiser, Schedule, ddim_timesteps, sample_loop

FORWARD_FLOPS_PER_PARAM = 2.0
"""Multiply-add FLOPs per parameter per sample of one forward pass of an MLP."""


def split_timesteps(num_train_steps: int, num_steps: int, shared_steps: int) -> tuple[list[int], list[int]]:
    """(edge timesteps, device timesteps) of a deterministic DDIM chain of `num_steps` steps whose first
    `shared_steps` run at the edge: the edge list goes from T-1 to the hand-over timestep, the device list from the
    hand-over timestep to -1 (clean data). Both lists share the hand-over entry; their step counts add up to
    `num_steps`. shared_steps = 0 gives an edge list of one entry (nothing to run at the edge)."""
    ts = ddim_timesteps(num_train_steps, num_steps) + [-1]
    if not isinstance(shared_steps, int) or not 0 <= shared_steps <= num_steps:
        raise ConfigError(f"shared_steps must be an integer in [0, {num_steps}] (the DDIM steps), got {shared_steps!r}")
    return ts[:shared_steps + 1], ts[shared_steps:]


@torch.no_grad()
def edge_denoise(model: Denoiser, x_T: torch.Tensor, sched: Schedule, num_steps: int, shared_steps: int,
                 clip_x0: float | None = 1.0, return_trajectory: bool = False):
    """The edge's part: the first `shared_steps` deterministic DDIM steps on the whole batch x_T (N, D).
    Returns x_{T-t} (N, D), or the list of the t+1 batch states [x_T, …, x_{T-t}] with `return_trajectory`."""
    edge_ts, _ = split_timesteps(sched.num_steps, num_steps, shared_steps)
    if len(edge_ts) == 1:
        return [x_T] if return_trajectory else x_T
    out = sample_loop(model, x_T, sched, edge_ts, 0.0, clip_x0=clip_x0, return_trajectory=return_trajectory)
    return out.trajectory if return_trajectory else out


@torch.no_grad()
def device_complete(model: Denoiser, x_mid: torch.Tensor, sched: Schedule, num_steps: int, shared_steps: int,
                    clip_x0: float | None = 1.0) -> torch.Tensor:
    """A device's part: the last num_steps - shared_steps DDIM steps from the hand-over state x_{T-t} (n, D) to
    clean samples, clamped to [-1, 1] like ``train.generate``."""
    _, device_ts = split_timesteps(sched.num_steps, num_steps, shared_steps)
    return sample_loop(model, x_mid, sched, device_ts, 0.0, clip_x0=clip_x0).clamp(-1, 1)


def local_sample(model: Denoiser, x_T: torch.Tensor, sched: Schedule, num_steps: int,
                 clip_x0: float | None = 1.0) -> torch.Tensor:
    """Full local deterministic DDIM sampling (the reference the collaborative result must equal)."""
    return device_complete(model, x_T, sched, num_steps, 0, clip_x0)


@dataclass
class CollabResult:
    """One collaborative sampling round: final samples, hand-over states and the edge's displacements."""

    x0: torch.Tensor
    """Final samples (N, D) in [-1, 1]."""
    x_mid: torch.Tensor
    """Hand-over states x_{T-t} (N, D) the edge returns to the devices."""
    displacement: torch.Tensor
    """d_i = ‖x_T^i − x_{T−t}^i‖₂, shape (N,), float64."""
    split: dict
    """``compute_split`` of the round."""


def displacement(x_T: torch.Tensor, x_mid: torch.Tensor) -> torch.Tensor:
    """SS-Diff's statistic d_i = ‖x_T^i − x_{T−t}^i‖₂ per row, float64 (N,)."""
    return (x_T.double() - x_mid.double()).reshape(len(x_T), -1).norm(dim=1)


def collaborative_sample(model: Denoiser, x_T: torch.Tensor, sched: Schedule, num_steps: int, shared_steps: int,
                         clip_x0: float | None = 1.0, device_batch: int | None = None) -> CollabResult:
    """The edge denoises the uploaded batch x_T (N, D) for `shared_steps` steps; each device then completes its own
    row. `device_batch` = 1 completes row by row as separate devices would (slow, exact per-device arithmetic);
    None completes the whole batch at once (what the bench uses: the same maths, vectorised)."""
    x_mid = edge_denoise(model, x_T, sched, num_steps, shared_steps, clip_x0)
    if device_batch is None:
        x0 = device_complete(model, x_mid, sched, num_steps, shared_steps, clip_x0)
    else:
        x0 = torch.cat([device_complete(model, x_mid[i:i + device_batch], sched, num_steps, shared_steps, clip_x0)
                        for i in range(0, len(x_mid), device_batch)])
    params = sum(p.numel() for p in model.parameters()) if isinstance(model, torch.nn.Module) else 0
    return CollabResult(x0, x_mid, displacement(x_T, x_mid), compute_split(len(x_T), num_steps, shared_steps, params))


def compute_split(batch: int, num_steps: int, shared_steps: int, params: int = 0) -> dict[str, float]:
    """Who computes what in one collaborative round of `batch` devices: denoiser evaluations (NFE) at the edge
    (batch·t, in t batched passes) and per device (S − t), the edge's share of all evaluations (t / S), and FLOPs
    at FORWARD_FLOPS_PER_PARAM·params per evaluation (0 when params is unknown)."""
    if not 0 <= shared_steps <= num_steps:
        raise ConfigError(f"shared_steps must be in [0, {num_steps}], got {shared_steps!r}")
    per_nfe = FORWARD_FLOPS_PER_PARAM * params
    edge_nfe, device_nfe = batch * shared_steps, num_steps - shared_steps
    return {"batch": batch, "num_steps": num_steps, "shared_steps": shared_steps, "edge_nfe": edge_nfe,
            "edge_batched_passes": shared_steps, "device_nfe_each": device_nfe, "local_only_nfe_each": num_steps,
            "edge_share": shared_steps / num_steps, "edge_flops": edge_nfe * per_nfe,
            "device_flops_each": device_nfe * per_nfe, "device_flops_saved_each": shared_steps * per_nfe}
