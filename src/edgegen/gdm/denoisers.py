"""ε-prediction denoisers for flat data (8×8 digits = 64 dims): a residual MLP with a sinusoidal time embedding
and an optional class-conditional embedding (with a null class for classifier-free guidance)."""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al. 2017, as in Ho et al. 2020): (B,) → (B, dim),
    first half cos(t·ω_i), second half sin(t·ω_i), ω_i = max_period^(-i/(dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return torch.nn.functional.pad(emb, (0, dim % 2))


class _Block(nn.Module):
    def __init__(self, hidden: int, dropout: float):
        super().__init__()
        self.norm1, self.fc1 = nn.LayerNorm(hidden), nn.Linear(hidden, hidden)
        self.emb = nn.Linear(hidden, hidden)
        self.norm2, self.fc2 = nn.LayerNorm(hidden), nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(dropout)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        z = self.fc1(nn.functional.silu(self.norm1(h))) + self.emb(e)
        return h + self.fc2(self.drop(nn.functional.silu(self.norm2(z))))


class ResidualMLP(nn.Module):
    """model(x_t, t, cond=None) → ε̂ for x_t of shape (B, data_dim).

    Pre-norm residual blocks (LayerNorm → SiLU → Linear, + time/class embedding, → SiLU → Linear, zero-initialised
    so each block starts as the identity). With `num_classes`, labels 0..num_classes-1 are embedded and label
    `num_classes` (or cond=None) is the null class used for classifier-free guidance (Ho & Salimans 2022)."""

    def __init__(self, data_dim: int = 64, hidden: int = 256, blocks: int = 3, num_classes: int | None = None,
                 time_dim: int = 128, dropout: float = 0.0):
        super().__init__()
        self._config = {"data_dim": data_dim, "hidden": hidden, "blocks": blocks, "num_classes": num_classes,
                        "time_dim": time_dim, "dropout": dropout}
        self.data_dim, self.num_classes, self.time_dim = data_dim, num_classes, time_dim
        self.inp = nn.Linear(data_dim, hidden)
        self.time = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.label = nn.Embedding(num_classes + 1, hidden) if num_classes else None
        self.blocks = nn.ModuleList(_Block(hidden, dropout) for _ in range(blocks))
        self.out_norm, self.out = nn.LayerNorm(hidden), nn.Linear(hidden, data_dim)

    def config(self) -> dict:
        """Constructor kwargs (JSON-friendly): ResidualMLP(**model.config()) rebuilds the architecture."""
        return dict(self._config)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        e = self.time(timestep_embedding(t, self.time_dim))
        if self.label is not None:
            if cond is None:
                cond = torch.full((x_t.shape[0],), self.num_classes, dtype=torch.long)
            e = e + self.label(cond)
        e = nn.functional.silu(e)
        h = self.inp(x_t)
        for block in self.blocks:
            h = block(h, e)
        return self.out(nn.functional.silu(self.out_norm(h)))


def guided(model: ResidualMLP, scale: float):
    """Classifier-free guidance (Ho & Salimans 2022): ε̃ = (1+w)·ε̂(x, c) − w·ε̂(x, ∅) with w = `scale`
    (w = 0 is the plain conditional model). Returns a denoiser callable for the samplers."""

    def denoiser(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is None or scale == 0:
            return model(x_t, t, cond)
        eps_c, eps_u = model(torch.cat([x_t, x_t]), torch.cat([t, t]),
                             torch.cat([cond, torch.full_like(cond, model.num_classes)])).chunk(2)
        return (1 + scale) * eps_c - scale * eps_u

    return denoiser
