"""`edgegen serve bench`: a bounded load test of the live AaaS service on loopback, one run per scheduling policy,
plus a fault-injection run that kills a worker mid-load.

Pipeline (each stage cached in OUT, so a re-run continues): train the fleet's DDPMs and profile their quality vs
steps (edgegen.serve.profile) -> train D2SAC on AaaS-v0 with that measured utility (edgegen.aigc.d2sac, the env's
arrival rate set so the mean number of requests in flight equals the load test's concurrency) and score every
policy in the env -> for every policy: start `edgegen serve` (gateway + one process per worker), send the same
`requests` requests from `concurrency` closed-loop clients, record status, worker, quality and latency of each ->
fault run: the same load with the fault policy, SIGKILL of the busiest worker once `fault_kill_at_frac` of the
requests are done.

OUT/summary.json: {"kind": "serve_bench", "results": {POLICY: {throughput_rps, latency_ms_p50, latency_ms_p95,
quality_mean, rejected, lost, ...}}, "fault": {...}, "env_returns": {...}, "acceptance": {...}}. quality_mean is the
mean measured quality of the answered requests; rejected = answered 503/429 with a message; lost = anything else
(connection error, timeout, other status): a request is never silently dropped without being counted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgegen.aigc.d2sac import D2SACConfig
from edgegen.config import ConfigError, check_choice, check_range
from edgegen.jobs import earlier_wall_s
from edgegen.runs import current_command, save_figure
from edgegen.serve.gateway import POLICIES
from edgegen.serve.http import TOKEN_ENV
from edgegen.serve.profile import FleetConfig


def _default_d2sac() -> D2SACConfig:
    # edgegen's CPU recipe with half the updates (one per 2 env steps): ~19k updates, well within 15 min here.
    return D2SACConfig(total_env_steps=40_000, train_every=2, eval_every_env_steps=10_000)


@dataclass(frozen=True)
class ServeBenchConfig:
    """Live AaaS load test: every policy on the same requests, then a fault-injection run."""

    out: Path = Path("runs/serve-bench")
    """Bench directory (fleet/, d2sac run, one directory per policy, fault/, summary.json, plots/)."""
    requests: int = 400
    """Requests per policy run."""
    concurrency: int = 16
    """Closed-loop clients (each sends its next request when the previous one is answered)."""
    policies: tuple[str, ...] = POLICIES
    """Policies to compare: d2sac, prophet, crash_avoid, round_robin, random."""
    fault: bool = True
    """Also run the fault-injection load test."""
    fault_policy: str = "d2sac"
    """Policy of the fault-injection run."""
    fault_kill_at_frac: float = 0.3
    """SIGKILL the busiest worker once this fraction of the requests is done."""
    seed: int = 0
    """Seed of the request mix (classes, steps, sampler seeds) and of D2SAC training."""
    env_test_episodes: int = 5
    """AaaS-v0 (measured utility) episodes on which every policy is also scored in simulation."""
    request_timeout_s: float = 60.0
    """Client and gateway timeout per request."""
    fleet: FleetConfig = field(default_factory=FleetConfig)
    """The fleet: workers (DDPM size, training, sampler, capacity) and the profiled step values."""
    d2sac: D2SACConfig = field(default_factory=_default_d2sac)
    """D2SAC hyperparameters and budget for training on the measured utility."""
    quiet: bool = False
    """Disable progress bars."""

    def validate(self) -> None:
        check_range("requests", self.requests, 1, 10**7)
        check_range("concurrency", self.concurrency, 1, 10_000)
        if not self.policies and not self.fault:
            raise ConfigError("policies must name at least one policy (or keep the fault run)")
        for p in self.policies:
            check_choice("policies", p, set(POLICIES))
        check_choice("fault_policy", self.fault_policy, set(POLICIES))
        check_range("fault_kill_at_frac", self.fault_kill_at_frac, 0.0, 1.0)
        check_range("env_test_episodes", self.env_test_episodes, 1, 10_000)
        check_range("request_timeout_s", self.request_timeout_s, 0.1, 1e6)
        self.fleet.validate()
        self.d2sac.validate()

    def needs_d2sac(self) -> bool:
        return "d2sac" in self.policies or (self.fault and self.fault_policy == "d2sac")


# ------------------------------------------------------------------------------------------ gateway process


class GatewayProcess:
    """`python -m edgegen.serve.gateway ARGS` on a free loopback port; waits until /v1/status answers."""

    def __init__(self, args: list[str], token: str, start_timeout_s: float = 180.0, log_path: Path | None = None):
        import tempfile

        import httpx

        self.token = token
        env = {**os.environ, TOKEN_ENV: token, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env.setdefault("EDGEGEN_CACHE", str(Path("runs/cache").resolve()))
        self._tmp = tempfile.TemporaryDirectory(prefix="edgegen-gw-")
        port_file = Path(self._tmp.name) / "port"
        self.log_path = log_path or Path(self._tmp.name) / "gateway.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "edgegen.serve.gateway", "--port", "0", "--port-file",
                                      str(port_file), "--quiet", *args], env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + start_timeout_s
        self.url = None
        while True:
            if self.proc.poll() is not None:
                self._close()
                raise RuntimeError(f"gateway exited with code {self.proc.returncode}:\n"
                                   f"{self.log_path.read_text()[-3000:]}")
            if self.url is None and port_file.exists() and port_file.read_text():
                self.url = f"http://127.0.0.1:{int(port_file.read_text())}"
            try:
                if self.url and httpx.get(f"{self.url}/v1/status", headers=self.headers, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gateway did not start within {start_timeout_s:g} s")
            time.sleep(0.2)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def status(self) -> dict:
        import httpx

        return httpx.get(f"{self.url}/v1/status", headers=self.headers, timeout=10).json()

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (graceful drain) and wait; SIGKILL after `timeout_s`. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()
        return self.proc.returncode

    def _close(self) -> None:
        self._log.close()
        self._tmp.cleanup()


# ------------------------------------------------------------------------------------------------ load test


def request_mix(n: int, step_values: list[int], seed: int) -> list[dict]:
    """The bench's requests: uniform digit class, uniform profiled step value, a sampler seed per request."""
    rng = np.random.default_rng(seed)
    return [{"condition": int(c), "steps": int(s), "seed": i} for i, (c, s) in
            enumerate(zip(rng.integers(0, 10, n), rng.choice(step_values, n), strict=True))]


