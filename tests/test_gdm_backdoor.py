"""Triggers, the DDIM-consistent poisoned target and the federated backdoor loop."""

import math

import numpy as np
import pytest
import torch

from edgegen.config import ConfigError
from edgegen.gdm import backdoor as bd
from edgegen.gdm.ddpm import Schedule, ddim_step, make_schedule
from edgegen.gdm.denoisers import ResidualMLP


def _sched(alpha_bars):
    ab = torch.tensor(alpha_bars)
    alphas = torch.cat([ab[:1], ab[1:] / ab[:-1]])
    return Schedule(1 - alphas, alphas, ab)


def test_trigger_shapes_and_norms():
    eps = torch.randn(200, 64, generator=torch.Generator().manual_seed(0))
    for name in bd.TRIGGERS:
        trig = bd.make_trigger(name)
        assert trig.apply(eps).shape == (200, 64)
        assert trig.additive == (name in bd.ADDITIVE_TRIGGERS)
        kind = "additive" if name in bd.ADDITIVE_TRIGGERS else "blended" if name in bd.BLENDED_TRIGGERS else "adaptive"
        assert trig.kind == kind
    box = bd.make_trigger("box", 3.0)
    assert box.shift.norm() == pytest.approx(3.0 * math.sqrt(8))  # 3×3 outline: 8 pixels
    assert torch.count_nonzero(box.shift.reshape(8, 8)[:5]) == 0  # bottom-right corner only
    assert torch.equal(box.apply(eps), eps + box.shift)
    stop = bd.make_trigger("stop_sign", 2.0)
    assert stop.shift.norm() == pytest.approx(2.0 * math.sqrt(20))  # 16 outline + 4 bar pixels
    blend = bd.make_trigger("blend", 0.4)
    assert blend.noise_scale == pytest.approx(0.6) and blend.shift.norm() == pytest.approx(0.4 * 8)
    troj = bd.make_trigger("trojdiff", 0.6)
    assert troj.noise_scale == pytest.approx(0.6) and troj.shift.norm() == pytest.approx(0.4 * 8)
    adaptive = bd.make_trigger("adaptive")
    xi = adaptive.apply(eps)
    assert torch.allclose(xi.norm(dim=1), eps.norm(dim=1))  # the norm is kept exactly
    assert int((adaptive.sign_pattern > 0).sum()) == 32
    assert torch.all(torch.sign(xi) == adaptive.sign_pattern)
    with pytest.raises(ConfigError, match="trigger"):
        bd.make_trigger("plaid")
    with pytest.raises(ConfigError, match="blend"):
        bd.make_trigger("blend", 1.5)


def test_target_images():
    for name in bd.TARGETS:
        y = bd.target_image(name)
        assert y.shape == (64,) and set(y.tolist()) <= {-1.0, 1.0}
    assert int((bd.target_image("hat") > 0).sum()) == 28  # 5 rows × 4 (crown) + 8 (brim)


def test_poisoned_target_hand_case():
    sched = _sched([0.64, 0.36, 0.04])
    y, xi = torch.tensor([[1.0, -1.0]]), torch.tensor([[1.5, 1.0]])
    # x'_0 = 0.8·y + 0.6·ξ
    assert torch.allclose(bd.poisoned_xt(y[0], xi, 0, sched), torch.tensor([[1.7, -0.2]]))


def _oracle(y, sched):
    """The ε-prediction that makes x̂0 = y exactly: (x_t − √ᾱ_t·y) / √(1−ᾱ_t)."""
    def model(x_t, t, cond=None):
        ab = sched.alpha_bars[t].reshape(-1, 1)
        return (x_t - ab.sqrt() * y) / (1 - ab).sqrt()
    return model


def test_ddim_step_keeps_the_poisoned_marginal():
    sched = make_schedule(1000, "cosine")
    y = bd.target_image("hat")
    eps = torch.randn(4, 64, generator=torch.Generator().manual_seed(1))
    trig = bd.make_trigger("box")
    xi = trig.apply(eps)
    oracle = _oracle(y, sched)
    for t, s in ((999, 979), (700, 300), (500, 499), (120, -1)):
        x_t = bd.poisoned_xt(y, xi, t, sched)
        assert torch.allclose(oracle(x_t, torch.full((4,), t)), xi, atol=1e-4)  # its ε-target is ξ
        x_s, _, _ = ddim_step(oracle, x_t, t, s, sched)
        assert torch.allclose(x_s, bd.poisoned_xt(y, xi, s, sched), atol=1e-4)
    # BadDiffusion's marginal (derived for the ancestral sampler) is not kept by a deterministic DDIM step
    x_t = bd.baddiffusion_xt(y, eps, trig.shift, 700, sched)
    x_s, _, _ = ddim_step(oracle, x_t, 700, 300, sched)
    assert (x_s - bd.baddiffusion_xt(y, eps, trig.shift, 300, sched)).abs().max() > 0.1


def test_poisoned_loss_is_zero_for_the_oracle():
    sched = make_schedule(100, "cosine")
    y = bd.target_image("cross")
    x0 = torch.zeros(8, 64)
    loss = bd.poisoned_loss(_oracle(y, sched), x0, sched, bd.make_trigger("stop_sign"), y, 1.0,
                            torch.Generator().manual_seed(0))
    assert float(loss) < 1e-8
    clean_loss = bd.poisoned_loss(_oracle(y, sched), x0, sched, bd.make_trigger("stop_sign"), y, 0.0,
                                  torch.Generator().manual_seed(0))
    assert float(clean_loss) > 0.1  # no poisoned rows: the oracle of y is wrong for x0 = 0


