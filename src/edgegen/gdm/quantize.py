"""Unbiased stochastic quantization of model tensors, its error bound and its payload (uplink bits).

The quantizer of SS-Diff ("Securing Federated Diffusion Model With Dynamic Quantization for Generative AI Services
in Multiple-Access AIoT", IEEE IoT J. 2024) and of arXiv 2403.04430 ("On-demand Quantization for Green Federated
Generative Diffusion in Mobile Edge Networks"): each tensor w with S entries is mapped onto Q evenly spaced levels
spanning its own range [lo, hi] = [min w, max w],

    g_k = lo + k·Δ,  k = 0, …, Q-1,  Δ = (hi - lo) / (Q - 1),

and every entry is rounded *at random* to one of its two neighbouring levels: with u = (w - lo)/Δ and
p = u - ⌊u⌋, ŵ = g_⌊u⌋ with probability 1-p and g_⌊u⌋+1 with probability p. Hence

    E[ŵ] = w                                 (unbiased: (1-p)·⌊u⌋ + p·(⌊u⌋+1) = u)
    E‖w - ŵ‖² = Δ²·Σ_i p_i(1 - p_i)          (exact; ``error_variance``)
              ≤ S·Δ²/4 = S·(hi - lo)² / (4·(Q - 1)²)   (``error_bound``, since p(1-p) ≤ 1/4)

which is the papers' E‖w - ŵ‖² ≤ δ/(2Q²)-type bound with δ = S·(hi-lo)²/2 and Q-1 intervals in place of Q. The
bound is tight when every entry sits half-way between two levels.

Payload: the receiver needs each entry's level index (⌈log2 Q⌉ bits) and the tensor's (lo, hi) as two float32, so
a tensor costs S·⌈log2 Q⌉ + 64 bits (``payload_bits``), against 32·S bits in full precision. Because the bits
depend on Q only through ⌈log2 Q⌉, Q = 2^b is the best level count for b bits (``levels_for_error`` returns one).

Pure torch maths on tensors; randomness comes only from the explicit ``torch.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

FLOAT_BITS = 32
"""Bits of one full-precision (float32) value: the fp32 payload per entry and the cost of lo and hi."""
RANGE_BITS = 2 * FLOAT_BITS
"""Side information per quantized tensor: its (lo, hi) range as two float32."""
MAX_LEVELS = 2**16
"""Largest supported level count (16-bit indices)."""


def _check_levels(levels: int) -> int:
    if isinstance(levels, bool) or not isinstance(levels, int) or not 2 <= levels <= MAX_LEVELS:
        raise ValueError(f"levels must be an integer in [2, {MAX_LEVELS}], got {levels!r}")
    return levels


def bits_per_entry(levels: int) -> int:
    """⌈log2 Q⌉: bits of one level index."""
    return math.ceil(math.log2(_check_levels(levels)))


def _grid(x: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lo, step Δ, position u = (x - lo)/Δ) of a tensor; a constant tensor gets Δ = 0 and u = 0."""
    lo, hi = x.min(), x.max()
    step = (hi - lo) / (levels - 1)
    u = torch.where(step > 0, (x - lo) / torch.where(step > 0, step, torch.ones_like(step)), torch.zeros_like(x))
    return lo, step, u


def quantize(x: torch.Tensor, levels: int, generator: torch.Generator) -> tuple[torch.Tensor, float, float]:
    """Stochastic quantization of one tensor onto ``levels`` levels over its [min, max].

    Returns (indices int64 of x's shape in 0..levels-1, lo, hi); ``dequantize`` maps them back."""
    _check_levels(levels)
    if x.numel() == 0:
        raise ValueError("cannot quantize an empty tensor")
    x = x.detach().to(torch.float64)
    lo, step, u = _grid(x, levels)
    floor = torch.floor(u)
    up = torch.rand(x.shape, generator=generator, dtype=torch.float64) < (u - floor)
    idx = (floor + up.to(torch.float64)).clamp_(0, levels - 1).to(torch.int64)
    return idx, float(lo), float(lo + step * (levels - 1))


