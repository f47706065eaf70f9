"""Thin adapter: Ray RLlib PPO (new API stack: RLModule + Learner, EnvRunner + ConnectorV2) on DLSchedule-v0.

The scale-out path: the same env, wrapped to RLlib's action-masking convention (a Dict observation with
``"action_mask"`` and ``"observations"``), trained by RLlib's PPO. The RLModule (``network="pair"``, default) is
:class:`PairScorerRLModule`: the same Decima-style pair-scoring policy network (:class:`PairScorer`) and value MLP
as the masked-PPO path, with the logits of masked actions set to the float minimum, so the two learned rows differ
in library, budget and warm start, not in network. ``network="mlp"`` uses RLlib's example
``ActionMaskingTorchRLModule`` (a default MLP on the flat observation) instead. On a Ray cluster, raise
``num_env_runners`` / ``num_learners``; on one box everything runs in this process.

Install: ``pip install -e '.[rllib]'`` (ray[rllib], pinned to the installed ray version).
"""

from __future__ import annotations

import copy
import dataclasses
import time

import gymnasium as gym
import numpy as np

from edgegen.config import check_choice
from edgegen.scheduling.env import DLScheduleConfig, DLScheduleEnv

NETWORKS = ("pair", "mlp")
"""RLModule choices: the masked-PPO path's pair scorer, or RLlib's example masking MLP."""


def require_rllib(network: str = "pair"):
    """The RLModule class for `network` ("pair" or "mlp"); a clear ImportError without the rllib extra."""
    check_choice("network", network, NETWORKS)
    try:
        import ray.rllib  # noqa: F401
        from ray.rllib.examples.rl_modules.classes.action_masking_rlm import ActionMaskingTorchRLModule
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError("the rllib_ppo scheduler needs Ray RLlib: pip install -e '.[rllib]' "
                          f"(import failed: {exc})") from exc
    return pair_module_class() if network == "pair" else ActionMaskingTorchRLModule


def pair_module_class():
    """PairScorerRLModule: RLlib's new-stack TorchRLModule around the masked-PPO path's PairScorer + value MLP.

    model_config: {"layout": env.obs_layout(), "hidden": width}. The observation is the MaskedDictEnv Dict; the
    policy scores the flat "observations" and masked actions get the float minimum as logit."""
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
    from ray.rllib.core.rl_module.torch import TorchRLModule
    from ray.rllib.utils.torch_utils import FLOAT_MIN
    from torch import nn

    from edgegen.scheduling.ppo import PairScorer

    class PairScorerRLModule(TorchRLModule, ValueFunctionAPI):
        def setup(self):
            hidden = int(self.model_config["hidden"])
            n_obs = int(self.observation_space["observations"].shape[0])
            self.pi = PairScorer(self.model_config["layout"], hidden)
            self.vf = nn.Sequential(nn.Linear(n_obs, 2 * hidden), nn.Tanh(), nn.Linear(2 * hidden, 2 * hidden),
                                    nn.Tanh(), nn.Linear(2 * hidden, 1))

        def _forward(self, batch, **kwargs):
            obs = batch[Columns.OBS]
            logits = self.pi(obs["observations"])
            logits = torch.where(obs["action_mask"] > 0.5, logits, torch.full_like(logits, FLOAT_MIN))
            return {Columns.ACTION_DIST_INPUTS: logits}

        def compute_values(self, batch, embeddings=None):
            return self.vf(batch[Columns.OBS]["observations"]).squeeze(-1)

    return PairScorerRLModule


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


def module_model_config(env_cfg: DLScheduleConfig, network: str, hidden: int) -> dict:
    if network == "pair":
        return {"layout": DLScheduleEnv(env_cfg).obs_layout(), "hidden": hidden}
    return {"head_fcnet_hiddens": [2 * hidden, 2 * hidden]}


def save_module(module, path) -> None:
    """The weights of a trained pair-scoring RLModule (rebuilt by load_module)."""
    import torch

    torch.save(module.state_dict(), path)


