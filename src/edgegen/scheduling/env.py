"""`edgegen/DLSchedule-v0`: online scheduling of deep-learning jobs on a pool of heterogeneous agents.

Model (event-driven, one episode = ``num_jobs`` jobs that arrive over time and all run to completion)
    Jobs are small DAGs of tasks (``JOB_TEMPLATES``: single inference, batch inference = preprocess -> 3 x infer,
    training = preprocess -> train -> evaluate, fine-tuning = 2 x preprocess -> finetune -> evaluate). With
    ``dag=False`` every job is its template's main task alone. Each task draws its compute (TFLOP), input data
    (MB) and memory (GB) uniformly from its type's ranges (``TASK_TYPES``). Jobs arrive as a Poisson process.
    Agents (``AGENT_KINDS``: cloud GPU far away behind a slow link, edge GPUs, edge CPUs next to the data) have a
    speed (TFLOP/s), memory (GB) and link bandwidth (MB/s). Task i on agent k runs for

        exec_s[i, k] = compute_tflop[i] / speed_tflop_per_s[k] + data_mb[i] / bandwidth_mb_per_s[k]

    (:func:`edgegen.wireless.compute_time_s` + :func:`edgegen.wireless.transmit_time_s`), if
    memory_gb[i] <= memory_gb[k]; otherwise the pair is infeasible. An agent runs one task at a time,
    non-preemptively; a task is ready when all of its job's predecessors have finished.

Load
    ``load`` = arrival rate / the pool's fluid capacity for the workload mix, the largest job rate any scheduler
    could sustain (:func:`fluid_capacity_jobs_per_s`: a linear program that splits a large sample of the mix's
    tasks fractionally over the agents to minimise the most loaded agent's busy time). Load 1.0 saturates
    even an ideal router; every real scheduler saturates earlier.

Decisions (Decima-style, Mao et al., SIGCOMM 2019: act whenever an agent is free and work is waiting)
    The ready tasks, oldest first, fill a visible window of ``window`` slots. The action is
    ``slot * num_agents + agent`` (assign the task in that slot to that agent, which must be idle and have
    enough memory) or ``window * num_agents`` = wait (do nothing until the next arrival or completion; only
    valid while something is running or still to arrive). After an assignment time does not move, so several
    tasks can be placed at one instant. States in which no assignment is valid are skipped automatically.
    ``action_masks()`` (sb3-contrib MaskablePPO) returns the valid actions, also given as ``info["action_mask"]``.
    An invalid action raises ``ValueError`` with ``invalid_action="error"``; with the default ``"penalty"`` it
    costs ``invalid_penalty`` reward and is replaced by wait (or, when wait is invalid, by the oldest task on
    its fastest idle agent), so an unmasked agent can still learn and every episode ends.

Observation (flat float32 vector, blocks in ``obs_layout()``; times enter as lg(t) = log(1 + t / time_scale_s))
    per (slot, agent) pair: valid now, fits memory, lg exec_s, lg time until the agent is free, lg completion
    time if started when the agent is free (MCT's quantity), log(exec / task's best exec) / 5, then one 0/1
    feature per ``hints`` heuristic: 1 on the pair that heuristic would assign now;
    per slot: occupied, lg time waited, lg job age, lg job's remaining work (best exec times), job tasks left / 4,
    lg best exec, lg best completion, lg upward rank (HEFT's remaining critical path), successors / 4,
    log(second-best exec / best exec) / 5 (how tied the task is to its fastest agent; 1 if only one agent fits);
    per agent: idle, lg busy time left, log speed / 5, log bandwidth / 7, memory / 100 GB;
    global: ready tasks in the window / W, ready tasks beyond it / W, jobs in system / 20, share of jobs still to
    arrive, wait valid, then one 0/1 feature per hint heuristic: 1 if it would wait now. The hints are
    deterministic functions of the visible state (what the heuristics see), so the policy can follow, combine or
    deviate from the classic rules; empty ``hints`` gives the plain features.

Reward (Decima's): -(time elapsed) x (jobs in the system) / (time_scale_s x num_jobs) per step, so the
    undiscounted episode return is exactly -(average job completion time) / time_scale_s.
    With ``reward_baseline`` = a heuristic name, each step also gets back the same integral for the jobs in the
    system under that heuristic on the same episode over the same time interval (the rest of it at the last step):
    the return becomes -(avg JCT - the heuristic's avg JCT) / time_scale_s. This is an input-dependent baseline
    (Mao et al., ICLR 2019, used by Decima; a rollout baseline as in Kool et al., ICLR 2019): busy and quiet
    stretches of the arrival sequence no longer dominate the return, only the policy's difference does. It only
    changes the training signal; ``episode_metrics()`` are unaffected.
"""

from __future__ import annotations

import functools
import heapq
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from edgegen.config import ConfigError, check_choice, check_range
from edgegen.wireless import compute_time_s, transmit_time_s

