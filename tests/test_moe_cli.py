"""Smoke tests of `edgegen moe bench` / `edgegen moe traces` with tiny budgets, resume, report section, errors."""

from __future__ import annotations

import json

import pytest

from edgegen.cli import main
from edgegen.microservices.moe import bench as mb

TINY_TRACES = ["--traces.num-layers", "2", "--traces.hidden-size", "16", "--traces.ffn-size", "16",
               "--traces.num-experts", "4", "--traces.num-heads", "2", "--traces.seq-len", "16",
               "--traces.train-steps", "2", "--traces.batch-size", "4", "--traces.trace-sequences", "4"]
TINY_SYSTEM = ["--system.device-speed-factors", "1.5", "1", "0.7", "0.5", "--system.device-distance-m", "100", "200",
               "150", "300", "--system.expert-hidden-size", "32", "--system.expert-ffn-size", "64"]


def test_bench_cli_writes_summary_resumes_and_reports(tmp_path, capsys) -> None:
    out = tmp_path / "moe"
    argv = ["moe", "bench", "--out", str(out), "--seeds", "1", "--slots", "80", "--overload-slots", "30",
            "--v-values", "1", "20", "--cache-dir", str(tmp_path / "cache"), "--calibration-repeats", "2",
            "--quiet", *TINY_TRACES, *TINY_SYSTEM]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "moe_bench"
    policies = {"lyapunov_v1", "lyapunov_v20", "greedy", "jsq", "round_robin", "random", "static"}
    assert set(summary["results"]) == policies and set(summary["trace_results"]) == policies
    for p, r in summary["results"].items():
        for key in ("cost_mean", "latency_ms_mean", "energy_j_mean", "backlog_mean", "V", "decision_time_us_p50"):
            assert key in r, (p, key)
    assert summary["results"]["lyapunov_v20"]["V"] == 20 and summary["results"]["jsq"]["V"] == 0
    assert summary["results"]["greedy"]["V"] is None
    b = summary["bound"]
    assert b["lp_status"] == 0 and b["C_star"] > 0 and b["B"] > 0
    assert summary["results"]["lyapunov_v1"]["bound"] == pytest.approx(b["C_star"] + b["B"] / 1)
    assert {"lyapunov_v20", "greedy", "jsq"} <= set(summary["overload"]["results"])
    for name in ("cost_backlog_vs_v", "cost_vs_backlog", "queue_trajectories", "trace_stats"):
        assert (out / "plots" / f"{name}.png").exists()
    seed_summary = out / "seed_0" / "summary.json"
    stamp = seed_summary.stat().st_mtime_ns
    assert main(argv) == 0  # re-run: the finished seed is skipped
    assert seed_summary.stat().st_mtime_ns == stamp
    capsys.readouterr()

    from edgegen.report import ReportArgs, write_report

    report = tmp_path / "report" / "BENCHMARKS.md"
    write_report(ReportArgs(runs=(out,), out=report, figures=tmp_path / "report" / "figures", readme=None,
                            notes=tmp_path / "no-notes.md"))
    text = report.read_text()
    assert "## 5. MoE microservices (Lyapunov scheduling)" in text
    assert "C* + B/V" in text and "lyapunov_v20" in text and "SMALL model's traces" in text


def test_traces_cli(tmp_path, capsys) -> None:
    out = tmp_path / "traces"
    assert main(["moe", "traces", "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--quiet",
                 *TINY_TRACES]) == 0
    stats = json.loads((out / "trace_stats.json").read_text())
    assert stats["num_experts"] == 4 and len(stats["entropy_norm"]) == 2
    assert (out / "plots" / "trace_stats.png").exists()
    assert "entropy_norm" in capsys.readouterr().out


def test_bad_values_exit_with_a_named_error(tmp_path, capsys) -> None:
    assert main(["moe", "bench", "--out", str(tmp_path / "x"), "--overload-load", "0.5"]) == 2
    assert "overload_load" in capsys.readouterr().err
    with pytest.raises(Exception, match="v_values"):
        mb.MoEBenchConfig(v_values=(-1.0,)).validate()
