"""CLI smoke runs with tiny budgets: bench (all algorithms, serial and on local Ray), speed, report, errors."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgegen.aigc.bench import ALGOS
from edgegen.cli import main

EDGEGEN = [str(Path(sys.executable).parent / "edgegen")]


def test_bench_all_algorithms_tiny_budget(tmp_path):
    out = tmp_path / "bench"
    cmd = EDGEGEN + ["aigc", "bench", "--out", str(out), "--total-env-steps", "400", "--seeds", "1",
                     "--test-episodes", "1", "--eval-every-env-steps", "200", "--d2sac.learning-starts", "100",
                     "--d2sac.batch-size", "16", "--d2sac.hidden-size", "16", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["results"]) == list(ALGOS)
    for algo, r in summary["results"].items():
        assert {"return_mean", "return_std", "crash_steps_mean", "train_wall_s_mean", "env_steps"} <= set(r)
        per_run = json.loads((out / algo / "seed_0" / "summary.json").read_text())
        assert r["return_mean"] == pytest.approx(per_run["return_mean"])
        assert r["env_steps"] == (0 if algo in ("random", "round_robin", "crash_avoid", "prophet") else 400)  # PPO too
    assert (out / "plots" / "return_vs_env_steps.png").stat().st_size > 0
    assert (out / "plots" / "return_vs_wall_s.png").stat().st_size > 0
    assert "| prophet |" in done.stdout and "return_vs_env_steps.png" in done.stdout
    assert "edgegen aigc bench --out" in summary["command"]

    # report: every number of the table comes from the summaries
    report, readme = tmp_path / "B.md", tmp_path / "README.md"
    readme.write_text("# x\n<!-- results:begin (edgegen report) -->\nold\n<!-- results:end -->\ntail\n")
    assert main(["report", str(tmp_path), "--out", str(report), "--figures", str(tmp_path / "fig"),
                 "--readme", str(readme)]) == 0
    text = report.read_text()
    prophet = summary["results"]["prophet"]["return_mean"]
    assert f"| prophet | {prophet:.1f} ± 0.0 | 100.0% |" in text
    assert (tmp_path / "fig").is_dir() and "![return_vs_env_steps]" in text
    assert "Capacity-free upper bound on the same test episodes" in text
    new_readme = readme.read_text()
    assert f"| 0 | prophet | {prophet:.1f} ± 0.0 | 100.0% | 0.00 | — |" in new_readme
    assert "old" not in new_readme and new_readme.endswith("tail\n")

    # a re-run skips finished jobs (resumable bench): same summary, no retraining
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and json.loads((out / "summary.json").read_text())["results"] == summary["results"]


def test_bench_on_local_ray_matches_serial(tmp_path):
    pytest.importorskip("ray")
    from edgegen.aigc.bench import BenchConfig, run_bench

    common = dict(algos=("random", "prophet"), seeds=2, test_episodes=2, quiet=True)
    serial = run_bench(BenchConfig(out=tmp_path / "serial", **common))
    parallel = run_bench(BenchConfig(out=tmp_path / "ray", workers=2, **common))
    import ray

    ray.shutdown()
    assert serial["results"] == parallel["results"]
    # provenance: a job run in a Ray worker records the bench's command, not the worker's
    job = json.loads((tmp_path / "ray" / "prophet" / "seed_1" / "summary.json").read_text())
    assert job["command"] == parallel["command"] and "default_worker" not in job["command"]


@pytest.mark.parametrize("argv, message", [
    (["aigc", "bench", "--algos", "dqn"], "unknown algorithm(s) ['dqn']"),
    (["aigc", "bench", "--seeds", "0"], "seeds must be in [1,"),
    (["aigc", "bench", "--asp-seed", "0", "--d2sac.gamma", "2"], None),
    (["nope"], "unknown command 'nope'"),
    (["fedtune", "lora", "fly"], "unknown command 'fly'"),
    (["aigc", "fly"], "unknown command 'fly'"),
])
def test_bad_input_gives_one_clear_error(argv, message, capsys, tmp_path):
    argv = argv + (["--out", str(tmp_path / "x")] if argv[:2] == ["aigc", "bench"] else [])
    if message is None:  # config error raised inside the training job: gamma must be in [0, 1]
        argv += ["--algos", "d2sac", "--total-env-steps", "10"]
        message = "gamma must be in [0.0, 1.0], got 2.0"
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_train_resume_rejects_corrupt_checkpoint(tmp_path, capsys):
    run = tmp_path / "t"
    args = ["aigc", "train", "--out", str(run), "--test-episodes", "1", "--quiet", "--d2sac.total-env-steps", "1200",
            "--d2sac.learning-starts", "100", "--d2sac.batch-size", "16", "--d2sac.hidden-size", "16",
            "--d2sac.checkpoint-every-episodes", "1", "--d2sac.eval-every-env-steps", "0"]
    assert main(args) == 0
    assert json.loads((run / "summary.json").read_text())["env_steps"] == 1200
    (run / "ckpt" / "latest" / "buffer.npz").write_bytes(b"garbage")
    shutil.rmtree(run / "ckpt" / "latest.old", ignore_errors=True)
    assert main(["aigc", "train", "--resume", str(run), "--quiet"]) == 2
    assert "cannot load checkpoint" in capsys.readouterr().err
    assert main(["aigc", "train", "--resume", str(tmp_path / "nothing"), "--quiet"]) == 2
    assert "no run directory there" in capsys.readouterr().err


def test_speed_writes_summary(tmp_path):
    assert main(["aigc", "speed", "--out", str(tmp_path / "s"), "--env-steps", "2000", "--act-calls", "50",
                 "--updates", "3", "--d2sac.batch-size", "16"]) == 0
    s = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert s["kind"] == "aigc_speed" and s["env_steps_per_s"] > 0 and s["act_greedy_p50_ms"] > 0
