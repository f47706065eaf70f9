import json

import numpy as np
import pytest
import torch

from edgegen.cli import main
from edgegen.config import ConfigError
from edgegen.gdm import federated as fed
from edgegen.gdm import quantize as qz

TINY = dict(num_devices=4, participation=0.5, rounds=2, local_steps=2, batch_size=8, hidden=16, blocks=1,
            diffusion_steps=50, eval_every=2, eval_samples=30, sample_steps=5)


def test_dirichlet_split_is_a_partition_with_skewed_labels():
    labels = np.repeat(np.arange(10), 50)
    parts = fed.dirichlet_split(labels, 5, 0.1, np.random.default_rng(0), min_size=10)
    joined = np.sort(np.concatenate(parts))
    assert np.array_equal(joined, np.arange(500)) and min(len(p) for p in parts) >= 10
    # α = 0.1: a device's most common label holds far more than the IID share of 10%
    top_share = [np.bincount(labels[p], minlength=10).max() / len(p) for p in parts]
    assert np.mean(top_share) > 0.3
    with pytest.raises(ValueError, match="min_size"):
        fed.dirichlet_split(labels, 60, 0.1, np.random.default_rng(0), min_size=10)


def test_fedavg_update_weights_by_sample_count():
    g = {"w": torch.tensor([1.0, 1.0])}
    deltas = [{"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([0.0, 4.0])}]
    out = fed.fedavg_update(g, deltas, [3.0, 1.0])
    assert torch.allclose(out["w"], torch.tensor([1.75, 2.0]))


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="method"):
        fed.GdmFedConfig(method="nope").validate()
    with pytest.raises(ConfigError, match="error_demand_max"):
        fed.GdmFedConfig(error_demand_min=0.1, error_demand_max=0.01).validate()


@pytest.mark.parametrize("method", fed.METHODS)
def test_tiny_run_accounts_bytes_energy_and_time(tmp_path, method):
    cfg = fed.GdmFedConfig(method=method, fixed_levels=16, **TINY)
    s = fed.run(cfg, tmp_path / method, quiet=True)
    model = fed.build_model(cfg)
    shapes = [p.numel() for p in model.state_dict().values()]
    per_device = {"fp32_fedavg": 32 * sum(shapes), "fixed_q": sum(4 * n + 64 for n in shapes)}
    rounds, k = cfg.rounds, cfg.devices_per_round
    assert s["uplink_bytes_fp32"] == rounds * k * 32 * sum(shapes) / 8
    if method in per_device:
        assert s["uplink_bytes"] == rounds * k * per_device[method] / 8
    else:
        assert 2 * sum(shapes) / 8 * rounds * k <= s["uplink_bytes"] <= 8 * sum(shapes) / 8 * rounds * k + 1e4
    assert json.loads((tmp_path / method / "config.json").read_text())["method"] == method
    metrics = [r for r in fed.RunDir(tmp_path / method, tensorboard=False).read_metrics() if r["step"] > 0]
    for r in metrics:
        assert r["round_time_s"] <= r["deadline_s"] * (1 + 1e-9)
        assert r["energy_j"] <= r["energy_max_power_j"] * (1 + 1e-9)
        assert r["energy_max_power_j"] <= r["energy_fp32_max_power_j"] * (1 + 1e-9)
    if method == "fp32_fedavg":
        assert s["energy_j"] == pytest.approx(s["energy_fp32_max_power_j"])
    assert np.isfinite(s["feature_fid"]) and (tmp_path / method / "plots" / "samples.png").exists()


def test_quantized_upload_matches_its_error_demand(tmp_path):
    cfg = fed.GdmFedConfig(method="dynamic_q", error_demand_min=0.01, error_demand_max=0.01, **TINY)
    fed.run(cfg, tmp_path / "d", quiet=True)
    rows = [r for r in fed.RunDir(tmp_path / "d", tensorboard=False).read_metrics() if r["step"] > 0]
    # the realised relative error E‖Δ-Δ̂‖²/‖Δ‖² stays below the demand (the bound is a worst case)
    assert all(0 < r["quant_rel_error"] <= 0.01 for r in rows)
    assert all(2 <= r["bits_per_entry_mean"] <= 8 for r in rows)


def test_resume_after_an_interruption_gives_the_same_model(tmp_path, monkeypatch):
    cfg = fed.GdmFedConfig(method="dynamic_q", **{**TINY, "rounds": 3, "eval_every": 3})
    fed.run(cfg, tmp_path / "full", quiet=True)
    original = fed._one_round

    def crash_in_round_2(cfg_, r, *args):
        if r == 2:
            raise KeyboardInterrupt
        return original(cfg_, r, *args)

    monkeypatch.setattr(fed, "_one_round", crash_in_round_2)
    with pytest.raises(KeyboardInterrupt):
        fed.run(cfg, tmp_path / "cut", quiet=True)
    monkeypatch.setattr(fed, "_one_round", original)
    s = fed.run(cfg, tmp_path / "cut", quiet=True)
    a = torch.load(tmp_path / "full" / "ckpt" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "ckpt" / "last.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert s["uplink_bytes"] == json.loads((tmp_path / "full" / "summary.json").read_text())["uplink_bytes"]
    steps = [r["step"] for r in fed.RunDir(tmp_path / "cut", tensorboard=False).read_metrics()]
    assert steps == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="another config"):
        (tmp_path / "cut" / "summary.json").unlink()
        fed.run(fed.GdmFedConfig(method="fixed_q", **{**TINY, "rounds": 3}), tmp_path / "cut", quiet=True)


def test_cli_fed_bench_smoke(tmp_path):
    out = tmp_path / "bench"
    flags = [f"--fed.{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    code = main(["gdm", "fed", "bench", "--seeds", "1", "--out", str(out), "--allocation-instances", "2",
                 "--quiet", *flags])
    assert code in (0, None)
    s = json.loads((out / "summary.json").read_text())
    assert s["kind"] == "gdm_fed_bench" and set(s["results"]) == set(fed.METHODS)
    for r in s["results"].values():
        assert {"feature_fid", "uplink_bytes", "energy_j", "round_time_s"} <= set(r)
    assert s["acceptance"]["byte_reduction_dynamic_vs_fp32"] > 1
    assert s["allocation_check"]["instances"] == 2
    assert all((out / "plots" / f"{n}.png").exists() for n in ("fid_vs_rounds", "energy_vs_rounds", "samples"))
    from edgegen.gdm.fed_bench import report_section

    lines = report_section(out, s, tmp_path / "figs", tmp_path)
    assert any("× fewer uplink bytes" in line for line in lines)


def test_levels_for_error_on_a_real_update_is_within_bounds():
    delta = {"w": torch.randn(100, generator=torch.Generator().manual_seed(0)) * 1e-3}
    q = qz.levels_for_error(delta, 0.01 * fed.sq_norm(delta), 4, 256)
    assert qz.state_error_bound(delta, q) <= 0.01 * fed.sq_norm(delta)
