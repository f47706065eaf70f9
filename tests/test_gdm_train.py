"""gdm/denoisers.py and gdm/train.py: denoiser contracts, EMA, checkpoint resume, CLI and bench smoke runs with
tiny budgets; a slow learning test."""

import dataclasses
import json

import pytest
import torch

from edgegen.cli import main
from edgegen.config import ConfigError
from edgegen.gdm import train as gtrain
from edgegen.gdm.ddpm import make_schedule
from edgegen.gdm.denoisers import ResidualMLP, guided, timestep_embedding
from edgegen.gdm.train import TrainBenchConfig, TrainConfig


@pytest.fixture(autouse=True)
def one_thread():
    """Small networks: 1 torch thread (2 threads on a loaded 2-core box were orders of magnitude slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = dict(diffusion_steps=50, hidden=32, blocks=1, batch_size=32, train_steps=20, eval_every=10, eval_samples=100,
            sample_steps=5, warmup_steps=5)


def test_timestep_embedding_values():
    e = timestep_embedding(torch.tensor([0, 3]), 6)
    assert e.shape == (2, 6)
    assert torch.allclose(e[0], torch.tensor([1.0, 1, 1, 0, 0, 0]))
    freqs = torch.tensor([1.0, 10000 ** (-1 / 3), 10000 ** (-2 / 3)])
    assert torch.allclose(e[1], torch.cat([torch.cos(3 * freqs), torch.sin(3 * freqs)]), atol=1e-6)
    assert timestep_embedding(torch.tensor([1]), 5).shape == (1, 5)


def test_residual_mlp_shapes_conditioning_and_config():
    torch.manual_seed(0)
    m = ResidualMLP(data_dim=64, hidden=32, blocks=2, num_classes=10)
    x, t = torch.randn(4, 64), torch.tensor([0, 10, 500, 999])
    assert m(x, t).shape == (4, 64)
    null = torch.full((4,), 10)
    assert torch.allclose(m(x, t, None), m(x, t, null))  # cond None = the null class
    for block in m.blocks:  # zero-initialised output layers make every block the identity at init
        block.fc2.weight.data.normal_(std=0.1)
    assert not torch.allclose(m(x, t, torch.zeros(4, dtype=torch.long)), m(x, t, null))
    rebuilt = ResidualMLP(**m.config())
    rebuilt.load_state_dict(m.state_dict())
    assert torch.allclose(rebuilt(x, t, null), m(x, t, null))
    # guidance: w = 0 is the conditional model, w > 0 extrapolates away from the unconditional one
    c = torch.arange(4)
    assert torch.allclose(guided(m, 0.0)(x, t, c), m(x, t, c))
    w = 2.0
    assert torch.allclose(guided(m, w)(x, t, c), (1 + w) * m(x, t, c) - w * m(x, t, null), atol=1e-5)


def test_ema_update():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = a.weight.detach().clone()
    gtrain.ema_update(a, b, 0.9)
    assert torch.allclose(a.weight, 0.9 * before + 0.1 * b.weight)


def test_train_steps_reduces_loss_on_digits():
    torch.manual_seed(0)
    model = ResidualMLP(hidden=64, blocks=1)
    x, _ = gtrain.training_data()
    sched = make_schedule(100)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = gtrain.train_steps(model, opt, x, sched, 150, 64, torch.Generator().manual_seed(0))
    assert len(losses) == 150
    assert sum(losses[-30:]) / 30 < 0.8 * sum(losses[:10]) / 10


def test_training_data_is_the_half_not_used_as_reference():
    from edgegen.gdm.metrics import real_halves

    x, y = gtrain.training_data("half_a")
    assert torch.equal(x, torch.from_numpy(real_halves()[0])) and len(y) == 898
    assert len(gtrain.training_data("all")[0]) == 1797
    with pytest.raises(ConfigError, match="data"):
        gtrain.training_data("half_c")


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="sample_steps"):
        TrainConfig(diffusion_steps=10, sample_steps=20).validate()
    with pytest.raises(ConfigError, match="schedule"):
        TrainConfig(schedule="sigmoid").validate()
    with pytest.raises(ConfigError, match="variants"):
        TrainBenchConfig(variants=("uncond", "latent")).validate()


def test_resume_after_interruption_gives_identical_weights(tmp_path, monkeypatch):
    cfg = TrainConfig(**TINY)
    gtrain.train(cfg, tmp_path / "full", quiet=True)
    real, calls = gtrain.train_steps, []

    def dies_in_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(gtrain, "train_steps", dies_in_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        gtrain.train(cfg, tmp_path / "cut", quiet=True)
    assert json.loads((tmp_path / "cut" / "ckpt" / "meta.json").read_text())["step"] == 10
    monkeypatch.setattr(gtrain, "train_steps", real)
    summary = gtrain.train(cfg, tmp_path / "cut", quiet=True)
    a = torch.load(tmp_path / "full" / "ckpt" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "ckpt" / "last.pt", weights_only=True)
    for key in ("model", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    assert [r["step"] for r in gtrain.RunDir(tmp_path / "cut", tensorboard=False).read_metrics()] == [0, 10, 20]
    assert summary["train_steps"] == 20
    model, sched, loaded = gtrain.load_model(tmp_path / "cut")
    assert loaded == cfg and sched.num_steps == 50 and model.config()["hidden"] == 32
    (tmp_path / "cut" / "summary.json").unlink()
    with pytest.raises(ConfigError, match="another config"):
        gtrain.train(dataclasses.replace(cfg, lr=5e-4), tmp_path / "cut", quiet=True)


def test_cli_train_and_bench_smoke(tmp_path, capsys):
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    assert main(["gdm", "train", "--out", str(tmp_path / "one"), "--seed", "1", "--conditional", "--quiet",
                 *flags]) in (0, None)
    out = json.loads(capsys.readouterr().out.split("\n\nsamples")[0])
    assert out["fid_ratio"] == pytest.approx(out["feature_fid"] / out["real_floor_fid"])
    assert (tmp_path / "one" / "plots" / "samples.png").exists()
    bench_flags = [f"--train.{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    assert main(["gdm", "train-bench", "--out", str(tmp_path / "bench"), "--seeds", "2", "--quiet",
                 *bench_flags]) in (0, None)
    s = json.loads((tmp_path / "bench" / "summary.json").read_text())
    assert s["kind"] == "gdm_train_bench" and set(s["results"]) == {"uncond", "cond"}
    r = s["results"]["cond"]
    for key in ("feature_fid", "real_floor_fid", "fid_ratio", "class_entropy", "precision", "recall",
                "train_wall_s"):
        assert len(r[f"{key}_per_seed"]) == 2 and r[key] == pytest.approx(sum(r[f"{key}_per_seed"]) / 2)
    assert r["within_fid_ratio_all_seeds"] is False  # 20 steps of a tiny model are far from the floor
    for name in ("samples_uncond.png", "samples_cond.png", "fid_vs_train_wall_s.png"):
        assert (tmp_path / "bench" / "plots" / name).exists()
    lines = gtrain.report_section(tmp_path / "bench", s, tmp_path / "fig", tmp_path)
    text = "\n".join(lines)
    assert "not met" in text and "samples_cond" in text and (tmp_path / "fig").exists()


@pytest.mark.slow
def test_short_training_beats_untrained_fid_by_a_wide_margin(tmp_path):
    cfg = TrainConfig(train_steps=1500, eval_every=1500, warmup_steps=100, sample_steps=50, ema_decay=0.99)
    s = gtrain.train(cfg, tmp_path, quiet=True)
    assert s["feature_fid"] < 0.25 * s["untrained_feature_fid"]
    assert s["recall"] > 0.5
