"""gdm/ddpm.py against closed forms: schedules, forward-noising moments, the oracle ε-predictor of Gaussian data,
the DDPM posterior, Gaussian log-probs, strides, partial runs and determinism."""

import math

import pytest
import torch

from edgegen.config import ConfigError
from edgegen.gdm.ddpm import (
    SampleTrace,
    ddim_sample,
    ddim_step,
    ddim_timesteps,
    ddpm_loss,
    ddpm_sample,
    gaussian_logprob,
    make_schedule,
    q_sample,
    sample_loop,
)

MU, S = 0.5, 0.3  # data distribution of the oracle tests: x0 ~ N(MU, S²) per dimension


def oracle(sched):
    """The exact ε-predictor E[ε | x_t] for x0 ~ N(MU, S² I): √(1-ᾱ)(x_t - √ᾱ MU)/(ᾱ S² + 1 - ᾱ)."""
    ab_all = sched.alpha_bars.double()

    def model(x, t, cond=None):
        ab = ab_all[t].reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        return (1 - ab).sqrt() * (x - ab.sqrt() * MU) / (ab * S**2 + 1 - ab)

    return model


def test_linear_schedule_endpoints_and_products():
    sched = make_schedule(1000, "linear")
    assert sched.num_steps == 1000
    assert sched.betas[0].item() == pytest.approx(1e-4)
    assert sched.betas[-1].item() == pytest.approx(0.02)
    assert torch.allclose(sched.alphas, 1 - sched.betas)
    prod = 1.0
    for t in (0, 1, 2):
        prod *= 1 - sched.betas[t].item()
        assert sched.alpha_bars[t].item() == pytest.approx(prod, rel=1e-6)
    assert torch.allclose(sched.alpha_bars, torch.cumprod(sched.alphas.double(), 0).float(), rtol=1e-5)
    # T = 100: betas scaled by 1000/T (Nichol & Dhariwal 2021)
    assert make_schedule(100, "linear").betas[0].item() == pytest.approx(1e-3)


def test_cosine_schedule_closed_form():
    T, s = 200, 0.008
    sched = make_schedule(T, "cosine")

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    for t in (0, 10, 100, 150):
        assert sched.alpha_bars[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-5)
    assert float(sched.betas.max()) <= 0.999 + 1e-7
    assert torch.all(sched.alpha_bars[1:] < sched.alpha_bars[:-1])


def test_schedule_rejects_bad_input():
    with pytest.raises(ConfigError, match="kind"):
        make_schedule(10, "quadratic")
    with pytest.raises(ConfigError, match="num_steps"):
        make_schedule(0)


def test_q_sample_moments_monte_carlo():
    sched = make_schedule(100, "linear")
    gen = torch.Generator().manual_seed(0)
    x0 = torch.full((200000, 1), 0.7)
    t = 40
    xt = q_sample(x0, t, torch.randn(x0.shape, generator=gen), sched)
    ab = sched.alpha_bars[t].item()
    assert xt.mean().item() == pytest.approx(math.sqrt(ab) * 0.7, abs=0.01)
    assert xt.var().item() == pytest.approx(1 - ab, rel=0.02)
    # per-sample timesteps and the closed form itself
    tt = torch.tensor([0, 99])
    noise = torch.tensor([[1.0], [-2.0]])
    out = q_sample(torch.tensor([[0.5], [0.5]]), tt, noise, sched)
    for i in range(2):
        ab = sched.alpha_bars[tt[i]].item()
        assert out[i, 0].item() == pytest.approx(math.sqrt(ab) * 0.5 + math.sqrt(1 - ab) * noise[i, 0].item(), rel=1e-5)


def test_ddpm_loss_of_oracle_equals_posterior_variance():
    """With ε̂ = E[ε|x_t], the loss is E_t Var[ε|x_t] = E_t ᾱ_t S²/(ᾱ_t S² + 1 - ᾱ_t)."""
    sched = make_schedule(50, "cosine")
    gen = torch.Generator().manual_seed(1)
    x0 = MU + S * torch.randn(200000, 1, generator=gen)
    loss = ddpm_loss(oracle(sched), x0, sched, generator=gen).item()
    ab = sched.alpha_bars.double()
    expected = (ab * S**2 / (ab * S**2 + 1 - ab)).mean().item()
    assert loss == pytest.approx(expected, rel=0.03)


def test_ddim_timesteps_strides():
    ts = ddim_timesteps(1000, 50)
    assert len(ts) == 50 and ts[0] == 999 and ts[-1] == 0
    assert all(a > b for a, b in zip(ts, ts[1:], strict=False))
    assert ddim_timesteps(10, 10) == list(range(9, -1, -1))
    assert ddim_timesteps(10, 4) == [9, 6, 3, 0]
    assert ddim_timesteps(10, 1) == [9]
    for bad in (0, 11):
        with pytest.raises(ConfigError, match="num_steps"):
            ddim_timesteps(10, bad)


