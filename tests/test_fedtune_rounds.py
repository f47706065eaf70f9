"""Tests of the federated LoRA loop (edgegen.fedtune.rounds) and the digits task."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("peft")

from edgegen.cli import main  # noqa: E402
from edgegen.config import ConfigError  # noqa: E402
from edgegen.fedtune import lora, rounds  # noqa: E402
from edgegen.fedtune.rounds import FedConfig  # noqa: E402
from edgegen.fedtune.tasks import digits_task, dirichlet_split  # noqa: E402

FAST = {"rounds": 2, "local_steps": 2, "batch_size": 16, "lr": 1e-2}


@pytest.fixture(scope="module")
def task():
    return digits_task()


def test_digits_task_contract(task) -> None:
    assert task.train[0].shape == (1005, 64) and task.test[0].shape == (360, 64)
    assert set(task.train_labels.tolist()) == set(range(10))
    a, b = task.make_base(), task.make_base()
    assert a is not b and all(not p.requires_grad for p in a.parameters())
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert torch.all(a.out.bias == 0)  # the new head
    assert torch.equal(digits_task().make_base().fc1.weight, a.fc1.weight)  # pre-training is deterministic


def test_dirichlet_split_partitions_and_is_seeded() -> None:
    labels = np.repeat(np.arange(5), 40)
    parts = dirichlet_split(labels, 4, 0.5, np.random.default_rng(3), min_size=5)
    assert sorted(np.concatenate(parts).tolist()) == list(range(200))
    assert all(len(p) >= 5 for p in parts)
    again = dirichlet_split(labels, 4, 0.5, np.random.default_rng(3), min_size=5)
    assert all(np.array_equal(p, q) for p, q in zip(parts, again, strict=True))
    with pytest.raises(ValueError, match="dirichlet_alpha must be > 0"):
        dirichlet_split(labels, 4, 0.0, np.random.default_rng(0))


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="method"):
        FedConfig(method="fedprox").validate()
    with pytest.raises(ConfigError, match="full_ft"):
        FedConfig(tier="minilm", method="full_ft").validate()
    with pytest.raises(ConfigError, match="device_gflops"):
        FedConfig(device_gflops=(1.0,)).validate()


def test_device_ranks_per_method(task) -> None:
    het = rounds.make_devices(FedConfig(), task)
    assert het.ranks == [2, 4, 8, 16, 2, 4, 8, 16, 2, 4]
    assert rounds.make_devices(FedConfig(method="homlora_min"), task).ranks == [2] * 10
    hmax = rounds.make_devices(FedConfig(method="homlora_max"), task)
    assert hmax.ranks == [16] * 10 and np.flatnonzero(hmax.eligible).tolist() == [3, 7]


def _updates(ranks, sizes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ups = []
    for r, n in zip(ranks, sizes, strict=True):
        u = {"lora.fc1.B": torch.randn(128, r, generator=gen), "lora.fc1.A": torch.randn(r, 64, generator=gen),
             "lora.fc2.B": torch.randn(128, r, generator=gen), "lora.fc2.A": torch.randn(r, 128, generator=gen),
             "head.out.weight": torch.full((10, 128), float(r)), "head.out.bias": torch.full((10,), float(r))}
        ups.append((u, r, n))
    return ups


def test_aggregate_matches_lora_functions(task) -> None:
    ups = _updates([2, 4, 8], [100, 50, 50])
    w = lora.data_size_weights([100, 50, 50])
    for method in ("hetlora_size", "flora", "flexlora", "hetlora_frobenius"):
        cfg = FedConfig(method=method, client_ranks=(2, 4, 8), device_gflops=(1.0, 1.0, 1.0))
        state = rounds.init_state(cfg, task, rounds.make_devices(cfg, task))
        new = rounds.aggregate(cfg, task, state, ups)
        Bs = [u["lora.fc1.B"] for u, _, _ in ups]
        As = [u["lora.fc1.A"] for u, _, _ in ups]
        # head: data-size average of 2, 4, 8 with weights 1/2, 1/4, 1/4 = 4
        assert torch.allclose(new["head.out.bias"], torch.full((10,), 4.0))
        if method == "hetlora_size":
            B_bar, A_bar = lora.aggregate_zero_pad(Bs, As, w)
            assert torch.allclose(new["lora.fc1.B"], B_bar.float()) and torch.allclose(new["lora.fc1.A"], A_bar.float())
        elif method == "hetlora_frobenius":
            B_bar, _ = lora.aggregate_zero_pad(Bs, As, lora.frobenius_weights(Bs, As))
            assert torch.allclose(new["lora.fc1.B"], B_bar.float())
        else:  # flora (delta was zero) and flexlora: the exact weighted product
            assert torch.allclose(new["delta.fc1"], lora.weighted_product(Bs, As, w).float(), atol=1e-4)
    cfg = FedConfig(method="flora")
    state = rounds.init_state(cfg, task, rounds.make_devices(cfg, task))
    assert rounds.aggregate(cfg, task, state, []) is state  # nobody reported: unchanged


def test_client_payload_is_the_truncation(task) -> None:
    cfg = FedConfig(method="hetlora_size")
    state = rounds.init_state(cfg, task, rounds.make_devices(cfg, task))
    payload = rounds.client_payload(cfg, task, state, 4)
    assert torch.equal(payload["lora.fc1.A"], state["lora.fc1.A"][:4])
    assert payload["lora.fc1.B"].shape == (128, 4)
    # a PEFT client with that payload (B = 0) computes exactly the base model with the global head
    model = rounds.client_model(cfg, task, payload, 4, init_seed=0)
    x = task.test[0][:5]
    assert torch.allclose(model(x), rounds.global_model(cfg, task, state)(x), atol=1e-6)


def test_check_update_rejects_malformed() -> None:
    good = {"a": torch.zeros(2, 3), "b": torch.ones(4)}
    shapes = {"a": (2, 3), "b": (4,)}
    assert rounds.check_update(good, shapes) is None
    assert "shape" in rounds.check_update({**good, "a": torch.zeros(2, 2)}, shapes)
    assert "NaN" in rounds.check_update({**good, "b": torch.tensor([0, float("inf"), 0, 0])}, shapes)
    assert "missing ['b']" in rounds.check_update({"a": good["a"]}, shapes)


def test_round_bytes_match_hand_count(task, tmp_path) -> None:
    # ranks 2,4,8,16,2,4,8,16,2,4 (sum 66); LoRA on fc1 (128x64) and fc2 (128x128): 448 params per rank;
    # head 10x128 + 10 = 1290 params; float32.
    for method, up, down in (("hetlora_size", 66 * 448 * 4 + 10 * 1290 * 4, 66 * 448 * 4 + 10 * 1290 * 4),
                             ("flora", 66 * 448 * 4 + 10 * 1290 * 4, 10 * (66 * 448 * 4 + 1290 * 4))):
        s = rounds.run(FedConfig(method=method, **{**FAST, "rounds": 1}), tmp_path / method, quiet=True, task=task)
        assert s["uplink_bytes"] == up and s["downlink_bytes"] == down


def test_faults_do_not_stop_the_round(task, tmp_path) -> None:
    cfg = FedConfig(**FAST, dropout_prob=0.3, corrupt_prob=0.5)
    s = rounds.run(cfg, tmp_path / "faults", quiet=True, task=task)
    assert s["dropped"] > 0 and s["rejected"] > 0
    rows = [json.loads(json.dumps(r)) for r in rounds.RunDir(tmp_path / "faults").read_metrics()]
    for r in rows:
        assert r["aggregated"] + r["dropped"] + r["rejected"] == r["clients"] == 10
    assert np.isfinite(s["test_acc"])


def test_resume_after_kill_matches_uninterrupted(task, tmp_path, monkeypatch) -> None:
    cfg = FedConfig(method="flexlora", **{**FAST, "rounds": 4})
    full = rounds.run(cfg, tmp_path / "full", quiet=True, task=task)

    real_round = rounds.run_round

    def dying_round(cfg_, task_, devices, state, t, *args):
        if t == 2:
            raise KeyboardInterrupt  # killed during round 3
        return real_round(cfg_, task_, devices, state, t, *args)

    monkeypatch.setattr(rounds, "run_round", dying_round)
    with pytest.raises(KeyboardInterrupt):
        rounds.run(cfg, tmp_path / "killed", quiet=True, task=task)
    monkeypatch.setattr(rounds, "run_round", real_round)
    resumed = rounds.run(cfg, tmp_path / "killed", quiet=True, task=task)
    for key in ("test_acc", "test_loss", "uplink_bytes", "downlink_bytes", "round_latency_s_mean"):
        assert resumed[key] == full[key]
    a = torch.load(tmp_path / "full" / "ckpt" / "state.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "ckpt" / "state.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="another config"):
        rounds.run(FedConfig(method="flexlora", **{**FAST, "rounds": 5}), tmp_path / "killed", quiet=True, task=task)


def test_minmax_latency_never_above_equal(task, tmp_path) -> None:
    s = rounds.run(FedConfig(**FAST), tmp_path / "lat", quiet=True, task=task)
    assert s["round_latency_s_mean"] <= s["round_latency_equal_s_mean"]
    e = rounds.run(FedConfig(**FAST, bandwidth="equal"), tmp_path / "eq", quiet=True, task=task)
    assert e["round_latency_s_mean"] == e["round_latency_equal_s_mean"] == s["round_latency_equal_s_mean"]
    assert e["test_acc"] == s["test_acc"]  # the allocation changes latency only, not training


def test_cli_bench_smoke(tmp_path, capsys) -> None:
    out = tmp_path / "bench"
    code = main(["fedtune", "lora", "bench", "--out", str(out), "--seeds", "1", "--rounds", "1", "--local-steps", "1",
                 "--methods", "hetlora_size", "homlora_min", "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    for m in ("hetlora_size", "homlora_min"):
        assert {"test_acc_mean", "test_acc_std", "uplink_bytes", "downlink_bytes",
                "round_latency_s_mean"} <= set(summary["results"][m])
    assert (out / "plots" / "accuracy_vs_bytes.png").exists()
    assert main(["fedtune", "lora", "bench", "--out", str(out), "--methods", "nope"]) == 2
    assert "not a method of tier digits" in capsys.readouterr().err
    report = tmp_path / "B.md"
    assert main(["report", str(out), "--out", str(report), "--figures", str(tmp_path / "fig"), "--readme", "None",
                 "--notes", str(tmp_path / "none.md")]) == 0
    text = report.read_text()
    assert "Federated LoRA, digits tier" in text and "| hetlora_size |" in text
    assert "hetlora_size accuracy" in text  # the computed acceptance check against homlora_min


@pytest.mark.slow
@pytest.mark.parametrize("tier, threshold", [("digits", 0.85), ("minilm", 0.90)])
def test_hetlora_learns(tier, threshold, tmp_path) -> None:
    from edgegen.fedtune.bench import LoraBenchConfig

    cfg = LoraBenchConfig(tier=tier).fed_config("hetlora_size", 0)
    assert rounds.run(cfg, tmp_path / tier, quiet=True)["test_acc"] >= threshold


def test_peft_scale_is_one_at_every_rank(task) -> None:
    """lora_alpha = r: the same update stored at rank 4 or zero-padded to rank 16 gives the same model."""
    cfg = FedConfig(method="hetlora_size")
    gen = torch.Generator().manual_seed(5)
    B, A = torch.randn(128, 4, generator=gen) * 0.1, torch.randn(4, 64, generator=gen) * 0.1
    B2, A2 = torch.randn(128, 4, generator=gen) * 0.1, torch.randn(4, 128, generator=gen) * 0.1
    head = {f"head.out.{n}": p.detach() for n, p in task.make_base().out.named_parameters()}
    small = {"lora.fc1.B": B, "lora.fc1.A": A, "lora.fc2.B": B2, "lora.fc2.A": A2, **head}
    padded = {**head}
    for name, (b, a) in {"fc1": (B, A), "fc2": (B2, A2)}.items():
        padded[f"lora.{name}.B"], padded[f"lora.{name}.A"] = lora.zero_pad(b, a, 16)
    x = task.test[0][:8]
    m4 = rounds.client_model(cfg, task, small, 4, init_seed=0)
    m16 = rounds.client_model(cfg, task, padded, 16, init_seed=0)
    assert m4.fc1.scaling["default"] == m16.fc1.scaling["default"] == 1.0
    assert torch.allclose(m4(x), m16(x), atol=1e-6)
    base = task.make_base()  # and both equal the base with W + B @ A merged
    with torch.no_grad():
        base.fc1.weight.add_(B @ A)
        base.fc2.weight.add_(B2 @ A2)
    assert torch.allclose(m4(x), base(x), atol=1e-5)
