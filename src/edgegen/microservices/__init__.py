"""Large-model inference as microservices at the edge (Edge-LAM, Wang, Shi, Letaief 2025).

Sub-packages: ``moe`` (mixture-of-experts layers whose experts are microservices on edge devices, gate traces of a
small MoE model trained here, Lyapunov online device scheduling) and ``cot`` (chain-of-thought microservices).
"""
