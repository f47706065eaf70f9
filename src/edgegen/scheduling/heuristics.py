"""Heuristic schedulers for `edgegen/DLSchedule-v0` and a lower bound on JCT and makespan.

Every heuristic is a pure function ``h(s: SchedState, rng, memo) -> (slot, agent) | None`` on a snapshot of the
env (None = wait); :func:`act` turns it into an env action. They see what the learned policies see: the
visible window of ready tasks (oldest first), which agents are idle and when busy ones become free, and every
task's execution time on every agent (inf where its memory does not fit).

Work-conserving list schedulers (never wait while a valid assignment exists)
    ``fifo``  oldest task first; ``sjf`` shortest task first (by its best execution time over the agents);
    ``lpt`` longest first. Each puts its task on the idle agent that runs it fastest.
    ``round_robin`` oldest task on the next idle agent (cyclic pointer) with enough memory.
    ``random`` a uniformly random valid assignment.
Planning heuristics (the classic mapping heuristics of Braun et al., JPDC 2001; online HEFT of Topcuoglu et al.,
TPDS 2002). They plan the whole window with agent ready times ``free[k]`` (now for idle agents): each planned
task is reserved on its chosen agent (``free[k] += exec``); the first task whose agent is idle and not yet
reserved is dispatched, and if every task is planned onto a busy agent the scheduler waits (re-planning at the
next event). This is how a ready-time based heuristic runs in a pull-based system without agent queues.
    ``met``  tasks oldest first, each on its minimum-execution-time agent (ignores ready times).
    ``mct``  tasks oldest first, each on its minimum-completion-time agent (free + exec).
    ``min_min`` repeatedly the task with the smallest minimum completion time, on that agent.
    ``max_min`` repeatedly the task with the largest minimum completion time, on that agent.
    ``heft`` tasks by decreasing upward rank (mean execution time over feasible agents along the longest path to
        the job's exit task), each on its earliest-finish-time agent.
Reference rule (not a classic heuristic; ``REFERENCE_RULES``, reported apart from the heuristics)
    ``tied_spt`` Min-Min, except that tasks *tied* to one agent (second-best execution time > ``TIE_RATIO`` x the
        best; here the large training tasks, tied to the cloud GPU) are planned first, shortest first. Derived in
        this project from looking at where MCT and Min-Min lose JCT: when the cloud GPU is the bottleneck, Min-Min
        gives it to short tasks that have good alternatives and MCT serves the queued training tasks oldest first.
        It is the rule the env's tie feature makes expressible; it shows how much a simple non-learned rule with
        that knowledge gains. The schedule bench also gives it to the learned policies as a hint and a warm-start
        teacher.
    ``tied_srpt`` tied_spt, except that among untied tasks it plans first the one with the smallest
        (earliest completion time from now + work left in its job), not the smallest completion time alone:
        Min-Min with a shortest-remaining-processing-time term for the job, since average JCT counts a job once
        it ends (SRPT minimises mean response time on one preemptive machine; Schrage 1968). Chosen in this
        project on training-mix episodes (notes). ``RULES`` holds the heuristics and the reference rules.
Rollout policies (policy improvement by rollout, Bertsekas; references, not heuristics: they simulate at every
decision) ``rollout_oracle_policy`` tries every valid action on copies of the env that hold the real future
(clairvoyant); ``sampled_rollout_policy`` tries the candidate rules' decisions on copies whose future arrivals are
redrawn from the arrival model (online), and labels masked PPO's warm start in the schedule bench.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgegen.scheduling.env import HINTABLE, DLScheduleEnv, fluid_makespan_s, second_best_exec_s


@dataclass(frozen=True)
class SchedState:
    """Snapshot of the scheduler-visible state."""

    now_s: float
    exec_s: np.ndarray
    """(n, M) execution time of each window task on each agent; inf where it does not fit."""
    free_at_s: np.ndarray
    """(M,) time at which each agent becomes free (now_s for idle agents)."""
    idle: np.ndarray
    """(M,) bool."""
    upward_rank_s: np.ndarray
    """(n,) HEFT upward rank of each window task."""
    wait_valid: bool
    job_work_left_s: np.ndarray
    """(n,) work left in each window task's job: the best execution times of its tasks not yet completed."""


