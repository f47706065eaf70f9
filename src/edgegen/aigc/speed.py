"""`edgegen aigc speed`: env steps/s, D2SAC act latency (batch 1) and update time, one thread."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgegen.aigc.d2sac import D2SAC, D2SACConfig, ReplayBuffer, make_env
from edgegen.aigc.env import AaaSConfig, AaaSEnv
from edgegen.runs import RunDir
from edgegen.seeding import seed_everything


@dataclass(frozen=True)
class SpeedArgs:
    """Micro-benchmarks of the AaaS env and the D2SAC agent (single thread)."""

    out: Path = Path("runs/aigc-speed")
    """Run directory for summary.json."""
    env_steps: int = 200_000
    """Env steps to time (uniformly random actions drawn in advance)."""
    act_calls: int = 5_000
    """act() calls to time at batch 1."""
    updates: int = 200
    """Gradient steps to time."""
    d2sac: D2SACConfig = D2SACConfig()
    """Agent whose act/update is timed (its batch_size is the update's batch)."""


def time_env(steps: int, seed: int = 0) -> float:
    env = AaaSEnv(AaaSConfig())
    actions = np.random.default_rng(seed).integers(0, env.num_asps, steps).tolist()
    env.reset(seed=seed)
    t0 = time.perf_counter()
    for a in actions:
        _, _, terminated, _, _ = env.step(a)
        if terminated:
            env.reset()
    return steps / (time.perf_counter() - t0)


def run_speed(args: SpeedArgs) -> dict:
    seed_everything(0)
    torch.set_num_threads(1)
    steps_per_s = time_env(args.env_steps)
    env = make_env(AaaSConfig(), args.d2sac.obs_features)
    obs_dim, n = env.observation_space.shape[0], env.action_space.n
    agent = D2SAC(obs_dim, n, args.d2sac, args.updates)
    obs, _ = env.reset(seed=0)
    lat = {}
    for name, det in (("act_greedy", True), ("act_sample", False)):
        times = []
        for _ in range(args.act_calls):
            t0 = time.perf_counter()
            agent.act(obs, deterministic=det)
            times.append(time.perf_counter() - t0)
        lat[name] = float(np.median(times) * 1e3)
    buffer, rng = ReplayBuffer(20_000, obs_dim), np.random.default_rng(0)
    done = False
    while buffer.size < 20_000:
        a = int(rng.integers(n))
        nxt, r, done, _, _ = env.step(a)
        buffer.add(obs, a, r, nxt, done, False)
        obs = env.reset()[0] if done else nxt
    cfg = args.d2sac
    for _ in range(10):
        agent.update(*buffer.sample(rng, cfg.batch_size, cfg.n_step, cfg.gamma))
    times = []
    for _ in range(args.updates):
        t0 = time.perf_counter()
        agent.update(*buffer.sample(rng, cfg.batch_size, cfg.n_step, cfg.gamma))
        times.append(time.perf_counter() - t0)
    run = RunDir(args.out, tensorboard=False)
    run.write_config({"speed": {"env_steps": args.env_steps, "act_calls": args.act_calls, "updates": args.updates},
                      "d2sac": cfg.__dict__})
    return run.write_summary({
        "kind": "aigc_speed",
        "env_steps_per_s": steps_per_s,
        "act_greedy_p50_ms": lat["act_greedy"],
        "act_sample_p50_ms": lat["act_sample"],
        "update_p50_ms": float(np.median(times) * 1e3),
        "update_batch_size": cfg.batch_size,
        "actor": cfg.actor,
        "torch_threads": torch.get_num_threads(),
    })
