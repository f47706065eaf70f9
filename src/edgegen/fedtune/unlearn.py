"""Wireless federated unlearning maths: orthogonal gradient projection, bounded losses, DP noise, fading channel.

Plain functions on torch tensors; a model's gradient is one flat 1-D vector (:func:`flatten_grads`,
:func:`unflatten`). No training loop lives here. Sign convention: every function that returns a *step* or a
*direction* returns something to ADD to the parameters, ``θ ← θ + step`` (or ``θ ← θ + lr·d``).

Orthogonal projection (both methods below)
    The remaining devices' gradients are the columns of G_r = [g_1 … g_m] (d × m). Its thin SVD
    G_r = U S Vᵀ gives an orthonormal basis of span(G_r): the left singular vectors whose singular value is
    above ``rel_tol · s_max`` (:func:`orthonormal_basis`; tiny singular values are numerical noise or nearly
    collinear devices, and keeping them would project out directions the remaining devices barely use).
    P = I − U Uᵀ projects onto the orthogonal complement (:func:`project_out`): P g is orthogonal to every
    g_i, so a step along P g does not change any remaining device's loss to first order
    (L_i(θ + εPg) ≈ L_i(θ) + ε g_iᵀ P g = L_i(θ)).

Edge-LAM (Wang, Shi and Letaief, "Edge large AI models", 2025) — :func:`paper_update`
    Training goes on with everyone, but each opting-out device's gradient is replaced by its projection:
    θ ← θ − η (mean_{k ∈ K_r} g_k + mean_{j ∈ K_u} P g_j). The opt-out devices therefore only move the model
    in directions the remaining devices' gradients do not span. What the opt-out devices upload (the
    gradient of their training loss, of a bounded loss, or its negative for ascent) is the caller's choice;
    this function applies the formula as written.

FedOSD (Pan et al., "Federated Unlearning with Orthogonal Steepest Descent", AAAI 2025) — :func:`fedosd_direction`
    Only the unlearning direction is applied: the forget device's gradient, projected with P and rescaled to
    the unprojected gradient's norm, d = ‖g‖ · P g / ‖P g‖. The forget device minimises the bounded
    *unlearning cross-entropy* −Σ y·log(1 − p/2) (:func:`unlearning_ce`), which lowers the probability of the
    true label like gradient ascent on the cross-entropy does, but is bounded in [0, ln 2] with bounded
    gradients, so it cannot diverge; FedOSD therefore *descends* along −d: ``fedosd_direction(..., ascent=False)``
    on ∇ unlearning_ce (``ascent=True`` is for the gradient of a loss to raise, e.g. SFU-style ascent on the
    plain cross-entropy). After unlearning, a recovery stage trains on the remaining devices only;
    FedOSD projects each recovery gradient off the accumulated unlearning displacement (θ − θ_before) so that
    recovery does not walk back along it (:func:`recovery_gradient`).

Baseline — :func:`clipped_gradient_ascent_step`: θ ← θ + lr · clip(∇L_forget, C), ascent on the forget
    device's plain cross-entropy with the gradient clipped to norm C.

Bounded losses
    :func:`bounded_ce` = mean −log(max(p_y, ε)) caps the cross-entropy at −log ε (its gradient is zero once
    p_y < ε), so ascent on it cannot explode; :func:`unlearning_ce` = mean −log(1 − p_y/2) ∈ [0, ln 2].

Differential privacy (Dwork and Roth, "The Algorithmic Foundations of Differential Privacy", 2014, Thm A.1)
    Clip every uploaded gradient to norm C (:func:`clip_to_norm`, L2 sensitivity C) and add N(0, σ²I) with
    σ ≥ C·√(2 ln(1.25/δ))/ε (:func:`classical_gaussian_sigma`): (ε, δ)-DP per release. The theorem is proved
    for ε ∈ (0, 1) only; for ε ≥ 1 the value is still returned but is not a proven guarantee. Composition over
    many rounds (and subsampling) is accounted with Rényi DP (Mironov 2017) through Opacus
    (:func:`rdp_epsilon`), which converts RDP to (ε, δ) with Balle et al. (2020, Thm 21).

Wireless channel (analog over-the-air upload) — :func:`received_noise_std`, :func:`over_the_air_noise_std`
    One real channel use per gradient entry. The device sends x = g / a, with a = ``max_entry_abs`` a bound on
    |g_i| (e.g. the clip norm C, since |g_i| ≤ ‖g‖ ≤ C), so |x| ≤ 1 and the transmit power is at most P.
    Channel-inversion power control aligns the devices: the server receives y = √(P·G)·x + n, with
    G = path loss × |h|² (:func:`edgegen.wireless.channel_gain`) and n ~ N(0, N0·B)
    (:func:`edgegen.wireless.noise_power_w`), and estimates ĝ = a·y/√(P·G) = g + a·n/√(P·G). The receiver
    noise on each gradient entry thus has std a/√SNR with SNR = P·G/(N0·B) (:func:`edgegen.wireless.snr`).
    With several devices summed over the air, all are aligned to the amplitude of the weakest, min_k P_k G_k.
    That noise is Gaussian, independent of the data and already on the release, so it counts toward the
    privacy noise: the devices only inject the missing std √(max(σ² − σ_ch², 0)) (:func:`adaptive_noise_std`);
    a good channel needs artificial noise, a deep fade may need none. If K devices share that injection
    independently, each adds std s/√K so the variances add up to s².
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from edgegen import wireless

__all__ = [
    "adaptive_noise_std",
    "add_gaussian_noise",
    "bounded_ce",
    "classical_gaussian_sigma",
    "clip_to_norm",
    "clipped_gradient_ascent_step",
    "fedosd_direction",
    "flatten_grads",
    "orthonormal_basis",
    "over_the_air_noise_std",
    "paper_update",
    "project_out",
    "rdp_epsilon",
    "received_noise_std",
    "recovery_gradient",
    "unflatten",
    "unlearning_ce",
]


# --------------------------------------------------------------------------- validation helpers


def _check_vector(name: str, g: object) -> torch.Tensor:
    """Check a 1-D floating-point tensor; return it."""
    if not isinstance(g, torch.Tensor):
        raise ValueError(f"{name} must be a 1-D torch.Tensor, got {type(g).__name__}")
    if g.ndim != 1:
        raise ValueError(f"{name} must be a 1-D flat gradient vector, got shape {tuple(g.shape)}")
    if not g.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {g.dtype}")
    return g


def _check_positive(name: str, x: object, *, allow_zero: bool = False) -> float:
    """Check a finite real number > 0 (or >= 0); return it as a float."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise ValueError(f"{name} must be a real number, got {x!r}")
    v = float(x)
    ok = math.isfinite(v) and (v >= 0.0 if allow_zero else v > 0.0)
    if not ok:
        raise ValueError(f"{name} must be finite and {'>= 0' if allow_zero else '> 0'}, got {x!r}")
    return v