def run_load(url: str, token: str, requests: list[dict], concurrency: int, timeout_s: float,
             background=None, quiet: bool = True) -> tuple[list[dict], float]:
    """Closed-loop load: `concurrency` clients send `requests` in order. Returns (one record per request, wall s).
    `background(progress)` (a coroutine function; fault injection) runs alongside the clients and is cancelled when
    they finish; progress["done"] counts the completed requests."""
    import httpx
    from tqdm import tqdm

    records: list[dict | None] = [None] * len(requests)

    async def main() -> float:
        nxt = 0
        done = 0
        bar = tqdm(total=len(requests), desc="requests", unit="req", disable=True if quiet else None)
        limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s,
                                     limits=limits) as client:
            async def client_loop() -> None:
                nonlocal nxt, done
                while nxt < len(requests):
                    i = nxt
                    nxt += 1
                    t0 = time.perf_counter()
                    rec = {"i": i, **requests[i], "sent_s": t0 - started}
                    try:
                        r = await client.post(f"{url}/v1/generate", json=requests[i])
                        rec["status"] = r.status_code
                        body = r.json()
                        if r.status_code == 200:
                            rec.update(outcome="answered", worker=body["worker"], quality=body["quality"],
                                       policy_choice=body["policy_choice"], fallback=body["fallback"],
                                       rerouted=body["rerouted"])
                        elif r.status_code in (429, 503) and body.get("detail"):
                            rec.update(outcome="rejected", detail=body["detail"])
                        else:
                            rec.update(outcome="lost", detail=str(body)[:300])
                    except Exception as exc:  # no answer at all: lost
                        rec.update(status=None, outcome="lost", detail=f"{type(exc).__name__}: {exc}"[:300])
                    rec["latency_ms"] = 1000 * (time.perf_counter() - t0)
                    records[i] = rec
                    done += 1
                    progress["done"] = done
                    bar.update(1)

            progress = {"done": 0}
            started = time.perf_counter()
            side = asyncio.create_task(background(progress)) if background is not None else None
            await asyncio.gather(*(client_loop() for _ in range(concurrency)))
            wall = time.perf_counter() - started
            if side is not None:
                if side.done():
                    side.result()  # surface an error of the background task
                side.cancel()
        bar.close()
        return wall

    wall_s = asyncio.run(main())
    return [r for r in records if r is not None], wall_s


