"""Seeding: one entry point for global RNGs, and derived seeds for envs, clients and workers."""

from __future__ import annotations

import hashlib
import os
import random

import numpy as np


def derive_seed(seed: int, *names: object) -> int:
    """A stable 31-bit seed derived from `seed` and a path of names, e.g. derive_seed(3, "eval", 7).

    Independent of Python's hash randomisation, so a run can be reproduced in another process.
    """
    text = "/".join([str(int(seed))] + [str(n) for n in names])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def seed_everything(seed: int, torch_threads: int | None = 1) -> None:
    """Seed Python, NumPy's legacy global RNG and torch; set torch's thread count (1 by default:
    small RL networks ran 4-5x slower with 2 threads on a 2-core machine)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return
    torch.manual_seed(seed)
    if torch_threads is not None:
        os.environ.setdefault("OMP_NUM_THREADS", str(torch_threads))
        torch.set_num_threads(torch_threads)


def rng_states() -> dict:
    """Python, NumPy and torch global RNG states as JSON-friendly data (for checkpoints)."""
    import torch

    py = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state().tolist(),
    }


def set_rng_states(states: dict) -> None:
    import torch

    py = states["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = states["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(torch.tensor(states["torch"], dtype=torch.uint8))


def generator_state(gen: np.random.Generator) -> dict:
    """JSON-friendly state of a numpy Generator (PCG64 by default)."""
    return gen.bit_generator.state


def set_generator_state(gen: np.random.Generator, state: dict) -> None:
    gen.bit_generator.state = state