def _check_open_unit(name: str, x: object, *, include_one: bool = False) -> float:
    """Check a real number in (0, 1) (or (0, 1]); return it as a float."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise ValueError(f"{name} must be a real number, got {x!r}")
    v = float(x)
    if not (0.0 < v < 1.0 or (include_one and v == 1.0)):
        raise ValueError(f"{name} must be in (0, {'1]' if include_one else '1)'}, got {x!r}")
    return v


def _check_rel_tol(rel_tol: float | None) -> float | None:
    if rel_tol is None:
        return None
    if isinstance(rel_tol, bool) or not isinstance(rel_tol, int | float) or not 0.0 <= float(rel_tol) < 1.0:
        raise ValueError(f"rel_tol must be None or a number in [0, 1), got {rel_tol!r}")
    return float(rel_tol)


def _vanish_ratio(dtype: torch.dtype) -> float:
    """‖P g‖ / ‖g‖ at or below which a projection counts as zero: √(machine eps) of the dtype."""
    return math.sqrt(torch.finfo(dtype).eps)


def _stack_columns(name: str, grads: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """Stack a sequence of 1-D gradients of one length into the columns of a (d, m) matrix; None if empty."""
    if isinstance(grads, torch.Tensor) or not isinstance(grads, Sequence):
        raise ValueError(f"{name} must be a list or tuple of 1-D gradient tensors, got {type(grads).__name__}")
    if len(grads) == 0:
        return None
    vecs = [_check_vector(f"{name}[{i}]", g) for i, g in enumerate(grads)]
    d, dtype = vecs[0].numel(), vecs[0].dtype
    if d == 0:
        raise ValueError(f"{name}[0] must have at least one entry, got an empty vector")
    for i, g in enumerate(vecs):
        if g.numel() != d or g.dtype != dtype:
            raise ValueError(
                f"{name}[{i}] must have length {d} and dtype {dtype} like {name}[0], "
                f"got length {g.numel()} and dtype {g.dtype}"
            )
    return torch.stack(vecs, dim=1)


def _check_same(name: str, g: torch.Tensor, d: int, dtype: torch.dtype, ref: str) -> None:
    if g.numel() != d or g.dtype != dtype:
        raise ValueError(f"{name} must have length {d} and dtype {dtype} like {ref}, got {g.numel()} and {g.dtype}")


# --------------------------------------------------------------------------- flat gradient vectors


def flatten_grads(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors (e.g. ``torch.autograd.grad(loss, params)`` or ``[p.grad for p in params]``) into 1-D.

    The result is a new tensor in the tensors' common dtype; autograd history, if any, is kept.
    """
    if isinstance(tensors, torch.Tensor) or not isinstance(tensors, Sequence) or len(tensors) == 0:
        raise ValueError("tensors must be a non-empty list or tuple of tensors")
    for i, t in enumerate(tensors):
        if t is None:
            raise ValueError(
                f"tensors[{i}] is None (a parameter without a gradient); pass torch.zeros_like(param) instead"
            )
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"tensors[{i}] must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype != tensors[0].dtype:
            raise ValueError(f"tensors[{i}] has dtype {t.dtype}, tensors[0] has {tensors[0].dtype}; they must match")
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vec: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Split a flat vector back into tensors shaped like ``like`` (the inverse of :func:`flatten_grads`)."""
    _check_vector("vec", vec)
    if isinstance(like, torch.Tensor) or not isinstance(like, Sequence) or len(like) == 0:
        raise ValueError("like must be a non-empty list or tuple of tensors")
    sizes = [t.numel() for t in like]
    if sum(sizes) != vec.numel():
        raise ValueError(f"vec must have {sum(sizes)} entries (the total size of like), got {vec.numel()}")
    return [piece.reshape(t.shape) for piece, t in zip(torch.split(vec, sizes), like, strict=True)]


# --------------------------------------------------------------------------- orthogonal projection


def orthonormal_basis(G: torch.Tensor, rel_tol: float | None = None) -> torch.Tensor:
    """Orthonormal basis U (d × q) of the column span of G (d × m), from its thin SVD.

    Keeps the left singular vectors whose singular value is > ``rel_tol · s_max``. ``rel_tol=None`` uses
    ``max(d, m) · machine epsilon`` of G's dtype (the default of ``torch.linalg.matrix_rank``). A zero
    matrix, or one with no columns, gives q = 0 (a (d, 0) tensor), and projecting onto its complement is
    the identity.
    """
    if not isinstance(G, torch.Tensor) or G.ndim != 2:
        shape = tuple(G.shape) if isinstance(G, torch.Tensor) else type(G).__name__
        raise ValueError(f"G must be a 2-D tensor (d, m) whose columns are gradients, got {shape}")
    if not G.is_floating_point():
        raise ValueError(f"G must be a floating-point tensor, got dtype {G.dtype}")
    tol = _check_rel_tol(rel_tol)
    d, m = G.shape
    if m == 0 or d == 0:
        return G.new_zeros((d, 0))
    if tol is None:
        tol = max(d, m) * torch.finfo(G.dtype).eps
    U, S, _ = torch.linalg.svd(G, full_matrices=False)
    s_max = S[0]
    if not s_max > 0:
        return G.new_zeros((d, 0))
    q = int((S > tol * s_max).sum())
    return U[:, :q]


def project_out(g: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """(I − U Uᵀ) g: the component of g orthogonal to span(U). U (d × q) must have orthonormal columns."""
    _check_vector("g", g)
    if not isinstance(U, torch.Tensor) or U.ndim != 2 or U.shape[0] != g.numel():
        shape = tuple(U.shape) if isinstance(U, torch.Tensor) else type(U).__name__
        raise ValueError(f"U must be a 2-D tensor of shape ({g.numel()}, q), got {shape}")
    if U.dtype != g.dtype:
        raise ValueError(f"U must have g's dtype {g.dtype}, got {U.dtype}")
    return g - U @ (U.T @ g)


def paper_update(
    remaining_grads: Sequence[torch.Tensor],
    optout_grads: Sequence[torch.Tensor],
    lr: float,
    rel_tol: float | None = None,
) -> torch.Tensor:
    """Edge-LAM step to add to θ: −lr · (mean_k g_k + mean_j (I − UUᵀ) g_j), U = basis of the remaining g_k.

    ``remaining_grads`` and ``optout_grads`` are lists of flat gradients of one length. An empty
    ``optout_grads`` leaves plain averaged gradient descent; with no remaining device (empty
    ``remaining_grads``) nothing is projected out and the first mean is zero.
    """
    G_r = _stack_columns("remaining_grads", remaining_grads)
    G_u = _stack_columns("optout_grads", optout_grads)
    lr = _check_positive("lr", lr)
    _check_rel_tol(rel_tol)
    if G_r is None and G_u is None:
        raise ValueError("remaining_grads and optout_grads are both empty; at least one device must send a gradient")
    if G_r is not None and G_u is not None and (G_r.shape[0] != G_u.shape[0] or G_r.dtype != G_u.dtype):
        raise ValueError(
            f"optout_grads must have the length {G_r.shape[0]} and dtype {G_r.dtype} of remaining_grads, "
            f"got {G_u.shape[0]} and {G_u.dtype}"
        )
    ref = G_r if G_r is not None else G_u
    step = ref.new_zeros(ref.shape[0])
    if G_r is not None:
        step = step + G_r.mean(dim=1)
    if G_u is not None:
        U = orthonormal_basis(G_r, rel_tol) if G_r is not None else G_u.new_zeros((G_u.shape[0], 0))
        step = step + (G_u - U @ (U.T @ G_u)).mean(dim=1)  # P applied to every opt-out column, then averaged
    return -lr * step


def fedosd_direction(
    remaining_grads: Sequence[torch.Tensor],
    forget_grad: torch.Tensor,
    rel_tol: float | None = None,
    *,
    ascent: bool = True,
) -> torch.Tensor:
    """FedOSD unlearning direction d to ADD, θ ← θ + lr·d: ±‖g‖ · P g / ‖P g‖, orthogonal to every remaining g_k.

    ``ascent=True``: ``forget_grad`` is the gradient of a loss to RAISE on the forget device (its plain
    cross-entropy), d = +‖g‖ P g/‖P g‖, and to first order the step raises that loss by lr·‖P g‖·‖g‖ ≥ 0.
    ``ascent=False``: ``forget_grad`` is the gradient of a loss to LOWER, as FedOSD does with its bounded
    :func:`unlearning_ce` (steepest descent on −log(1 − p_y/2) pushes p_y down), and d = −‖g‖ P g/‖P g‖.
    The projected direction is rescaled to ‖g‖ (the projection alone can be much shorter). Returns zeros
    when P g vanishes, ‖P g‖ ≤ √(machine eps)·‖g‖ (the forget gradient lies in the remaining devices' span up
    to rounding, and rescaling rounding noise to ‖g‖ would be a random step).
    The forget device's gradient is a mean over its data; for several forget devices, pass their mean.
    """
    if not isinstance(ascent, bool):
        raise ValueError(f"ascent must be True or False, got {ascent!r}")
    G_r = _stack_columns("remaining_grads", remaining_grads)
    g = _check_vector("forget_grad", forget_grad)
    if G_r is not None:
        _check_same("forget_grad", g, G_r.shape[0], G_r.dtype, "remaining_grads")
        U = orthonormal_basis(G_r, rel_tol)
    else:
        _check_rel_tol(rel_tol)
        U = g.new_zeros((g.numel(), 0))
    p = project_out(g, U)
    p_norm = torch.linalg.vector_norm(p)
    g_norm = torch.linalg.vector_norm(g)
    if not p_norm > _vanish_ratio(g.dtype) * g_norm:
        return torch.zeros_like(g)
    d = p * (g_norm / p_norm)
    return d if ascent else -d


def recovery_gradient(grad: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """FedOSD recovery: g − (gᵀa / ‖a‖²) a rescaled to ‖g‖, with a = θ − θ_before_unlearning.

    A remaining device's recovery gradient is made orthogonal to the unlearning displacement a, so the
    recovery steps do not undo the unlearning along a. A zero ``displacement`` returns ``grad`` unchanged; a
    gradient parallel to a (up to √(machine eps), as in :func:`fedosd_direction`) returns zeros. Use the result
    as an ordinary gradient (θ ← θ − lr·g).
    """
    g = _check_vector("grad", grad)
    a = _check_vector("displacement", displacement)
    _check_same("displacement", a, g.numel(), g.dtype, "grad")
    a2 = torch.dot(a, a)
    if not a2 > 0:
        return g.clone()
    p = g - (torch.dot(g, a) / a2) * a
    p_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
    if not p_norm > _vanish_ratio(g.dtype) * g_norm:
        return torch.zeros_like(g)
    return p * (g_norm / p_norm)


def clipped_gradient_ascent_step(forget_grad: torch.Tensor, lr: float, clip_norm: float) -> torch.Tensor:
    """Baseline step to ADD: +lr · clip(∇L_forget, clip_norm) (gradient ascent on the forget loss)."""
    return _check_positive("lr", lr) * clip_to_norm(_check_vector("forget_grad", forget_grad), clip_norm)


# --------------------------------------------------------------------------- bounded losses


def _check_logits_labels(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] < 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a 2-D tensor (N >= 1 samples, C >= 2 classes), got {shape}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a 1-D tensor of {logits.shape[0]} class indices, got {shape}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor of class indices, got dtype {labels.dtype}")
    if torch.any(labels < 0) or torch.any(labels >= logits.shape[1]):
        raise ValueError(f"labels must be in [0, {logits.shape[1] - 1}], got {labels.tolist()}")


def bounded_ce(logits: torch.Tensor, labels: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Bounded cross-entropy, mean over samples of −log(max(p_y, eps)), p = softmax(logits); at most −log eps.

    Computed as −max(log_softmax_y, log eps), which is stable for any logits; the gradient is the usual
    cross-entropy gradient where p_y > eps and zero where the cap is active.
    """
    _check_logits_labels(logits, labels)
    eps = _check_open_unit("eps", eps, include_one=True)
    log_p = torch.log_softmax(logits, dim=1).gather(1, labels.long()[:, None]).squeeze(1)
    return -torch.clamp(log_p, min=math.log(eps)).mean()


