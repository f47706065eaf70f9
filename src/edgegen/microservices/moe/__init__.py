"""MoE experts as microservices on edge devices, scheduled online with Lyapunov drift-plus-penalty.

Modules, in reading order:
    traces     a small ``MixtralForCausalLM`` trained here on generated arithmetic/reasoning chains; its per-token,
               per-layer top-k gate choices (the real workload), their statistics, and the expert-FFN timing that
               calibrates device speeds.
    system     the edge system: expert replicas on M heterogeneous devices, hidden-state send / expert compute /
               result return per activated expert (via :mod:`edgegen.wireless`), per-device work queues.
    lyapunov   pure per-slot functions: the drift-plus-penalty assignment, the baselines, queue update, the
               constant B and the optimal stationary cost C* by linear programming.
    bench      ``edgegen moe bench`` / ``edgegen moe traces``: V sweep, baselines, bound check, plots, report.
"""
