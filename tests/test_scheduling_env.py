"""DLSchedule-v0: hand-checked formulas, env contract (env_checker, seeding, masks), episode accounting."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import edgegen.scheduling  # noqa: F401  (registers the env)
from edgegen.config import ConfigError
from edgegen.scheduling.env import (
    AGENT_KINDS,
    DLScheduleConfig,
    DLScheduleEnv,
    exec_time_s,
    fluid_capacity_jobs_per_s,
    fluid_makespan_s,
    jobs_time_integral,
    run_episode,
    upward_rank_s,
)


def random_masked(seed=0):
    rng = np.random.default_rng(seed)
    return lambda env, obs, mask: int(rng.choice(np.flatnonzero(mask)))


def test_exec_time_by_hand():
    # 60 TFLOP at 60 TFLOP/s = 1 s, plus 25 MB over 25 MB/s = 1 s; 90 GB does not fit in 80 GB
    ex = exec_time_s([60.0, 6.0], [25.0, 0.0], [10.0, 90.0], [60.0, 1.5], [80.0, 64.0], [25.0, 600.0])
    assert ex[0, 0] == pytest.approx(2.0)
    assert ex[0, 1] == pytest.approx(60 / 1.5 + 25 / 600)
    assert ex[1, 0] == np.inf and ex[1, 1] == np.inf


def test_fluid_makespan_and_upward_rank_by_hand():
    assert fluid_makespan_s(np.array([[1.0, np.inf], [1.0, 1.0]])) == pytest.approx(1.0)
    assert fluid_makespan_s(np.array([[2.0, 2.0], [2.0, 2.0]])) == pytest.approx(2.0)
    # one task of 3 s on either agent, one of 1 s on agent 0 only: 1 + x*3 = (1-x)*3 -> x = 1/3, T = 2
    assert fluid_makespan_s(np.array([[3.0, 3.0], [1.0, np.inf]])) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="fits on no agent"):
        fluid_makespan_s(np.array([[np.inf, np.inf]]))
    np.testing.assert_allclose(upward_rank_s([1.0, 2.0, 3.0, 1.0], [[1, 2], [3], [], []]), [1 + 2 + 1, 3, 3, 1])


def test_registered_env_passes_env_checker():
    env = gym.make("edgegen/DLSchedule-v0")
    check_env(env.unwrapped, skip_render_check=True)
    assert isinstance(env.unwrapped, DLScheduleEnv)


def test_seeded_reset_is_deterministic_and_owns_its_rng():
    a, b = DLScheduleEnv(), DLScheduleEnv()
    oa, _ = a.reset(seed=5)
    np.random.seed(0)  # the global RNG must not matter
    ob, _ = b.reset(seed=5)
    np.testing.assert_array_equal(oa, ob)
    np.testing.assert_array_equal(a.job_arrival_s, b.job_arrival_s)
    assert run_episode(a, random_masked(1), seed=5) == run_episode(b, random_masked(1), seed=5)
    a.reset(seed=6)
    assert not np.array_equal(a.job_arrival_s, b.job_arrival_s)


def test_given_load_and_mix_make_the_episode_whatever_the_lists_hold():
    opts = {"load": 0.8, "mix": "balanced"}
    one = DLScheduleEnv(loads=(0.8,), mixes=("balanced",))
    many = DLScheduleEnv(loads=(0.5, 0.8, 0.95), mixes=("inference_heavy", "balanced", "data_heavy"))
    for seed in range(4):
        one.reset(seed=seed, options=opts)
        many.reset(seed=seed, options=opts)
        np.testing.assert_array_equal(one.job_arrival_s, many.job_arrival_s)
        np.testing.assert_array_equal(one.task_compute_tflop, many.task_compute_tflop)
    # without options the lists are drawn from, and the draw is the first use of the episode's generator
    many.reset(seed=0)
    rng = np.random.default_rng(0)
    assert (many.load, many.mix) == ((0.5, 0.8, 0.95)[rng.integers(3)],
                                     ("inference_heavy", "balanced", "data_heavy")[rng.integers(3)])


def test_single_task_episode_by_hand():
    env = DLScheduleEnv(agents=("cloud_gpu",), num_jobs=1, dag=False, mixes=("inference_heavy",))
    obs, info = env.reset(seed=0, options={"mix": "balanced"})
    mask = info["action_mask"].astype(bool)
    assert mask[env.encode(0, 0)] and not mask[env.wait_action]  # nothing running, nothing left to arrive
    assert mask.sum() == 1
    ex = env.exec_s[0, 0]
    spec = AGENT_KINDS["cloud_gpu"]
    assert ex == pytest.approx(env.task_compute_tflop[0] / spec[0] + env.task_data_mb[0] / spec[2])
    obs, reward, terminated, truncated, info = env.step(env.encode(0, 0))
    assert terminated and not truncated
    assert reward == pytest.approx(-ex / 10.0)  # -(elapsed x jobs in system) / (time_scale_s x num_jobs)
    assert info["avg_jct_s"] == pytest.approx(ex) and info["makespan_s"] == pytest.approx(ex)
    assert info["utilization"] == pytest.approx(1.0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


def test_return_is_minus_average_jct_and_schedule_is_feasible():
    env = DLScheduleEnv(loads=(0.95,), num_jobs=40, window=6)
    out = run_episode(env, random_masked(3), seed=11)
    assert out["return"] == pytest.approx(-out["avg_jct_s"] / env.config.time_scale_s, rel=1e-9)
    start, finish, agent = env.task_start_s, env.task_finish_s, env.task_agent
    assert np.all(np.isfinite(finish))
    np.testing.assert_allclose(finish - start, env.exec_s[np.arange(len(agent)), agent])
    for i, preds in enumerate(env.task_preds):  # DAG precedence
        assert all(start[i] >= finish[p] - 1e-9 for p in preds)
        assert start[i] >= env.job_arrival_s[env.task_job[i]] - 1e-12
    for k in range(env.num_agents):  # one task at a time per agent
        mine = np.flatnonzero(agent == k)
        order = mine[np.argsort(start[mine])]
        assert np.all(start[order[1:]] >= finish[order[:-1]] - 1e-9)
    assert np.all(env.task_memory_gb <= env.agent_table[agent, 1])
    jct = env.job_finish_s - env.job_arrival_s
    assert out["avg_jct_s"] == pytest.approx(jct.mean())


def test_reward_baseline_return_is_the_jct_difference_to_the_heuristic():
    from edgegen.scheduling.heuristics import heuristic_policy

    opts = {"load": 0.95, "mix": "training_heavy"}
    plain = DLScheduleEnv(num_jobs=25, hints=())
    mct = run_episode(plain, heuristic_policy("mct"), seed=4, options=opts)["avg_jct_s"]
    mine = run_episode(plain, random_masked(2), seed=4, options=opts)
    based = DLScheduleEnv(num_jobs=25, hints=(), reward_baseline="mct")
    out = run_episode(based, random_masked(2), seed=4, options=opts)
    assert out["avg_jct_s"] == mine["avg_jct_s"]  # metrics unaffected, same schedule
    assert out["return"] == pytest.approx(-(mine["avg_jct_s"] - mct) / 10.0, rel=1e-9, abs=1e-12)
    assert run_episode(based, heuristic_policy("mct"), seed=4, options=opts)["return"] == pytest.approx(0.0, abs=1e-9)


def test_jobs_time_integral_by_hand():
    # job 0 in the system over [0, 4), job 1 over [1, 2): over [0.5, 3] that is 2.5 + 1
    assert jobs_time_integral(np.array([0.0, 1.0]), np.array([4.0, 2.0]), 0.5, 3.0) == pytest.approx(3.5)
    assert jobs_time_integral(np.array([0.0, 1.0]), np.array([4.0, 2.0]), 5.0, np.inf) == 0.0


def test_tie_feature_by_hand():
    env = DLScheduleEnv(num_jobs=30, hints=())
    obs, _ = env.reset(seed=3, options={"load": 0.95})
    start, stop, shape = env.obs_layout()["task"]
    task = obs[start:stop].reshape(shape)
    for slot, i in enumerate(env.window_tasks):
        ex = np.sort(env.exec_s[i])
        want = 1.0 if not np.isfinite(ex[1]) else min(np.log(ex[1] / ex[0]), 5.0) / 5.0
        assert task[slot, 9] == pytest.approx(want, rel=1e-6)
    one = DLScheduleEnv(agents=("cloud_gpu",), num_jobs=2, hints=())
    obs, _ = one.reset(seed=0)
    start, stop, shape = one.obs_layout()["task"]
    assert obs[start:stop].reshape(shape)[0, 9] == 1.0  # a single agent: fully tied


def test_mask_matches_env_rules_and_invalid_actions():
    env = DLScheduleEnv(invalid_action="error", num_jobs=20)
    _, info = env.reset(seed=2)
    env.step(env.encode(0, 0))  # the cloud GPU fits every task
    mask = env.action_masks()
    assert not mask[env.encode(0, 0)]  # agent 0 is busy now
    with pytest.raises(ValueError, match="busy"):
        env.step(env.encode(0, 0))
    with pytest.raises(ValueError, match="integer"):
        env.step(1.5)
    pen = DLScheduleEnv(num_jobs=20, invalid_penalty=2.0)
    pen.reset(seed=2)
    pen.step(pen.encode(0, 0))
    now = pen.now_s
    _, reward, _, _, info = pen.step(pen.encode(0, 0))  # documented: penalty, then treated as wait
    assert info["invalid"] and reward <= -2.0 and pen.now_s > now
    assert pen.decisions == 2


def test_load_sets_the_arrival_rate():
    cfg = DLScheduleConfig(num_jobs=3000, loads=(0.5,))
    env = DLScheduleEnv(cfg)
    env.reset(seed=0)
    rate = (cfg.num_jobs - 1) / env.job_arrival_s[-1]
    assert rate == pytest.approx(0.5 * fluid_capacity_jobs_per_s(cfg.agents, "balanced", True), rel=0.06)


@pytest.mark.parametrize("bad, match", [
    ({"window": 0}, "window"), ({"loads": (3.0,)}, "loads"), ({"mixes": ("nope",)}, "mixes"),
    ({"agents": ("edge_gpu",)}, "no agent has"), ({"invalid_action": "ignore"}, "invalid_action"),
    ({"agents": ()}, "num_agents"), ({"hints": ("random",)}, "hints"),
])
def test_bad_config_names_the_field(bad, match):
    with pytest.raises(ConfigError, match=match):
        DLScheduleEnv(**bad)


def test_hint_features_mark_the_heuristic_decision():
    env = DLScheduleEnv(agents=("cloud_gpu",), num_jobs=1, dag=False, mixes=("inference_heavy",), window=2)
    obs, _ = env.reset(seed=0)
    layout = env.obs_layout()
    a, b, shape = layout["pair"]
    assert shape == (2, 1, 6 + 2)  # 6 plain pair features + one per hint ("mct", "min_min")
    pair = obs[a:b].reshape(shape)
    np.testing.assert_array_equal(pair[:, 0, 6:], [[1.0, 1.0], [0.0, 0.0]])  # the only task on the only agent
    g0, g1, _ = layout["global"]
    np.testing.assert_array_equal(obs[g1 - 2: g1], [0.0, 0.0])  # neither heuristic waits
    plain = DLScheduleEnv(agents=("cloud_gpu",), num_jobs=1, dag=False, mixes=("inference_heavy",), window=2,
                          hints=())
    assert plain.observation_space.shape[0] == env.observation_space.shape[0] - 2 * 1 * 2 - 2


@pytest.mark.parametrize("rule", ["mct", "tied_spt", "tied_srpt"])
def test_following_a_hint_reproduces_its_rule(rule):
    from edgegen.scheduling.heuristics import heuristic_policy

    env = DLScheduleEnv(loads=(0.95,), num_jobs=30, hints=(rule,))
    a, b, shape = env.obs_layout()["pair"]

    def follow(env, obs, mask):
        hint = obs[a:b].reshape(shape)[..., -1].reshape(-1)
        return int(np.argmax(hint)) if hint.any() else env.wait_action

    assert run_episode(env, follow, seed=4) == run_episode(env, heuristic_policy(rule), seed=4)


def test_resample_future_redraws_only_the_jobs_still_to_arrive():
    import copy

    from edgegen.scheduling.heuristics import heuristic_policy

    env = DLScheduleEnv(num_jobs=20, loads=(0.9,), hints=())
    obs, info = env.reset(seed=4)
    mct = heuristic_policy("mct")
    for _ in range(15):
        obs, *_ = env.step(mct(env, obs, None))
    j0 = env._next_job
    assert 0 < j0 < 20
    t0 = env.job_tasks[j0][0]
    a, b, c = copy.deepcopy(env), copy.deepcopy(env), copy.deepcopy(env)
    a.resample_future(np.random.default_rng(1))
    b.resample_future(np.random.default_rng(1))
    c.resample_future(np.random.default_rng(2))
    np.testing.assert_array_equal(a.job_arrival_s[:j0], env.job_arrival_s[:j0])  # the past is kept
    np.testing.assert_array_equal(a.exec_s[:t0], env.exec_s[:t0])
    assert a.task_preds[:t0] == env.task_preds[:t0] and a.ready == env.ready
    np.testing.assert_array_equal(a.task_finish_s[:t0], env.task_finish_s[:t0])
    fut = a.job_arrival_s[j0:]
    assert fut[0] > env.now_s and np.all(np.diff(fut) > 0)  # Poisson arrivals from now on
    np.testing.assert_array_equal(a.job_arrival_s, b.job_arrival_s)  # same draw, same future
    np.testing.assert_array_equal(a.exec_s, b.exec_s)
    assert not np.array_equal(a.job_arrival_s, c.job_arrival_s)
    for e in (a, c):  # each future is a complete, consistent episode: every job runs through its DAG
        assert [e.task_job[i] for i in range(t0, e._n_tasks)] == sorted(e.task_job[t0:])
        for j in range(j0, 20):
            assert e.job_tasks_left[j] == len(e.job_tasks[j]) and np.isnan(e.job_finish_s[j])
        o, done = obs, False
        while not done:
            o, _, done, _, _ = e.step(mct(e, o, None))
        assert np.all(e.job_finish_s >= e.job_arrival_s) and e.episode_metrics()["decisions"] > env.decisions
        for i, preds in enumerate(e.task_preds):
            assert all(e.task_finish_s[p] <= e.task_start_s[i] + 1e-9 for p in preds)
    with pytest.raises(RuntimeError, match="in progress"):
        a.resample_future(np.random.default_rng(0))


def test_resample_future_from_an_empirical_model_draws_the_given_jobs_at_the_given_rate():
    import copy

    from edgegen.scheduling.heuristics import heuristic_policy

    env = DLScheduleEnv(num_jobs=200, loads=(0.9,), mixes=("training_heavy",), hints=())
    obs, info = env.reset(seed=4)
    mct = heuristic_policy("mct")
    while env._next_job < 5:
        obs, *_ = env.step(mct(env, obs, None))
    seen = env.arrived_jobs()
    assert len(seen) == env._next_job
    for j, (template, tasks) in enumerate(seen):  # job-local preds, observed sizes
        ids = env.job_tasks[j]
        assert template == env.job_template[j] and len(tasks) == len(ids)
        for (ty, preds, c, d, m), i in zip(tasks, ids, strict=True):
            assert ty == env.task_type[i] and (c, d, m) == (env.task_compute_tflop[i], env.task_data_mb[i],
                                                           env.task_memory_gb[i])
            assert tuple(p + ids[0] for p in preds) == tuple(env.task_preds[i])
    # a pool of one training job (preprocess -> train -> evaluate) made up by hand, rate 0.5 jobs/s
    job = (7, [(0, (), 1.0, 10.0, 2.0), (1, (0,), 50.0, 5.0, 8.0), (2, (1,), 2.0, 1.0, 2.0)])
    e, j0 = copy.deepcopy(env), env._next_job
    t0 = env.job_tasks[j0][0]
    e.resample_future(np.random.default_rng(0), (0.5, [job]))
    np.testing.assert_array_equal(e.job_arrival_s[:j0], env.job_arrival_s[:j0])
    assert e.job_template[j0:] == [7] * (200 - j0) and e._n_tasks == t0 + 3 * (200 - j0)
    for j in range(j0, 200):
        a, b, c = e.job_tasks[j]
        assert (e.task_preds[a], e.task_preds[b], e.task_preds[c]) == ((), (a,), (b,))
        np.testing.assert_array_equal(e.task_compute_tflop[[a, b, c]], [1.0, 50.0, 2.0])
    gaps = np.diff(e.job_arrival_s[j0 - 1:])[1:]
    assert e.job_arrival_s[j0] > env.now_s and 1.5 < gaps.mean() < 2.5  # mean gap 1 / rate = 2 s (~190 draws)
    for bad in ((0.0, [job]), (1.0, [])):
        with pytest.raises(ValueError, match="empirical arrival model"):
            copy.deepcopy(env).resample_future(np.random.default_rng(0), bad)