def snapshot(env: DLScheduleEnv) -> SchedState:
    win = env.window_tasks
    idle = env.idle
    return SchedState(now_s=env.now_s, exec_s=env.exec_s[win], free_at_s=np.where(idle, env.now_s, env.free_at_s),
                      idle=idle.copy(), upward_rank_s=env.upward_rank_s[win], wait_valid=env.wait_valid(),
                      job_work_left_s=env.job_work_left_s[env.task_job[win]])


def _valid(s: SchedState) -> np.ndarray:
    return np.isfinite(s.exec_s) & s.idle[None, :]


def _list_schedule(s: SchedState, task_order: np.ndarray) -> tuple[int, int]:
    valid = _valid(s)
    for i in task_order:
        if valid[i].any():
            return int(i), int(np.argmin(np.where(valid[i], s.exec_s[i], np.inf)))
    raise ValueError("no valid assignment in this state")


def fifo(s: SchedState, rng=None, memo=None):
    return _list_schedule(s, np.arange(len(s.exec_s)))


def sjf(s: SchedState, rng=None, memo=None):
    return _list_schedule(s, np.argsort(s.exec_s.min(axis=1), kind="stable"))


def lpt(s: SchedState, rng=None, memo=None):
    return _list_schedule(s, np.argsort(-s.exec_s.min(axis=1), kind="stable"))


def random_policy(s: SchedState, rng: np.random.Generator, memo=None):
    pairs = np.argwhere(_valid(s))
    i, k = pairs[int(rng.integers(len(pairs)))]
    return int(i), int(k)


def round_robin(s: SchedState, rng=None, memo: dict | None = None):
    memo = {} if memo is None else memo
    m = len(s.idle)
    start = memo.get("next_agent", 0)
    valid = _valid(s)
    for i in range(len(s.exec_s)):
        for step in range(m):
            k = (start + step) % m
            if valid[i, k]:
                memo["next_agent"] = (k + 1) % m
                return i, k
    raise ValueError("no valid assignment in this state")


def _plan(s: SchedState, pick) -> tuple[int, int] | None:
    """Plan tasks one at a time with virtual reservations; dispatch the first one that lands on a free agent."""
    free = s.free_at_s.astype(np.float64).copy()
    left = list(range(len(s.exec_s)))
    while left:
        i, k = pick(s, free, left)
        if s.idle[k] and free[k] <= s.now_s:
            return i, k
        free[k] += s.exec_s[i, k]
        left.remove(i)
    return None


def _met_pick(s, free, left):
    i = left[0]
    return i, int(np.argmin(s.exec_s[i]))


def _mct_pick(s, free, left):
    i = left[0]
    return i, int(np.argmin(free + s.exec_s[i]))


def _minmax_pick(largest: bool):
    def pick(s, free, left):
        ct = free[None, :] + s.exec_s[left]
        best = ct.min(axis=1)
        r = int(np.argmax(best)) if largest else int(np.argmin(best))
        return left[r], int(np.argmin(ct[r]))
    return pick


def _heft_pick(s, free, left):
    i = left[int(np.argmax(s.upward_rank_s[left]))]  # first maximum: oldest among ties
    return i, int(np.argmin(free + s.exec_s[i]))


def met(s: SchedState, rng=None, memo=None):
    return _plan(s, _met_pick)


def mct(s: SchedState, rng=None, memo=None):
    return _plan(s, _mct_pick)


def min_min(s: SchedState, rng=None, memo=None):
    return _plan(s, _minmax_pick(False))


def max_min(s: SchedState, rng=None, memo=None):
    return _plan(s, _minmax_pick(True))


