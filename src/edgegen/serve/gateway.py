"""`edgegen serve`: the live AaaS gateway. Clients POST /v1/generate {condition, steps}; a scheduler picks the ASP
worker (the AaaS env's decision, arXiv 2303.13052, made on live state), the worker denoises, and the client gets
the PNG, the worker's name, the measured quality and the latency.

Reads top to bottom: config -> fleet (spawned local workers and/or workers reachable by URL) -> policies (the AaaS
heuristics on a live view of the fleet, or a trained D2SAC checkpoint fed the env's observation) -> request routing
(capacity accounting, fallback, re-routing on worker failure) -> supervision (restart dead local workers) -> HTTP
app (generate, status JSON, HTML status page) -> `serve`.

Routing. The gateway counts the denoising steps it has in flight on every worker, so the available capacity it
shows a policy is exact (it is the only client of its workers). The policy's choice is used when it fits; otherwise
(a choice that would crash the ASP in the env) the request falls back to the worker with the most free steps, and
when no live worker has room it is rejected with 503 and a message. A worker that fails mid-request (connection
lost, e.g. killed) is marked dead, the request is re-routed (waiting up to `request_timeout_s` for room, e.g. for
the restarted worker), and a dead local worker is restarted on the same port. SIGTERM drains: no new connections,
requests in flight are answered, then the local workers are stopped.
"""

import asyncio
import contextlib
import html
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgegen.config import ConfigError, check_choice, check_range, from_dict
from edgegen.serve.http import (
    TOKEN_ENV,
    HTTPError,
    exit_zero_after_drain,
    parse_generate,
    read_json,
    read_token,
    token_app,
)

POLICIES = ("d2sac", "prophet", "crash_avoid", "round_robin", "random")


@dataclass(frozen=True)
class ServeConfig:
    """The gateway: its fleet, its scheduling policy and its HTTP limits."""

    fleet: Path | None = None
    """Fleet directory (fleet.json: local workers to spawn; utility.json: their measured quality vs steps), as
    written by `edgegen serve bench` / edgegen.serve.profile."""
    worker_urls: tuple[str, ...] = ()
    """Workers already running elsewhere (http://host:port), used after the fleet's local workers."""
    policy: str = "crash_avoid"
    """Scheduler: d2sac, prophet, crash_avoid, round_robin or random (ids of the AaaS bench)."""
    d2sac_run: Path | None = None
    """D2SAC run directory (config.json + ckpt/final.pt) for policy d2sac (default: FLEET/d2sac)."""
    utility: Path | None = None
    """Measured utility table (JSON) for prophet (default: FLEET/utility.json)."""
    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = 8100
    """TCP port (0 = any free port; the bound URL is printed)."""
    token_env: str = TOKEN_ENV
    """Environment variable with the service token (clients and workers); a random token is made and printed when
    it is unset."""
    min_steps: int | None = None
    """Smallest accepted number of denoising steps (default: the utility table's smallest step value, else 1)."""
    max_steps: int | None = None
    """Largest accepted number of denoising steps (default: the utility table's largest, else 100)."""
    max_body_bytes: int = 4096
    """Largest accepted request body (413 above)."""
    request_timeout_s: float = 120.0
    """A request not answered within this time (including re-routing waits) gets 503."""
    recent_decisions: int = 50
    """Decisions kept for /v1/status and the status page."""
    drain_timeout_s: float = 60.0
    """On SIGTERM, wait this long for in-flight requests."""
    worker_start_timeout_s: float = 120.0
    """Time allowed for a local worker to load its model and answer /v1/health."""
    log_dir: Path | None = None
    """Where local workers' logs go (default: FLEET/logs)."""
    port_file: Path | None = None
    """Write the bound port here at startup (useful with --port 0)."""
    seed: int = 0
    """Seed of the random policy."""
    quiet: bool = False
    """Print nothing but errors."""

    def validate(self) -> None:
        check_choice("policy", self.policy, set(POLICIES))
        check_range("port", self.port, 0, 65535)
        check_range("max_body_bytes", self.max_body_bytes, 16, 10**8)
        check_range("request_timeout_s", self.request_timeout_s, 0.1, 1e6)
        check_range("recent_decisions", self.recent_decisions, 1, 10**6)
        if self.fleet is None and not self.worker_urls:
            raise ConfigError("no workers: pass --fleet DIR and/or --worker-urls URL ...")
        if self.fleet is not None and not (self.fleet / "fleet.json").exists():
            raise ConfigError(f"fleet {self.fleet}: fleet.json missing (build one with `edgegen serve bench`)")
        if self.policy == "prophet" and self.utility_path() is None:
            raise ConfigError("policy prophet needs a measured utility table: pass --utility or a fleet with "
                              "utility.json")
        if self.policy == "d2sac":
            run = self.d2sac_path()
            if run is None or not (run / "ckpt" / "final.pt").exists():
                raise ConfigError(f"policy d2sac needs a trained D2SAC run (config.json + ckpt/final.pt); "
                                  f"d2sac_run={run}")

    def utility_path(self) -> Path | None:
        if self.utility is not None:
            return self.utility
        if self.fleet is not None and (self.fleet / "utility.json").exists():
            return self.fleet / "utility.json"
        return None

    def d2sac_path(self) -> Path | None:
        return self.d2sac_run if self.d2sac_run is not None else (self.fleet / "d2sac" if self.fleet else None)