def _ddim_recursion(sched, ts, x_T):
    """The deterministic DDIM map for the Gaussian oracle, by hand in float64 scalars: with v_t = ᾱS²+1-ᾱ and
    z = (x_t - √ᾱ_t MU)/√v_t, one step gives x_prev = √ᾱ_prev MU + z(√(ᾱ_prev ᾱ_t) S² + √((1-ᾱ_prev)(1-ᾱ_t)))/√v_t."""
    x = x_T
    for t, tp in zip(ts, ts[1:], strict=False):
        ab = sched.alpha_bars[t].double().item()
        abp = 1.0 if tp < 0 else sched.alpha_bars[tp].double().item()
        v = ab * S**2 + 1 - ab
        z = (x - math.sqrt(ab) * MU) / math.sqrt(v)
        x = math.sqrt(abp) * MU + z * (math.sqrt(abp * ab) * S**2 + math.sqrt((1 - abp) * (1 - ab))) / math.sqrt(v)
    return x


def test_ddim_eta0_with_oracle_matches_analytic_map_and_transports_to_data():
    sched = make_schedule(1000, "cosine")
    x_T = torch.tensor([[-1.5], [0.0], [2.0]], dtype=torch.float64)
    for steps in (5, 37, 1000):
        out = ddim_sample(oracle(sched), x_T, sched, steps)
        ts = ddim_timesteps(1000, steps) + [-1]
        for i in range(3):
            assert out[i, 0].item() == pytest.approx(_ddim_recursion(sched, ts, x_T[i, 0].item()), abs=1e-6)
    # With 1000 steps the DDIM ODE maps N(0, 1) (≈ the marginal at T) onto the data: x0 ≈ MU + S·x_T.
    out = ddim_sample(oracle(sched), x_T, sched, 1000)
    slope = (out[2, 0] - out[1, 0]).item() / 2.0
    assert slope == pytest.approx(S, rel=0.01)
    assert out[1, 0].item() == pytest.approx(MU, abs=0.01)


def test_ddpm_ancestral_with_oracle_matches_the_linear_gaussian_chain():
    """With the oracle every DDPM step is x_prev = a·x_t + b + σ_t z (a, b by hand below), so the output is
    N(m, v) with m, v from the scalar recursion; the sampler's Monte-Carlo moments must match it, and m ≈ MU."""
    sched = make_schedule(100, "cosine")
    m, v = 0.0, 1.0
    for t in range(99, -1, -1):
        ab = sched.alpha_bars[t].double().item()
        abp = 1.0 if t == 0 else sched.alpha_bars[t - 1].double().item()
        var2 = 0.0 if t == 0 else (1 - abp) / (1 - ab) * (1 - ab / abp)
        k = math.sqrt(1 - ab) / (ab * S**2 + 1 - ab)  # ε̂ = k(x - √ᾱ MU)
        # x̂0 = (x - √(1-ᾱ)ε̂)/√ᾱ and mean = √ᾱ_prev x̂0 + √(1-ᾱ_prev-σ²) ε̂, both linear in x
        e_a, e_b = k, -k * math.sqrt(ab) * MU
        x0_a, x0_b = (1 - math.sqrt(1 - ab) * e_a) / math.sqrt(ab), -math.sqrt(1 - ab) * e_b / math.sqrt(ab)
        c = math.sqrt(max(1 - abp - var2, 0.0))
        a, b = math.sqrt(abp) * x0_a + c * e_a, math.sqrt(abp) * x0_b + c * e_b
        m, v = a * m + b, a * a * v + var2
    gen = torch.Generator().manual_seed(2)
    x_T = torch.randn(40000, 1, generator=gen)
    out = ddpm_sample(oracle(sched), x_T, sched, generator=gen)
    assert m == pytest.approx(MU, abs=1e-3)
    assert out.mean().item() == pytest.approx(m, abs=0.005)
    assert out.std().item() == pytest.approx(math.sqrt(v), rel=0.02)


def test_eta1_consecutive_step_is_the_ddpm_posterior():
    """DDIM with η = 1 from t to t-1 is N(μ̃_t(x_t, x̂0), β̃_t) (Ho et al. 2020, eqs. 6-7)."""
    sched = make_schedule(100, "linear")
    model = oracle(sched)
    x_t = torch.tensor([[0.3], [-1.2]])
    t = 37
    _, mean, std = ddim_step(model, x_t, t, t - 1, sched, eta=1.0)
    ab, abp, beta = (sched.alpha_bars[t].item(), sched.alpha_bars[t - 1].item(), sched.betas[t].item())
    alpha = 1 - beta
    assert std.item() == pytest.approx(math.sqrt((1 - abp) / (1 - ab) * beta), rel=1e-5)
    tt = torch.full((2,), t)
    x0 = (x_t - math.sqrt(1 - ab) * model(x_t, tt)) / math.sqrt(ab)
    mu = math.sqrt(abp) * beta / (1 - ab) * x0 + math.sqrt(alpha) * (1 - abp) / (1 - ab) * x_t
    assert torch.allclose(mean, mu, atol=1e-5)
    # the final step to clean data is deterministic, and η = 0 always is
    assert ddim_step(model, x_t, 0, -1, sched, eta=1.0)[2].item() == 0.0
    assert ddim_step(model, x_t, t, t - 5, sched, eta=0.0)[2].item() == 0.0