def heft(s: SchedState, rng=None, memo=None):
    return _plan(s, _heft_pick)


TIE_RATIO = 5.0


def _tied_first(untied_score):
    """Planner pick: tasks tied to one agent first, shortest first (first among equals: oldest); if none is tied,
    the task with the smallest untied_score(s, completion times (n, M), left), each on its min-completion agent."""
    def pick(s, free, left):
        ex = s.exec_s[left]
        best = ex.min(axis=1)
        tied = second_best_exec_s(ex) > TIE_RATIO * best
        ct = free[None, :] + ex
        if tied.any():
            idx = np.flatnonzero(tied)
            r = int(idx[np.argmin(best[idx])])
        else:
            r = int(np.argmin(untied_score(s, ct, left)))
        return left[r], int(np.argmin(ct[r]))
    return pick


_tied_spt_pick = _tied_first(lambda s, ct, left: ct.min(axis=1))  # Min-Min among untied tasks
_tied_srpt_pick = _tied_first(lambda s, ct, left: ct.min(axis=1) - s.now_s + s.job_work_left_s[left])  # + job work


def tied_spt(s: SchedState, rng=None, memo=None):
    return _plan(s, _tied_spt_pick)


def tied_srpt(s: SchedState, rng=None, memo=None):
    return _plan(s, _tied_srpt_pick)


HEURISTICS = {"fifo": fifo, "sjf": sjf, "lpt": lpt, "random": random_policy, "round_robin": round_robin,
              "met": met, "mct": mct, "min_min": min_min, "max_min": max_min, "heft": heft}
REFERENCE_RULES = {"tied_spt": tied_spt, "tied_srpt": tied_srpt}
RULES = {**HEURISTICS, **REFERENCE_RULES}


def act(env: DLScheduleEnv, name: str, rng: np.random.Generator, memo: dict) -> int:
    """The env action of heuristic `name` in the env's current state (wait only where wait is valid)."""
    s = snapshot(env)
    choice = RULES[name](s, rng, memo)
    if choice is None:
        if s.wait_valid:
            return env.wait_action
        choice = fifo(s)  # cannot happen for the planners (all agents are idle then), kept as a guard
    return env.encode(*choice)


def heuristic_policy(name: str, seed: int = 0):
    """`act(env, obs, mask)` callable for `run_episode`; memo (round-robin pointer) resets with each episode."""
    if name not in RULES:
        raise ValueError(f"unknown heuristic {name!r}; known: {list(RULES)}")
    rng = np.random.default_rng(seed)
    memo: dict = {}

    def policy(env, obs, mask):
        if env.decisions == 0:  # first decision of an episode
            memo.clear()
        return act(env, name, rng, memo)
    return policy


def plain_copy(env: DLScheduleEnv) -> DLScheduleEnv:
    """A copy of the env in its current state without hint features or reward baseline (cheaper steps; the rules
    do not read the observation)."""
    import copy
    import dataclasses

    out = copy.deepcopy(env)
    out.config = dataclasses.replace(env.config, hints=(), reward_baseline="")
    out._ref_finish_s = None
    return out


def finish_with(env: DLScheduleEnv, action: int, base_act) -> float:
    """Take `action` in `env` (modified in place), play the rest of the episode with `base_act`; total JCT (s)."""
    obs, _, terminated, truncated, info = env.step(action)
    while not (terminated or truncated):
        obs, _, terminated, truncated, info = env.step(base_act(env, obs, info["action_mask"].astype(bool)))
    return float((env.job_finish_s - env.job_arrival_s).sum())