def load_metrics(records: list[dict], wall_s: float) -> dict:
    """throughput (answered / wall s), latency percentiles and mean quality of the answered requests, counts."""
    answered = [r for r in records if r["outcome"] == "answered"]
    lat = np.array([r["latency_ms"] for r in answered]) if answered else np.array([np.nan])
    quality = [r["quality"] for r in answered]
    return {"requests": len(records), "answered": len(answered),
            "rejected": sum(r["outcome"] == "rejected" for r in records),
            "lost": sum(r["outcome"] == "lost" for r in records),
            "throughput_rps": len(answered) / wall_s, "wall_s": wall_s,
            "latency_ms_p50": float(np.percentile(lat, 50)), "latency_ms_p95": float(np.percentile(lat, 95)),
            "quality_mean": float(np.mean(quality)) if quality else float("nan"),
            "quality_per_request_mean": float(np.sum(quality) / len(records)),
            "fallbacks": sum(bool(r.get("fallback")) for r in answered),
            "rerouted": sum(bool(r.get("rerouted")) for r in answered),
            "worker_share": {w: sum(r["worker"] == w for r in answered) / max(len(answered), 1)
                             for w in sorted({r["worker"] for r in answered})}}


async def kill_busiest_worker(url: str, headers: dict) -> dict | None:
    """SIGKILL the live local worker with the most steps in flight (as the gateway reports it) and return its
    record; None (nothing killed) when no worker has a request in flight. The worker must run on this host (its
    pid comes from /v1/status)."""
    import httpx

    async with httpx.AsyncClient(headers=headers) as c:
        workers = (await c.get(f"{url}/v1/status")).json()["workers"]
    victim = max((w for w in workers if w["alive"] and w["pid"]), key=lambda w: w["inflight_steps"])
    if victim["inflight_steps"] == 0:
        return None
    os.kill(victim["pid"], signal.SIGKILL)
    return {"worker": victim["name"], "pid": victim["pid"], "inflight_steps": victim["inflight_steps"]}


def run_policy(cfg: ServeBenchConfig, policy: str, requests: list[dict], out: Path, fault: bool = False) -> dict:
    """One load-test run through a fresh gateway + fleet; writes OUT/summary.json and requests.jsonl."""
    if (out / "summary.json").exists():
        return json.loads((out / "summary.json").read_text())
    import secrets

    out.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(16)
    fleet_dir = cfg.out / "fleet"
    gw = GatewayProcess(["--fleet", str(fleet_dir), "--policy", policy, "--request-timeout-s",
                         str(cfg.request_timeout_s), "--log-dir", str(out / "logs")], token,
                        log_path=out / "gateway.log")
    kill = {}
    try:
        async def inject(progress: dict) -> None:
            """Once fault_kill_at_frac of the requests are done, kill the busiest worker as soon as one has work."""
            while progress["done"] < cfg.fault_kill_at_frac * len(requests):
                await asyncio.sleep(0.005)
            while True:
                killed = await kill_busiest_worker(gw.url, gw.headers)
                if killed is not None:
                    kill.update(killed, after_requests=progress["done"], at_s=time.perf_counter() - load_started)
                    return
                await asyncio.sleep(0.005)

        load_started = time.perf_counter()
        records, wall_s = run_load(gw.url, token, requests, cfg.concurrency, cfg.request_timeout_s + 10,
                                   inject if fault else None, cfg.quiet)
        if fault:  # give the supervisor time to bring the killed worker back before reading the status
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not all(w["alive"] for w in gw.status()["workers"]):
                time.sleep(0.2)
        status = gw.status()
    finally:
        code = gw.stop()
    with (out / "requests.jsonl").open("w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    result = {"policy": policy, **load_metrics(records, wall_s), "gateway_exit_code": code,
              "gateway_counters": status["counters"],
              "workers": [{k: w[k] for k in ("name", "served", "failures", "refusals", "restarts", "alive")}
                          for w in status["workers"]]}
    if fault:
        result["kill"] = kill or None  # None: no worker ever had a request in flight when checked
        result["restarts"] = sum(w["restarts"] for w in status["workers"])
        result["all_workers_alive_after"] = all(w["alive"] for w in status["workers"])
        unclear = [r for r in records if r["outcome"] == "rejected" and not r.get("detail")]
        result["answered_or_rejected_clearly"] = result["lost"] == 0 and not unclear and bool(kill)
    (out / "summary.json").write_text(json.dumps(result, indent=2))
    return result