# name: (compute TFLOP min, max), (data MB min, max), (memory GB min, max). Illustrative DL task sizes: a
# training task is a chunk of epochs of a ~1B-parameter model (6 N D FLOP rule), inference a batch of requests.
TASK_TYPES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "preprocess": ((2.0, 10.0), (200.0, 800.0), (2.0, 8.0)),
    "train": ((300.0, 1200.0), (50.0, 200.0), (20.0, 64.0)),
    "finetune": ((40.0, 160.0), (20.0, 100.0), (8.0, 16.0)),
    "infer": ((0.5, 4.0), (5.0, 40.0), (1.0, 4.0)),
    "evaluate": ((5.0, 20.0), (20.0, 80.0), (4.0, 12.0)),
}
TYPE_NAMES = tuple(TASK_TYPES)

# Job templates: list of (task type, predecessor indices within the job); the main task is used when dag=False.
JOB_TEMPLATES: dict[str, dict] = {
    "inference": {"tasks": [("infer", ())], "main": 0},
    "batch_inference": {"tasks": [("preprocess", ()), ("infer", (0,)), ("infer", (0,)), ("infer", (0,))], "main": 1},
    "training": {"tasks": [("preprocess", ()), ("train", (0,)), ("evaluate", (1,))], "main": 1},
    "finetuning": {"tasks": [("preprocess", ()), ("preprocess", ()), ("finetune", (0, 1)), ("evaluate", (2,))],
                   "main": 2},
}
TEMPLATE_NAMES = tuple(JOB_TEMPLATES)

# Workload mixes: probability of each job template (order of TEMPLATE_NAMES). The bench trains on the first
# three and tests on held-out ones ("balanced", "training_burst").
MIXES: dict[str, tuple[float, float, float, float]] = {
    "inference_heavy": (0.60, 0.25, 0.05, 0.10),
    "training_heavy": (0.20, 0.10, 0.30, 0.40),
    "data_heavy": (0.20, 0.50, 0.10, 0.20),
    "balanced": (0.25, 0.25, 0.25, 0.25),
    "training_burst": (0.10, 0.15, 0.55, 0.20),
}

# kind: (speed TFLOP/s, memory GB, link bandwidth MB/s). A datacentre GPU reached over a 200 Mbit/s WAN link,
# a small edge GPU on a 1 Gbit/s LAN, a CPU server that holds the data locally.
AGENT_KINDS: dict[str, tuple[float, float, float]] = {
    "cloud_gpu": (60.0, 80.0, 25.0),
    "edge_gpu": (12.0, 24.0, 120.0),
    "edge_cpu": (1.5, 64.0, 600.0),
}

# Heuristics that may serve as observation hints: deterministic and memoryless (a function of the state alone).
HINTABLE = ("fifo", "sjf", "lpt", "met", "mct", "min_min", "max_min", "heft", "tied_spt", "tied_srpt")


@dataclass(frozen=True)
class DLScheduleConfig:
    """Configuration of `edgegen/DLSchedule-v0` (see the module docstring)."""

    agents: tuple[str, ...] = ("cloud_gpu", "edge_gpu", "edge_gpu", "edge_cpu", "edge_cpu")
    """Agent pool, one AGENT_KINDS name per agent (1..64 agents)."""
    num_jobs: int = 60
    """Jobs per episode (1..100000); the episode ends when all have completed."""
    loads: tuple[float, ...] = (0.8,)
    """Offered load(s) as a fraction of the pool's fluid capacity (each in [0.05, 2]); one is drawn per episode."""
    mixes: tuple[str, ...] = ("balanced",)
    """Workload mix(es), names in MIXES; one is drawn per episode."""
    dag: bool = True
    """Jobs are DAGs of tasks (True) or single tasks (False: each template's main task)."""
    window: int = 12
    """Visible ready tasks (1..256), oldest first; the action space has window x agents + 1 actions."""
    time_scale_s: float = 10.0
    """Time unit of the observation features and the reward (seconds, > 0)."""
    invalid_action: str = "penalty"
    """What an action outside the mask does: "penalty" (documented above) or "error" (ValueError)."""
    invalid_penalty: float = 1.0
    """Reward subtracted for an invalid action in "penalty" mode (>= 0)."""
    reward_baseline: str = ""
    """Heuristic (a name in HINTABLE) played on the same episode whose jobs-in-system integral is subtracted from
    the reward (see "Reward" above); "" = Decima's plain reward."""
    hints: tuple[str, ...] = ("mct", "min_min")
    """Heuristics or reference rules (names in ``HINTABLE``, deterministic ones only) whose current decision is part
    of the observation: per (slot, agent) pair 1 if the heuristic would make that assignment now, and a global 1 if
    it would wait (see "Observation" above). () = no hints."""

    def validate(self) -> None:
        check_range("num_agents (len(agents))", len(self.agents), 1, 64)
        for a in self.agents:
            check_choice("agents[*]", a, AGENT_KINDS)
        check_range("num_jobs", self.num_jobs, 1, 100_000)
        if not self.loads:
            raise ConfigError("loads must hold at least one load")
        for x in self.loads:
            check_range("loads[*]", x, 0.05, 2.0)
        if not self.mixes:
            raise ConfigError("mixes must name at least one workload mix")
        for m in self.mixes:
            check_choice("mixes[*]", m, MIXES)
        check_range("window", self.window, 1, 256)
        check_range("time_scale_s", self.time_scale_s, 1e-6, 1e9)
        check_choice("invalid_action", self.invalid_action, ("penalty", "error"))
        check_range("invalid_penalty", self.invalid_penalty, 0.0, 1e9)
        for h in self.hints:
            check_choice("hints[*]", h, HINTABLE)
        if self.reward_baseline:
            check_choice("reward_baseline", self.reward_baseline, HINTABLE)
        max_mem = max(AGENT_KINDS[a][1] for a in self.agents)
        for mix in self.mixes:
            for name, p in zip(TEMPLATE_NAMES, MIXES[mix], strict=True):
                for ttype, _ in (JOB_TEMPLATES[name]["tasks"] if p > 0 else []):
                    if TASK_TYPES[ttype][2][1] > max_mem:
                        raise ConfigError(f"agents: no agent has the {TASK_TYPES[ttype][2][1]:g} GB a {ttype!r} task "
                                          f"of mix {mix!r} may need (largest agent memory: {max_mem:g} GB)")