def rollout_oracle_policy(base: str = "mct"):
    """Clairvoyant one-step rollout (policy improvement by rollout, Bertsekas): at every decision, for each valid
    action, copy the env, take the action, finish the episode with heuristic `base` and keep the action with the
    lowest average JCT (ties go to `base`'s own action). The copy holds the episode's already-drawn future
    arrivals, so this is NOT an online scheduler: it is a reference for how much better single decisions than
    `base`'s can do on an episode, given the future. Cost: one `base` episode per valid action per decision."""
    base_act = heuristic_policy(base)

    def policy(env, obs, mask):
        own = base_act(env, obs, mask)
        best_a, best_v = own, finish_with(plain_copy(env), own, base_act)
        for a in np.flatnonzero(mask):
            if a != own:
                v = finish_with(plain_copy(env), int(a), base_act)
                if v < best_v - 1e-9:
                    best_a, best_v = int(a), v
        return best_a
    return policy


def sampled_rollout_policy(candidates: tuple[str, ...] = ("mct", "min_min", "tied_spt"), base: str = "tied_spt",
                           futures: int = 4, seed: int | np.random.Generator = 0, future_model=None):
    """Online one-step rollout over the candidate rules' current decisions, with Monte-Carlo futures: where the
    candidates disagree, each distinct action is tried on `futures` copies of the env whose not-yet-arrived jobs
    are redrawn from the episode's arrival model (:meth:`DLScheduleEnv.resample_future`; the same draws for every
    action, i.e. common random numbers), each finished with `base`; the lowest mean total JCT wins (ties: `base`'s
    action, which is always among the tried ones). Unlike `rollout_oracle_policy` it never sees the real future,
    only the load and mix; with `future_model` (a function env -> resample_future's empirical `model`, or None while
    there is nothing to build one from, then `base`'s action is kept) not even those. `seed` may be a Generator
    (used as is, so its caller can save and restore its state). Cost: up to
    (len(candidates) + 1) x futures `base` episodes per contested decision."""
    for name in (*candidates, base):
        if name not in HINTABLE:
            raise ValueError(f"sampled rollout rules must be deterministic, memoryless rules {HINTABLE}, got {name!r}")
    rng = np.random.default_rng(seed)
    rules = [heuristic_policy(c) for c in candidates]
    base_act = heuristic_policy(base)

    def policy(env, obs, mask):
        own = base_act(env, obs, mask)
        actions = list(dict.fromkeys([own] + [r(env, obs, mask) for r in rules]))
        if len(actions) == 1:
            return own
        model = None if future_model is None else future_model(env)
        if future_model is not None and model is None:  # nothing observed to sample futures from yet
            return own
        draws = rng.integers(1 << 62, size=futures)
        totals = []
        for a in actions:
            total = 0.0
            for d in draws:
                sim = plain_copy(env)
                sim.resample_future(np.random.default_rng(int(d)), model)
                total += finish_with(sim, a, base_act)
            totals.append(total)
        return actions[int(np.argmin(totals))]  # first minimum: base's own action on ties
    return policy


def lower_bound(job_arrival_s: np.ndarray, task_job: np.ndarray, task_preds: list, exec_s: np.ndarray) -> dict:
    """Lower bounds of any schedule of one episode.

    avg_jct_s: mean over jobs of the job's critical path with every task on its fastest feasible agent and no
    waiting (a job cannot finish sooner). makespan_s (first arrival to last completion): the larger of the
    latest (arrival + critical path) and the fluid bound (:func:`fluid_makespan_s`: all tasks split
    fractionally over the agents from the first arrival on).
    """
    best = np.asarray(exec_s, dtype=np.float64).min(axis=1)
    finish = np.zeros(len(best))  # earliest finish relative to the job's arrival; tasks are topologically ordered
    for i, preds in enumerate(task_preds):
        finish[i] = best[i] + (max(finish[p] for p in preds) if preds else 0.0)
    n_jobs = len(job_arrival_s)
    cp = np.zeros(n_jobs)
    np.maximum.at(cp, np.asarray(task_job), finish)
    t0 = float(np.min(job_arrival_s))
    span = max(float(np.max(job_arrival_s + cp)) - t0, fluid_makespan_s(exec_s))
    return {"avg_jct_s": float(cp.mean()), "makespan_s": span}
