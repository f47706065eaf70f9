"""Tests of the cross-modality KD objectives and protocol (edgegen.fedtune.distill) and its bench CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from edgegen.cli import main
from edgegen.config import ConfigError
from edgegen.fedtune import distill as D


def test_kd_kl_by_hand_with_temperature_scaling() -> None:
    teacher = torch.tensor([[0.0, 0.0]])  # p = (1/2, 1/2) at any T
    student = torch.tensor([[math.log(3.0), 0.0]])
    for T in (1.0, 2.0):
        q0 = 3 ** (1 / T) / (3 ** (1 / T) + 1)
        expected = T**2 * (0.5 * math.log(0.5 / q0) + 0.5 * math.log(0.5 / (1 - q0)))
        assert float(D.kd_kl(teacher, student, T)) == pytest.approx(expected, rel=1e-6)
    assert float(D.kd_kl(teacher, student, 1.0)) == pytest.approx(0.5 * math.log(4 / 3), rel=1e-6)
    assert float(D.kd_kl(student, student, 3.0)) == pytest.approx(0.0, abs=1e-7)


def test_kd_kl_direction_and_gradient_flow() -> None:
    a = torch.tensor([[2.0, 0.0, -1.0]], requires_grad=True)
    b = torch.tensor([[0.0, 1.0, 0.5]], requires_grad=True)
    pa, pb = torch.softmax(a.detach(), 1), torch.softmax(b.detach(), 1)
    kl_ab = float((pa * (pa / pb).log()).sum())
    kl_ba = float((pb * (pb / pa).log()).sum())
    assert D.kd_kl(a, b, 1.0).item() == pytest.approx(kl_ab, rel=1e-6)  # KL(teacher ‖ student)
    assert D.kd_kl(b, a, 1.0).item() == pytest.approx(kl_ba, rel=1e-6)
    assert kl_ab != pytest.approx(kl_ba)
    D.kd_kl(a, b, 2.0).backward()
    assert a.grad is None and b.grad is not None  # the teacher is detached
    with pytest.raises(ValueError, match="temperature must be > 0"):
        D.kd_kl(a, b, 0.0)


def test_shared_and_local_losses_combine_kd_and_task_terms() -> None:
    local = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    shared = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([0, 1])
    ce = torch.nn.functional.cross_entropy
    assert float(D.shared_loss(local, shared, y, 2.0, 0.5)) == pytest.approx(
        float(D.kd_kl(local, shared, 2.0) + 0.5 * ce(shared, y)), rel=1e-6)
    assert float(D.local_loss(local, shared, y, 2.0, 3.0)) == pytest.approx(
        float(D.kd_kl(shared, local, 2.0) + 3.0 * ce(local, y)), rel=1e-6)


def _tiny_data(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    y_train, y_test = torch.arange(120) % 3, torch.arange(30) % 3
    centers_m, centers_t = torch.randn(3, 8, generator=gen), torch.randn(3, 5, generator=gen)
    views = {"minilm": (centers_m[y_train] + 0.3 * torch.randn(120, 8, generator=gen),
                        centers_m[y_test] + 0.3 * torch.randn(30, 8, generator=gen)),
             "tfidf": (centers_t[y_train] + 0.3 * torch.randn(120, 5, generator=gen),
                       centers_t[y_test] + 0.3 * torch.randn(30, 5, generator=gen))}
    return {"views": views, "y_train": y_train, "y_test": y_test, "align": (torch.zeros(5, 8), torch.zeros(8))}


def test_aggregate_round_averages_only_what_it_should() -> None:
    torch.manual_seed(0)
    models = [D.DeviceModel(4, 4, 3, 2) for _ in range(3)]
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    D.aggregate_round(D.KDConfig(method="kd"), models, ["minilm", "tfidf", "minilm"], [1, 1, 2])
    w0 = [b["shared.0.weight"] for b in before]
    expect = 0.25 * w0[0] + 0.25 * w0[1] + 0.5 * w0[2]
    for i, m in enumerate(models):
        assert torch.allclose(m.state_dict()["shared.0.weight"], expect)
        assert torch.equal(m.state_dict()["encoder.weight"], before[i]["encoder.weight"])  # local module stays
        assert torch.equal(m.state_dict()["local_head.weight"], before[i]["local_head.weight"])
    D.aggregate_round(D.KDConfig(method="fedavg_full"), models, ["minilm", "tfidf", "minilm"], [1, 1, 2])
    enc = (before[0]["encoder.weight"] + 2 * before[2]["encoder.weight"]) / 3  # the minilm group only
    assert torch.allclose(models[0].state_dict()["encoder.weight"], enc)
    assert torch.allclose(models[2].state_dict()["encoder.weight"], enc)
    assert torch.equal(models[1].state_dict()["encoder.weight"], before[1]["encoder.weight"])


def test_run_bytes_delay_and_summary(tmp_path) -> None:
    data = _tiny_data()
    common = {"num_clients": 2, "rounds": 3, "local_steps": 3, "batch_size": 16, "shared_hidden": 4,
              "dirichlet_alpha": 100.0}
    s = D.run(D.KDConfig(method="kd", **common), tmp_path / "kd", quiet=True, data=data)
    shared_params = 8 * 4 + 4 + 4 * 3 + 3  # embed 8 -> hidden 4 -> 3 classes
    assert s["bytes_per_round"] == 2 * 2 * shared_params * 4  # both directions, two devices, float32
    assert s["round_delay_s_mean"] <= s["round_delay_equal_s_mean"]
    assert set(s["per_modality_acc"]) == {"minilm", "tfidf"} and set(s["local_path_acc"]) == {"minilm", "tfidf"}
    full = D.run(D.KDConfig(method="fedavg_full", **common), tmp_path / "full", quiet=True, data=data)
    assert full["bytes_per_round"] == 2 * 4 * (2 * shared_params + (8 * 8 + 8) + (5 * 8 + 8))
    local = D.run(D.KDConfig(method="local_only", **common), tmp_path / "local", quiet=True, data=data)
    assert local["bytes_per_round"] == 0 and local["round_delay_s_mean"] == local["round_delay_equal_s_mean"]
    again = D.run(D.KDConfig(method="kd", **common), tmp_path / "kd2", quiet=True, data=data)
    assert again["test_acc"] == s["test_acc"]  # seeded


def test_frozen_encoder_does_not_move() -> None:
    data = _tiny_data()
    x, y = data["views"]["minilm"][0], data["y_train"]
    for scale, moves in ((0.0, False), (1.0, True)):
        torch.manual_seed(0)
        cfg = D.KDConfig(method="kd", encoder_lr_scale=scale, local_steps=2)
        model = D.DeviceModel(8, 8, 4, 3)
        enc0, shared0 = model.encoder.weight.clone(), model.shared[0].weight.clone()
        D.local_round(cfg, model, D.make_optimizer(cfg, model), x, y, torch.Generator().manual_seed(0))
        assert (not torch.equal(model.encoder.weight, enc0)) == moves
        assert not torch.equal(model.shared[0].weight, shared0)


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="method"):
        D.KDConfig(method="fedmd").validate()
    with pytest.raises(ConfigError, match="modalities"):
        D.KDConfig(modalities=("audio",)).validate()
    with pytest.raises(ConfigError, match="temperature"):
        D.KDConfig(temperature=0.0).validate()


def test_kd_bench_cli_error() -> None:
    assert main(["fedtune", "kd", "bench", "--methods", "fedmd"]) == 2


@pytest.mark.slow
def test_kd_bench_acceptance(tmp_path) -> None:
    """The default bench with one seed and no sweep: KD beats local-only on every modality."""
    out = tmp_path / "kd"
    assert main(["fedtune", "kd", "bench", "--out", str(out), "--seeds", "1", "--sweep-temperatures",
                 "--no-frozen-encoder-ablation", "--quiet"]) == 0
    res = json.loads((out / "summary.json").read_text())["results"]
    for m in ("minilm", "tfidf"):
        assert res["kd"]["per_modality_acc"][m] > res["local_only"]["per_modality_acc"][m]
    assert np.isfinite(res["kd"]["delay_ratio_vs_equal"]) and res["kd"]["delay_ratio_vs_equal"] < 1.0