# --------------------------------------------------------------------------------------------------- fleet


@dataclass
class WorkerHandle:
    """The gateway's view of one worker: address, capacity, its own in-flight accounting, process if local."""

    name: str
    url: str
    capacity_steps: int = 0
    inflight_steps: int = 0
    alive: bool = False
    served: int = 0
    failures: int = 0
    refusals: int = 0
    restarts: int = 0
    argv: list[str] | None = None  # local workers: the command that (re)starts it
    proc: subprocess.Popen | None = None
    sock: socket.socket | None = None  # local workers: the listening socket the gateway hands to the process
    log_path: Path | None = None
    starting: bool = False
    next_restart_s: float = 0.0
    failed_starts: int = 0
    info: dict = field(default_factory=dict)

    @property
    def local(self) -> bool:
        return self.argv is not None

    @property
    def free_steps(self) -> int:
        return self.capacity_steps - self.inflight_steps if self.alive else 0

    def status(self) -> dict:
        return {"name": self.name, "url": self.url, "alive": self.alive, "local": self.local,
                "pid": self.proc.pid if self.proc is not None and self.proc.poll() is None else None,
                "capacity_steps": self.capacity_steps, "inflight_steps": self.inflight_steps,
                "served": self.served, "failures": self.failures, "refusals": self.refusals,
                "restarts": self.restarts, "model": self.info.get("model"), "eta": self.info.get("eta")}


def load_fleet(fleet: Path) -> dict:
    """fleet.json: {"workers": [{"name", "model_dir", "capacity_steps", "eta"}, ...], ...}."""
    data = json.loads((fleet / "fleet.json").read_text())
    for w in data["workers"]:
        model_dir = Path(w["model_dir"])
        w["model_dir"] = str(model_dir if model_dir.is_absolute() else fleet / model_dir)
    return data


def listening_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket (port 0: the kernel picks a free one). Binding and listening here, in the process
    that owns the address, closes the race of "pick a free port, release it, let another process bind it"."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def local_worker(spec: dict, min_steps: int, max_steps: int, log_dir: Path, token_env: str) -> WorkerHandle:
    """A worker process this gateway spawns. The gateway owns its listening socket and hands it to the process
    (and to its replacement after a crash), so the worker keeps its address and no other process can take it."""
    from edgegen.serve.worker import WorkerConfig, worker_argv

    sock = listening_socket()
    port = sock.getsockname()[1]
    cfg = WorkerConfig(model_dir=Path(spec["model_dir"]), name=spec["name"], capacity_steps=int(spec["capacity_steps"]),
                       eta=float(spec.get("eta", 0.0)), min_steps=min_steps, max_steps=max_steps, port=port,
                       fd=sock.fileno(), token_env=token_env, tick_delay_ms=float(spec.get("tick_delay_ms", 0.0)))
    argv = [sys.executable, "-m", "edgegen.serve.worker", *worker_argv(cfg)]
    return WorkerHandle(spec["name"], f"http://127.0.0.1:{port}", int(spec["capacity_steps"]), argv=argv,
                        log_path=log_dir / f"{spec['name']}.log", sock=sock)


