"""CLI smoke runs of `edgegen cot bench` and `edgegen cot case-study` with tiny budgets, and their report sections."""

import json

import pytest

from edgegen.cli import main
from edgegen.config import ConfigError
from edgegen.microservices.cot.bench import CotBenchConfig, parse_size
from edgegen.microservices.cot.case_study import plan, roofline_time_s, step_lengths
from edgegen.report import ReportArgs, write_report


def test_plan_by_hand():
    assert step_lengths(640, 128) == [128] * 5
    assert step_lengths(640, 256) == [256, 256, 128]
    assert plan(640, 100, None) == [{"prefill": 100, "decode": 640}]
    p = plan(640, 100, 256)
    assert [w["prefill"] for w in p] == [100, 356, 356] and [w["decode"] for w in p] == [256, 256, 128]


def test_roofline_by_hand():
    # pre-fill 2 tokens: FLOP 10·2 + 1·3 = 23 → 23 s vs (100 + 20)/10 = 12 s; decode at c = 2: max(13, 12) = 13;
    # at c = 3: max(14, 13) = 14
    work = {"prefill": 2, "decode": 2}
    assert roofline_time_s(work, 10.0, 1.0, 100.0, 10.0, 1.0, 10.0) == pytest.approx(23 + 13 + 14)
    # bandwidth-bound decode: BW = 1 → pre-fill max(23, 120), decode max(13, 120) + max(14, 130)
    assert roofline_time_s(work, 10.0, 1.0, 100.0, 10.0, 1.0, 1.0) == pytest.approx(120 + 120 + 130)


def test_bad_config():
    with pytest.raises(ConfigError, match="NxM"):
        parse_size("16-10")
    with pytest.raises(ConfigError, match="test_per_size"):
        CotBenchConfig(test_sizes=("4x3",), test_per_size=(1, 2)).validate()
    assert main(["cot", "bench", "--samples", "0"]) == 2


def test_cli_smoke(tmp_path):
    out, cache = tmp_path / "bench", tmp_path / "cache"
    rc = main(["cot", "bench", "--out", str(out), "--cache-dir", str(cache), "--train-sizes", "4x3",
               "--train-per-size", "6", "--test-sizes", "4x3", "5x3", "--test-per-size", "2", "1",
               "--model.train-iters", "3", "--model.batch-size", "4", "--model.hidden", "8",
               "--model.diffusion-steps", "4", "--workers", "1", "--quiet"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["kind"] == "cot_bench" and s["instances"] == 3
    for m in ("milp", "dp_uncapacitated", "greedy", "diffusion_s1", "diffusion_s2", "diffusion_s4"):
        r = s["results"][m]
        assert set(r) >= {"gap_pct_mean", "gap_pct_p95", "feasible_rate_raw", "feasible_rate", "wall_ms_mean"}
    assert s["results"]["milp"]["gap_pct_mean"] == 0.0 and s["results"]["milp"]["feasible_rate"] == 1.0
    assert s["results"]["dp_uncapacitated"]["gap_pct_mean"] <= 0.0  # a lower bound
    assert s["results"]["diffusion_s1"]["feasible_rate"] == 1.0
    assert (out / "plots" / "quality_vs_sampling_steps.png").exists() and (out / "plots" / "time_vs_size.png").exists()
    files = sorted((out / "instances").glob("*.json"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert main(["cot", "bench", "--out", str(out), "--cache-dir", str(cache), "--train-sizes", "4x3",
                 "--train-per-size", "6", "--test-sizes", "4x3", "5x3", "--test-per-size", "2", "1",
                 "--model.train-iters", "3", "--model.batch-size", "4", "--model.hidden", "8",
                 "--model.diffusion-steps", "4", "--workers", "1", "--quiet"]) == 0
    assert [f.stat().st_mtime_ns for f in files] == mtimes  # finished chunks are skipped

    cs = tmp_path / "case"
    assert main(["cot", "case-study", "--out", str(cs), "--prompt-tokens", "8", "--cot-tokens", "16",
                 "--max-tokens-per-device", "4", "8", "--max-devices", "4", "--hidden-size", "32",
                 "--intermediate-size", "64", "--num-layers", "1", "--num-heads", "4", "--num-kv-heads", "2",
                 "--vocab-size", "64", "--repeats", "1", "--quiet"]) == 0
    c = json.loads((cs / "summary.json").read_text())
    assert c["kind"] == "cot_case_study"
    assert c["qwen25_7b"]["parameters"] == 7_615_616_512  # Qwen2.5-7B from its config numbers
    assert c["qwen25_7b"]["kv_bytes_per_token_bf16"] == 57_344
    # measured KV cache: 1 layer × (K, V) × 2 KV heads × head dim 8 × fp32 = 128 B per token
    assert c["measured"]["monolithic"]["kv_bytes_per_device_max"] == 128 * (8 + 16)
    assert c["measured"]["T4"]["kv_tokens_per_device_max"] == 8 + 4 + 4

    report = tmp_path / "r" / "BENCHMARKS.md"
    write_report(ReportArgs(runs=(tmp_path,), out=report, figures=tmp_path / "r" / "fig", readme=None,
                            notes=tmp_path / "none.md"))
    text = report.read_text()
    assert "## 6. CoT microservices (graph diffusion deployment)" in text
    assert text.count("## 6. CoT microservices") == 1
    assert "CoT deployment by graph diffusion" in text and "CoT case study" in text