def unlearning_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """FedOSD unlearning cross-entropy, mean over samples of −log(1 − p_y/2), p = softmax(logits).

    In [0, ln 2]: 0 when p_y = 0 (forgotten), ln 2 when p_y = 1. Minimising it lowers p_y; its gradient
    with respect to the logits, p_y (e_y − p)/(2 − p_y), is bounded (unlike ascent on −log p_y).
    """
    _check_logits_labels(logits, labels)
    p_y = torch.softmax(logits, dim=1).gather(1, labels.long()[:, None]).squeeze(1)
    return -torch.log1p(-0.5 * p_y).mean()


# --------------------------------------------------------------------------- differential privacy


def clip_to_norm(g: torch.Tensor, clip_norm: float) -> torch.Tensor:
    """g · min(1, C/‖g‖): the L2 norm is at most ``clip_norm`` = C (a new tensor)."""
    _check_vector("g", g)
    c = _check_positive("clip_norm", clip_norm)
    norm = torch.linalg.vector_norm(g)
    if norm <= c:
        return g.clone()
    return g * (c / norm)


def classical_gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """Gaussian-mechanism noise std σ = Δ·√(2 ln(1.25/δ))/ε for (ε, δ)-DP of one release with L2 sensitivity Δ.

    Dwork and Roth (2014), Theorem A.1, which is proved for ε ∈ (0, 1) only: for ε ≥ 1 the formula is still
    evaluated but is not a proven (ε, δ) guarantee (use :func:`rdp_epsilon` or the analytic Gaussian
    mechanism there). ``delta`` in (0, 1), ``sensitivity`` > 0 (the clip norm C).
    """
    eps = _check_positive("epsilon", epsilon)
    dlt = _check_open_unit("delta", delta)
    c = _check_positive("sensitivity", sensitivity)
    return c * math.sqrt(2.0 * math.log(1.25 / dlt)) / eps