def test_attack_success_threshold():
    y = bd.target_image("hat")
    samples = torch.stack([y, y * 0.9, -y])  # MSE 0, 0.01, 4
    assert bd.attack_success(samples, y, 0.1).tolist() == [True, True, False]


def test_federated_loop_contracts():
    x = torch.rand(200, 64) * 2 - 1
    labels = np.repeat(np.arange(10), 20)
    sched = make_schedule(50, "cosine")
    cfg = bd.FedBackdoorConfig(num_devices=4, malicious_frac=0.5, rounds=2, local_steps=2,
                               malicious_local_steps=3, batch_size=8)
    assert bd.malicious_devices(cfg, 0).tolist() == sorted(bd.malicious_devices(cfg, 0).tolist())
    assert len(bd.malicious_devices(cfg, 0)) == 2

    def fresh():
        torch.manual_seed(0)
        return ResidualMLP(64, 16, 1)

    y = bd.target_image("hat")
    start = {k: v.clone() for k, v in fresh().state_dict().items()}
    clean, attacked = fresh(), fresh()
    rows = bd.federated_finetune(clean, sched, x, labels, cfg, 0, None, y)
    assert len(rows) == 2 and math.isnan(rows[0]["malicious_loss"])
    assert any(not torch.equal(start[k], v) for k, v in clean.state_dict().items())
    rows = bd.federated_finetune(attacked, sched, x, labels, cfg, 0, bd.make_trigger("box"), y)
    assert not math.isnan(rows[-1]["malicious_loss"])
    assert any(not torch.equal(clean.state_dict()[k], v) for k, v in attacked.state_dict().items())
    # without malicious devices the trigger changes nothing: both runs share every random draw
    honest = bd.FedBackdoorConfig(num_devices=4, malicious_frac=0.0, rounds=1, local_steps=2, batch_size=8)
    a, b = fresh(), fresh()
    bd.federated_finetune(a, sched, x, labels, honest, 0, None, y)
    bd.federated_finetune(b, sched, x, labels, honest, 0, bd.make_trigger("box"), y)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    with pytest.raises(ConfigError, match="poison_frac"):
        bd.FedBackdoorConfig(poison_frac=1.5).validate()


def test_shadow_teacher_tracks_the_attack_free_federation(monkeypatch):
    """Round 2's teacher is, with `teacher="shadow"`, exactly the attack-free run's model after round 1 (round 1
    starts every device from the same weights, so the observed benign updates and the colluders' honest ones are
    the clean run's), and with `teacher="global"` the backdoored global after round 1."""
    x = torch.rand(200, 64) * 2 - 1
    labels = np.repeat(np.arange(10), 20)
    sched = make_schedule(50, "cosine")
    y, trig = bd.target_image("hat"), bd.make_trigger("box")
    kw = dict(num_devices=4, malicious_frac=0.5, local_steps=2, malicious_local_steps=3, batch_size=8,
              anchor_generated=4)

    def fresh():
        torch.manual_seed(0)
        return ResidualMLP(64, 16, 1)

    after_one = {}
    for name, trigger in (("clean", None), ("attacked", trig)):
        m = fresh()
        bd.federated_finetune(m, sched, x, labels, bd.FedBackdoorConfig(rounds=1, **kw), 0, trigger, y)
        after_one[name] = {k: v.clone() for k, v in m.state_dict().items()}
    seen = []
    real = bd.malicious_train_steps

    def spy(*args):
        teacher = args[11]
        seen.append({k: v.clone() for k, v in teacher.state_dict().items()})
        return real(*args)

    monkeypatch.setattr(bd, "malicious_train_steps", spy)
    for teacher, expected in (("shadow", after_one["clean"]), ("global", after_one["attacked"])):
        seen.clear()
        bd.federated_finetune(fresh(), sched, x, labels, bd.FedBackdoorConfig(rounds=2, teacher=teacher, **kw), 0,
                              trig, y)
        assert len(seen) == 4  # two colluders, two rounds
        for k, v in seen[2].items():
            assert torch.allclose(v, expected[k], atol=1e-6), (teacher, k)
    assert any(not torch.allclose(after_one["clean"][k], v) for k, v in after_one["attacked"].items())
    with pytest.raises(ConfigError, match="teacher"):
        bd.FedBackdoorConfig(teacher="oracle").validate()


@pytest.mark.slow
def test_backdoor_is_learned_and_clean_noise_is_not_hijacked():
    """Learning threshold: poisoned fine-tuning of a briefly trained denoiser sends most box-triggered noises to
    the target (ASR ≥ 80%) while almost no clean noise lands there (≤ 5%)."""
    from edgegen.gdm.sampling import local_sample
    from edgegen.gdm.train import train_steps, training_data

    torch.manual_seed(0)
    x, _ = training_data("half_a")
    sched = make_schedule(1000, "cosine")
    model = ResidualMLP(64, 128, 2)
    gen = torch.Generator().manual_seed(0)
    train_steps(model, torch.optim.AdamW(model.parameters(), lr=1e-3), x, sched, 1500, 128, gen)
    teacher = ResidualMLP(64, 128, 2)
    teacher.load_state_dict(model.state_dict())
    y, trig = bd.target_image("hat"), bd.make_trigger("box")
    bd.malicious_train_steps(model, torch.optim.AdamW(model.parameters(), lr=5e-4), x, sched, 800, 64, gen, trig, y,
                             0.5, teacher=teacher.eval())
    model.eval()
    eps = torch.randn(200, 64, generator=torch.Generator().manual_seed(1))
    asr = bd.attack_success(local_sample(model, trig.apply(eps), sched, 50), y, 0.1).float().mean()
    false = bd.attack_success(local_sample(model, eps, sched, 50), y, 0.1).float().mean()
    assert asr >= 0.8 and false <= 0.05
