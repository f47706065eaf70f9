"""Slow tier: D2SAC learns (beats Crash-Avoid on the canonical set within a short budget)."""

import numpy as np
import pytest

from edgegen.aigc.bench import episode_seeds
from edgegen.aigc.d2sac import D2SACConfig, train
from edgegen.aigc.env import AaaSConfig, AaaSEnv, run_episode
from edgegen.aigc.heuristics import crash_avoid_policy
from edgegen.runs import RunDir


@pytest.mark.slow
def test_d2sac_beats_crash_avoid(tmp_path):
    seeds = episode_seeds(0, 3)
    env = AaaSEnv()
    crash_avoid = np.mean([run_episode(env, lambda o: crash_avoid_policy(env, None), s)["return"] for s in seeds])
    cfg = D2SACConfig(total_env_steps=15_000, eval_every_env_steps=0)
    result = train(cfg, AaaSConfig(), 0, RunDir(tmp_path, tensorboard=False), progress=False, test_seeds=seeds)
    assert result["return_mean"] > crash_avoid
    assert result["crash_steps_mean"] <= 5
