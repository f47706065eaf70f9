"""Flower adapter for the federated LoRA loop: the same rounds on Flower's simulation and deployment engines.

Everything lives in :mod:`edgegen.fedtune.flower.app` (it imports ``flwr``; the core in
:mod:`edgegen.fedtune.rounds` never does). The names below are re-exported lazily, so importing this
package does not import Flower.
"""

from __future__ import annotations

__all__ = ["FedLoRAStrategy", "client_app", "run_flower_simulation", "server_app"]


def __getattr__(name: str):
    if name in __all__:
        from edgegen.fedtune.flower import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
