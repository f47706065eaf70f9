"""`edgegen gdm detect bench` smoke run with a tiny budget, its summary schema and its report section."""

import json

import pytest

from edgegen.cli import main
from edgegen.config import ConfigError
from edgegen.gdm import detect_bench
from edgegen.gdm.backdoor import TRIGGERS

TINY = ["--seeds", "1", "--pretrain-steps", "20", "--pretrain-batch", "32", "--hidden", "32", "--blocks", "1",
        "--diffusion-steps", "100", "--fed.rounds", "1", "--fed.local-steps", "2", "--fed.malicious-local-steps", "2",
        "--fed.num-devices", "4", "--sample-steps", "8", "--shared-steps", "3", "--sweep-shared-steps", "1", "3", "8",
        "--edge-batch", "20", "--attack-batches", "2", "--clean-batches", "2", "--calibration-samples", "32",
        "--eval-samples", "40", "--quiet"]


def test_cli_smoke_and_report(tmp_path):
    out = tmp_path / "detect"
    assert main(["gdm", "detect", "bench", "--out", str(out), *TINY]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["kind"] == "gdm_detect_bench"
    assert set(s["results"]) == set(TRIGGERS)
    for res in s["results"].values():
        assert set(res) == {"average", "maxsplit", "max_min", "kmeans", "noise_stats"}
        for r in res.values():
            for k in ("tpr", "fpr", "f1", "auroc", "clean_batch_fpr", "asr_before", "asr_after"):
                assert k in r
            assert 0.0 <= r["asr_after"] <= 1.0 and 0.0 <= r["clean_batch_fpr"] <= 1.0
    assert s["collab_batched_equal_local_batched"] is True
    assert s["compute_split"]["edge_nfe"] == 20 * 3
    for name in ("roc", "displacement_hist", "auroc_vs_shared_steps", "triggered_samples"):
        assert (out / "plots" / f"{name}.png").exists()
    lines = detect_bench.report_section(out, s, tmp_path / "figs", tmp_path)
    text = "\n".join(lines)
    assert "| adaptive | noise_stats |" in text and "built so that tests on the uploaded noise fail" in text
    assert any(line.startswith("![roc]") for line in lines)
    # a re-run skips the finished seed
    seed_summary = (out / "seed_0" / "summary.json").stat().st_mtime
    assert main(["gdm", "detect", "bench", "--out", str(out), *TINY]) == 0
    assert (out / "seed_0" / "summary.json").stat().st_mtime == seed_summary


def test_config_errors():
    with pytest.raises(ConfigError, match="triggers"):
        detect_bench.DetectBenchConfig(triggers=("box", "plaid")).validate()
    with pytest.raises(ConfigError, match="shared_steps"):
        detect_bench.DetectBenchConfig(shared_steps=60).validate()
    with pytest.raises(ConfigError, match="mitigation"):
        detect_bench.DetectBenchConfig(mitigation="ignore").validate()
