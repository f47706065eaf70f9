"""Unit tests for edgegen.fedtune.unlearn against hand-made gradients and hand-computed values."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from edgegen import wireless as wl
from edgegen.fedtune import unlearn as ul

T = torch.float64


def v(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=T)


def random_G(d: int = 6, m: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(d, m, dtype=T, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- flat vectors


def test_flatten_and_unflatten_round_trip() -> None:
    w = torch.arange(6, dtype=T).reshape(2, 3)
    b = v(10.0, 11.0)
    flat = ul.flatten_grads([w, b])
    assert torch.equal(flat, v(0, 1, 2, 3, 4, 5, 10, 11))  # row-major, then the bias
    back = ul.unflatten(flat, [w, b])
    assert [t.shape for t in back] == [w.shape, b.shape]
    assert torch.equal(back[0], w) and torch.equal(back[1], b)


def test_flatten_autograd_gradients() -> None:
    lin = torch.nn.Linear(3, 2).double()
    loss = lin(torch.ones(1, 3, dtype=T)).sum()
    flat = ul.flatten_grads(torch.autograd.grad(loss, list(lin.parameters())))
    # d(sum of W·1 + b)/dW = 1 for every entry, d/db = 1: 6 + 2 ones.
    assert torch.equal(flat, torch.ones(8, dtype=T))


def test_flatten_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match=r"tensors\[1\] is None"):
        ul.flatten_grads([torch.ones(2), None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="tensors must be a non-empty"):
        ul.flatten_grads([])
    with pytest.raises(ValueError, match="vec must have 5 entries"):
        ul.unflatten(torch.ones(4), [torch.ones(2, 2), torch.ones(1)])


# ----------------------------------------------------------------------------- orthogonal projection


def test_projection_is_idempotent_and_orthogonal_to_every_column() -> None:
    G = random_G()
    U = ul.orthonormal_basis(G)
    assert U.shape == (6, 3)
    assert torch.allclose(U.T @ U, torch.eye(3, dtype=T))
    g = torch.randn(6, dtype=T, generator=torch.Generator().manual_seed(1))
    p = ul.project_out(g, U)
    assert torch.allclose(ul.project_out(p, U), p)  # P² = P
    assert torch.allclose(G.T @ p, torch.zeros(3, dtype=T), atol=1e-12)  # ⟂ every remaining gradient


def test_projection_identity_on_complement_and_zero_on_span() -> None:
    G = random_G()
    U = ul.orthonormal_basis(G)
    w = ul.project_out(torch.randn(6, dtype=T, generator=torch.Generator().manual_seed(2)), U)  # w ⟂ span(G)
    assert torch.allclose(ul.project_out(w, U), w)
    in_span = G @ v(1.0, -2.0, 0.5)
    assert torch.allclose(ul.project_out(in_span, U), torch.zeros(6, dtype=T), atol=1e-12)


def test_projection_by_hand() -> None:
    # span{[1,0,0], [1,1,0]} is the xy-plane: P keeps only z.
    U = ul.orthonormal_basis(torch.stack([v(1, 0, 0), v(1, 1, 0)], dim=1))
    assert U.shape == (3, 2)
    assert torch.allclose(ul.project_out(v(1, 2, 3), U), v(0, 0, 3))


def test_rank_threshold_drops_tiny_singular_direction() -> None:
    G = torch.tensor([[1.0, 0.0], [0.0, 1e-9], [0.0, 0.0]], dtype=T)  # singular values 1 and 1e-9
    assert ul.orthonormal_basis(G, rel_tol=1e-6).shape == (3, 1)
    assert ul.orthonormal_basis(G, rel_tol=0.0).shape == (3, 2)
    assert ul.orthonormal_basis(G).shape == (3, 2)  # default tol 3·eps ≈ 7e-16 keeps 1e-9
    # Two nearly collinear devices: rank 1 under rel_tol 1e-6.
    near = torch.stack([v(1, 1, 0), v(1, 1, 1e-8)], dim=1)
    assert ul.orthonormal_basis(near, rel_tol=1e-6).shape == (3, 1)


def test_zero_matrix_gives_empty_basis_and_identity_projection() -> None:
    U = ul.orthonormal_basis(torch.zeros(4, 2, dtype=T))
    assert U.shape == (4, 0)
    g = v(1, -2, 3, 4)
    assert torch.equal(ul.project_out(g, U), g)
    assert ul.orthonormal_basis(torch.zeros(4, 0, dtype=T)).shape == (4, 0)


def test_projection_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="G must be a 2-D tensor"):
        ul.orthonormal_basis(torch.ones(3))
    with pytest.raises(ValueError, match=r"rel_tol must be None or a number in \[0, 1\)"):
        ul.orthonormal_basis(torch.ones(3, 2), rel_tol=1.5)
    with pytest.raises(ValueError, match=r"U must be a 2-D tensor of shape \(3, q\)"):
        ul.project_out(v(1, 2, 3), torch.ones(4, 1, dtype=T))
    with pytest.raises(ValueError, match="g must be a 1-D flat gradient vector"):
        ul.project_out(torch.ones(3, 1, dtype=T), torch.ones(3, 1, dtype=T))


# ----------------------------------------------------------------------------- Edge-LAM update


def test_paper_update_by_hand() -> None:
    remaining = [v(1, 0, 0), v(1, 1, 0)]  # span = xy-plane
    optout = [v(1, 2, 3), v(0, 0, 1)]
    # mean remaining = [1, 0.5, 0]; projections keep z: [0, 0, 3] and [0, 0, 1], mean [0, 0, 2].
    # step = −0.1 · ([1, 0.5, 0] + [0, 0, 2]) = [−0.1, −0.05, −0.2]
    step = ul.paper_update(remaining, optout, lr=0.1)
    assert torch.allclose(step, v(-0.1, -0.05, -0.2))
    # One opt-out device [1, 2, 3]: −0.1 · ([1, 0.5, 0] + [0, 0, 3]) = [−0.1, −0.05, −0.3]
    assert torch.allclose(ul.paper_update(remaining, optout[:1], lr=0.1), v(-0.1, -0.05, -0.3))
    # No opt-out device: plain averaged gradient descent.
    assert torch.allclose(ul.paper_update(remaining, [], lr=0.1), v(-0.1, -0.05, 0.0))
    # No remaining device: nothing to project out.
    assert torch.allclose(ul.paper_update([], optout, lr=1.0), v(-0.5, -1.0, -2.0))


def test_paper_update_optout_part_is_orthogonal_to_remaining() -> None:
    G = random_G(8, 3)
    remaining = list(G.T)
    optout = [torch.randn(8, dtype=T, generator=torch.Generator().manual_seed(s)) for s in (5, 6)]
    only_remaining = ul.paper_update(remaining, [], lr=0.5)
    optout_part = ul.paper_update(remaining, optout, lr=0.5) - only_remaining
    assert torch.allclose(G.T @ optout_part, torch.zeros(3, dtype=T), atol=1e-12)


def test_paper_update_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="lr must be finite and > 0"):
        ul.paper_update([v(1, 0)], [v(0, 1)], lr=0.0)
    with pytest.raises(ValueError, match=r"optout_grads must have the length 2"):
        ul.paper_update([v(1, 0)], [v(0, 1, 0)], lr=0.1)
    with pytest.raises(ValueError, match=r"remaining_grads\[1\] must have length 2"):
        ul.paper_update([v(1, 0), v(1, 0, 0)], [], lr=0.1)
    with pytest.raises(ValueError, match="both empty"):
        ul.paper_update([], [], lr=0.1)
    with pytest.raises(ValueError, match="remaining_grads must be a list or tuple"):
        ul.paper_update(torch.ones(2, 2), [], lr=0.1)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- FedOSD and the baseline


def test_fedosd_direction_by_hand() -> None:
    remaining = [v(1, 0, 0), v(0, 1, 0)]
    # g = [3, 0, 4], ‖g‖ = 5; P g = [0, 0, 4] → rescaled to norm 5: [0, 0, 5].
    assert torch.allclose(ul.fedosd_direction(remaining, v(3, 0, 4)), v(0, 0, 5))
    # FedOSD minimises the unlearning CE: descend, d = −[0, 0, 5].
    assert torch.allclose(ul.fedosd_direction(remaining, v(3, 0, 4), ascent=False), v(0, 0, -5))
    # Forget gradient inside span(remaining): no harmless direction, zero step.
    assert torch.equal(ul.fedosd_direction(remaining, v(3, -2, 0)), torch.zeros(3, dtype=T))
    assert torch.equal(ul.fedosd_direction(remaining, torch.zeros(3, dtype=T)), torch.zeros(3, dtype=T))


def test_fedosd_direction_norm_and_orthogonality() -> None:
    G = random_G(10, 4, seed=3)
    g = torch.randn(10, dtype=T, generator=torch.Generator().manual_seed(4))
    d = ul.fedosd_direction(list(G.T), g)
    assert torch.linalg.vector_norm(d).item() == pytest.approx(torch.linalg.vector_norm(g).item())
    assert torch.allclose(G.T @ d, torch.zeros(4, dtype=T), atol=1e-12)
    assert torch.dot(g, d) > 0  # adding d raises the forget loss to first order
    # Rounding-level leftovers of an in-span gradient are not amplified to ‖g‖.
    assert torch.equal(ul.fedosd_direction(list(G.T), G @ v(1, 2, 3, 4)), torch.zeros(10, dtype=T))
    with pytest.raises(ValueError, match="forget_grad must have length 10"):
        ul.fedosd_direction(list(G.T), torch.ones(9, dtype=T))


def test_recovery_gradient_by_hand() -> None:
    # g = [1, 1], a = [1, 0]: g − (1/1)·a = [0, 1], rescaled to ‖g‖ = √2.
    assert torch.allclose(ul.recovery_gradient(v(1, 1), v(1, 0)), v(0, math.sqrt(2)))
    assert torch.equal(ul.recovery_gradient(v(1, 1), v(0, 0)), v(1, 1))  # no displacement yet
    assert torch.equal(ul.recovery_gradient(v(2, 0), v(-1, 0)), v(0, 0))  # parallel: nothing left
    with pytest.raises(ValueError, match="displacement must have length 2"):
        ul.recovery_gradient(v(1, 1), v(1, 0, 0))


def test_clipped_gradient_ascent_step() -> None:
    g = v(3, 4)  # ‖g‖ = 5
    assert torch.allclose(ul.clipped_gradient_ascent_step(g, lr=0.1, clip_norm=1.0), v(0.06, 0.08))  # 0.1·g/5
    assert torch.allclose(ul.clipped_gradient_ascent_step(g, lr=0.1, clip_norm=10.0), v(0.3, 0.4))  # unclipped
    with pytest.raises(ValueError, match="clip_norm must be finite and > 0"):
        ul.clipped_gradient_ascent_step(g, lr=0.1, clip_norm=0.0)
    with pytest.raises(ValueError, match="lr must be finite and > 0"):
        ul.clipped_gradient_ascent_step(g, lr=-1.0, clip_norm=1.0)


# ----------------------------------------------------------------------------- bounded losses


def test_bounded_losses_hand_values() -> None:
    labels = torch.tensor([0])
    even = torch.zeros(1, 2, dtype=T)  # p = [0.5, 0.5]
    assert ul.bounded_ce(even, labels).item() == pytest.approx(math.log(2.0))
    assert ul.unlearning_ce(even, labels).item() == pytest.approx(-math.log(0.75))  # −ln(1 − 0.5/2)
    # Two samples: p_y = 3/4 (logits [ln 3, 0]) and p_y = 1/2.
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]], dtype=T)
    two = torch.tensor([0, 1])
    assert ul.bounded_ce(logits, two).item() == pytest.approx((-math.log(0.75) + math.log(2.0)) / 2)
    assert ul.unlearning_ce(logits, two).item() == pytest.approx((-math.log(5 / 8) - math.log(0.75)) / 2)
    # Ranges: unlearning CE is 0 when p_y → 0 and ln 2 when p_y → 1.
    sure = torch.tensor([[50.0, 0.0]], dtype=T)
    assert ul.unlearning_ce(sure, labels).item() == pytest.approx(math.log(2.0))
    assert ul.unlearning_ce(sure, torch.tensor([1])).item() == pytest.approx(0.0, abs=1e-20)


def test_bounded_loss_gradients_by_hand() -> None:
    logits = torch.tensor([[math.log(3.0), 0.0]], dtype=T, requires_grad=True)  # p = [0.75, 0.25], y = 0
    labels = torch.tensor([0])
    (g_ce,) = torch.autograd.grad(ul.bounded_ce(logits, labels), logits)
    assert torch.allclose(g_ce, torch.tensor([[-0.25, 0.25]], dtype=T))  # p − e_y
    (g_u,) = torch.autograd.grad(ul.unlearning_ce(logits, labels), logits)
    # p_y (e_y − p) / (2 − p_y) = 0.75·[0.25, −0.25] / 1.25 = [0.15, −0.15]
    assert torch.allclose(g_u, torch.tensor([[0.15, -0.15]], dtype=T))


def test_bounded_losses_stay_finite_where_plain_ce_explodes() -> None:
    logits = torch.tensor([[0.0, 200.0]], requires_grad=True)  # float32: p_0 = e^−200 underflows to 0
    labels = torch.tensor([0])
    naive = -torch.log(torch.softmax(logits, dim=1)[0, 0])
    assert math.isinf(naive.item())
    b = ul.bounded_ce(logits, labels, eps=1e-6)
    assert b.item() == pytest.approx(-math.log(1e-6), rel=1e-6)  # capped at −ln ε ≈ 13.8
    (gb,) = torch.autograd.grad(b, logits)
    assert torch.all(torch.isfinite(gb)) and torch.equal(gb, torch.zeros_like(gb))  # the cap is active
    u = ul.unlearning_ce(logits, labels)
    (gu,) = torch.autograd.grad(u, logits)
    assert math.isfinite(u.item()) and torch.all(torch.isfinite(gu))


def test_bounded_loss_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match=r"labels must be in \[0, 1\]"):
        ul.bounded_ce(torch.zeros(1, 2), torch.tensor([2]))
    with pytest.raises(ValueError, match="labels must be a 1-D tensor of 1 class indices"):
        ul.unlearning_ce(torch.zeros(1, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels must be an integer tensor"):
        ul.unlearning_ce(torch.zeros(1, 2), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="logits must be a 2-D tensor"):
        ul.bounded_ce(torch.zeros(2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"eps must be in \(0, 1\]"):
        ul.bounded_ce(torch.zeros(1, 2), torch.tensor([0]), eps=0.0)


# ----------------------------------------------------------------------------- differential privacy


def test_clip_to_norm() -> None:
    assert torch.allclose(ul.clip_to_norm(v(3, 4), 1.0), v(0.6, 0.8))
    small = v(0.3, 0.4)
    clipped = ul.clip_to_norm(small, 1.0)
    assert torch.equal(clipped, small) and clipped is not small


def test_classical_gaussian_sigma_hand_value() -> None:
    # ε = 0.5, δ = 1e-5, C = 1: √(2·ln(125000)) / 0.5 = √23.4731 / 0.5 ≈ 9.6898
    assert ul.classical_gaussian_sigma(0.5, 1e-5, 1.0) == pytest.approx(math.sqrt(2 * math.log(125000.0)) / 0.5)
    assert ul.classical_gaussian_sigma(0.5, 1e-5, 1.0) == pytest.approx(9.6898, rel=1e-4)
    assert ul.classical_gaussian_sigma(0.5, 1e-5, 2.0) == pytest.approx(2 * 9.6898, rel=1e-4)  # linear in C
    assert ul.classical_gaussian_sigma(2.0, 1e-5) > 0  # ε ≥ 1 is evaluated (validity documented)
    with pytest.raises(ValueError, match="epsilon must be finite and > 0"):
        ul.classical_gaussian_sigma(0.0, 1e-5)
    with pytest.raises(ValueError, match=r"delta must be in \(0, 1\)"):
        ul.classical_gaussian_sigma(0.5, 1.0)
    with pytest.raises(ValueError, match="sensitivity must be finite and > 0"):
        ul.classical_gaussian_sigma(0.5, 1e-5, -1.0)


def test_add_gaussian_noise_is_seeded_and_has_the_std() -> None:
    g = torch.zeros(20000, dtype=T)
    a = ul.add_gaussian_noise(g, 2.0, torch.Generator().manual_seed(7))
    b = ul.add_gaussian_noise(g, 2.0, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert a.std().item() == pytest.approx(2.0, rel=0.03)
    assert torch.equal(ul.add_gaussian_noise(v(1, 2), 0.0, torch.Generator()), v(1, 2))
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        ul.add_gaussian_noise(g, 1.0, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sigma must be finite and >= 0"):
        ul.add_gaussian_noise(g, -1.0, torch.Generator())


def test_adaptive_noise_std() -> None:
    assert ul.adaptive_noise_std(3.0, 4.0) == 0.0  # the channel already adds more than needed
    assert ul.adaptive_noise_std(5.0, 3.0) == pytest.approx(4.0)  # √(25 − 9)
    assert ul.adaptive_noise_std(5.0, 0.0) == pytest.approx(5.0)  # noiseless link: inject everything
    with pytest.raises(ValueError, match="target_sigma must be finite and >= 0"):
        ul.adaptive_noise_std(-1.0, 1.0)
    with pytest.raises(ValueError, match="channel_noise_std must be finite and >= 0"):
        ul.adaptive_noise_std(1.0, math.nan)


# ----------------------------------------------------------------------------- RDP accounting (Opacus)


def test_rdp_epsilon_monotonic() -> None:
    by_sigma = [ul.rdp_epsilon(nm, 0.01, 1000, 1e-5) for nm in (0.8, 1.0, 1.5, 2.0)]
    assert all(a > b for a, b in zip(by_sigma, by_sigma[1:], strict=False))  # more noise, smaller ε
    by_steps = [ul.rdp_epsilon(1.0, 0.01, t, 1e-5) for t in (10, 100, 1000)]
    assert all(a < b for a, b in zip(by_steps, by_steps[1:], strict=False))  # more releases, larger ε
    assert ul.rdp_epsilon(1.0, 0.01, 0, 1e-5) == 0.0


def test_rdp_epsilon_matches_the_accountant_and_the_closed_form() -> None:
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    for _ in range(50):
        acc.step(noise_multiplier=1.1, sample_rate=0.05)
    assert ul.rdp_epsilon(1.1, 0.05, 50, 1e-5) == pytest.approx(acc.get_epsilon(delta=1e-5), rel=1e-12)

    # Full participation (q = 1), σ = 5, T = 10: RDP(α) = T·α/(2σ²) = α/5 per composition. Opacus converts
    # with Balle et al. (2020): ε = min_α [α/5 + log((α−1)/α) − (log δ + log α)/(α−1)].
    sigma, steps, delta = 5.0, 10, 1e-5
    rdp = [steps * a / (2 * sigma**2) for a in RDPAccountant.DEFAULT_ALPHAS]
    balle = min(
        r + math.log((a - 1) / a) - (math.log(delta) + math.log(a)) / (a - 1)
        for a, r in zip(RDPAccountant.DEFAULT_ALPHAS, rdp, strict=True)
    )
    eps = ul.rdp_epsilon(sigma, 1.0, steps, delta)
    assert eps == pytest.approx(balle, rel=1e-12)
    # Mironov's (2017) original conversion r + log(1/δ)/(α−1) is looser, never smaller.
    mironov = min(r + math.log(1 / delta) / (a - 1) for a, r in zip(RDPAccountant.DEFAULT_ALPHAS, rdp, strict=True))
    assert balle <= mironov < 1.2 * balle


def test_rdp_epsilon_errors() -> None:
    with pytest.raises(ValueError, match="steps must be an integer >= 0"):
        ul.rdp_epsilon(1.0, 0.1, -1, 1e-5)
    with pytest.raises(ValueError, match=r"sample_rate must be in \(0, 1\]"):
        ul.rdp_epsilon(1.0, 0.0, 10, 1e-5)
    with pytest.raises(ValueError, match="noise_multiplier must be finite and > 0"):
        ul.rdp_epsilon(0.0, 0.1, 10, 1e-5)


def test_rdp_epsilon_without_opacus_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "opacus" or m.startswith("opacus.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "opacus", None)  # makes `import opacus` raise ImportError
    with pytest.raises(ImportError, match="rdp_epsilon needs Opacus: pip install 'opacus==1.6.0'"):
        ul.rdp_epsilon(1.0, 0.1, 10, 1e-5)


# ----------------------------------------------------------------------------- fading channel


def test_received_noise_std_hand_value() -> None:
    # N0·B = 10^(−17.4)·1e-3·1e6 = 10^(−14.4) W; P·G = 0.1·1e-10 = 1e-11 W;
    # std = √(10^(−14.4) / 1e-11) = √(10^(−3.4)) ≈ 0.019953
    assert ul.received_noise_std(1e-10, 0.1, 1e6) == pytest.approx(0.019953, rel=1e-4)
    assert ul.received_noise_std(1e-10, 0.1, 1e6, max_entry_abs=2.0) == pytest.approx(2 * 0.019953, rel=1e-4)
    snr = wl.snr(0.1, 1e-10, 1e6)
    assert ul.received_noise_std(1e-10, 0.1, 1e6) == pytest.approx(1 / math.sqrt(snr))
    with pytest.raises(ValueError, match="tx_power_w must be"):
        ul.received_noise_std(1e-10, -1.0, 1e6)


def test_over_the_air_noise_std() -> None:
    # 100 m, no fading: PL = 128.1 + 37.6·log10(0.1) = 90.5 dB → G = 10^(−9.05);
    # std = √(10^(−14.4) / (0.1·10^(−9.05))) = 10^(−2.175) ≈ 0.0066834
    assert ul.over_the_air_noise_std(100.0, 0.1, 1e6, None, fading="none") == pytest.approx(10**-2.175)
    # Rayleigh: the same draw as wireless.channel_gain with the same seed.
    got = ul.over_the_air_noise_std(100.0, 0.1, 1e6, np.random.default_rng(3))
    gain = wl.channel_gain(0.1, np.random.default_rng(3))
    assert got == pytest.approx(ul.received_noise_std(gain, 0.1, 1e6))
    # Two devices summed over the air: aligned to the weaker (farther) one.
    pair = ul.over_the_air_noise_std([100.0, 200.0], 0.1, 1e6, None, fading="none")
    assert pair == pytest.approx(ul.received_noise_std(wl.channel_gain(0.2, fading="none"), 0.1, 1e6))
    # ... unless the nearer device has much less power.
    pair = ul.over_the_air_noise_std([100.0, 200.0], [0.001, 0.1], 1e6, None, fading="none")
    assert pair == pytest.approx(ul.received_noise_std(wl.channel_gain(0.1, fading="none"), 0.001, 1e6))


def test_channel_noise_counts_toward_privacy_noise() -> None:
    sigma = ul.classical_gaussian_sigma(0.5, 1e-5, sensitivity=1.0)  # ≈ 9.69 for gradients clipped to C = 1
    near = ul.over_the_air_noise_std(50.0, 0.1, 1e6, None, fading="none")  # strong link: tiny noise
    assert ul.adaptive_noise_std(sigma, near) == pytest.approx(sigma, rel=1e-6)  # inject nearly all of it
    # A deep fade (tiny gain) already gives more receiver noise than σ: nothing to inject.
    faded = ul.received_noise_std(1e-18, 0.1, 1e6)
    assert faded > sigma and ul.adaptive_noise_std(sigma, faded) == 0.0


def test_channel_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="distance_m must be a finite distance > 0"):
        ul.over_the_air_noise_std(0.0, 0.1, 1e6, None, fading="none")
    with pytest.raises(ValueError, match=r"tx_power_w must be > 0, one value or one per device \(2\)"):
        ul.over_the_air_noise_std([10.0, 20.0], [0.1, 0.1, 0.1], 1e6, None, fading="none")
    with pytest.raises(ValueError, match="rng must be a np.random.Generator"):
        ul.over_the_air_noise_std(10.0, 0.1, 1e6, None)
    with pytest.raises(ValueError, match="max_entry_abs must be finite and > 0"):
        ul.received_noise_std(1e-10, 0.1, 1e6, max_entry_abs=0.0)