def add_gaussian_noise(g: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """g + N(0, σ² I), drawn from ``generator`` (a seeded ``torch.Generator``; the global RNG is never used)."""
    _check_vector("g", g)
    s = _check_positive("sigma", sigma, allow_zero=True)
    if not isinstance(generator, torch.Generator):
        raise ValueError(
            f"generator must be a torch.Generator (e.g. torch.Generator().manual_seed(seed)), "
            f"got {type(generator).__name__}"
        )
    noise = torch.randn(g.shape, generator=generator, dtype=g.dtype, device=g.device)
    return g + s * noise


def adaptive_noise_std(target_sigma: float, channel_noise_std: float) -> float:
    """Artificial noise std to inject: √(max(σ_target² − σ_channel², 0)).

    The receiver noise of an analog over-the-air upload is Gaussian and independent of the data, so it
    counts toward the privacy noise: independent Gaussians add in variance, and injecting this much makes
    the total std max(σ_target, σ_channel) ≥ σ_target.
    """
    t = _check_positive("target_sigma", target_sigma, allow_zero=True)
    c = _check_positive("channel_noise_std", channel_noise_std, allow_zero=True)
    return math.sqrt(max(t * t - c * c, 0.0))


def rdp_epsilon(
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    orders: Sequence[float] | None = None,
) -> float:
    """ε of ``steps`` compositions of the subsampled Gaussian mechanism, by Rényi-DP accounting (Opacus).

    ``noise_multiplier`` = σ/C (noise std over the clip norm), ``sample_rate`` = q ∈ (0, 1] (Poisson
    sampling rate; 1 = every device/sample every round), ``delta`` ∈ (0, 1). ``orders`` are the RDP orders
    α searched; default Opacus' ``RDPAccountant.DEFAULT_ALPHAS`` (1.1 … 10.9, 12 … 63). This is exactly what
    ``opacus.accountants.RDPAccountant`` computes after ``steps`` identical ``step`` calls. For q = 1 the
    per-step RDP is α/(2σ²) and ε = min_α [T·α/(2σ²) + log((α−1)/α) − (log δ + log α)/(α−1)] (Balle et al.).
    Needs the ``opacus`` package.
    """
    nm = _check_positive("noise_multiplier", noise_multiplier)
    q = _check_open_unit("sample_rate", sample_rate, include_one=True)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    dlt = _check_open_unit("delta", delta)
    try:
        from opacus.accountants import RDPAccountant
        from opacus.accountants.analysis import rdp as rdp_analysis
    except ImportError as exc:
        raise ImportError("rdp_epsilon needs Opacus: pip install 'opacus==1.6.0'") from exc
    alphas = list(RDPAccountant.DEFAULT_ALPHAS) if orders is None else [float(a) for a in orders]
    if not alphas or any(not (math.isfinite(a) and a > 1.0) for a in alphas):
        raise ValueError(f"orders must be a non-empty list of finite RDP orders > 1, got {orders!r}")
    if steps == 0:
        return 0.0
    rdp = rdp_analysis.compute_rdp(q=q, noise_multiplier=nm, steps=steps, orders=alphas)
    eps, _ = rdp_analysis.get_privacy_spent(orders=alphas, rdp=rdp, delta=dlt)
    return float(eps)


# --------------------------------------------------------------------------- fading channel


def received_noise_std(
    gain: float,
    tx_power_w: float,
    bandwidth_hz: float,
    *,
    max_entry_abs: float = 1.0,
    noise_psd_dbm_per_hz: float = -174.0,
) -> float:
    """Std of the receiver noise on one over-the-air gradient entry: a/√SNR = a·√(N0·B / (P·G)).

    ``gain`` G is the linear channel power gain (path loss × fading), ``max_entry_abs`` a the amplitude
    the device divides its entries by so that |x| ≤ 1 (e.g. the clip norm). See the module docstring.
    """
    s = float(wireless.snr(tx_power_w, gain, bandwidth_hz, noise_psd_dbm_per_hz))
    a = _check_positive("max_entry_abs", max_entry_abs)
    if s <= 0.0:
        raise ValueError(f"tx_power_w and gain must be > 0 for a usable channel, got {tx_power_w!r} and {gain!r}")
    return a / math.sqrt(s)


def over_the_air_noise_std(
    distance_m: npt.ArrayLike,
    tx_power_w: npt.ArrayLike,
    bandwidth_hz: float,
    rng: np.random.Generator | None,
    *,
    max_entry_abs: float = 1.0,
    noise_psd_dbm_per_hz: float = -174.0,
    fading: str = "rayleigh",
) -> float:
    """Receiver-noise std on one entry of the over-the-air sum Σ_k g_k, for devices at ``distance_m``.

    Each device's gain is 3GPP path loss × Rayleigh |h|² (:func:`edgegen.wireless.channel_gain`, one draw
    per device from ``rng``; ``fading="none"`` uses |h|² = 1 and ignores ``rng``). Channel inversion aligns
    every device to the weakest received power min_k P_k G_k, so the std is a·√(N0·B / min_k P_k G_k);
    one device gives :func:`received_noise_std` of its own gain. For the mean over K devices divide by K
    (the sensitivity C/K shrinks alike, so the noise multiplier σ/C is the same).
    """
    d = np.atleast_1d(np.asarray(distance_m, dtype=float))
    if d.ndim != 1 or d.size == 0 or not np.all(np.isfinite(d) & (d > 0.0)):
        raise ValueError(
            f"distance_m must be a finite distance > 0 or a non-empty 1-D array of them, got {distance_m!r}"
        )
    p = np.atleast_1d(np.asarray(tx_power_w, dtype=float))
    if p.size == 1:
        p = np.full(d.shape, float(p.flat[0]))
    if p.shape != d.shape or not np.all(np.isfinite(p) & (p > 0.0)):
        raise ValueError(f"tx_power_w must be > 0, one value or one per device ({d.size}), got {tx_power_w!r}")
    gains = np.atleast_1d(np.asarray(wireless.channel_gain(d / 1000.0, rng, fading)))
    k = int(np.argmin(p * gains))
    return received_noise_std(
        float(gains[k]),
        float(p[k]),
        bandwidth_hz,
        max_entry_abs=max_entry_abs,
        noise_psd_dbm_per_hz=noise_psd_dbm_per_hz,
    )