def start_process(w: WorkerHandle) -> None:
    w.log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(w.log_path, "ab")  # noqa: SIM115 - the child keeps it
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    w.proc = subprocess.Popen(w.argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                              pass_fds=(w.sock.fileno(),) if w.sock is not None else ())
    log.close()
    w.starting, w.alive = True, False


# ------------------------------------------------------------------------------------------------ policies


def load_utility(path: Path) -> dict:
    """utility.json: {"workers": [names], "step_values": [...], "quality": [[U_k(T) per step value] per worker]}."""
    data = json.loads(Path(path).read_text())
    data["quality"] = np.asarray(data["quality"], dtype=np.float64)
    return data


class LiveView:
    """The attributes of AaaSEnv that edgegen.aigc.heuristics read, filled from the live fleet, so the bench's
    heuristics run unchanged on the service."""

    def __init__(self, avail: np.ndarray, steps: int, decision: int, utility_table: np.ndarray | None,
                 step_values: np.ndarray | None):
        self._avail, self._t, self.num_asps = avail, decision, len(avail)
        self._steps = steps
        self.utility_table, self.step_values = utility_table, step_values

    @property
    def task_steps(self) -> int:
        return self._steps

    @property
    def task_step_index(self) -> int:
        return step_index(self._steps, self.step_values)


def step_index(steps: int, step_values) -> int:
    """Column of the utility table for `steps`: the nearest profiled step value."""
    return int(np.argmin(np.abs(np.asarray(step_values) - steps)))


def env_observation(avail: np.ndarray, capacity: np.ndarray, steps: int, env_cfg) -> np.ndarray:
    """AaaSEnv's observation for this live state: per ASP [capacity / capacity_max, available / capacity], then
    [T / T_max, o(T) / o(T_max)] (same maths as AaaSEnv._observe)."""
    from edgegen.aigc.env import task_runtime_units

    n = len(capacity)
    obs = np.zeros(2 * n + 2, dtype=np.float32)
    obs[0:2 * n:2] = np.asarray(capacity) / env_cfg.capacity_max_steps
    obs[1:2 * n:2] = np.asarray(avail) / np.asarray(capacity)
    obs[-2] = steps / env_cfg.task_steps_max
    obs[-1] = (task_runtime_units(steps, env_cfg.runtime_units_per_step)
               / task_runtime_units(env_cfg.task_steps_max, env_cfg.runtime_units_per_step))
    return obs


def load_d2sac(run_dir: Path):
    """(agent, env config, observation features) of a trained D2SAC run (config.json + ckpt/final.pt)."""
    import torch

    from edgegen.aigc.d2sac import D2SAC, D2SACConfig
    from edgegen.aigc.env import AaaSConfig

    saved = json.loads((run_dir / "config.json").read_text())
    cfg = from_dict(D2SACConfig, saved["d2sac"])
    env = dict(saved["env"])  # JSON lists back to the config's tuples
    if env.get("utility_table") is not None:
        env["utility_table"] = tuple(tuple(row) for row in env["utility_table"])
    if env.get("capacities_steps") is not None:
        env["capacities_steps"] = tuple(env["capacities_steps"])
    env_cfg = from_dict(AaaSConfig, env)
    n = env_cfg.num_asps
    obs_dim = 2 * n + 2
    if cfg.obs_features == "fit":
        from edgegen.aigc.env import fit_features

        obs_dim = fit_features(np.zeros(obs_dim, np.float32), env_cfg).shape[0]
    agent = D2SAC(obs_dim, n, cfg, 1)
    agent.load_state_dict(torch.load(run_dir / "ckpt" / "final.pt", weights_only=True))
    return agent, env_cfg


