"""`edgegen gdm ddpo` smoke run with a tiny budget: summary schema, report section, resume."""

import json

import pytest

from edgegen.cli import main
from edgegen.config import ConfigError
from edgegen.gdm import ddpo_bench

TINY = ["--seeds", "1", "--epochs", "2", "--base-train-steps", "30", "--lambdas", "1.0", "--ddpo.batch-size", "32",
        "--ddpo.train-batch", "16", "--ddpo.eval-samples", "32", "--ddpo.group-size", "8", "--ddpo.sample-steps", "4",
        "--quiet"]


def test_cli_smoke_report_and_resume(tmp_path):
    out = tmp_path / "ddpo"
    assert main(["gdm", "ddpo", "--out", str(out), *TINY]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["kind"] == "gdm_ddpo_bench"
    assert set(s["results"]) == {"class", "class_set", "diversity", "multitask", "class_lam1"}
    for r in s["results"].values():
        for k in ("reward_before", "reward_after", "class_entropy_after", "feature_fid_after", "approx_kl_mean",
                  "wall_s"):
            assert k in r
        assert 0.0 <= r["reward_after"] <= 1.0 and 0.0 <= r["class_entropy_after"] <= 1.0
    assert s["results"]["class_lam1"]["pretrain_weight"] == 1.0
    for name in ("reward_vs_epoch", "lambda_tradeoff", "samples_before_after"):
        assert (out / "plots" / f"{name}.png").exists()
    text = "\n".join(ddpo_bench.report_section(out, s, tmp_path / "figs", tmp_path))
    assert "| class_set |" in text and "target-digit reward" in text and "diversity reward" in text
    finished = (out / "class" / "seed_0" / "summary.json").stat().st_mtime
    assert main(["gdm", "ddpo", "--out", str(out), *TINY]) == 0
    assert (out / "class" / "seed_0" / "summary.json").stat().st_mtime == finished


def test_config_errors():
    with pytest.raises(ConfigError, match="reward"):
        ddpo_bench.DDPOBenchConfig(reward=("class", "beauty")).validate()
    with pytest.raises(ConfigError, match="epochs"):
        ddpo_bench.DDPOBenchConfig(epochs=0).validate()
