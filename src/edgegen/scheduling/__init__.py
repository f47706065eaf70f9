"""RL scheduling of deep-learning tasks on heterogeneous agents (seed system 10; anchor: Decima, SIGCOMM 2019)."""

import gymnasium as gym

from edgegen.scheduling.env import DLScheduleConfig, DLScheduleEnv

if "edgegen/DLSchedule-v0" not in gym.registry:
    gym.register(id="edgegen/DLSchedule-v0", entry_point="edgegen.scheduling.env:DLScheduleEnv")

__all__ = ["DLScheduleConfig", "DLScheduleEnv"]