class Router:
    """policy(avail, capacity, steps) -> worker index; heuristics via LiveView, D2SAC via the env observation."""

    def __init__(self, policy: str, utility: dict | None = None, d2sac_run: Path | None = None, seed: int = 0):
        self.policy, self.decisions = policy, 0
        self.rng = np.random.default_rng(seed)
        self.utility_table = utility["quality"] if utility is not None else None
        self.step_values = np.asarray(utility["step_values"]) if utility is not None else None
        self.agent = self.env_cfg = None
        if policy == "d2sac":
            self.agent, self.env_cfg = load_d2sac(d2sac_run)

    def check_fleet(self, names: list[str], capacities: list[int]) -> None:
        """Clear errors when the policy was made for another fleet."""
        if self.utility_table is not None and len(self.utility_table) != len(names):
            raise ConfigError(f"the utility table has {len(self.utility_table)} workers, the fleet {len(names)}")
        if self.env_cfg is not None:
            if self.env_cfg.num_asps != len(names):
                raise ConfigError(f"the D2SAC policy was trained for {self.env_cfg.num_asps} ASPs, the fleet has "
                                  f"{len(names)} workers")
            if self.env_cfg.capacities_steps and list(self.env_cfg.capacities_steps) != list(capacities):
                raise ConfigError(f"the D2SAC policy was trained for capacities {list(self.env_cfg.capacities_steps)}"
                                  f", the fleet has {list(capacities)}")

    def choose(self, avail: np.ndarray, capacity: np.ndarray, steps: int) -> int:
        from edgegen.aigc.heuristics import HEURISTICS

        decision = self.decisions
        self.decisions += 1
        if self.policy == "d2sac":
            obs = env_observation(avail, capacity, steps, self.env_cfg)
            if self.agent.cfg.obs_features == "fit":
                from edgegen.aigc.env import fit_features

                obs = fit_features(obs, self.env_cfg)
            return int(self.agent.act(obs, deterministic=True))
        view = LiveView(np.asarray(avail, np.int64), steps, decision, self.utility_table, self.step_values)
        return int(HEURISTICS[self.policy](view, self.rng))


# ----------------------------------------------------------------------------------------------- gateway