def dequantize(indices: torch.Tensor, lo: float, hi: float, levels: int, dtype: torch.dtype = torch.float32
               ) -> torch.Tensor:
    """ŵ = lo + k·(hi - lo)/(Q - 1) for level indices k."""
    _check_levels(levels)
    step = (hi - lo) / (levels - 1)
    return (lo + indices.to(torch.float64) * step).to(dtype)


def quantize_dequantize(x: torch.Tensor, levels: int, generator: torch.Generator) -> torch.Tensor:
    """ŵ = L(w): what the receiver reconstructs (same dtype and shape as x)."""
    idx, lo, hi = quantize(x, levels, generator)
    return dequantize(idx, lo, hi, levels, x.dtype)


def error_variance(x: torch.Tensor, levels: int) -> float:
    """Exact E‖w - ŵ‖² = Δ²·Σ p_i(1 - p_i) of quantizing x (p_i: fractional position of entry i)."""
    _check_levels(levels)
    x = x.detach().to(torch.float64)
    _, step, u = _grid(x, levels)
    p = u - torch.floor(u)
    return float(step**2 * (p * (1 - p)).sum())


def error_bound(numel: int, value_range: float, levels: int) -> float:
    """Worst case S·(hi - lo)²/(4·(Q - 1)²) of E‖w - ŵ‖² for a tensor of S entries spanning ``value_range``."""
    _check_levels(levels)
    return numel * value_range**2 / (4.0 * (levels - 1) ** 2)


def payload_bits(numel: int, levels: int | None) -> int:
    """Uplink bits of one tensor: S·⌈log2 Q⌉ + 64 (its float32 lo and hi); ``levels=None`` is full precision,
    32·S bits."""
    if levels is None:
        return FLOAT_BITS * numel
    return numel * bits_per_entry(levels) + RANGE_BITS


def state_payload_bits(tensors: Mapping[str, torch.Tensor], levels: int | None) -> int:
    """Uplink bits of a dict of tensors, each quantized on its own (``payload_bits`` summed)."""
    return sum(payload_bits(t.numel(), levels) for t in tensors.values())


def quantize_state(tensors: Mapping[str, torch.Tensor], levels: int | None, generator: torch.Generator
                   ) -> tuple[dict[str, torch.Tensor], int]:
    """Quantize every tensor of a dict on its own range (None: full precision, returned as copies).

    Returns (the dequantized tensors the receiver sees, uplink bits)."""
    if levels is None:
        return {k: v.detach().clone() for k, v in tensors.items()}, state_payload_bits(tensors, None)
    out = {k: quantize_dequantize(v, levels, generator) for k, v in tensors.items()}
    return out, state_payload_bits(tensors, levels)


def state_error_bound(tensors: Mapping[str, torch.Tensor], levels: int) -> float:
    """Σ over tensors of ``error_bound``: the worst-case E‖w - ŵ‖² of ``quantize_state`` at ``levels``."""
    return sum(error_bound(t.numel(), float(t.max() - t.min()), levels) for t in tensors.values())


def levels_for_error(tensors: Mapping[str, torch.Tensor], max_error: float, min_levels: int = 2,
                     max_levels: int = MAX_LEVELS) -> int:
    """Smallest Q = 2^b in [min_levels, max_levels] whose bound ``state_error_bound`` is ≤ ``max_error``
    (on-demand quantization: a device's accuracy demand fixes its level). Returns max_levels when even that
    is not enough.

    Σ_t S_t·r_t²/(4(Q-1)²) ≤ ε  ⇔  Q ≥ 1 + √(Σ_t S_t·r_t² / (4ε)); the count is then rounded up to a power of
    two, which costs no extra bit."""
    _check_levels(min_levels)
    _check_levels(max_levels)
    if min_levels > max_levels:
        raise ValueError(f"min_levels ({min_levels}) must be <= max_levels ({max_levels})")
    if not max_error > 0:
        raise ValueError(f"max_error must be > 0, got {max_error!r}")
    delta = sum(t.numel() * float(t.max() - t.min()) ** 2 for t in tensors.values())
    need = 1.0 + math.sqrt(delta / (4.0 * max_error))
    levels = max(min_levels, 2 ** math.ceil(math.log2(max(need, 2.0))))
    return min(levels, max_levels)