# ------------------------------------------------------------------ pure functions (no gym, tested by hand)

def exec_time_s(compute_tflop, data_mb, memory_gb, speed_tflop_per_s, agent_memory_gb, bandwidth_mb_per_s):
    """exec_s[i, k] = compute/speed + data/bandwidth for every task i and agent k; inf where memory does not fit."""
    c, d, m = (np.asarray(x, dtype=np.float64)[:, None] for x in (compute_tflop, data_mb, memory_gb))
    s, am, b = (np.asarray(x, dtype=np.float64)[None, :] for x in (speed_tflop_per_s, agent_memory_gb,
                                                                  bandwidth_mb_per_s))
    t = np.asarray(compute_time_s(c * 1e12, s * 1e12)) + np.asarray(transmit_time_s(d * 8e6, b * 8e6))
    return np.where(m <= am, t, np.inf)


def second_best_exec_s(exec_s: np.ndarray) -> np.ndarray:
    """Per task (row), the second-smallest execution time over the agents; inf where at most one agent fits."""
    exec_s = np.asarray(exec_s, dtype=np.float64)
    if exec_s.shape[1] < 2:
        return np.full(exec_s.shape[0], np.inf)
    return np.sort(exec_s, axis=1)[:, 1]


def fluid_makespan_s(exec_s: np.ndarray) -> float:
    """Smallest T such that the tasks, split fractionally over the agents, load no agent beyond T.

    LP: min T s.t. sum_k x_ik = 1, sum_i x_ik exec_s[i, k] <= T, x >= 0, x_ik = 0 where exec_s is inf. A lower
    bound on the busy span of any schedule of these tasks (ignores precedence and indivisibility).
    """
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    exec_s = np.asarray(exec_s, dtype=np.float64)
    n, m = exec_s.shape
    ii, kk = np.nonzero(np.isfinite(exec_s))
    if len(np.unique(ii)) < n:
        raise ValueError("a task fits on no agent (all of its exec_s are inf)")
    nv = len(ii)
    c = np.zeros(nv + 1)
    c[-1] = 1.0
    a_eq = coo_matrix((np.ones(nv), (ii, np.arange(nv))), shape=(n, nv + 1))
    rows = np.concatenate([kk, np.arange(m)])
    cols = np.concatenate([np.arange(nv), np.full(m, nv)])
    vals = np.concatenate([exec_s[ii, kk], -np.ones(m)])
    a_ub = coo_matrix((vals, (rows, cols)), shape=(m, nv + 1))
    res = linprog(c, A_ub=a_ub.tocsr(), b_ub=np.zeros(m), A_eq=a_eq.tocsr(), b_eq=np.ones(n),
                  bounds=(0, None), method="highs")
    if res.status != 0:  # pragma: no cover - the LP is always feasible and bounded
        raise RuntimeError(f"fluid LP failed: {res.message}")
    return float(res.x[-1])


def upward_rank_s(cost_s: np.ndarray, successors: list[list[int]]) -> np.ndarray:
    """HEFT's upward rank (Topcuoglu et al., IEEE TPDS 2002) without communication costs:
    rank[i] = cost_s[i] + max over successors j of rank[j] (cost_s[i] alone for an exit task).
    Tasks are indexed in a topological order (every successor after its predecessor)."""
    rank = np.asarray(cost_s, dtype=np.float64).copy()
    for i in range(len(rank) - 1, -1, -1):
        if successors[i]:
            rank[i] += max(rank[j] for j in successors[i])
    return rank


def agent_table(agents: tuple[str, ...]) -> np.ndarray:
    """(num_agents, 3): speed TFLOP/s, memory GB, bandwidth MB/s."""
    return np.array([AGENT_KINDS[a] for a in agents], dtype=np.float64)


