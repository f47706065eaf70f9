"""Run a list of independent jobs (seeds × methods) in this process or as Ray tasks, with a progress bar."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm


def run_jobs(fn: Callable[..., dict], jobs: Sequence[tuple], workers: int = 1, ray_address: str | None = None,
             quiet: bool = False, describe: Callable[[tuple, dict], str] | None = None) -> dict[tuple, Any]:
    """``{job: fn(*job)}`` for every job tuple.

    With ``workers > 1`` or a ``ray_address`` the jobs run as Ray tasks of one CPU each (a local Ray with
    ``workers`` CPUs, or the cluster at ``ray_address``), in the given order (put the longest first);
    otherwise one after the other here. ``describe(job, result)`` labels the progress bar after each job.
    """
    results: dict[tuple, Any] = {}
    with tqdm(total=len(jobs), desc="bench jobs", unit="job", disable=True if quiet else None) as bar:
        def done(job: tuple, result: dict) -> None:
            results[job] = result
            if describe is not None:
                bar.set_postfix_str(describe(job, result))
            bar.update(1)

        if workers > 1 or ray_address:
            import ray

            ray.init(address=ray_address, num_cpus=None if ray_address else workers, include_dashboard=False,
                     ignore_reinit_error=True, log_to_driver=not quiet,
                     runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
            remote = ray.remote(num_cpus=1)(fn)
            pending = {remote.remote(*job): job for job in jobs}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(ready[0])
                done(job, ray.get(ready[0]))
        else:
            for job in jobs:
                done(job, fn(*job))
    return results


def start_bench(cfg: Any) -> tuple[str, list[int], float, float]:
    """Common start of a seeded bench: create ``cfg.out``, write its ``bench_config.json`` and return (the command
    line, the seeds ``first_seed .. first_seed + seeds - 1``, the earlier runs' wall seconds (``earlier_wall_s``),
    the start time from ``time.perf_counter``)."""
    import dataclasses
    import time

    from edgegen.runs import current_command

    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "bench_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
    return current_command(), seeds, earlier_wall_s(cfg.out), time.perf_counter()


START_MARK = "bench_started.json"
"""File in a bench directory recording when its latest invocation started (see earlier_wall_s)."""


def earlier_wall_s(bench_dir: Path) -> float:
    """Wall seconds that the bench's earlier invocations spent, and a mark of this invocation's start.

    A re-run of a bench skips its finished jobs, so its own wall time is added to the earlier ones rather than
    replacing them. A finished invocation left ``bench_wall_s`` in summary.json. An interrupted one left no
    summary, only its start mark (``START_MARK``) and its finished jobs' files: it counts from its start to the
    newest file in a subdirectory, where jobs write (the time it spent on jobs it did not finish was lost, and is
    not counted). Writes the mark of this invocation (creating ``bench_dir``).
    """
    import time

    bench_dir = Path(bench_dir)
    summary, mark = bench_dir / "summary.json", bench_dir / START_MARK
    earlier_s = float(json.loads(summary.read_text()).get("bench_wall_s", 0.0)) if summary.exists() else 0.0
    if mark.exists() and (not summary.exists() or summary.stat().st_mtime < mark.stat().st_mtime):
        started = json.loads(mark.read_text())
        # jobs write below bench_dir; the files in it (bench_config.json, ...) may already be this invocation's
        newest = max((p.stat().st_mtime for p in bench_dir.rglob("*") if p.is_file() and p.parent != bench_dir),
                     default=0.0)
        earlier_s = started["earlier_wall_s"] + max(newest - started["started_unix_s"], 0.0)
    bench_dir.mkdir(parents=True, exist_ok=True)
    mark.write_text(json.dumps({"earlier_wall_s": earlier_s, "started_unix_s": time.time()}))
    return earlier_s