# ------------------------------------------------------------------------------------ D2SAC on measured utility


def train_d2sac(cfg: ServeBenchConfig, utility: dict) -> dict:
    """Train D2SAC on AaaS-v0 with the measured utility (OUT/fleet/d2sac, reused when finished)."""
    from edgegen.aigc.bench import episode_seeds
    from edgegen.aigc.d2sac import train
    from edgegen.runs import RunDir
    from edgegen.serve.profile import measured_env_config

    run_dir = cfg.out / "fleet" / "d2sac"
    if (run_dir / "summary.json").exists():
        return json.loads((run_dir / "summary.json").read_text())
    import shutil

    import torch

    shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run starts over (tuples of the env config)
    torch.set_num_threads(1)
    env_cfg = measured_env_config(utility, cfg.concurrency)
    run = RunDir(run_dir)
    result = train(cfg.d2sac, env_cfg, cfg.seed, run, progress=not cfg.quiet,
                   test_seeds=episode_seeds(cfg.seed, cfg.env_test_episodes))
    run.close()
    return run.write_summary({"algo": "d2sac", "utility": "measured", **result}, cfg.seed)


def env_returns(cfg: ServeBenchConfig, utility: dict) -> dict:
    """Every policy's mean return and mean utility per served task on AaaS-v0 with the measured utility."""
    from edgegen.aigc.bench import episode_seeds
    from edgegen.aigc.env import AaaSEnv, FitFeatures, run_episode
    from edgegen.aigc.heuristics import HEURISTICS
    from edgegen.serve.gateway import load_d2sac
    from edgegen.serve.profile import measured_env_config

    env_cfg = measured_env_config(utility, cfg.concurrency)
    seeds = episode_seeds(cfg.seed, cfg.env_test_episodes)
    out = {}
    for policy in dict.fromkeys(cfg.policies + ((cfg.fault_policy,) if cfg.fault else ())):
        env = AaaSEnv(env_cfg)
        if policy == "d2sac":
            agent, _ = load_d2sac(cfg.out / "fleet" / "d2sac")
            wrapped = FitFeatures(env) if agent.cfg.obs_features == "fit" else env
            eps = [run_episode(wrapped, lambda obs: agent.act(obs, True), s) for s in seeds]  # noqa: B023
        else:
            rng = np.random.default_rng(cfg.seed)
            eps = [run_episode(env, lambda obs: HEURISTICS[policy](env, rng), s) for s in seeds]  # noqa: B023
        out[policy] = {"return_mean": float(np.mean([e["return"] for e in eps])),
                       "crash_steps_mean": float(np.mean([e["crash_steps"] for e in eps])),
                       "tasks_mean": float(np.mean([e["length"] for e in eps]))}
    return out


# ------------------------------------------------------------------------------------------------ the bench


