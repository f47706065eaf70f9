"""Heuristics and the lower bound on tiny hand-computed states."""

import copy

import numpy as np
import pytest

from edgegen.scheduling import heuristics as H
from edgegen.scheduling.env import DLScheduleEnv, run_episode

INF = np.inf


def state(exec_s, free=None, now=0.0, rank=None, wait_valid=True, job_left=None):
    exec_s = np.asarray(exec_s, dtype=float)
    free = np.zeros(exec_s.shape[1]) if free is None else np.asarray(free, dtype=float)
    return H.SchedState(now_s=now, exec_s=exec_s, free_at_s=np.maximum(free, now), idle=free <= now,
                        upward_rank_s=np.asarray(rank if rank is not None else exec_s.min(1)), wait_valid=wait_valid,
                        job_work_left_s=np.asarray(job_left if job_left is not None else exec_s.min(1), dtype=float))


def test_list_schedulers_by_hand():
    s = state([[2, 4], [1, INF], [6, 3]])
    assert H.fifo(s) == (0, 0)
    assert H.sjf(s) == (1, 0)  # best exec times 2, 1, 3
    assert H.lpt(s) == (2, 1)
    memo = {}
    assert H.round_robin(s, None, memo) == (0, 0) and H.round_robin(s, None, memo) == (0, 1)
    assert H.round_robin(s, None, memo) == (0, 0)
    rng = np.random.default_rng(0)
    picks = {H.random_policy(s, rng) for _ in range(200)}
    assert picks == {(0, 0), (0, 1), (1, 0), (2, 0), (2, 1)}  # every valid pair, never (1, 1)


def test_planners_by_hand():
    s = state([[2, 4], [1, INF], [6, 3]])
    assert H.met(s) == (0, 0) and H.mct(s) == (0, 0)
    assert H.min_min(s) == (1, 0)  # completion times 2, 1, 3: smallest is task 1 on agent 0
    assert H.max_min(s) == (2, 1)
    assert H.heft(state([[2, 4], [1, INF], [6, 3]], rank=[5, 1, 2])) == (0, 0)
    assert H.heft(state([[2, 4], [1, INF], [6, 3]], rank=[1, 1, 2])) == (2, 1)


def test_planners_wait_for_a_busy_agent_and_reserve_it():
    busy = [1.0, 0.0]  # agent 0 busy until t = 1
    assert H.fifo(state([[2, 10]], busy)) == (0, 1)  # work-conserving: takes the idle agent
    assert H.mct(state([[2, 10]], busy)) is None  # 1 + 2 = 3 < 10: wait for agent 0
    assert H.met(state([[2, 10]], busy)) is None
    # min-min reserves agent 0 for task 0 (free 1 -> 2), then task 1 completes at 3 on agent 0, 2.5 on agent 1
    assert H.min_min(state([[1, 5], [1, 2.5]], busy)) == (1, 1)
    assert H.min_min(state([[1, 5], [1, 5]], busy)) is None
    assert H.max_min(state([[1, 5], [1, 2.5]], busy)) == (1, 1)


def test_tied_spt_by_hand():
    # tasks 0 and 1 are tied to agent 0 (second best 60 > 5 x 10, 70 > 5 x 12); task 2 is not (3 vs 2)
    s = state([[12, 70], [10, 60], [2, 3]])
    assert H.min_min(s) == (2, 0)  # min-min gives the fast agent to the short untied task
    assert H.tied_spt(s) == (1, 0)  # the shorter tied task goes first, to its agent
    # no tied task: Min-Min's choice (completion times 4, 3, 3: the first minimum, task 1 on agent 1)
    assert H.tied_spt(state([[4, 6], [5, 3], [3, 4]], [0.0, 0.0])) == H.min_min(state([[4, 6], [5, 3], [3, 4]]))
    assert H.min_min(state([[4, 6], [5, 3], [3, 4]])) == (1, 1)
    # a task that fits only one agent is tied to it, however short the others
    assert H.tied_spt(state([[1, 1.5], [9, INF], [1, 1.2]])) == (1, 0)
    # tied tasks reserve their agent; then task 2 plans onto agent 0 after them (free 22 + 2) or agent 1 (3)
    assert H.tied_spt(state([[12, 70], [10, 60], [2, 3]], [0.0, 1.0])) == (1, 0)
    assert H.heuristic_policy("tied_spt") is not None and "tied_spt" not in H.HEURISTICS