def test_gaussian_logprob_equals_torch_normal():
    gen = torch.Generator().manual_seed(3)
    x, mean = torch.randn(4, 6, generator=gen), torch.randn(4, 6, generator=gen)
    for std in (0.37, torch.tensor([[0.1], [0.5], [1.0], [2.0]])):
        expected = torch.distributions.Normal(mean, torch.as_tensor(std).expand_as(mean)).log_prob(x).sum(1)
        assert torch.allclose(gaussian_logprob(x, mean, std), expected, atol=1e-5)


def test_sampler_logprobs_recomputable_from_stored_transitions():
    sched = make_schedule(200, "cosine")
    model = oracle(sched)
    gen = torch.Generator().manual_seed(4)
    x_T = torch.randn(5, 3, generator=gen)
    tr = ddim_sample(model, x_T, sched, 10, eta=1.0, generator=gen, return_logprobs=True, return_trajectory=True)
    assert isinstance(tr, SampleTrace)
    assert tr.logprobs.shape == (5, 10) and len(tr.trajectory) == 11 and tr.timesteps[-1] == -1
    assert torch.equal(tr.trajectory[-1], tr.x) and torch.equal(tr.trajectory[0], x_T)
    assert torch.all(tr.logprobs[:, -1] == 0)  # the last step (to clean data) has σ = 0
    for i in range(9):
        _, mean, std = ddim_step(model, tr.trajectory[i], tr.timesteps[i], tr.timesteps[i + 1], sched, eta=1.0)
        expected = torch.distributions.Normal(mean, std.expand_as(mean)).log_prob(tr.trajectory[i + 1]).sum(1)
        assert torch.allclose(tr.logprobs[:, i], expected, atol=1e-4)


def test_batched_timesteps_match_per_sample_calls():
    sched = make_schedule(100, "cosine")
    model = oracle(sched)
    x = torch.tensor([[0.2], [-0.4], [1.1]])
    t, tp = torch.tensor([90, 50, 3]), torch.tensor([70, 10, -1])
    noise = torch.tensor([[0.5], [-1.0], [2.0]])
    xb, mb, sb = ddim_step(model, x, t, tp, sched, eta=1.0, noise=noise)
    for i in range(3):
        xi, mi, si = ddim_step(model, x[i:i + 1], int(t[i]), int(tp[i]), sched, eta=1.0, noise=noise[i:i + 1])
        assert torch.allclose(xb[i], xi[0]) and torch.allclose(mb[i], mi[0])
        assert sb[i].item() == pytest.approx(si.item(), abs=1e-7)


def test_partial_denoising_then_continue_equals_full_run():
    sched = make_schedule(100, "cosine")
    model = oracle(sched)
    ts = ddim_timesteps(100, 20) + [-1]
    x_T = torch.randn(4, 2, generator=torch.Generator().manual_seed(5))
    for eta in (0.0, 1.0):
        full = sample_loop(model, x_T, sched, ts, eta, generator=torch.Generator().manual_seed(6))
        gen = torch.Generator().manual_seed(6)
        mid = sample_loop(model, x_T, sched, ts[:8], eta, generator=gen)  # device A: T .. ts[7]
        out = sample_loop(model, mid, sched, ts[7:], eta, generator=gen)  # device B continues from ts[7]
        assert torch.allclose(full, out, atol=1e-6)


def test_determinism_under_generator():
    sched = make_schedule(50, "cosine")
    model = oracle(sched)
    x_T = torch.randn(3, 4, generator=torch.Generator().manual_seed(7))
    a = ddpm_sample(model, x_T, sched, generator=torch.Generator().manual_seed(8))
    b = ddpm_sample(model, x_T, sched, generator=torch.Generator().manual_seed(8))
    c = ddpm_sample(model, x_T, sched, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert torch.equal(ddim_sample(model, x_T, sched, 10), ddim_sample(model, x_T, sched, 10))


def test_clip_x0_bounds_the_predicted_data():
    sched = make_schedule(50, "cosine")
    model = oracle(sched)
    x = torch.tensor([[30.0], [-30.0]])
    _, mean, _ = ddim_step(model, x, 0, -1, sched, clip_x0=1.0)
    assert torch.allclose(mean, torch.tensor([[1.0], [-1.0]]))


def test_sample_loop_rejects_bad_timesteps():
    sched = make_schedule(10, "cosine")
    x = torch.zeros(1, 1)
    for ts in ([5, 5, -1], [3, 7], [10, -1], [2, -2]):
        with pytest.raises(ConfigError, match="timesteps"):
            sample_loop(oracle(sched), x, sched, ts)