def run_bench(cfg: ServeBenchConfig) -> dict:
    from edgegen.serve.profile import build_fleet, profile_fleet

    cfg.validate()
    started = time.perf_counter()
    cfg.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("EDGEGEN_CACHE", str(Path("runs/cache").resolve()))
    (cfg.out / "bench_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
    command = current_command()
    earlier_s = earlier_wall_s(cfg.out)
    fleet_dir = cfg.out / "fleet"
    fleet = build_fleet(cfg.fleet, fleet_dir, quiet=cfg.quiet)
    utility = profile_fleet(cfg.fleet, fleet_dir)
    d2sac = train_d2sac(cfg, utility) if cfg.needs_d2sac() else None
    sim = env_returns(cfg, utility)
    requests = request_mix(cfg.requests, cfg.fleet.step_values, cfg.seed)
    results = {}
    for policy in cfg.policies:
        results[policy] = run_policy(cfg, policy, requests, cfg.out / policy)
        if not cfg.quiet:
            r = results[policy]
            print(f"{policy}: quality {r['quality_mean']:.4f}, p50 {r['latency_ms_p50']:.0f} ms, "
                  f"{r['throughput_rps']:.1f} req/s, rejected {r['rejected']}, lost {r['lost']}", flush=True)
    fault = run_policy(cfg, cfg.fault_policy, requests, cfg.out / "fault", fault=True) if cfg.fault else None
    summary = {"kind": "serve_bench", "results": {p: {k: v for k, v in r.items() if k not in ("workers",)}
                                                  for p, r in results.items()},
               "fault": fault, "env_returns": sim, "requests": cfg.requests, "concurrency": cfg.concurrency,
               "fleet": fleet["workers"], "utility": {k: utility[k] for k in ("workers", "step_values", "quality",
                                                                                 "feature_fid", "capacities_steps",
                                                                                 "profile_samples")},
               "d2sac": None if d2sac is None else {k: d2sac[k] for k in ("return_mean", "train_wall_s",
                                                                          "env_steps", "updates")},
               "d2sac_config": dataclasses.asdict(cfg.d2sac), "command": command,
               "profile_wall_s": utility["profile_wall_s"],
               "acceptance": acceptance(results, fault, {p: per_request_quality(cfg.out / p) for p in results}),
               "bench_wall_s": earlier_s + time.perf_counter() - started}
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    plot_results(cfg, summary)
    return summary


def paired_diff_ci(a: dict[int, float], b: dict[int, float], seed: int = 0, n_boot: int = 2000) -> list[float]:
    """95% bootstrap interval of mean(a - b) over the requests answered in both runs (same request index: the
    same class, steps and sampler seed), resampling requests."""
    common = sorted(set(a) & set(b))
    if not common:
        return [float("nan"), float("nan")]
    d = np.array([a[i] - b[i] for i in common])
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def acceptance(results: dict, fault: dict | None, per_request: dict[str, dict[int, float]] | None = None) -> dict:
    """The issue's criteria, evaluated on the measured runs (keys missing when a needed run is missing), with the
    paired bootstrap interval of each quality difference."""
    q = {p: r["quality_mean"] for p, r in results.items()}
    per_request = per_request or {}
    out = {}
    if "d2sac" in q:
        for other in ("crash_avoid", "round_robin", "prophet"):
            if other in per_request and "d2sac" in per_request:
                out[f"d2sac_minus_{other}_quality_ci95"] = paired_diff_ci(per_request["d2sac"], per_request[other])
        for other in ("crash_avoid", "round_robin"):
            if other in q:
                out[f"d2sac_quality_above_{other}"] = q["d2sac"] > q[other]
        if "prophet" in q:
            out["d2sac_quality_pct_of_prophet"] = 100 * q["d2sac"] / q["prophet"]
            out["d2sac_within_5pct_of_prophet"] = q["d2sac"] >= 0.95 * q["prophet"]
    if fault is not None:
        out["fault_lost"] = fault["lost"]
        out["fault_zero_lost_all_answered_or_rejected"] = bool(fault["answered_or_rejected_clearly"])
    return out


def per_request_quality(run_dir: Path) -> dict[int, float]:
    """{request index: measured quality} of the answered requests of one load-test run."""
    records = [json.loads(line) for line in (run_dir / "requests.jsonl").read_text().splitlines()]
    return {r["i"]: r["quality"] for r in records if r["outcome"] == "answered"}


def plot_results(cfg: ServeBenchConfig, summary: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    src = cfg.out / "fleet" / "quality_vs_steps.png"
    if src.exists():
        (cfg.out / "plots").mkdir(parents=True, exist_ok=True)
        (cfg.out / "plots" / "quality_vs_steps.png").write_bytes(src.read_bytes())
        paths.append(cfg.out / "plots" / "quality_vs_steps.png")
    res = summary["results"]
    names = list(res)
    if not names:
        return paths + _plot_fault(cfg, summary)
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 3.8))
    ax1.bar(names, [res[p]["quality_mean"] for p in names], color="tab:blue")
    lo = min(res[p]["quality_mean"] for p in names)
    ax1.set_ylim(max(0.0, lo - 0.1), 1.0)
    ax1.set_ylabel("mean measured quality (answered)")
    ax2.bar(names, [res[p]["latency_ms_p50"] for p in names], label="p50", color="tab:green")
    ax2.scatter(names, [res[p]["latency_ms_p95"] for p in names], color="k", marker="_", s=300, label="p95")
    ax2.set_ylabel("latency (ms)")
    ax2.legend(fontsize=7)
    bottom = np.zeros(len(names))
    for w in summary["utility"]["workers"]:
        share = np.array([res[p]["worker_share"].get(w, 0.0) for p in names])
        ax3.bar(names, share, bottom=bottom, label=w)
        bottom += share
    ax3.set_ylabel("share of answered requests")
    ax3.legend(fontsize=7)
    for ax in (ax1, ax2, ax3):
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.suptitle(f"Live AaaS, {summary['requests']} requests, concurrency {summary['concurrency']}")
    paths.append(save_figure(fig, cfg.out / "plots" / "quality_latency_by_policy.png"))
    return paths + _plot_fault(cfg, summary)