def sample_jobs(rng: np.random.Generator, n: int, mix: str, dag: bool) -> tuple[list[int], list[tuple]]:
    """Draw n jobs of a mix: (template index per job, flat task list of (job, type index, preds (global ids),
    compute_tflop, data_mb, memory_gb)) with the tasks of each job contiguous and topologically ordered."""
    templates = rng.choice(len(TEMPLATE_NAMES), size=n, p=np.asarray(MIXES[mix]) / sum(MIXES[mix]))
    tasks: list[tuple] = []
    for j, t in enumerate(templates):
        spec = JOB_TEMPLATES[TEMPLATE_NAMES[t]]
        items = spec["tasks"] if dag else [(spec["tasks"][spec["main"]][0], ())]
        base = len(tasks)
        for ttype, preds in items:
            (c0, c1), (d0, d1), (m0, m1) = TASK_TYPES[ttype]
            tasks.append((j, TYPE_NAMES.index(ttype), tuple(base + p for p in preds),
                          float(rng.uniform(c0, c1)), float(rng.uniform(d0, d1)), float(rng.uniform(m0, m1))))
    return [int(t) for t in templates], tasks


@functools.lru_cache(maxsize=64)
def fluid_capacity_jobs_per_s(agents: tuple[str, ...], mix: str, dag: bool, sample_jobs_n: int = 400) -> float:
    """Largest sustainable job arrival rate of the pool for a mix: sample_jobs_n jobs drawn with a fixed seed,
    divided by their fluid makespan (:func:`fluid_makespan_s`)."""
    rng = np.random.default_rng(20190819)  # fixed: the capacity is a property of (pool, mix), not of a run
    _, tasks = sample_jobs(rng, sample_jobs_n, mix, dag)
    table = agent_table(agents)
    arr = np.array([t[3:] for t in tasks])
    ex = exec_time_s(arr[:, 0], arr[:, 1], arr[:, 2], table[:, 0], table[:, 1], table[:, 2])
    return sample_jobs_n / fluid_makespan_s(ex)


# ------------------------------------------------------------------ the env

PAIR_FEATURES = 6  # valid, fits memory, lg exec, lg start delay, lg completion, log(exec / best exec)
TASK_FEATURES = 10  # present, lg waited, lg job age, lg job work left, job tasks left, lg best exec,
#                     lg best completion, lg upward rank, successors, log(second-best / best exec)
AGENT_FEATURES = 5  # idle, lg busy left, log speed, log bandwidth, memory
GLOBAL_FEATURES = 5  # ready tasks, beyond window, jobs in system, arrivals left, wait valid


