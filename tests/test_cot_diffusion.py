"""Graph diffusion pieces: schedule, noising, posterior by hand, equivariance, decoding masks, training resume."""

import numpy as np
import pytest
import torch

from edgegen.microservices.cot import diffusion as D
from edgegen.microservices.cot.problem import Tables, generate, overflow_bytes
from edgegen.microservices.cot.solvers import greedy


def test_schedule_and_timesteps():
    a = D.alpha_bar(20)
    assert a[0] == pytest.approx(1.0) and torch.all(a[1:] < a[:-1]) and a[-1] < 1e-3
    assert D.timesteps(20, 1) == list(range(20, -1, -1))
    assert D.timesteps(20, 2) == [20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0]
    assert D.timesteps(10, 4) == [10, 6, 2, 0]


def test_q_sample_extremes():
    y0 = torch.tensor([[0, 1, 2, 3]] * 50)
    assert torch.equal(D.q_sample(y0, torch.ones(50), 4), y0)
    noisy = D.q_sample(y0, torch.zeros(50), 4, torch.Generator().manual_seed(0))
    assert (noisy != y0).float().mean() == pytest.approx(0.75, abs=0.08)  # uniform over 4: 3/4 differ


def test_posterior_by_hand():
    # M = 2, ᾱ_t = 0.5, ᾱ_s = 0.8 → α = 0.625; y_t = 0; p0 = (0.9, 0.1)
    # q(y_t=0 | y_s=c) = 0.625·[c=0] + 0.1875 → (0.8125, 0.1875); prior = 0.8·p0 + 0.1 → (0.82, 0.18)
    post = D.posterior(torch.tensor([0]), torch.tensor([[0.9, 0.1]]), 0.5, 0.8)
    num = np.array([0.8125 * 0.82, 0.1875 * 0.18])
    np.testing.assert_allclose(post.numpy()[0], num / num.sum(), rtol=1e-6)
    # s = 0 limit (ᾱ_s = 1): the posterior is the model's p0 reweighted by the likelihood of y_t
    post0 = D.posterior(torch.tensor([1]), torch.tensor([[0.5, 0.5]]), 0.2, 1.0)
    like = np.array([0.4, 0.2 + 0.4])
    np.testing.assert_allclose(post0.numpy()[0], like / like.sum(), rtol=1e-6)


def test_denoiser_is_device_permutation_equivariant():
    torch.manual_seed(0)
    model = D.Denoiser(D.DiffusionConfig(hidden=16)).eval()
    t = generate(5, 4, np.random.default_rng(0)).tables()
    perm = np.array([0, 3, 1, 2])  # keep the source (device 0) first is not needed: features carry the flag
    tp = Tables(t.comp[:, perm], t.comm[:, perm][:, :, perm], t.inp[perm], t.out[perm], t.mem, t.cap[perm])
    y = torch.tensor([[0, 1, 2, 3, 1]])
    inv = np.argsort(perm)
    with torch.no_grad():
        a = model(D.batch_features([t]), y, torch.tensor([3]))
        b = model(D.batch_features([tp]), torch.as_tensor(inv)[y], torch.tensor([3]))
    torch.testing.assert_close(a[..., perm], b, rtol=1e-4, atol=1e-5)


def test_decode_respects_capacity_and_prefers_probable_devices():
    comp = np.ones((3, 2))
    t = Tables(comp, np.zeros((2, 2, 2)), np.zeros(2), np.zeros(2), np.array([1.0, 1.0, 1.0]), np.array([2.0, 1.0]))
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]])
    serve = D.decode(t, probs)
    assert overflow_bytes(t, serve) == 0.0
    assert list(serve) == [0, 0, 1]  # the least confident step goes where there is room


def test_train_resume_and_solve(tmp_path):
    rng = np.random.default_rng(0)
    data = []
    for _ in range(6):
        t = generate(4, 3, rng).tables()
        data.append((t, greedy(t)["serve"]))
    cfg = D.DiffusionConfig(hidden=8, train_iters=4, batch_size=3, diffusion_steps=4)
    m1, info = D.train(cfg, data, tmp_path, quiet=True, ckpt_every=2)
    assert info["train_iters"] == 4 and np.isfinite(info["final_loss"])
    longer = D.DiffusionConfig(hidden=8, train_iters=6, batch_size=3, diffusion_steps=4)
    with pytest.raises(ValueError, match="another config"):
        D.train(longer, data, tmp_path, quiet=True)
    m2, info2 = D.train(cfg, data, tmp_path, quiet=True)  # finished: resumes at step 4, trains nothing
    assert info2["train_iters"] == 4
    for p, q in zip(m1.parameters(), m2.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    model = D.load_model(cfg, tmp_path)
    t = data[0][0]
    for stride in (1, 2, 4):
        res = D.solve(model, t, stride, 3, seed=0, diffusion_steps=4)
        assert res["feasible"] and overflow_bytes(t, res["serve"]) == 0.0
        assert 0.0 <= res["raw_feasible_frac"] <= 1.0