def _plot_fault(cfg: ServeBenchConfig, summary: dict) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = []
    fault = summary.get("fault")
    if fault:
        recs = [json.loads(line) for line in (cfg.out / "fault" / "requests.jsonl").read_text().splitlines()]
        fig, ax = plt.subplots(figsize=(8, 3.4))
        for outcome, color in (("answered", "tab:blue"), ("rejected", "tab:orange"), ("lost", "tab:red")):
            rs = [r for r in recs if r["outcome"] == outcome]
            ax.scatter([r["sent_s"] for r in rs], [r["latency_ms"] for r in rs], s=6, color=color,
                       label=f"{outcome} ({len(rs)})")
        rr = [r for r in recs if r.get("rerouted")]
        ax.scatter([r["sent_s"] for r in rr], [r["latency_ms"] for r in rr], s=30, facecolors="none",
                   edgecolors="k", label=f"re-routed ({len(rr)})")
        if fault["kill"]:
            ax.axvline(fault["kill"]["at_s"], color="r", ls="--", label=f"SIGKILL {fault['kill']['worker']}")
        ax.set_xlabel("request sent at (s)")
        ax.set_ylabel("latency (ms)")
        ax.legend(fontsize=7)
        ax.set_title(f"Fault injection ({fault['policy']}): a worker killed mid-load")
        paths.append(save_figure(fig, cfg.out / "plots" / "fault_injection.png"))
    return paths


def format_table(summary: dict) -> str:
    lines = ["| policy | quality (mean, answered) | % of Prophet | throughput req/s | latency p50 ms | "
             "latency p95 ms | rejected | lost | fallbacks | env return (measured utility) |", "|---|" + "---|" * 9]
    prophet = summary["results"].get("prophet", {}).get("quality_mean")
    for p, r in summary["results"].items():
        pct = f"{100 * r['quality_mean'] / prophet:.1f}%" if prophet else "—"
        env = summary.get("env_returns", {}).get(p, {}).get("return_mean")
        lines.append(f"| {p} | {r['quality_mean']:.4f} | {pct} | {r['throughput_rps']:.1f} | "
                     f"{r['latency_ms_p50']:.0f} | {r['latency_ms_p95']:.0f} | {r['rejected']} | {r['lost']} | "
                     f"{r['fallbacks']} | {'—' if env is None else f'{env:.1f}'} |")
    return "\n".join(lines)


def stage_walls(summary: dict) -> str:
    """One sentence with the wall time of every stage (stages are cached, so the bench's own wall time may not
    cover all of them)."""
    train_s = sum(w["train_wall_s"] for w in summary["fleet"])
    runs = [r for r in summary["results"].values()] + ([summary["fault"]] if summary.get("fault") else [])
    d = summary.get("d2sac")
    return (f"Wall times on this 2-core CPU: DDPM training {train_s / 60:.1f} min for the {len(summary['fleet'])} "
            f"workers (1 thread each, one after the other), utility profile {summary.get('profile_wall_s', 0):.0f} s"
            + (f", D2SAC training {d['train_wall_s'] / 60:.1f} min" if d else "")
            + f", load runs {sum(r['wall_s'] for r in runs):.0f} s in total ({len(runs)} runs; process start-up "
            f"excluded); the bench took {summary['bench_wall_s'] / 60:.1f} min over all its invocations (stages "
            "found finished, in its directory or the cache, are reused and not timed again).")


