"""Thin adapter: Ray RLlib PPO (new API stack: RLModule + Learner, EnvRunner + ConnectorV2) on DLSchedule-v0.

The scale-out path: the same env, wrapped to RLlib's action-masking convention (a Dict observation with
``"action_mask"`` and ``"observations"``), trained by RLlib's PPO with its example ``ActionMaskingTorchRLModule``
(a default MLP policy/value network whose logits of masked actions are set to the float minimum). On a Ray
cluster, raise ``num_env_runners`` / ``num_learners``; on one box everything runs in this process.

Install: ``pip install -e '.[rllib]'`` (ray[rllib], pinned to the installed ray version).
"""

from __future__ import annotations

import dataclasses
import time

import gymnasium as gym
import numpy as np

from edgegen.scheduling.env import DLScheduleConfig, DLScheduleEnv


def require_rllib():
    try:
        import ray.rllib  # noqa: F401
        from ray.rllib.examples.rl_modules.classes.action_masking_rlm import ActionMaskingTorchRLModule
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError("the rllib_ppo scheduler needs Ray RLlib: pip install -e '.[rllib]' "
                          f"(import failed: {exc})") from exc
    return ActionMaskingTorchRLModule


def config_to_env_config(cfg: DLScheduleConfig) -> dict:
    return dataclasses.asdict(cfg)


def env_config_to_config(env_config: dict | None) -> DLScheduleConfig:
    d = dict(env_config or {})
    for key in ("agents", "loads", "mixes"):
        if key in d:
            d[key] = tuple(d[key])
    return DLScheduleConfig(**d)


class MaskedDictEnv(gym.Env):
    """DLScheduleEnv with observation {"action_mask": float32 0/1, "observations": the flat observation}."""

    def __init__(self, env_config: dict | None = None):
        self.env = DLScheduleEnv(env_config_to_config(env_config))
        n = int(self.env.action_space.n)
        self.action_space = self.env.action_space
        self.observation_space = gym.spaces.Dict({"action_mask": gym.spaces.Box(0.0, 1.0, (n,), np.float32),
                                                  "observations": self.env.observation_space})

    def _wrap(self, obs, info):
        return {"action_mask": info["action_mask"].astype(np.float32), "observations": obs}, \
            {k: v for k, v in info.items() if k != "action_mask"}

    def reset(self, *, seed=None, options=None):
        return self._wrap(*self.env.reset(seed=seed, options=options))

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        obs, info = self._wrap(obs, info)
        return obs, reward, terminated, truncated, info


def build_algo(env_cfg: DLScheduleConfig, seed: int, train_batch_size: int = 2000, minibatch_size: int = 256,
               num_epochs: int = 5, lr: float = 3e-4, gamma: float = 0.995, hidden: int = 128,
               num_env_runners: int = 0):
    """An RLlib PPO Algorithm (new API stack) on MaskedDictEnv."""
    module_class = require_rllib()
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig as RLlibPPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    if not ray.is_initialized():
        ray.init(num_cpus=max(1, num_env_runners + 1), include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    config = (RLlibPPOConfig()
              .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
              .environment(MaskedDictEnv, env_config=config_to_env_config(env_cfg))
              .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=1)
              .learners(num_learners=0)
              .training(train_batch_size_per_learner=train_batch_size,
                        minibatch_size=min(minibatch_size, train_batch_size),
                        num_epochs=num_epochs, lr=lr, gamma=gamma, lambda_=0.95, entropy_coeff=0.01)
              .rl_module(rl_module_spec=RLModuleSpec(module_class=module_class,
                                                     model_config={"head_fcnet_hiddens": [hidden, hidden]}))
              .debugging(seed=seed, log_level="ERROR"))
    return config.build_algo()


def train_rllib(env_cfg: DLScheduleConfig, seed: int, total_env_steps: int, run=None, curve=None,
                **kwargs) -> tuple[object, dict]:
    """Train until `total_env_steps` env steps are sampled; `curve(step, act)` after every iteration logs a
    learning-curve point if given. Returns (algo, {"train_wall_s", "env_steps"})."""
    import torch

    torch.set_num_threads(1)
    algo = build_algo(env_cfg, seed, **kwargs)
    steps, wall = 0, 0.0
    while steps < total_env_steps:
        t0 = time.perf_counter()
        result = algo.train()
        wall += time.perf_counter() - t0
        steps = int(result["env_runners"]["num_env_steps_sampled_lifetime"])
        if curve is not None:
            curve(steps, wall, greedy_policy(algo))
    return algo, {"train_wall_s": wall, "env_steps": steps}


def greedy_policy(algo):
    """`act(env, obs, mask)` for `run_episode`: argmax of the RLModule's masked logits."""
    import torch
    from ray.rllib.core.columns import Columns

    module = algo.get_module()

    def act(env, obs, mask):
        batch = {Columns.OBS: {"action_mask": torch.as_tensor(mask[None].astype(np.float32)),
                               "observations": torch.as_tensor(obs[None])}}
        with torch.no_grad():
            logits = module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS][0].numpy()
        return int(np.argmax(np.where(mask, logits, -np.inf)))
    return act