class Gateway:
    """Fleet, router, accounting and supervision; the HTTP app (make_app) calls `generate` and `status`."""

    def __init__(self, cfg: ServeConfig, token: str):
        cfg.validate()
        self.cfg, self.token = cfg, token
        self.utility = load_utility(cfg.utility_path()) if cfg.utility_path() else None
        steps_range = (1, 100)
        if self.utility is not None:
            steps_range = (int(min(self.utility["step_values"])), int(max(self.utility["step_values"])))
        self.min_steps = cfg.min_steps if cfg.min_steps is not None else steps_range[0]
        self.max_steps = cfg.max_steps if cfg.max_steps is not None else steps_range[1]
        check_range("max_steps", self.max_steps, self.min_steps, 10**6)
        self.router = Router(cfg.policy, self.utility, cfg.d2sac_path(), cfg.seed)
        self.workers: list[WorkerHandle] = []
        if cfg.fleet is not None:
            log_dir = cfg.log_dir or cfg.fleet / "logs"
            for spec in load_fleet(cfg.fleet)["workers"]:
                self.workers.append(local_worker(spec, self.min_steps, self.max_steps, log_dir, cfg.token_env))
        for i, url in enumerate(cfg.worker_urls):
            self.workers.append(WorkerHandle(f"remote{i}", url.rstrip("/")))
        self.recent: deque = deque(maxlen=cfg.recent_decisions)
        self.counters = {"requests": 0, "answered": 0, "rejected": 0, "rerouted": 0, "fallbacks": 0, "failed": 0}
        self.started_s = time.time()
        self.stopping = False
        self.client = None
        self._monitor: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    # ---- lifecycle
    async def start(self) -> None:
        import httpx

        self.client = httpx.AsyncClient(headers={"Authorization": f"Bearer {self.token}"},
                                        timeout=httpx.Timeout(self.cfg.request_timeout_s, connect=5.0),
                                        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100))
        try:
            for w in self.workers:
                if w.local:
                    start_process(w)
            await asyncio.gather(*(self._wait_healthy(w, first=True) for w in self.workers))
            self.router.check_fleet([w.name for w in self.workers], [w.capacity_steps for w in self.workers])
        except BaseException:
            await self.stop()  # never leave spawned workers behind
            raise
        self._monitor = asyncio.create_task(self._supervise())

    async def stop(self) -> None:
        self.stopping = True
        if self._monitor is not None:
            self._monitor.cancel()
        procs = [w.proc for w in self.workers if w.proc is not None and w.proc.poll() is None]
        for p in procs:
            p.terminate()  # the worker drains its own running requests (none are left after our drain)
        deadline = time.monotonic() + self.cfg.drain_timeout_s
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for w in self.workers:
            if w.sock is not None:
                w.sock.close()
        if self.client is not None:
            await self.client.aclose()

    async def _health(self, w: WorkerHandle) -> dict | None:
        try:
            r = await self.client.get(f"{w.url}/v1/health", timeout=2.0)
        except Exception:
            return None
        return r.json() if r.status_code == 200 else None

    async def _wait_healthy(self, w: WorkerHandle, first: bool = False) -> bool:
        deadline = time.monotonic() + self.cfg.worker_start_timeout_s
        while time.monotonic() < deadline and not self.stopping:
            if w.proc is not None and w.proc.poll() is not None:
                if first:
                    tail = w.log_path.read_text()[-2000:] if w.log_path and w.log_path.exists() else ""
                    raise ConfigError(f"worker {w.name} exited with code {w.proc.returncode} while starting:\n{tail}")
                break
            info = await self._health(w)
            if info is not None:
                w.info, w.capacity_steps, w.alive, w.starting = info, int(info["capacity_steps"]), True, False
                w.failed_starts = 0
                if not w.local:
                    w.name = info.get("name", w.name)
                return True
            await asyncio.sleep(0.1)
        w.starting = False
        w.failed_starts += 1
        if first:
            raise ConfigError(f"worker {w.name} at {w.url} did not answer /v1/health within "
                              f"{self.cfg.worker_start_timeout_s:g} s")
        return False

    async def _supervise(self) -> None:
        """Restart dead local workers; bring back workers marked down that answer their health check again."""
        last_remote_check = 0.0
        while not self.stopping:
            for w in self.workers:
                dead = w.local and not w.starting and w.proc is not None and w.proc.poll() is not None
                if dead and time.monotonic() >= w.next_restart_s:
                    w.alive = False
                    w.restarts += 1
                    # back off when restarts keep failing (1 s, 2 s, 4 s, ... up to 30 s between attempts)
                    w.next_restart_s = time.monotonic() + min(30.0, 2.0 ** w.failed_starts)
                    start_process(w)
                    task = asyncio.create_task(self._wait_healthy(w))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            if time.monotonic() - last_remote_check > 1.0:
                last_remote_check = time.monotonic()
                for w in self.workers:  # a remote worker, or a local one that failed a request but still runs
                    running = not w.local or (w.proc is not None and w.proc.poll() is None)
                    if not w.alive and not w.starting and running:
                        w.alive = await self._health(w) is not None
            await asyncio.sleep(0.1)

    # ---- routing
    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.array([w.free_steps for w in self.workers], np.int64),
                np.array([max(w.capacity_steps, 1) for w in self.workers], np.int64))

    def _fallback(self, steps: int, exclude: set[int]) -> int | None:
        """The live worker with the most free steps (Crash-Avoid), if the request fits there."""
        free = [(w.free_steps, -i) for i, w in enumerate(self.workers) if i not in exclude and w.alive]
        if not free:
            return None
        most, neg_i = max(free)
        return -neg_i if most >= steps else None

    async def generate(self, condition: int, steps: int, seed: int | None) -> dict:
        started = time.perf_counter()
        request_id = uuid.uuid4().hex[:12]
        self.counters["requests"] += 1
        avail, capacity = self._arrays()
        choice = self.router.choose(avail, capacity, steps)
        k = choice if 0 <= choice < len(self.workers) else None
        tried: set[int] = set()
        attempts: list[dict] = []
        rerouted = fallback = False
        deadline = started + self.cfg.request_timeout_s
        while True:
            if k is None or k in tried or self.workers[k].free_steps < steps:
                k = self._fallback(steps, tried)
                fallback = fallback or not attempts
            if k is None:
                if not rerouted:  # a fresh request that fits nowhere: reject now, like an overloaded ASP set
                    most = int(max(avail)) if len(avail) else 0
                    self._record(request_id, condition, steps, choice, None, "rejected", started, attempts)
                    self.counters["rejected"] += 1
                    raise HTTPError(503, f"all workers at capacity: the request needs {steps} denoising steps, the "
                                         f"freest live worker has {most}", {"Retry-After": "1"})
                if time.perf_counter() > deadline:
                    self._record(request_id, condition, steps, choice, None, "rejected", started, attempts)
                    self.counters["rejected"] += 1
                    raise HTTPError(503, f"request re-routed after a worker failure found no worker with room for "
                                         f"{steps} steps within {self.cfg.request_timeout_s:g} s",
                                    {"Retry-After": "1"})
                await asyncio.sleep(0.05)  # wait for room (e.g. the restarted worker) and try every worker again
                tried.clear()
                continue
            w = self.workers[k]
            w.inflight_steps += steps
            try:
                body = {"condition": condition, "steps": steps, "request_id": request_id}
                r = await self.client.post(f"{w.url}/v1/denoise", json=body if seed is None else {**body, "seed": seed})
            except Exception as exc:  # connection refused / reset / timeout: the worker is gone
                w.failures += 1
                w.alive = False
                attempts.append({"worker": w.name, "error": f"{type(exc).__name__}"})
                tried.add(k)
                rerouted = True
                k = None
                continue
            finally:  # also when this request is cancelled (client gone, shutdown timeout)
                w.inflight_steps -= steps
            if r.status_code == 200:
                break
            attempts.append({"worker": w.name, "status": r.status_code, "error": _detail(r)})
            tried.add(k)
            k = None
            if r.status_code == 503:
                w.refusals += 1
                continue
            if 400 <= r.status_code < 500:  # the worker finds the request invalid: no other worker would differ
                self._record(request_id, condition, steps, choice, w.name, "failed", started, attempts)
                self.counters["failed"] += 1
                raise HTTPError(502, f"worker {w.name} answered {r.status_code}: {attempts[-1]['error']}")
            w.failures += 1  # a server error of the worker: try another one
            rerouted = True
        result = r.json()
        w.served += 1
        latency_ms = 1000 * (time.perf_counter() - started)
        self.counters["answered"] += 1
        self.counters["rerouted"] += rerouted
        self.counters["fallbacks"] += fallback
        self._record(request_id, condition, steps, choice, w.name, "answered", started, attempts,
                     result["quality"], fallback)
        return {"request_id": request_id, "worker": w.name, "condition": condition, "steps": steps,
                "quality": result["quality"], "predicted_class": result.get("predicted_class"),
                "latency_ms": latency_ms, "compute_ms": result.get("compute_ms"),
                "policy": self.cfg.policy,
                "policy_choice": self.workers[choice].name if 0 <= choice < len(self.workers) else None,
                "fallback": fallback, "rerouted": rerouted,
                "attempts": attempts, "image_png_b64": result["image_png_b64"]}

    def _record(self, request_id, condition, steps, choice, worker, outcome, started, attempts, quality=None,
                fallback=False) -> None:
        names = [w.name for w in self.workers]
        self.recent.appendleft({"request_id": request_id, "time": time.time(), "condition": condition,
                                "steps": steps, "policy_choice": names[choice] if 0 <= choice < len(names) else None,
                                "worker": worker, "outcome": outcome, "fallback": fallback,
                                "quality": quality, "latency_ms": 1000 * (time.perf_counter() - started),
                                "failed_attempts": attempts})

    def status(self) -> dict:
        return {"policy": self.cfg.policy, "uptime_s": time.time() - self.started_s,
                "steps_range": [self.min_steps, self.max_steps], "counters": dict(self.counters),
                "workers": [w.status() for w in self.workers], "recent_decisions": list(self.recent)}