def report_section(run_dir: Path, summary: dict, figures: Path, out_dir: Path) -> list[str]:
    """BENCHMARKS.md section of one live AaaS bench."""
    from edgegen.report import copy_plots

    lines = [f"### Live AaaS service: `{run_dir}`", "",
             f"{summary['requests']} requests (uniform digit class and profiled step count, the same requests for "
             f"every policy) from {summary['concurrency']} closed-loop clients on loopback, one fresh gateway and "
             f"{len(summary['fleet'])} worker processes per policy, all on this 2-core CPU. Quality = the digits "
             "classifier's probability of the requested class, measured on every produced image; rejected = "
             "503 with a message (no worker had room); lost = no answer or any other status.", "",
             f"Command: `{summary.get('command', '')}`", "", stage_walls(summary), "", "Workers:", "",
             "| worker | denoiser | train steps | sampler η | capacity (steps) | quality at T = min / max |",
             "|---|---|---|---|---|---|"]
    u = summary["utility"]
    for w, q in zip(summary["fleet"], u["quality"], strict=True):
        lines.append(f"| {w['name']} | MLP {w['hidden']}×{w['blocks']} ({w['params']} params) | {w['train_steps']} | "
                     f"{w['eta']} | {w['capacity_steps']} | {q[0]:.3f} (T={u['step_values'][0]}) / {q[-1]:.3f} "
                     f"(T={u['step_values'][-1]}) |")
    d = summary.get("d2sac")
    if d:
        lines += ["", f"D2SAC trained on AaaS-v0 with this measured utility: {d['env_steps']} env steps, "
                      f"{d['updates']} updates, {d['train_wall_s'] / 60:.1f} min of training (1 CPU thread)."]
    lines += ["", format_table(summary), ""]
    acc = summary["acceptance"]
    if "d2sac_quality_above_crash_avoid" in acc:
        ok = acc["d2sac_quality_above_crash_avoid"] and acc.get("d2sac_quality_above_round_robin", False)
        cis = "; ".join(f"D2SAC − {o}: [{acc[k][0]:+.4f}, {acc[k][1]:+.4f}]" for o in ("crash_avoid", "round_robin",
                                                                                     "prophet")
                        if (k := f"d2sac_minus_{o}_quality_ci95") in acc)
        lines.append(f"- D2SAC serves with higher mean quality than Crash-Avoid and Round-Robin: "
                     f"**{'met' if ok else 'not met'}**" + (f" (95% paired bootstrap intervals of the quality "
                                                            f"difference over the same requests: {cis})." if cis
                                                            else "."))
    if "d2sac_within_5pct_of_prophet" in acc:
        lines.append(f"- D2SAC within 5% of Prophet with the measured utility: "
                     f"**{'met' if acc['d2sac_within_5pct_of_prophet'] else 'not met'}** "
                     f"({acc['d2sac_quality_pct_of_prophet']:.1f}% of Prophet's quality).")
    f = summary.get("fault")
    if f and not f["kill"]:
        lines.append(f"- Fault injection ({f['policy']}): no worker had a request in flight when checked, nothing "
                     "was killed: **not met** (re-run with more load).")
    elif f:
        lines.append(f"- Fault injection ({f['policy']}, SIGKILL of {f['kill']['worker']} with "
                     f"{f['kill']['inflight_steps']} steps in flight after {f['kill']['after_requests']} requests): "
                     f"{f['answered']} answered, {f['rejected']} rejected with a message, {f['lost']} lost, "
                     f"{f['rerouted']} re-routed, {f['restarts']} restart(s), all workers up afterwards: "
                     f"{f['all_workers_alive_after']} — 0 lost and every request answered or clearly rejected: "
                     f"**{'met' if f['answered_or_rejected_clearly'] else 'not met'}**.")
    return lines + copy_plots(run_dir, figures, out_dir) + [""]
