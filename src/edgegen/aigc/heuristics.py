"""Heuristic schedulers for AaaS-v0. Each is `policy(env, rng) -> ASP index` on the unwrapped env.

Random and Round-Robin ignore state; Crash-Avoid picks the ASP with the most free steps; Prophet knows
every utility curve and picks the best-utility ASP that has room (falling back, when none has room,
to the ASP with the most room: the reference fell back to ASP 0 even when that crashed it).
"""

from __future__ import annotations

import numpy as np

from edgegen.aigc.env import AaaSEnv


def random_policy(env: AaaSEnv, rng: np.random.Generator) -> int:
    return int(rng.integers(env.num_asps))


def round_robin_policy(env: AaaSEnv, rng: np.random.Generator) -> int:
    return env._t % env.num_asps


def crash_avoid_policy(env: AaaSEnv, rng: np.random.Generator) -> int:
    return int(np.argmax(env._avail))


def prophet_policy(env: AaaSEnv, rng: np.random.Generator) -> int:
    fits = env._avail >= env.task_steps
    if not fits.any():
        return int(np.argmax(env._avail))
    utility = np.where(fits, env.utility_table[:, env.task_step_index], -np.inf)
    return int(np.argmax(utility))


HEURISTICS = {
    "random": random_policy,
    "round_robin": round_robin_policy,
    "crash_avoid": crash_avoid_policy,
    "prophet": prophet_policy,
}