def _detail(r) -> str:
    try:
        return str(r.json().get("detail", r.text))[:300]
    except Exception:
        return r.text[:300]


# ---------------------------------------------------------------------------------------------- HTTP app


def make_app(gateway: Gateway):
    from fastapi import Request
    from fastapi.responses import HTMLResponse

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await gateway.start()
        yield
        await gateway.stop()

    app = token_app("edgegen AaaS gateway", lifespan, gateway.token)

    @app.post("/v1/generate")
    async def generate(request: Request):
        req = parse_generate(await read_json(request, gateway.cfg.max_body_bytes), gateway.min_steps,
                             gateway.max_steps)
        return await gateway.generate(req.condition, req.steps, req.seed)

    @app.get("/v1/status")
    async def status():
        return gateway.status()

    @app.get("/status", response_class=HTMLResponse)
    @app.get("/", response_class=HTMLResponse)
    async def status_page():
        return status_html(gateway.status())

    return app


def status_html(status: dict) -> str:
    """A small self-refreshing page: workers with load bars, counters, recent decisions (all values escaped)."""
    e = html.escape
    rows = []
    for w in status["workers"]:
        load = w["inflight_steps"] / w["capacity_steps"] if w["capacity_steps"] else 0.0
        model = w.get("model") or {}
        rows.append(
            f"<tr><td>{e(w['name'])}</td><td>{e(w['url'])}</td>"
            f"<td class='{'up' if w['alive'] else 'down'}'>{'up' if w['alive'] else 'down'}</td>"
            f"<td>{e(str(w['pid']))}</td><td>{e(str(model.get('hidden', '')))}×{e(str(model.get('blocks', '')))}, "
            f"{e(str(model.get('train_steps', '')))} steps, η={e(str(w.get('eta')))}</td>"
            f"<td><div class='bar'><div style='width:{100 * load:.0f}%'></div></div> {w['inflight_steps']} / "
            f"{w['capacity_steps']}</td><td>{w['served']}</td><td>{w['failures']}</td><td>{w['restarts']}</td></tr>")
    decisions = []
    for d in status["recent_decisions"][:20]:
        q = "" if d["quality"] is None else f"{d['quality']:.3f}"
        decisions.append(
            f"<tr><td>{e(d['request_id'])}</td><td>{d['condition']}</td><td>{d['steps']}</td>"
            f"<td>{e(str(d['policy_choice']))}</td><td>{e(str(d['worker']))}{' (fallback)' if d['fallback'] else ''}"
            f"</td><td>{e(d['outcome'])}</td><td>{q}</td><td>{d['latency_ms']:.0f}</td></tr>")
    counters = " · ".join(f"{e(k)}: {v}" for k, v in status["counters"].items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2"><title>edgegen AaaS gateway</title>
<style>body{{font-family:sans-serif;margin:1.5em;color:#222}} table{{border-collapse:collapse;margin-bottom:1.5em}}
td,th{{border:1px solid #ccc;padding:.25em .6em;font-size:.9em}} th{{background:#f0f0f0}}
.up{{color:#070}} .down{{color:#b00;font-weight:bold}}
.bar{{display:inline-block;width:120px;height:10px;background:#eee;vertical-align:middle}}
.bar div{{height:10px;background:#4a7}}</style></head>
<body><h1>edgegen AaaS gateway</h1>
<p>policy <b>{e(status['policy'])}</b> · steps {status['steps_range'][0]}–{status['steps_range'][1]} ·
uptime {status['uptime_s']:.0f} s</p><p>{counters}</p>
<h2>Workers</h2><table><tr><th>name</th><th>url</th><th>state</th><th>pid</th><th>model</th>
<th>load (in-flight / capacity steps)</th><th>served</th><th>failures</th><th>restarts</th></tr>
{''.join(rows)}</table>
<h2>Recent decisions</h2><table><tr><th>request</th><th>class</th><th>steps</th><th>policy chose</th><th>served by</th>
<th>outcome</th><th>quality</th><th>latency ms</th></tr>{''.join(decisions)}</table></body></html>"""


def serve(cfg: ServeConfig) -> None:
    """Start the fleet and the gateway; serve until SIGTERM/SIGINT, then drain and stop the workers."""
    import uvicorn

    cfg.validate()
    had_token = bool(os.environ.get(cfg.token_env))
    token = read_token(cfg.token_env, generate=True)
    sock = listening_socket(cfg.host, cfg.port)  # before the workers' sockets: the address is ours from here on
    url = f"http://{cfg.host}:{sock.getsockname()[1]}"
    if cfg.port_file is not None:
        cfg.port_file.write_text(str(sock.getsockname()[1]))
    gateway = Gateway(cfg, token)
    app = make_app(gateway)
    if not cfg.quiet:
        print(f"edgegen serve: {url}  policy {cfg.policy}  status page {url}/status?token=...", flush=True)
        if not had_token:
            print(f"token (from ${cfg.token_env}, generated): {token}", flush=True)
    exit_zero_after_drain()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, ws="none",
                                           timeout_graceful_shutdown=int(cfg.drain_timeout_s) or None))
    server.run(sockets=[sock])


def main(argv: list[str] | None = None) -> int:
    import tyro

    cfg = tyro.cli(ServeConfig, args=argv, prog="python -m edgegen.serve.gateway")
    try:
        serve(cfg)
    except ConfigError as exc:
        print(f"edgegen serve: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