class DLScheduleEnv(gym.Env):
    """Gymnasium env; observation = flat float32 vector (layout in `obs_layout`), action Discrete(W x M + 1)."""

    metadata = {"render_modes": []}

    def __init__(self, config: DLScheduleConfig | None = None, **overrides):
        cfg = config if config is not None else DLScheduleConfig()
        if overrides:
            cfg = DLScheduleConfig(**{**cfg.__dict__, **overrides})
        cfg.validate()
        self.config = cfg
        self.num_agents = len(cfg.agents)
        self.agent_table = agent_table(cfg.agents)
        self.window = cfg.window
        self.wait_action = cfg.window * self.num_agents
        self.action_space = gym.spaces.Discrete(self.wait_action + 1)
        self.pair_features = PAIR_FEATURES + len(cfg.hints)
        self.global_features = GLOBAL_FEATURES + len(cfg.hints)
        size = (cfg.window * self.num_agents * self.pair_features + cfg.window * TASK_FEATURES
                + self.num_agents * AGENT_FEATURES + self.global_features)
        self.observation_space = gym.spaces.Box(-10.0, 10.0, (size,), np.float32)
        self._agent_obs = np.stack([np.zeros(self.num_agents), np.zeros(self.num_agents),
                                    np.log(self.agent_table[:, 0]) / 5.0, np.log(self.agent_table[:, 2]) / 7.0,
                                    self.agent_table[:, 1] / 100.0], axis=1)
        self._done = True
        self._n_tasks = 0

    # ---------------------------------------------------------------- episode generation
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        cfg, rng = self.config, self.np_random
        options = options or {}
        # draw a load / mix only when the options do not give one: an episode with given options is then the same
        # whatever the config's lists hold (a single-load bench plays the episodes of a multi-load one)
        self.load = float(options["load"] if "load" in options else cfg.loads[int(rng.integers(len(cfg.loads)))])
        self.mix = str(options["mix"] if "mix" in options else cfg.mixes[int(rng.integers(len(cfg.mixes)))])
        check_range("options['load']", self.load, 0.05, 2.0)
        check_choice("options['mix']", self.mix, MIXES)
        rate = self.load * fluid_capacity_jobs_per_s(cfg.agents, self.mix, cfg.dag)
        gaps = rng.exponential(1.0 / rate, cfg.num_jobs)
        gaps[0] = 0.0
        self.job_arrival_s = np.cumsum(gaps)
        self.job_template, tasks = sample_jobs(rng, cfg.num_jobs, self.mix, cfg.dag)
        self._set_tasks(tasks)
        # dynamic state
        self.now_s = 0.0
        self.free_at_s = np.zeros(self.num_agents)
        self.running = np.full(self.num_agents, -1, dtype=np.int64)
        self.busy_s = np.zeros(self.num_agents)
        self._not_arrived_from(0)
        self.ready: list[int] = []  # ready, unassigned tasks, oldest first
        self._next_job = 0
        self._heap: list[tuple[float, int, int]] = []  # (finish time, task, agent)
        self._jobs_in_system = 0
        self._jobs_done = 0
        self._decisions = self._invalid = 0
        self._done = False
        self._ref_finish_s = None
        if cfg.reward_baseline:
            self._ref_finish_s = self._reference_finish_s(cfg.reward_baseline)
        self._process_events()
        reward = self._advance_until_decision()  # 0 (the first job arrives at t = 0)
        assert reward == 0.0
        return self._observe(), self._info()

    def _set_tasks(self, tasks: list[tuple]) -> None:
        """Static arrays of the episode's tasks (sample_jobs's format, jobs contiguous and in arrival order)."""
        n = self._n_tasks = len(tasks)
        self.task_job = np.array([t[0] for t in tasks], dtype=np.int64)
        self.task_type = np.array([t[1] for t in tasks], dtype=np.int64)
        self.task_preds = [t[2] for t in tasks]
        self.task_succs: list[list[int]] = [[] for _ in range(n)]
        for i, preds in enumerate(self.task_preds):
            for p in preds:
                self.task_succs[p].append(i)
        size = np.array([t[3:] for t in tasks])
        self.task_compute_tflop, self.task_data_mb, self.task_memory_gb = size[:, 0], size[:, 1], size[:, 2]
        a = self.agent_table
        self.exec_s = exec_time_s(size[:, 0], size[:, 1], size[:, 2], a[:, 0], a[:, 1], a[:, 2])
        self.best_exec_s = self.exec_s.min(axis=1)
        tie = np.log(second_best_exec_s(self.exec_s) / self.best_exec_s)
        self.tie_feature = np.minimum(tie, 5.0) / 5.0  # 1 where one agent fits
        mean_exec = np.array([row[np.isfinite(row)].mean() for row in self.exec_s])
        self.upward_rank_s = upward_rank_s(mean_exec, self.task_succs)  # tasks of a job are contiguous, topological
        self.job_tasks = [[] for _ in range(self.config.num_jobs)]
        for i, j in enumerate(self.task_job):
            self.job_tasks[j].append(i)

    def _not_arrived_from(self, j0: int) -> None:
        """Per-task and per-job dynamic state: jobs j0.. (and their tasks) as not yet arrived, the rest kept."""
        n, nj = self._n_tasks, self.config.num_jobs
        t0 = self.job_tasks[j0][0] if j0 < nj else n

        def kept(name: str, fresh: np.ndarray, cut: int) -> np.ndarray:
            if cut:
                fresh[:cut] = getattr(self, name)[:cut]
            return fresh

        self.task_start_s = kept("task_start_s", np.full(n, np.nan), t0)
        self.task_finish_s = kept("task_finish_s", np.full(n, np.nan), t0)
        self.task_agent = kept("task_agent", np.full(n, -1, dtype=np.int64), t0)
        self.task_ready_s = kept("task_ready_s", np.full(n, np.nan), t0)
        self._preds_left = kept("_preds_left", np.array([len(p) for p in self.task_preds], dtype=np.int64), t0)
        self.job_tasks_left = kept("job_tasks_left", np.array([len(t) for t in self.job_tasks], dtype=np.int64), j0)
        work = np.zeros(nj)
        np.add.at(work, self.task_job, self.best_exec_s)
        self.job_work_left_s = kept("job_work_left_s", work, j0)
        self.job_finish_s = kept("job_finish_s", np.full(nj, np.nan), j0)

    def arrived_jobs(self) -> list[tuple[int, list[tuple]]]:
        """The jobs that have arrived so far, in arrival order: (template index, tasks as (type index, preds (job-local
        ids), compute_tflop, data_mb, memory_gb)); the sizes are the observed ones. For an empirical arrival model
        (:meth:`resample_future`'s `model`)."""
        out = []
        for j in range(self._next_job):
            t0 = self.job_tasks[j][0]
            out.append((int(self.job_template[j]), [(int(self.task_type[i]), tuple(p - t0 for p in self.task_preds[i]),
                                                     float(self.task_compute_tflop[i]), float(self.task_data_mb[i]),
                                                     float(self.task_memory_gb[i])) for i in self.job_tasks[j]]))
        return out

    def resample_future(self, rng: np.random.Generator, model: tuple[float, list] | None = None) -> None:
        """Redraw the jobs that have not arrived yet: Poisson arrivals from now on (memoryless) with fresh jobs.
        By default from the episode's own arrival model (its load and mix: fresh templates and task sizes); with
        `model` = (arrival rate per s, jobs in :meth:`arrived_jobs`'s format), an empirical model instead: that
        rate, and jobs drawn with replacement from those jobs. Already-arrived jobs, running and ready tasks are
        unchanged. For planning by rollouts without seeing the real future (Monte-Carlo futures); the
        ``reward_baseline`` reference, computed on the old future, is dropped."""
        if self._done:
            raise RuntimeError("resample_future() needs an episode in progress")
        cfg, j0 = self.config, self._next_job
        if j0 == cfg.num_jobs:
            return
        t0 = self.job_tasks[j0][0]
        if model is None:
            rate = self.load * fluid_capacity_jobs_per_s(cfg.agents, self.mix, cfg.dag)
        else:
            rate, pool = model
            if not (rate > 0 and pool):
                raise ValueError(f"an empirical arrival model needs a positive rate and jobs, got {rate} and "
                                 f"{len(pool)} jobs")
        self.job_arrival_s = self.job_arrival_s.copy()
        self.job_arrival_s[j0:] = self.now_s + np.cumsum(rng.exponential(1.0 / rate, cfg.num_jobs - j0))
        if model is None:
            templates, new = sample_jobs(rng, cfg.num_jobs - j0, self.mix, cfg.dag)
        else:
            templates, new = [], []
            for j, k in enumerate(rng.integers(len(pool), size=cfg.num_jobs - j0)):
                template, tasks = pool[k]
                base = len(new)
                templates.append(template)
                new += [(j, ty, tuple(base + p for p in preds), *size) for ty, preds, *size in tasks]
        self.job_template = self.job_template[:j0] + templates
        old = [(int(self.task_job[i]), int(self.task_type[i]), self.task_preds[i], float(self.task_compute_tflop[i]),
                float(self.task_data_mb[i]), float(self.task_memory_gb[i])) for i in range(t0)]
        self._set_tasks(old + [(j + j0, ty, tuple(p + t0 for p in preds), *size) for j, ty, preds, *size in new])
        self._not_arrived_from(j0)
        self._ref_finish_s = None

    # ---------------------------------------------------------------- public read-only views
    @property
    def window_tasks(self) -> list[int]:
        """Global ids of the tasks in the visible window, slot order."""
        return self.ready[: self.window]

    @property
    def idle(self) -> np.ndarray:
        return self.running < 0

    @property
    def decisions(self) -> int:
        """Actions taken so far in this episode."""
        return self._decisions

    def wait_valid(self) -> bool:
        return bool(self._heap) or self._next_job < self.config.num_jobs

    def action_masks(self) -> np.ndarray:
        """bool (W x M + 1,): valid assignments (slot occupied, agent idle, memory fits) and wait."""
        mask = np.zeros(self.wait_action + 1, dtype=bool)
        if self._done:
            mask[self.wait_action] = True  # any action is a no-op error after the end; keep the mask non-empty
            return mask
        win = self.window_tasks
        if win:
            ok = np.isfinite(self.exec_s[win]) & self.idle[None, :]
            mask[: len(win) * self.num_agents] = ok.reshape(-1)
        mask[self.wait_action] = self.wait_valid()
        return mask

    def decode(self, action: int) -> tuple[int, int] | None:
        """(slot, agent) of an assignment action; None for wait."""
        a = int(action)
        if a == self.wait_action:
            return None
        return divmod(a, self.num_agents)

    def encode(self, slot: int, agent: int) -> int:
        return int(slot) * self.num_agents + int(agent)

    # ---------------------------------------------------------------- dynamics
    def step(self, action):
        if self._done:
            raise RuntimeError("step() called before reset() or after the episode terminated; call reset()")
        bad = f"action must be an integer in [0, {self.wait_action}], got {action!r}"
        try:
            a = int(action)
        except (TypeError, ValueError):
            raise ValueError(bad) from None
        if a != action or not 0 <= a <= self.wait_action:
            raise ValueError(bad)
        mask = self.action_masks()
        reward = 0.0
        invalid = not mask[a]
        if invalid:
            if self.config.invalid_action == "error":
                raise ValueError(f"action {a} ({self._describe(a)}) is invalid in this state; valid actions: "
                                 f"{np.flatnonzero(mask).tolist()} (use action_masks() or info['action_mask'])")
            self._invalid += 1
            reward -= self.config.invalid_penalty
            a = self.wait_action if mask[self.wait_action] else int(np.flatnonzero(mask)[0])
        self._decisions += 1
        if a == self.wait_action:
            reward += self._advance_one_event()
        else:
            slot, k = divmod(a, self.num_agents)
            self._assign(self.ready[slot], k)
        reward += self._advance_until_decision()
        terminated = self._done
        return self._observe(), reward, terminated, False, self._info(invalid=invalid)

    def _describe(self, a: int) -> str:
        if a == self.wait_action:
            return "wait: nothing is running or left to arrive"
        slot, k = divmod(a, self.num_agents)
        if slot >= len(self.ready):
            return f"slot {slot} is empty"
        i = self.ready[slot]
        if not self.idle[k]:
            return f"agent {k} is busy until {self.free_at_s[k]:.3f} s"
        return f"task {i} needs {self.task_memory_gb[i]:.1f} GB, agent {k} has {self.agent_table[k, 1]:g} GB"

    def _assign(self, i: int, k: int) -> None:
        self.ready.remove(i)
        finish = self.now_s + self.exec_s[i, k]
        self.task_start_s[i], self.task_finish_s[i], self.task_agent[i] = self.now_s, finish, k
        self.running[k] = i
        self.free_at_s[k] = finish
        self.busy_s[k] += self.exec_s[i, k]
        heapq.heappush(self._heap, (finish, i, k))

    def _next_event_s(self) -> float:
        t = self._heap[0][0] if self._heap else np.inf
        if self._next_job < self.config.num_jobs:
            t = min(t, self.job_arrival_s[self._next_job])
        return float(t)

    def _advance_one_event(self) -> float:
        t = self._next_event_s()
        reward = -(t - self.now_s) * self._jobs_in_system
        if self._ref_finish_s is not None:
            reward += jobs_time_integral(self.job_arrival_s, self._ref_finish_s, self.now_s, t)
        self.now_s = t
        self._process_events()
        if self._done and self._ref_finish_s is not None:  # the reference's jobs still in its system after ours
            reward += jobs_time_integral(self.job_arrival_s, self._ref_finish_s, t, np.inf)
        return reward / (self.config.time_scale_s * self.config.num_jobs)

    def _reference_finish_s(self, name: str) -> np.ndarray:
        """Job finish times of heuristic `name` on this episode (played on a copy, right after the draw)."""
        import copy
        import dataclasses

        from edgegen.scheduling.heuristics import heuristic_policy

        ref = copy.deepcopy(self)
        ref.config = dataclasses.replace(self.config, hints=(), reward_baseline="")
        ref._process_events()
        ref._advance_until_decision()
        act = heuristic_policy(name)
        while not ref._done:
            ref.step(act(ref, None, None))
        return ref.job_finish_s.copy()

    def _process_events(self) -> None:
        """Completions, then arrivals, at or before now_s."""
        now = self.now_s
        while self._heap and self._heap[0][0] <= now:
            _, i, k = heapq.heappop(self._heap)
            self.running[k] = -1
            j = self.task_job[i]
            self.job_tasks_left[j] -= 1
            self.job_work_left_s[j] -= self.best_exec_s[i]
            if self.job_tasks_left[j] == 0:
                self.job_finish_s[j] = self.task_finish_s[i]
                self._jobs_in_system -= 1
                self._jobs_done += 1
            for s in self.task_succs[i]:
                self._preds_left[s] -= 1
                if self._preds_left[s] == 0:
                    self._make_ready(s)
        n_jobs = self.config.num_jobs
        while self._next_job < n_jobs and self.job_arrival_s[self._next_job] <= now:
            j = self._next_job
            self._next_job += 1
            self._jobs_in_system += 1
            for i in self.job_tasks[j]:
                if self._preds_left[i] == 0:
                    self._make_ready(i)
        if self._jobs_done == n_jobs:
            self._done = True

    def _make_ready(self, i: int) -> None:
        self.task_ready_s[i] = self.now_s
        self.ready.append(i)

    def _has_assignment(self) -> bool:
        win = self.window_tasks
        return bool(win) and bool((np.isfinite(self.exec_s[win]) & self.idle[None, :]).any())

    def _advance_until_decision(self) -> float:
        reward = 0.0
        while not self._done and not self._has_assignment():
            reward += self._advance_one_event()
        return reward

    # ---------------------------------------------------------------- observation
    def obs_layout(self) -> dict[str, tuple[int, int, tuple[int, ...]]]:
        """name -> (start, stop, shape) of each block of the flat observation."""
        w, m = self.window, self.num_agents
        out, pos = {}, 0
        for name, shape in (("pair", (w, m, self.pair_features)), ("task", (w, TASK_FEATURES)),
                            ("agent", (m, AGENT_FEATURES)), ("global", (self.global_features,))):
            size = int(np.prod(shape))
            out[name] = (pos, pos + size, shape)
            pos += size
        return out

    def _lg(self, x):
        return np.log1p(np.maximum(x, 0.0) / self.config.time_scale_s)

    def _observe(self) -> np.ndarray:
        w, m = self.window, self.num_agents
        pair = np.zeros((w, m, self.pair_features))
        task = np.zeros((w, TASK_FEATURES))
        busy_left = np.maximum(self.free_at_s - self.now_s, 0.0) * (~self.idle)
        win = [] if self._done else self.window_tasks
        if win:
            n = len(win)
            ex = self.exec_s[win]
            fits = np.isfinite(ex)
            ex_f = np.where(fits, ex, 0.0)
            best = self.best_exec_s[win]
            completion = np.where(fits, busy_left[None, :] + ex_f, np.inf)
            best_completion = completion.min(axis=1)
            pair[:n, :, 0] = fits & self.idle[None, :]
            pair[:n, :, 1] = fits
            pair[:n, :, 2] = np.where(fits, self._lg(ex_f), 0.0)
            pair[:n, :, 3] = self._lg(busy_left)[None, :]
            pair[:n, :, 4] = np.where(fits, self._lg(np.where(fits, completion, 0.0)), 0.0)
            pair[:n, :, 5] = np.where(fits, np.minimum(np.log(np.maximum(ex_f, 1e-9) / best[:, None]), 5.0), 5.0) / 5
            jobs = self.task_job[win]
            task[:n, 0] = 1.0
            task[:n, 1] = self._lg(self.now_s - self.task_ready_s[win])
            task[:n, 2] = self._lg(self.now_s - self.job_arrival_s[jobs])
            task[:n, 3] = self._lg(self.job_work_left_s[jobs])
            task[:n, 4] = self.job_tasks_left[jobs] / 4.0
            task[:n, 5] = self._lg(best)
            task[:n, 6] = self._lg(best_completion)
            task[:n, 7] = self._lg(self.upward_rank_s[win])
            task[:n, 8] = np.array([len(self.task_succs[i]) for i in win]) / 4.0
            task[:n, 9] = self.tie_feature[win]
        agent = self._agent_obs.copy()
        agent[:, 0] = self.idle
        agent[:, 1] = self._lg(busy_left)
        n_ready = len(self.ready)
        glob = np.array([min(n_ready, w) / w, min(max(n_ready - w, 0) / w, 5.0), self._jobs_in_system / 20.0,
                         (self.config.num_jobs - self._next_job) / self.config.num_jobs,
                         float(self.wait_valid()) if not self._done else 0.0])
        if self.config.hints:
            hint_wait = np.zeros(len(self.config.hints))
            if win:
                for h, choice in enumerate(self.hint_choices()):
                    if choice is None:
                        hint_wait[h] = 1.0
                    else:
                        pair[choice[0], choice[1], PAIR_FEATURES + h] = 1.0
            glob = np.concatenate([glob, hint_wait])
        obs = np.concatenate([pair.reshape(-1), task.reshape(-1), agent.reshape(-1), glob])
        return np.clip(obs, -10.0, 10.0).astype(np.float32)

    def hint_choices(self) -> list[tuple[int, int] | None]:
        """Each hint heuristic's decision now: (slot, agent) or None (wait); needs a valid assignment to exist."""
        from edgegen.scheduling.heuristics import RULES, snapshot

        s = snapshot(self)
        return [RULES[h](s) for h in self.config.hints]

    def _info(self, invalid: bool = False) -> dict:
        info = {"action_mask": self.action_masks().astype(np.int8), "now_s": self.now_s, "invalid": invalid,
                "jobs_in_system": self._jobs_in_system}
        if self._done:
            info.update(self.episode_metrics())
        return info

    # ---------------------------------------------------------------- results
    def episode_metrics(self) -> dict:
        """avg_jct_s, p95_jct_s, makespan_s, utilization (busy agent-seconds / (agents x span)), decisions."""
        if not self._done:
            raise RuntimeError("episode_metrics() needs a finished episode")
        jct = self.job_finish_s - self.job_arrival_s
        span = float(self.job_finish_s.max() - self.job_arrival_s[0])
        return {"avg_jct_s": float(jct.mean()), "p95_jct_s": float(np.percentile(jct, 95)),
                "makespan_s": span, "utilization": float(self.busy_s.sum() / (self.num_agents * span)),
                "decisions": self._decisions, "invalid_actions": self._invalid, "load": self.load, "mix": self.mix}

    def instance(self) -> dict:
        """The episode's static data for offline bounds: job arrivals, each task's job, predecessors, exec_s."""
        return {"job_arrival_s": self.job_arrival_s.copy(), "task_job": self.task_job.copy(),
                "task_preds": list(self.task_preds), "exec_s": self.exec_s.copy()}


def jobs_time_integral(arrival_s: np.ndarray, finish_s: np.ndarray, t0_s: float, t1_s: float) -> float:
    """Integral over [t0_s, t1_s] of the number of jobs in the system (arrived, not finished)."""
    overlap = np.minimum(finish_s, t1_s) - np.maximum(arrival_s, t0_s)
    return float(np.clip(overlap, 0.0, None).sum())


def run_episode(env: DLScheduleEnv, act, seed: int | None = None, options: dict | None = None) -> dict:
    """Play one episode with `act(env, obs, mask) -> action`; returns `episode_metrics()` and the return."""
    obs, info = env.reset(seed=seed, options=options)
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(act(env, obs, info["action_mask"].astype(bool)))
        total += reward
        done = terminated or truncated
    return {**env.episode_metrics(), "return": total}
