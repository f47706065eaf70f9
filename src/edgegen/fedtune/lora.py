"""Heterogeneous-rank LoRA aggregation maths on plain torch tensors.

A LoRA adapter on a layer W (d_out × d_in) is the update ``scale · B @ A`` with B (d_out × r) and
A (r × d_in). Device k trains rank r_k; the server combines the K clients' factors in one of the ways
below and sends every device an adapter of its own rank back.

* :func:`aggregate_zero_pad` — HetLoRA (Cho et al., 2024): zero-pad every factor to r_max and take the
  weighted average; device k receives the truncation ``B̄[:, :r_k]``, ``Ā[:r_k, :]`` (:func:`truncate`).
  Weights are usually data sizes (:func:`data_size_weights`) or ∝ ‖B_k A_k‖_F (:func:`frobenius_weights`).
* :func:`aggregate_slice_normalised` — as zero-padding, but rank slice j is averaged only over the
  clients that own it (r_k > j), so high-rank slices are not shrunk by the low-rank clients' zeros.
* :func:`flora_stack` — FLoRA (NeurIPS 2024): stacking is exact, ``B_stack @ A_stack = Σ w_k B_k A_k``,
  but every client downloads the whole stack of rank Σ r_k.
* :func:`flexlora_redistribute` — FlexLoRA: truncated SVD of ``Σ w_k B_k A_k`` at each client's rank.
* FedIT (same rank for everybody) is :func:`aggregate_zero_pad` with equal ranks.

Averaging the factors separately is not averaging the products, ``mean(B) @ mean(A) ≠ mean(B @ A)``;
:func:`aggregation_error` measures that gap. Every aggregation normalises its ``weights`` to sum to 1.

Scale convention: PEFT-style LoRA multiplies the update by ``lora_alpha / r`` (:func:`lora_scale`). With a
fixed alpha, zero-padding a rank-r_k adapter to r_max would change its scale from alpha/r_k to alpha/r_max,
so padded and truncated factors would no longer mean the same update. edgegen sets ``lora_alpha = r`` on
every device, which makes the scale 1 at every rank; the functions here therefore work on unscaled factors.

Payload sizes (:func:`payload_bytes` and the uplink/downlink helpers) count the LoRA parameters
``r · (d_out + d_in)`` per layer times ``bytes_per_param``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "aggregate_slice_normalised",
    "aggregate_zero_pad",
    "aggregation_error",
    "data_size_weights",
    "delta_weight",
    "downlink_bytes_flexlora",
    "downlink_bytes_flora",
    "downlink_bytes_zero_pad",
    "flexlora_redistribute",
    "flora_stack",
    "frobenius_weights",
    "lora_params",
    "lora_scale",
    "payload_bytes",
    "svd_factors",
    "truncate",
    "uplink_bytes",
    "weighted_product",
    "zero_pad",
]

Factors = tuple[torch.Tensor, torch.Tensor]
LayerDims = Sequence[tuple[int, int]]


# --------------------------------------------------------------------------- validation helpers


def _check_pair(B: torch.Tensor, A: torch.Tensor, name: str = "B, A") -> int:
    """Check that B (d_out × r) and A (r × d_in) are 2-D with matching rank; return r."""
    if B.ndim != 2:
        raise ValueError(f"B must be 2-D (d_out, r), got shape {tuple(B.shape)} for {name}")
    if A.ndim != 2:
        raise ValueError(f"A must be 2-D (r, d_in), got shape {tuple(A.shape)} for {name}")
    if B.shape[1] != A.shape[0]:
        raise ValueError(
            f"B and A ranks differ for {name}: B is {tuple(B.shape)}, A is {tuple(A.shape)} "
            "(need B.shape[1] == A.shape[0])"
        )
    return int(B.shape[1])


def _check_clients(Bs: Sequence[torch.Tensor], As: Sequence[torch.Tensor]) -> list[int]:
    """Check K ≥ 1 clients with common (d_out, d_in); return their ranks."""
    if len(Bs) == 0:
        raise ValueError("Bs must hold at least one client's B factor, got an empty sequence")
    if len(Bs) != len(As):
        raise ValueError(f"Bs and As must have the same length, got {len(Bs)} and {len(As)}")
    ranks = [_check_pair(B, A, f"client {k}") for k, (B, A) in enumerate(zip(Bs, As, strict=True))]
    d_out, d_in = Bs[0].shape[0], As[0].shape[1]
    for k, (B, A) in enumerate(zip(Bs, As, strict=True)):
        if B.shape[0] != d_out or A.shape[1] != d_in:
            raise ValueError(
                f"all clients must share (d_out, d_in) = ({d_out}, {d_in}); client {k} has ({B.shape[0]}, {A.shape[1]})"
            )
    return ranks


def _check_rank(name: str, r: object, low: int = 1) -> int:
    if isinstance(r, bool) or not isinstance(r, int) or r < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {r!r}")
    return r


def _normalise(name: str, w: torch.Tensor) -> torch.Tensor:
    """Check a 1-D vector of finite non-negative weights with a positive sum; return it divided by its sum."""
    if w.ndim != 1 or w.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {tuple(w.shape)}")
    if not torch.all(torch.isfinite(w)) or torch.any(w < 0):
        raise ValueError(f"{name} must be finite and >= 0, got {w.tolist()}")
    total = w.sum()
    if total <= 0:
        raise ValueError(f"{name} must have a positive sum, got {w.tolist()}")
    return w / total


def _weights_like(weights: Sequence[float] | torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor:
    """Weights as a normalised 1-D tensor with the dtype and device of ``like``."""
    if not like.is_floating_point():
        raise ValueError(f"Bs and As must be floating-point tensors, got dtype {like.dtype}")
    w = torch.as_tensor(weights, dtype=like.dtype, device=like.device).detach().clone()
    if w.ndim != 1 or w.numel() != n:
        raise ValueError(f"weights must hold one entry per client ({n}), got shape {tuple(w.shape)}")
    return _normalise("weights", w)


# --------------------------------------------------------------------------- padding and truncation


def zero_pad(B: torch.Tensor, A: torch.Tensor, r_max: int) -> Factors:
    """Zero-pad B (d_out × r) to (d_out × r_max) and A (r × d_in) to (r_max × d_in).

    The product is unchanged: ``B_pad @ A_pad == B @ A``. Returns new tensors.
    """
    r = _check_pair(B, A)
    _check_rank("r_max", r_max)
    if r > r_max:
        raise ValueError(f"r_max must be >= the factors' rank {r}, got {r_max}")
    B_pad = B.new_zeros((B.shape[0], r_max))
    A_pad = A.new_zeros((r_max, A.shape[1]))
    B_pad[:, :r] = B
    A_pad[:r, :] = A
    return B_pad, A_pad


def truncate(B: torch.Tensor, A: torch.Tensor, r: int) -> Factors:
    """Keep the first r rank components: copies of ``B[:, :r]`` and ``A[:r, :]``."""
    rank = _check_pair(B, A)
    _check_rank("r", r)
    if r > rank:
        raise ValueError(f"r must be <= the factors' rank {rank}, got {r}")
    return B[:, :r].clone(), A[:r, :].clone()


# --------------------------------------------------------------------------- aggregation weights


def data_size_weights(num_samples: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """FedAvg weights n_k / Σ n over the clients' sample counts (float64 tensor)."""
    n = torch.as_tensor(num_samples, dtype=torch.float64).detach().clone()
    return _normalise("num_samples", n)


