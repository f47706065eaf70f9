"""Thin adapter: Stable-Baselines3 (DQN, PPO, A2C) and sb3-contrib (QR-DQN) on AaaS-v0.

These are the standard implementations users trust, run with their library defaults except for what
must match D2SAC for a like-for-like comparison: the same env and observation features, the same
discount (gamma = 0.95), the same hidden layers (256 x 2), the same env-step budget, one torch thread,
and the same greedy evaluation on the same episodes.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from edgegen.aigc.env import AaaSConfig, episode_stats, run_episode
from edgegen.runs import RunDir
from edgegen.seeding import derive_seed, seed_everything

SB3_ALGOS = ("sb3_dqn", "sb3_ppo", "sb3_a2c", "sb3_qrdqn")


def _algo_class(name: str):
    if name == "sb3_qrdqn":
        from sb3_contrib import QRDQN

        return QRDQN
    import stable_baselines3 as sb3

    return {"sb3_dqn": sb3.DQN, "sb3_ppo": sb3.PPO, "sb3_a2c": sb3.A2C}[name]


def train_sb3(name: str, env_cfg: AaaSConfig, seed: int, total_env_steps: int, run: RunDir,
              obs_features: str = "fit", eval_every_env_steps: int = 10_000, eval_episodes: int = 2,
              test_seeds: list[int] | None = None, progress: bool = False) -> dict:
    """Train one SB3 algorithm; log a greedy learning curve; return the bench summary fields."""
    from stable_baselines3.common.callbacks import BaseCallback

    from edgegen.aigc.d2sac import make_env
    from edgegen.aigc.heuristics import prophet_policy

    if name not in SB3_ALGOS:
        raise ValueError(f"unknown SB3 algorithm {name!r}; known: {list(SB3_ALGOS)}")
    seed_everything(seed)
    env, eval_env = make_env(env_cfg, obs_features), make_env(env_cfg, obs_features)
    env.reset(seed=derive_seed(seed, "train"))
    curve_seeds = [derive_seed(seed, "curve", i) for i in range(eval_episodes)]
    prophet = float(np.mean([run_episode(eval_env, lambda o: prophet_policy(eval_env.unwrapped, None), s)["return"]
                             for s in curve_seeds]))
    run.truncate_metrics(0)  # SB3 runs are not resumable: a killed one starts over
    run.write_config({"algo": name, "env": env_cfg.__dict__, "seed": seed, "total_env_steps": total_env_steps,
                      "obs_features": obs_features})
    policy_kwargs = {"net_arch": [256, 256]}
    if name in ("sb3_ppo", "sb3_a2c"):
        policy_kwargs = {"net_arch": {"pi": [256, 256], "vf": [256, 256]}}
    extra = {}
    if name == "sb3_ppo":  # whole rollouts of at most SB3's default 2048 steps that add up to (about) the budget
        rollouts = math.ceil(total_env_steps / 2048)
        extra = {"n_steps": math.ceil(total_env_steps / rollouts)}
    model = _algo_class(name)("MlpPolicy", env, gamma=0.95, seed=seed, policy_kwargs=policy_kwargs, device="cpu",
                              verbose=0, **extra)
    state = {"wall": 0.0, "t0": time.perf_counter(), "reach": {"95": None, "100": None}}

    def act(obs):
        return int(model.predict(obs, deterministic=True)[0])

    def evaluate(step: int) -> None:
        state["wall"] += time.perf_counter() - state["t0"]
        ret = float(np.mean([run_episode(eval_env, act, s)["return"] for s in curve_seeds]))
        for key, frac in (("95", 0.95), ("100", 1.0)):
            if state["reach"][key] is None and ret >= frac * prophet:
                state["reach"][key] = state["wall"]
        run.log(step, eval_return=ret, prophet_return=prophet, train_wall_s=state["wall"])
        state["t0"] = time.perf_counter()

    class Curve(BaseCallback):
        def _on_step(self) -> bool:
            if eval_every_env_steps and self.num_timesteps % eval_every_env_steps == 0:
                evaluate(self.num_timesteps)
            return True

    torch.set_num_threads(1)
    model.learn(total_env_steps, callback=Curve(), progress_bar=progress)
    if not eval_every_env_steps or model.num_timesteps % eval_every_env_steps:
        evaluate(model.num_timesteps)
    model.save(run.ckpt / "final.zip")
    test = [run_episode(eval_env, act, s) for s in (test_seeds or [])]
    return {
        **episode_stats(test), "train_wall_s": state["wall"], "env_steps": int(model.num_timesteps),
        "wall_s_to_95pct_prophet": state["reach"]["95"], "wall_s_to_prophet": state["reach"]["100"],
    }
