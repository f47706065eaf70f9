"""Chain-of-thought microservices (Edge-LAM, Wang, Shi, Letaief 2025): deployment of N sequential reasoning steps on
M edge devices — instances (:mod:`.problem`), exact MILP / DP / heuristics (:mod:`.solvers`), a graph diffusion model
trained on MILP labels (:mod:`.diffusion`), the bench (:mod:`.bench`) and the memory / latency case study on a
Qwen2-architecture transformer (:mod:`.case_study`).
"""
