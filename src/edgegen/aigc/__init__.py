"""AaaS scheduling: AIGC service-provider selection (D2SAC, arXiv 2303.13052)."""

import gymnasium as gym

from edgegen.aigc.env import AaaSConfig, AaaSEnv

if "edgegen/AaaS-v0" not in gym.registry:
    gym.register(id="edgegen/AaaS-v0", entry_point="edgegen.aigc.env:AaaSEnv")

__all__ = ["AaaSConfig", "AaaSEnv"]