def frobenius_weights(Bs: Sequence[torch.Tensor], As: Sequence[torch.Tensor]) -> torch.Tensor:
    """HetLoRA weights ∝ ‖B_k A_k‖_F, normalised to sum to 1 (float64); uniform if every product is zero."""
    _check_clients(Bs, As)
    products = [B @ A for B, A in zip(Bs, As, strict=True)]
    norms = torch.stack([torch.linalg.matrix_norm(P, ord="fro").detach().to(torch.float64) for P in products])
    if norms.sum() <= 0:
        return torch.full((len(Bs),), 1.0 / len(Bs), dtype=torch.float64)
    return norms / norms.sum()


# --------------------------------------------------------------------------- aggregation rules


def weighted_product(
    Bs: Sequence[torch.Tensor], As: Sequence[torch.Tensor], weights: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """The ideal aggregate update ΔW = Σ w_k B_k A_k (d_out × d_in), weights normalised."""
    _check_clients(Bs, As)
    w = _weights_like(weights, len(Bs), Bs[0])
    return sum((w_k * (B @ A) for w_k, B, A in zip(w, Bs, As, strict=True)), start=torch.zeros_like(Bs[0] @ As[0]))


def _padded_stacks(Bs: Sequence[torch.Tensor], As: Sequence[torch.Tensor], r_max: int) -> Factors:
    """Zero-pad every client to r_max and stack: (K, d_out, r_max) and (K, r_max, d_in)."""
    padded = [zero_pad(B, A, r_max) for B, A in zip(Bs, As, strict=True)]
    return torch.stack([p[0] for p in padded]), torch.stack([p[1] for p in padded])


def aggregate_zero_pad(
    Bs: Sequence[torch.Tensor],
    As: Sequence[torch.Tensor],
    weights: Sequence[float] | torch.Tensor,
    r_max: int | None = None,
) -> Factors:
    """HetLoRA / FedIT aggregation: weighted average of the factors zero-padded to r_max.

    ``r_max`` defaults to the largest client rank. Returns B̄ (d_out × r_max) and Ā (r_max × d_in).
    """
    ranks = _check_clients(Bs, As)
    if r_max is None:
        r_max = max(ranks)
    _check_rank("r_max", r_max)
    if r_max < max(ranks):
        raise ValueError(f"r_max must be >= the largest client rank {max(ranks)}, got {r_max}")
    w = _weights_like(weights, len(Bs), Bs[0])
    B_all, A_all = _padded_stacks(Bs, As, r_max)
    return torch.einsum("k,kor->or", w, B_all), torch.einsum("k,kri->ri", w, A_all)


def aggregate_slice_normalised(
    Bs: Sequence[torch.Tensor], As: Sequence[torch.Tensor], weights: Sequence[float] | torch.Tensor
) -> Factors:
    """Zero-pad aggregation with each rank slice normalised by the weight of the clients that own it.

    Column j of B̄ (and row j of Ā) is Σ_{k: r_k > j} w_k X_k[j] / Σ_{k: r_k > j} w_k, for
    j < r_max = max r_k. A slice whose owners all have zero weight is zero.
    """
    ranks = _check_clients(Bs, As)
    r_max = max(ranks)
    w = _weights_like(weights, len(Bs), Bs[0])
    B_all, A_all = _padded_stacks(Bs, As, r_max)
    owns = torch.arange(r_max, device=w.device)[None, :] < torch.tensor(ranks, device=w.device)[:, None]  # (K, r_max)
    mass = (w[:, None] * owns.to(w.dtype)).sum(dim=0)  # (r_max,) weight owning each slice
    inv = torch.where(mass > 0, 1.0 / torch.where(mass > 0, mass, torch.ones_like(mass)), torch.zeros_like(mass))
    B_bar = torch.einsum("k,kor->or", w, B_all) * inv[None, :]
    A_bar = torch.einsum("k,kri->ri", w, A_all) * inv[:, None]
    return B_bar, A_bar


def flora_stack(
    Bs: Sequence[torch.Tensor], As: Sequence[torch.Tensor], weights: Sequence[float] | torch.Tensor
) -> Factors:
    """FLoRA stacking: B_stack = [B_1 … B_K] (d_out × Σr), A_stack = [w_1 A_1; …; w_K A_K] (Σr × d_in).

    Exact: ``B_stack @ A_stack == Σ w_k B_k A_k`` (weights normalised, folded into A).
    """
    _check_clients(Bs, As)
    w = _weights_like(weights, len(Bs), Bs[0])
    B_stack = torch.cat(list(Bs), dim=1)
    A_stack = torch.cat([w_k * A for w_k, A in zip(w, As, strict=True)], dim=0)
    return B_stack, A_stack


def flexlora_redistribute(
    Bs: Sequence[torch.Tensor],
    As: Sequence[torch.Tensor],
    weights: Sequence[float] | torch.Tensor,
    ranks: Sequence[int],
) -> list[Factors]:
    """FlexLoRA: SVD of ΔW = Σ w_k B_k A_k, truncated and split at each requested rank (:func:`svd_factors`)."""
    delta = weighted_product(Bs, As, weights)
    for i, r in enumerate(ranks):
        _check_rank(f"ranks[{i}]", r)
    return [svd_factors(delta, r) for r in ranks]


def svd_factors(delta: torch.Tensor, r: int) -> Factors:
    """Rank-r factors of a dense update: B = U_r·sqrt(S_r) (d_out × r), A = sqrt(S_r)·Vh_r (r × d_in).

    ``B @ A`` is the best rank-r approximation of ``delta`` in Frobenius norm (Eckart–Young). A rank above
    min(d_out, d_in) is allowed (a LoRA rank may exceed a small layer's size): the factors are exact and
    zero-padded to r.
    """
    if delta.ndim != 2:
        raise ValueError(f"delta must be 2-D (d_out, d_in), got shape {tuple(delta.shape)}")
    _check_rank("r", r)
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
    q = min(r, S.numel())
    root = S[:q].sqrt()
    return zero_pad(U[:, :q] * root, root[:, None] * Vh[:q, :], r)


def aggregation_error(
    Bs: Sequence[torch.Tensor],
    As: Sequence[torch.Tensor],
    weights: Sequence[float] | torch.Tensor,
    B_bar: torch.Tensor,
    A_bar: torch.Tensor,
) -> float:
    """‖Σ w_k B_k A_k − B̄ Ā‖_F: how far an aggregate's product is from the ideal averaged update."""
    _check_pair(B_bar, A_bar, "B_bar, A_bar")
    delta = weighted_product(Bs, As, weights)
    approx = B_bar @ A_bar
    if approx.shape != delta.shape:
        raise ValueError(f"B_bar @ A_bar must have shape {tuple(delta.shape)}, got {tuple(approx.shape)}")
    return float(torch.linalg.matrix_norm(delta - approx.to(delta.dtype), ord="fro"))


# --------------------------------------------------------------------------- communication payloads


def lora_params(d_out: int, d_in: int, r: int) -> int:
    """Number of LoRA parameters of one layer: r·(d_out + d_in)."""
    _check_rank("d_out", d_out)
    _check_rank("d_in", d_in)
    _check_rank("r", r)
    return r * (d_out + d_in)


def payload_bytes(layer_dims: LayerDims, r: int, bytes_per_param: int = 4) -> int:
    """Bytes of rank-r LoRA factors over every (d_out, d_in) in ``layer_dims``: Σ r·(d_out + d_in)·bytes."""
    _check_rank("bytes_per_param", bytes_per_param)
    if len(layer_dims) == 0:
        raise ValueError("layer_dims must list at least one (d_out, d_in) pair")
    return sum(lora_params(d_out, d_in, r) for d_out, d_in in layer_dims) * bytes_per_param


def uplink_bytes(layer_dims: LayerDims, r: int, bytes_per_param: int = 4) -> int:
    """Upload of a rank-r client (it sends its own B and A of every layer)."""
    return payload_bytes(layer_dims, r, bytes_per_param)


def downlink_bytes_zero_pad(layer_dims: LayerDims, r_k: int, bytes_per_param: int = 4) -> int:
    """Zero-pad (HetLoRA) download, unicast: client k receives the rank-r_k truncation only."""
    return payload_bytes(layer_dims, r_k, bytes_per_param)


def downlink_bytes_flora(layer_dims: LayerDims, ranks: Sequence[int], bytes_per_param: int = 4) -> int:
    """FLoRA download: every client receives the whole stack, of rank Σ r_k."""
    if len(ranks) == 0:
        raise ValueError("ranks must list at least one client rank")
    for i, r in enumerate(ranks):
        _check_rank(f"ranks[{i}]", r)
    return payload_bytes(layer_dims, sum(ranks), bytes_per_param)


def downlink_bytes_flexlora(layer_dims: LayerDims, r_k: int, bytes_per_param: int = 4) -> int:
    """FlexLoRA download, unicast: client k receives the rank-r_k SVD factors."""
    return payload_bytes(layer_dims, r_k, bytes_per_param)


# --------------------------------------------------------------------------- scale


def lora_scale(lora_alpha: float, r: int) -> float:
    """PEFT's LoRA scale lora_alpha / r.

    edgegen sets ``lora_alpha = r`` on every device, so the scale is 1 at every rank and a zero-padded or
    truncated pair of factors means the same update ``B @ A`` whatever rank it is stored at.
    """
    _check_rank("r", r)
    if not lora_alpha > 0:
        raise ValueError(f"lora_alpha must be > 0, got {lora_alpha!r}")
    return float(lora_alpha) / r


def delta_weight(B: torch.Tensor, A: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """The dense update scale · B @ A (d_out × d_in)."""
    _check_pair(B, A)
    return scale * (B @ A)
