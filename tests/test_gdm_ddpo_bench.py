"""`edgegen gdm ddpo` smoke run with a tiny budget: summary schema, report section, resume."""

import json
import math

import pytest

from edgegen.cli import main
from edgegen.config import ConfigError
from edgegen.gdm import ddpo_bench

TINY = ["--seeds", "1", "--epochs", "2", "--base-train-steps", "30", "--lambdas", "1.0", "--ddpo.batch-size", "32",
        "--ddpo.train-batch", "16", "--ddpo.eval-samples", "32", "--ddpo.group-size", "8", "--ddpo.sample-steps", "4",
        "--reward", "class", "class_set", "diversity", "mixed", "--quiet"]


def test_cli_smoke_report_and_resume(tmp_path):
    out = tmp_path / "ddpo"
    assert main(["gdm", "ddpo", "--out", str(out), *TINY]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["kind"] == "gdm_ddpo_bench"
    assert set(s["results"]) == {"class", "class_set", "diversity", "mixed", "mixed_batch", "class_lam1"}
    for r in s["results"].values():
        for k in ("reward_before", "reward_after", "class_entropy_after", "feature_fid_after", "approx_kl_mean",
                  "wall_s"):
            assert k in r
        assert 0.0 <= r["class_entropy_after"] <= 1.0
        assert 0.0 <= r["reward_after"] <= 1.0 or r["reward_kind"] == "mixed"
    mixed = s["results"]["mixed"]
    assert mixed["per_condition"] and not s["results"]["mixed_batch"]["per_condition"]
    assert set(mixed["tasks_after"]) == {"reward_brightness", "reward_jpeg"}
    assert 0.0 <= mixed["tasks_after"]["reward_brightness"][0] <= 1.0 and mixed["tasks_after"]["reward_jpeg"][0] < 0
    assert 0.0 <= mixed["class_consistency_after"] <= 1.0
    assert math.isnan(mixed["wall_to_target_s"])
    assert s["results"]["class_lam1"]["pretrain_weight"] == 1.0
    for name in ("reward_vs_epoch", "task_rewards_vs_epoch", "lambda_tradeoff", "samples_before_after"):
        assert (out / "plots" / f"{name}.png").exists()
    text = "\n".join(ddpo_bench.report_section(out, s, tmp_path / "figs", tmp_path))
    assert "| class_set |" in text and "target-digit reward" in text and "diversity reward" in text
    assert "mixed_batch (one conditional model" in text and "over the whole batch" in text
    finished = (out / "class" / "seed_0" / "summary.json").stat().st_mtime
    assert main(["gdm", "ddpo", "--out", str(out), *TINY]) == 0
    assert (out / "class" / "seed_0" / "summary.json").stat().st_mtime == finished


def test_config_errors():
    with pytest.raises(ConfigError, match="reward"):
        ddpo_bench.DDPOBenchConfig(reward=("class", "beauty")).validate()
    with pytest.raises(ConfigError, match="epochs"):
        ddpo_bench.DDPOBenchConfig(epochs=0).validate()


def test_grid_order_one_row_per_condition():
    order = ddpo_bench.grid_order(conditional=True)
    cond = order % 10  # evaluate() gives sample i the condition i mod 10
    assert cond.reshape(10, 10).tolist() == [[c] * 10 for c in range(10)]
    assert sorted(order.tolist()) == list(range(100))
    assert ddpo_bench.grid_order(conditional=False).tolist() == list(range(100))
    assert ddpo_bench.grid_order(conditional=True, n=20).tolist() == [0, 10, 1, 11, 2, 12, 3, 13, 4, 14, 5, 15, 6, 16,
                                                                      7, 17, 8, 18, 9, 19]