def load_module(env_cfg: DLScheduleConfig, path, hidden: int = 64):
    """A pair-scoring RLModule saved by save_module, rebuilt for the env it was trained on without an Algorithm (to
    test a trained policy again). Only the "pair" network: the algorithm's "mlp" module is RLlib's inference-only
    variant, whose layout a plain RLModuleSpec does not rebuild."""
    import torch
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    env = MaskedDictEnv(config_to_env_config(env_cfg))
    module = RLModuleSpec(module_class=require_rllib("pair"), observation_space=env.observation_space,
                          action_space=env.action_space,
                          model_config=module_model_config(env_cfg, "pair", hidden)).build()
    module.load_state_dict(torch.load(path, weights_only=True))
    return module


def build_algo(env_cfg: DLScheduleConfig, seed: int, train_batch_size: int = 2000, minibatch_size: int = 256,
               num_epochs: int = 5, lr: float = 3e-4, gamma: float = 0.995, hidden: int = 64,
               network: str = "pair", grad_clip: float | None = 0.5, vf_clip: float = 1e6, num_env_runners: int = 0):
    """An RLlib PPO Algorithm (new API stack) on MaskedDictEnv; `network` "pair" (PairScorerRLModule, `hidden`
    wide as in the masked-PPO path) or "mlp" (RLlib's example masking MLP, two layers of 2 x `hidden`)."""
    module_class = require_rllib(network)
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
                        num_epochs=num_epochs, lr=lr, gamma=gamma, lambda_=0.95, entropy_coeff=0.01,
                        grad_clip=grad_clip, grad_clip_by="global_norm", vf_clip_param=vf_clip)
              .rl_module(rl_module_spec=RLModuleSpec(module_class=module_class,
                                                     model_config=module_model_config(env_cfg, network, hidden)))
              .debugging(seed=seed, log_level="ERROR"))
    return config.build_algo()


def train_rllib(env_cfg: DLScheduleConfig, seed: int, total_env_steps: int, curve=None, keep_best: bool = True,
                **kwargs) -> tuple[object, object, dict]:
    """Train until `total_env_steps` env steps are sampled. `curve(step, wall_s, act)` after every iteration
    logs a learning-curve point and returns its avg JCT (validation on training-mix episodes); with `keep_best`
    the module of the best point is kept (PPO's greedy policy is not monotone in training steps), as in the
    masked-PPO path. Returns (algo, kept RLModule, {"train_wall_s", "env_steps"[, "kept_step",
    "kept_curve_avg_jct_s"]})."""
    import torch

    torch.set_num_threads(1)
    algo = build_algo(env_cfg, seed, **kwargs)
    steps, wall, best, info, kept = 0, 0.0, np.inf, {}, None
    while steps < total_env_steps:
        t0 = time.perf_counter()
        result = algo.train()
        wall += time.perf_counter() - t0
        steps = int(result["env_runners"]["num_env_steps_sampled_lifetime"])
        if curve is not None:
            jct = curve(steps, wall, greedy_policy(algo.get_module()))
            if keep_best and jct is not None and jct < best:
                best, kept = jct, copy.deepcopy(algo.get_module())
                info.update(kept_step=steps, kept_curve_avg_jct_s=float(jct))
    return algo, kept if kept is not None else algo.get_module(), {"train_wall_s": wall, "env_steps": steps, **info}


def greedy_policy(module):
    """`act(env, obs, mask)` for `run_episode`: argmax of an RLModule's masked logits (e.g. algo.get_module())."""
    import torch
    from ray.rllib.core.columns import Columns

    def act(env, obs, mask):
        batch = {Columns.OBS: {"action_mask": torch.as_tensor(mask[None].astype(np.float32)),
                               "observations": torch.as_tensor(obs[None])}}
        with torch.no_grad():
            logits = module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS][0].numpy()
        return int(np.argmax(np.where(mask, logits, -np.inf)))
    return act