def test_tied_srpt_by_hand():
    # no tied task: completion times 4, 3, 3 (Min-Min takes task 1 on agent 1); the jobs' work left 20, 9, 4 makes
    # the scores 4 + 20, 3 + 9, 3 + 4: task 2 goes first, on its fastest agent 0
    s = state([[4, 6], [5, 3], [3, 4]], job_left=[20, 9, 4])
    assert H.min_min(s) == (1, 1) and H.tied_srpt(s) == (2, 0)
    # equal work left: Min-Min's choice
    assert H.tied_srpt(state([[4, 6], [5, 3], [3, 4]], job_left=[1, 1, 1])) == (1, 1)
    # tied tasks still go first, shortest first, whatever their jobs' work left
    s = state([[12, 70], [10, 60], [2, 3]], job_left=[12, 100, 2])
    assert H.tied_srpt(s) == (1, 0) == H.tied_spt(s)
    # agent 0 busy until 5; no task is tied (9 < 5 x 2, 25 < 5 x 6). Scores: task 0 (5 + 2) + 0.5 = 7.5, task 1
    # (5 + 6) + 3 = 14: task 0 is planned onto busy agent 0 (free -> 7), then task 1 too (13 < 25): wait
    s = state([[2, 9], [6, 25]], free=[5.0, 0.0], job_left=[0.5, 3])
    assert H.tied_srpt(s) is None
    # task 0's job has 10 s left (score 17), task 1's nothing (11): task 1 reserves agent 0 (free -> 11), then
    # task 0 completes at 13 there or at 9 on idle agent 1: dispatched there
    assert H.tied_srpt(state([[2, 9], [6, 25]], free=[5.0, 0.0], job_left=[10, 0])) == (0, 1)
    assert "tied_srpt" in H.REFERENCE_RULES and "tied_srpt" not in H.HEURISTICS


def test_lower_bound_by_hand():
    # job 0 at t=0: t0 -> t1; job 1 at t=1: t2 (agent 1 only)
    exec_s = np.array([[2.0, 4.0], [3.0, 1.0], [INF, 5.0]])
    lb = H.lower_bound(np.array([0.0, 1.0]), np.array([0, 0, 1]), [(), (0,), ()], exec_s)
    assert lb["avg_jct_s"] == pytest.approx((3.0 + 5.0) / 2)
    assert lb["makespan_s"] == pytest.approx(6.0)  # max(0 + 3, 1 + 5) = 6 > fluid bound 5


def test_every_heuristic_finishes_episodes_and_respects_the_bound():
    env = DLScheduleEnv(num_jobs=25, loads=(0.9,))
    env.reset(seed=4)
    lb = H.lower_bound(**env.instance())
    for name in H.RULES:  # heuristics and reference rules
        out = run_episode(env, H.heuristic_policy(name, 0), seed=4)
        assert out["invalid_actions"] == 0
        assert out["avg_jct_s"] >= lb["avg_jct_s"] - 1e-9 and out["makespan_s"] >= lb["makespan_s"] - 1e-9
        assert 0.0 < out["utilization"] <= 1.0
    with pytest.raises(ValueError, match="unknown heuristic"):
        H.heuristic_policy("edf")


def test_mct_beats_random_at_high_load():
    env = DLScheduleEnv(num_jobs=40, loads=(0.95,))
    jct = {n: np.mean([run_episode(env, H.heuristic_policy(n, 0), seed=s)["avg_jct_s"] for s in range(3)])
           for n in ("mct", "random")}
    assert jct["mct"] < jct["random"]


