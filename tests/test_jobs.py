"""Wall time of a bench over several invocations (jobs.earlier_wall_s)."""

import json
import os
import time

import pytest

from edgegen.jobs import START_MARK, earlier_wall_s


def _set_mtime(path, unix_s):
    os.utime(path, (unix_s, unix_s))


def test_first_invocation_counts_nothing_and_marks_its_start(tmp_path):
    before = time.time()
    assert earlier_wall_s(tmp_path / "bench") == 0.0
    mark = json.loads((tmp_path / "bench" / START_MARK).read_text())
    assert mark["earlier_wall_s"] == 0.0
    assert before <= mark["started_unix_s"] <= time.time()


def test_a_finished_invocation_counts_its_summary(tmp_path):
    earlier_wall_s(tmp_path)  # the finished invocation's start ...
    (tmp_path / "summary.json").write_text(json.dumps({"bench_wall_s": 120.0}))
    _set_mtime(tmp_path / "summary.json", time.time() + 5)  # ... and its summary, written after the mark
    assert earlier_wall_s(tmp_path) == 120.0


def test_an_interrupted_invocation_counts_until_its_last_job_file(tmp_path):
    # a finished invocation of 100 s, then one that started at t0, finished a job at t0 + 40 s and was killed
    (tmp_path / "summary.json").write_text(json.dumps({"bench_wall_s": 100.0}))
    t0 = time.time() - 1000
    _set_mtime(tmp_path / "summary.json", t0 - 10)
    (tmp_path / START_MARK).write_text(json.dumps({"earlier_wall_s": 100.0, "started_unix_s": t0}))
    _set_mtime(tmp_path / START_MARK, t0)
    (tmp_path / "job" / "seed_0").mkdir(parents=True)
    (tmp_path / "job" / "seed_0" / "summary.json").write_text("{}")
    _set_mtime(tmp_path / "job" / "seed_0" / "summary.json", t0 + 40)
    (tmp_path / "bench_config.json").write_text("{}")  # written by the new invocation: not a job file
    assert earlier_wall_s(tmp_path) == pytest.approx(140.0)
    # the new invocation is interrupted before finishing any job: the next one still counts 140 s
    assert earlier_wall_s(tmp_path) == pytest.approx(140.0)
