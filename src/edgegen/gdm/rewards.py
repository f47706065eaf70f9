"""Offline rewards for RL fine-tuning of the digits DDPM (DDPO, ``gdm/ddpo.py``).

Every reward takes a batch of samples x (N, 64) in [-1, 1] (8×8 digits, as ``train.generate`` returns them) and
returns one float per sample (N,), higher is better. They are real functions of the image, computed here without
any download:

- ``class_prob``: the probability the digits classifier of ``metrics`` gives to a target class, or the summed
  probability of a set of classes (DDPO's "aesthetic"/prompt-alignment rewards are model scores of this kind);
- ``brightness``: mean intensity mapped to [0, 1];
- ``jpeg_compressibility``: minus the JPEG size in kB of the image (Pillow, quality 75, upscaled 4× so the
  encoder's 8×8 blocks see structure), DDPO's compressibility reward (Black et al., arXiv 2305.13301);
- ``diversity_gain``: a *distribution-level* reward computed over a group of samples (Zhang et al., arXiv
  2401.12244, section on distribution-level rewards): the entropy of the group's soft class histogram over the
  target classes, credited to each member by its marginal contribution (the group's entropy minus the entropy
  without that member, a difference reward), so a sample of a class the group lacks earns more than a sample of
  a class the group already has. Several groups per update keep the normalised advantages informative.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import torch

from edgegen.config import ConfigError


def _check_batch(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.ndim != 2 or x.shape[1] != 64:
        raise ConfigError(f"rewards expect digit samples of shape (N, 64), got {tuple(x.shape)}")
    return x


def class_prob(x: torch.Tensor, classes: Sequence[int], probs: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_{c ∈ classes} p(c | x) under the digits classifier, (N,). `probs` (N, 10) skips the classifier call."""
    if not classes or any(not 0 <= int(c) <= 9 for c in classes):
        raise ConfigError(f"classes must be digits 0-9, got {list(classes)!r}")
    if probs is None:
        from edgegen.gdm.metrics import digit_probs

        probs = digit_probs(_check_batch(x))
    return probs[:, [int(c) for c in classes]].sum(1)


def brightness(x: torch.Tensor) -> torch.Tensor:
    """Mean pixel intensity mapped from [-1, 1] to [0, 1], (N,)."""
    return (_check_batch(x).mean(1) + 1) / 2


def jpeg_kb(x: torch.Tensor, quality: int = 75, upscale: int = 4) -> torch.Tensor:
    """JPEG size in kB of each sample as an 8-bit grey image upscaled `upscale`× (nearest), (N,)."""
    from PIL import Image

    x = _check_batch(x)
    pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).reshape(-1, 8, 8).numpy()
    sizes = []
    for img in pixels:
        buf = io.BytesIO()
        Image.fromarray(np.kron(img, np.ones((upscale, upscale), np.uint8))).save(buf, format="JPEG", quality=quality)
        sizes.append(buf.tell() / 1000)
    return torch.tensor(sizes, dtype=torch.float32)


def jpeg_compressibility(x: torch.Tensor) -> torch.Tensor:
    """−JPEG size in kB (DDPO's compressibility reward), (N,)."""
    return -jpeg_kb(x)


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats of probability vectors along the last dimension (0·log 0 = 0)."""
    p = p.clamp(min=0)
    return -(p * torch.where(p > 0, p.log(), torch.zeros_like(p))).sum(-1)


def diversity_gain(probs: torch.Tensor, classes: Sequence[int], group_size: int) -> torch.Tensor:
    """Per-sample marginal contribution to its group's class entropy, normalised by log |classes|, (N,).

    The N samples are split into consecutive groups of `group_size` (N must be a multiple). For a group G with soft
    histogram h_G = mean_{j ∈ G} q_j, where q_j is sample j's class distribution restricted to `classes` and
    renormalised, member i earns (H(h_G) − H(h_{G∖i})) · |G| / log |classes|: positive when it adds a class the
    others lack. The group sum of these rewards is not H(h_G) itself, but each one moves with it."""
    n = probs.shape[0]
    if group_size < 2 or n % group_size:
        raise ConfigError(f"group_size must be >= 2 and divide the batch ({n}), got {group_size!r}")
    if len(classes) < 2:
        raise ConfigError("the diversity reward needs at least two target classes")
    q = probs[:, [int(c) for c in classes]]
    q = q / q.sum(1, keepdim=True).clamp(min=1e-12)
    q = q.reshape(n // group_size, group_size, -1)
    total = q.sum(1, keepdim=True)
    h_all = entropy(total / group_size)  # (groups, 1)
    h_without = entropy((total - q) / (group_size - 1))  # (groups, G)
    return ((h_all - h_without) * group_size / math.log(len(classes))).reshape(n)


def normalised_class_entropy(probs: torch.Tensor) -> float:
    """Entropy of the predicted-class histogram (argmax of each row of `probs` (N, 10)) divided by log 10:
    1 for a uniform spread over the ten digits, 0 when every sample is the same digit."""
    hist = torch.bincount(probs.argmax(1), minlength=probs.shape[1]).double()
    return float(entropy(hist / hist.sum()) / math.log(probs.shape[1])) + 0.0  # + 0.0 turns −0.0 into 0.0