def test_rollout_oracle_never_loses_to_its_base_and_sometimes_wins():
    """Policy improvement by rollout on a deterministic episode: the oracle's average JCT is at most MCT's on every
    episode (each decision keeps MCT's continuation value or a better one), and strictly lower on some."""
    env = DLScheduleEnv(num_jobs=12, loads=(0.95,), hints=())
    gains = []
    for seed in range(4):
        base = run_episode(env, H.heuristic_policy("mct"), seed=seed)["avg_jct_s"]
        oracle = run_episode(env, H.rollout_oracle_policy("mct"), seed=seed)["avg_jct_s"]
        assert oracle <= base + 1e-9
        gains.append(base - oracle)
    assert max(gains) > 0


def test_sampled_rollout_picks_among_the_candidates_and_never_sees_the_future():
    env = DLScheduleEnv(num_jobs=12, loads=(0.95,), hints=())
    # one candidate equal to the base: nothing is ever contested, so it is the base rule exactly
    alone = run_episode(env, H.sampled_rollout_policy(("mct",), "mct", futures=2), seed=3)["avg_jct_s"]
    assert alone == run_episode(env, H.heuristic_policy("mct"), seed=3)["avg_jct_s"]
    policy = H.sampled_rollout_policy(("mct", "min_min"), "mct", futures=2, seed=0)
    obs, info = env.reset(seed=5)
    future = env.job_arrival_s.copy()
    contested, done = 0, False
    while not done:
        mask = info["action_mask"].astype(bool)
        options = {H.heuristic_policy(h)(env, obs, mask) for h in ("mct", "min_min")}
        a = policy(env, obs, mask)
        assert a in options
        contested += len(options) > 1
        obs, _, done, _, info = env.step(a)
    assert contested > 0
    np.testing.assert_array_equal(env.job_arrival_s, future)  # rollouts ran on copies
    # the decision does not depend on the real future: change it, same rng seed -> same action at every state
    obs, info = env.reset(seed=6)
    p1, p2 = H.sampled_rollout_policy(("mct", "min_min"), "mct", 2, 7), H.sampled_rollout_policy(("mct", "min_min"),
                                                                                                 "mct", 2, 7)
    done = False
    while not done:
        other = copy.deepcopy(env)
        other.resample_future(np.random.default_rng(99))
        mask = info["action_mask"].astype(bool)
        a = p1(env, obs, mask)
        assert p2(other, obs, mask) == a
        obs, _, done, _, info = env.step(a)
    with pytest.raises(ValueError, match="deterministic"):
        H.sampled_rollout_policy(("mct", "random"))


def test_sampled_rollout_with_an_empirical_model_keeps_the_base_action_until_it_has_one():
    env = DLScheduleEnv(num_jobs=12, loads=(0.95,), hints=())
    calls = []

    def no_model(e):
        calls.append(e.decisions)
        return None

    policy = H.sampled_rollout_policy(("mct", "min_min"), "min_min", futures=2, future_model=no_model)
    assert run_episode(env, policy, seed=5) == run_episode(env, H.heuristic_policy("min_min"), seed=5)
    assert calls  # asked at the contested decisions
    # with a model built from the arrived jobs, it picks among the candidates (and differs from the base somewhere)
    from edgegen.scheduling.ppo import empirical_arrival_model

    def own_model(e):
        jobs = e.arrived_jobs()
        return empirical_arrival_model([(e.job_arrival_s[:len(jobs)], jobs)])

    policy = H.sampled_rollout_policy(("mct", "min_min"), "min_min", futures=2, future_model=own_model)
    obs, info = env.reset(seed=5)
    done, moved = False, 0
    while not done:
        mask = info["action_mask"].astype(bool)
        a = policy(env, obs, mask)
        assert a in {H.heuristic_policy(h)(env, obs, mask) for h in ("mct", "min_min")}
        moved += a != H.heuristic_policy("min_min")(env, obs, mask)
        obs, _, done, _, info = env.step(a)
    assert moved > 0
