"""`edgegen cot bench`: graph diffusion vs exact MILP, uncapacitated DP and greedy on held-out CoT deployments.

1. Training labels: ``train_per_size`` instances of every training size, solved by the MILP (``label_time_limit_s``;
   a time-limited incumbent is kept as a near-optimal label, as the paper trains on near-optimal solutions),
   cached under ``cache_dir/cot-labels-<fingerprint>/`` in chunks (an interrupted run continues).
2. The diffusion model (:mod:`.diffusion`) trained on them, cached under ``cache_dir/cot-model-<fingerprint>/``
   (resumable from its last checkpoint).
3. Held-out instances (another seed; sizes up to larger than any training size): every method on every instance,
   one result file per chunk in ``out/instances/`` (finished chunks are skipped on a re-run).

Gap of a method on an instance = 100·(L − L_ref)/L_ref with L_ref the MILP optimum (or, when the MILP stopped at
its time limit, the best feasible latency any method found; such instances are counted). ``feasible_rate_raw``: share
of diffusion samples whose plain per-step argmax already respects capacity (before masks and repair);
``feasible_rate``: share of instances whose returned deployment is feasible. Wall times are per instance, one
thread, everything included (MILP: building the model + HiGHS; diffusion: features, k samples, decoding, repair).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgegen.config import ConfigError, check_range
from edgegen.jobs import earlier_wall_s, run_jobs
from edgegen.microservices.cot import solvers
from edgegen.microservices.cot.diffusion import DiffusionConfig
from edgegen.microservices.cot.problem import Instance, InstanceConfig, generate, load_instances, save_instances
from edgegen.runs import current_command, environment, save_figure
from edgegen.seeding import derive_seed

CHUNK = 20


def parse_size(text: str) -> tuple[int, int]:
    try:
        n, m = (int(x) for x in text.lower().split("x"))
    except ValueError as exc:
        raise ConfigError(f"size {text!r} must look like NxM (steps x devices), e.g. 16x10") from exc
    check_range(f"steps of size {text}", n, 1, 1000)
    check_range(f"devices of size {text}", m, 1, 1000)
    return n, m


@dataclass(frozen=True)
class CotBenchConfig:
    """Graph diffusion deployment of CoT microservices vs MILP, DP and greedy on held-out instances."""

    out: Path = Path("runs/cot-bench")
    """Bench directory (finished instance chunks are skipped on a re-run)."""
    train_sizes: tuple[str, ...] = ("6x4", "8x4", "8x6", "10x6", "10x8", "12x8")
    """Training instance sizes, NxM = steps x devices."""
    train_per_size: int = 100
    """MILP-labelled training instances per size."""
    test_sizes: tuple[str, ...] = ("8x6", "12x8", "16x10", "20x12")
    """Held-out sizes (16x10 and 20x12 are larger than every training size)."""
    test_per_size: tuple[int, ...] = (16, 16, 16, 6)
    """Held-out instances per test size."""
    milp_time_limit_s: float = 30.0
    """HiGHS time limit of the exact MILP on held-out instances."""
    label_time_limit_s: float = 20.0
    """HiGHS time limit when labelling training instances."""
    strides: tuple[int, ...] = (1, 2, 4)
    """Sampling strides (2 = the paper's skip-step p(G_{t-2} | G_t))."""
    samples: int = 8
    """k of best-of-k sampling (drawn in one batch)."""
    data_seed: int = 0
    """Seed of the training instances; held-out instances use a seed derived from data_seed + 1."""
    instance: InstanceConfig = dataclasses.field(default_factory=InstanceConfig)
    """Instance distribution."""
    model: DiffusionConfig = dataclasses.field(default_factory=DiffusionConfig)
    """Diffusion model and its training."""
    cache_dir: Path = Path("runs/cache")
    """Where labels and the trained model are cached."""
    workers: int = 2
    """Parallel jobs (labelling, held-out chunks); > 1: Ray tasks of one CPU each."""
    ray_address: str | None = None
    """Run the jobs on this Ray cluster instead."""
    quiet: bool = False
    """No progress bars."""

    def validate(self) -> CotBenchConfig:
        for s in (*self.train_sizes, *self.test_sizes):
            parse_size(s)
        if not self.train_sizes or not self.test_sizes:
            raise ConfigError("train_sizes and test_sizes must each hold at least one NxM size")
        if len(self.test_per_size) != len(self.test_sizes):
            raise ConfigError(f"test_per_size must have one count per test size ({len(self.test_sizes)}), "
                              f"got {len(self.test_per_size)}")
        for i, c in enumerate(self.test_per_size):
            check_range(f"test_per_size[{i}]", c, 1, 100_000)
        check_range("train_per_size", self.train_per_size, 1, 1_000_000)
        check_range("milp_time_limit_s", self.milp_time_limit_s, 0.1, 86_400)
        check_range("label_time_limit_s", self.label_time_limit_s, 0.1, 86_400)
        if not self.strides:
            raise ConfigError("strides must hold at least one stride")
        for i, s in enumerate(self.strides):
            check_range(f"strides[{i}]", s, 1, self.model.diffusion_steps)
        check_range("samples", self.samples, 1, 1024)
        check_range("data_seed", self.data_seed, 0, 2**31 - 2)
        check_range("workers", self.workers, 1, 1024)
        self.instance.validate()
        self.model.validate()
        return self

    def labels_dir(self) -> Path:
        key = json.dumps({"i": dataclasses.asdict(self.instance), "s": self.train_sizes, "n": self.train_per_size,
                          "seed": self.data_seed, "tl": self.label_time_limit_s}, sort_keys=True)
        import hashlib

        return self.cache_dir / f"cot-labels-{hashlib.sha256(key.encode()).hexdigest()[:10]}"

    def model_dir(self) -> Path:
        return self.cache_dir / f"cot-model-{self.labels_dir().name[-10:]}-{self.model.fingerprint()}"


# --------------------------------------------------------------------------- instances and labels


def draw_chunk(cfg: CotBenchConfig, split: str, size: str, chunk: int, count: int) -> list[Instance]:
    n, m = parse_size(size)
    seed = cfg.data_seed if split == "train" else cfg.data_seed + 1
    rng = np.random.default_rng(derive_seed(seed, "cot", split, size, chunk))
    return [generate(n, m, rng, cfg.instance) for _ in range(count)]


def label_chunk(cfg: CotBenchConfig, size: str, chunk: int, count: int) -> str:
    """MILP-label one chunk of training instances (skips a finished chunk); returns its file."""
    import os

    path = cfg.labels_dir() / f"{size}_{chunk:03d}.json"
    if path.exists():
        return str(path)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    insts, extra = [], []
    for inst in draw_chunk(cfg, "train", size, chunk, count):
        res = solvers.solve_milp(inst.tables(), cfg.label_time_limit_s)
        if res["serve"] is None:  # infeasible (or no incumbent in time): not a training example
            continue
        insts.append(inst)
        extra.append({"label": res["serve"].tolist(), "status": res["status"], "milp_ms": res["wall_ms"]})
    tmp = path.with_suffix(".tmp")
    save_instances(tmp, insts, extra)
    tmp.rename(path)
    return str(path)


def _chunks(sizes, counts) -> list[tuple[str, int, int]]:
    jobs = []
    for size, total in zip(sizes, counts, strict=True):
        for c in range(0, total, CHUNK):
            jobs.append((size, c // CHUNK, min(CHUNK, total - c)))
    return jobs


def load_or_train(cfg: CotBenchConfig):
    """Labels (cached), then the trained diffusion model (cached, resumable). Returns (model, info)."""
    import torch

    from edgegen.microservices.cot import diffusion

    torch.set_num_threads(1)
    label_dir = cfg.labels_dir()
    label_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(cfg, s, c, k) for s, c, k in _chunks(cfg.train_sizes, [cfg.train_per_size] * len(cfg.train_sizes))]
    jobs.sort(key=lambda j: -np.prod(parse_size(j[1])))  # longest first
    started = time.perf_counter()
    todo = [j for j in jobs if not (label_dir / f"{j[1]}_{j[2]:03d}.json").exists()]
    if todo:
        run_jobs(label_chunk, todo, cfg.workers, cfg.ray_address, cfg.quiet,
                 describe=lambda job, r: f"labels {job[1]} chunk {job[2]}")
    label_wall_s = time.perf_counter() - started
    data, statuses, milp_ms = [], [], []
    for path in sorted(label_dir.glob("*.json")):
        insts, extra = load_instances(path)
        for inst, e in zip(insts, extra, strict=True):
            data.append((inst.tables(), np.asarray(e["label"])))
            statuses.append(e["status"])
            milp_ms.append(e["milp_ms"])
    model_dir = cfg.model_dir()
    model, info = diffusion.train(cfg.model, data, model_dir, quiet=cfg.quiet)
    info.update({"labels_dir": str(label_dir), "model_dir": str(model_dir), "label_wall_s_this_run": label_wall_s,
                 "label_milp_ms_total": float(np.sum(milp_ms)), "labels_optimal": statuses.count("optimal"),
                 "labels_total": len(statuses)})
    (model_dir / "info.json").write_text(json.dumps(info, indent=2))
    return model, info


# --------------------------------------------------------------------------- held-out evaluation


def evaluate_chunk(cfg: CotBenchConfig, size: str, chunk: int, count: int) -> str:
    """Every method on one chunk of held-out instances; one JSON file in out/instances/ (skipped when present)."""
    import os

    import torch

    from edgegen.microservices.cot import diffusion
    from edgegen.microservices.cot.problem import overflow_bytes

    path = cfg.out / "instances" / f"{size}_{chunk:03d}.json"
    if path.exists():
        return str(path)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    model = diffusion.load_model(cfg.model, cfg.model_dir())
    rows = []
    for k, inst in enumerate(draw_chunk(cfg, "test", size, chunk, count)):
        t = inst.tables()
        row: dict = {"size": size, "n_steps": t.n_steps, "n_devices": t.n_devices}
        res = solvers.solve_milp(t, cfg.milp_time_limit_s)
        row["milp"] = {"latency_s": res["latency_s"], "feasible": res["serve"] is not None, "wall_ms": res["wall_ms"],
                       "status": res["status"], "dual_bound_s": res["dual_bound_s"], "mip_gap": res["mip_gap"],
                       "nodes": res["nodes"]}
        dp = solvers.viterbi_dp(t)
        row["dp_uncapacitated"] = {k2: dp[k2] for k2 in ("latency_s", "feasible", "wall_ms")}
        g = solvers.greedy(t)
        row["greedy"] = {k2: g[k2] for k2 in ("latency_s", "feasible", "wall_ms")}
        started = time.perf_counter()
        ls = solvers.local_search(t, g["serve"])
        row["greedy_ls"] = {"latency_s": solvers.path_latency_s(t, ls), "feasible": overflow_bytes(t, ls) == 0,
                            "wall_ms": g["wall_ms"] + 1e3 * (time.perf_counter() - started)}
        for s in cfg.strides:
            d = diffusion.solve(model, t, s, cfg.samples, derive_seed(cfg.data_seed, "cot-sample", size, chunk, k),
                                cfg.model.diffusion_steps)
            row[f"diffusion_s{s}"] = {k2: v for k2, v in d.items() if k2 != "serve"}
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, default=float))
    tmp.rename(path)
    return str(path)


def methods(cfg: CotBenchConfig) -> list[str]:
    return ["milp", "dp_uncapacitated", "greedy", "greedy_ls"] + [f"diffusion_s{s}" for s in cfg.strides]


def _reference(row: dict, names: list[str]) -> tuple[float, bool]:
    if row["milp"]["status"] == "optimal":
        return row["milp"]["latency_s"], True
    feas = [row[m]["latency_s"] for m in names if m != "dp_uncapacitated" and row[m]["feasible"]
            and row[m]["latency_s"] is not None]
    return min(feas), False


def aggregate(rows: list[dict], names: list[str]) -> dict:
    """Per-method means over the given instance rows."""
    refs = [_reference(r, names) for r in rows]
    out = {}
    for m in names:
        gaps = np.array([100.0 * (r[m]["latency_s"] - ref) / ref for r, (ref, _) in zip(rows, refs, strict=True)
                         if r[m]["latency_s"] is not None])
        res = {"gap_pct_mean": float(gaps.mean()) if len(gaps) else None,
               "gap_pct_p95": float(np.percentile(gaps, 95)) if len(gaps) else None,
               "feasible_rate": float(np.mean([r[m]["feasible"] for r in rows])),
               "wall_ms_mean": float(np.mean([r[m]["wall_ms"] for r in rows])),
               "instances": len(rows)}
        if m.startswith("diffusion"):
            res["feasible_rate_raw"] = float(np.mean([r[m]["raw_feasible_frac"] for r in rows]))
            res["decoded_feasible_rate"] = float(np.mean([r[m]["decoded_feasible"] for r in rows]))
            dec = [100.0 * (r[m]["decoded_latency_s"] - ref) / ref for r, (ref, _) in zip(rows, refs, strict=True)
                   if r[m]["decoded_feasible"]]
            res["decoded_gap_pct_mean"] = float(np.mean(dec)) if dec else None
        else:
            res["feasible_rate_raw"] = res["feasible_rate"]
        if m == "milp":
            res["optimal_rate"] = float(np.mean([r["milp"]["status"] == "optimal" for r in rows]))
            gaps_mip = [r["milp"]["mip_gap"] for r in rows if r["milp"]["mip_gap"] is not None]
            res["mip_gap_mean"] = float(np.mean(gaps_mip)) if gaps_mip else None
            res["wall_ms_max"] = float(np.max([r["milp"]["wall_ms"] for r in rows]))
        out[m] = res
    return out


def acceptance(summary: dict, strides: tuple[int, ...]) -> dict:
    res, by = summary["results"], summary["by_size"]
    acc: dict = {"size_for_speedup": "16x10" if "16x10" in by else max(by, key=lambda s: np.prod(parse_size(s)))}
    at = by[acc["size_for_speedup"]]
    for s in strides:
        m = f"diffusion_s{s}"
        acc[m] = {"gap_pct_mean": res[m]["gap_pct_mean"], "gap_le_2pct": res[m]["gap_pct_mean"] <= 2.0,
                  "feasible_rate": res[m]["feasible_rate"], "all_feasible": res[m]["feasible_rate"] == 1.0,
                  "feasible_rate_raw": res[m]["feasible_rate_raw"],
                  "speedup_vs_milp": at["milp"]["wall_ms_mean"] / at[m]["wall_ms_mean"]}
        acc[m]["speedup_ge_10x"] = acc[m]["speedup_vs_milp"] >= 10.0
    if 1 in strides and 2 in strides:
        acc["stride2_gap_minus_stride1_points"] = (res["diffusion_s2"]["gap_pct_mean"]
                                                   - res["diffusion_s1"]["gap_pct_mean"])
        acc["stride2_within_0_5_points"] = acc["stride2_gap_minus_stride1_points"] <= 0.5
        acc["stride2_time_ratio"] = res["diffusion_s2"]["wall_ms_mean"] / res["diffusion_s1"]["wall_ms_mean"]
    return acc


def run_bench(cfg: CotBenchConfig) -> dict:
    cfg.validate()
    cfg = dataclasses.replace(cfg, out=cfg.out.resolve(), cache_dir=cfg.cache_dir.resolve())  # for Ray workers
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "bench_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
    command = current_command()
    earlier_s = earlier_wall_s(cfg.out)
    started = time.perf_counter()
    _, train_info = load_or_train(cfg)
    jobs = [(cfg, s, c, k) for s, c, k in _chunks(cfg.test_sizes, cfg.test_per_size)]
    jobs.sort(key=lambda j: -np.prod(parse_size(j[1])))
    todo = [j for j in jobs if not (cfg.out / "instances" / f"{j[1]}_{j[2]:03d}.json").exists()]
    if todo:
        run_jobs(evaluate_chunk, todo, cfg.workers, cfg.ray_address, cfg.quiet,
                 describe=lambda job, r: f"held-out {job[1]} chunk {job[2]}")
    rows = []
    for _, size, chunk, _ in sorted(jobs, key=lambda j: (parse_size(j[1]), j[2])):
        rows += json.loads((cfg.out / "instances" / f"{size}_{chunk:03d}.json").read_text())
    names = methods(cfg)
    summary: dict = {"kind": "cot_bench", "results": aggregate(rows, names),
                     "by_size": {s: aggregate([r for r in rows if r["size"] == s], names) for s in cfg.test_sizes},
                     "test_sizes": list(cfg.test_sizes), "test_per_size": list(cfg.test_per_size),
                     "train_sizes": list(cfg.train_sizes), "train": train_info, "strides": list(cfg.strides),
                     "samples": cfg.samples, "diffusion_steps": cfg.model.diffusion_steps,
                     "milp_time_limit_s": cfg.milp_time_limit_s, "reference_not_optimal": sum(
                         r["milp"]["status"] != "optimal" for r in rows), "instances": len(rows),
                     "model": dataclasses.asdict(cfg.model), "instance_config": dataclasses.asdict(cfg.instance)}
    summary["acceptance"] = acceptance(summary, cfg.strides)
    summary.update({"command": command, "bench_wall_s": earlier_s + time.perf_counter() - started,
                    "workers": cfg.workers, "environment": environment()})
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    plot_quality_vs_steps(summary, cfg.out / "plots" / "quality_vs_sampling_steps.png")
    plot_time_vs_size(summary, cfg.out / "plots" / "time_vs_size.png")
    return summary


# --------------------------------------------------------------------------- plots and tables


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_quality_vs_steps(summary: dict, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.6))
    t = summary["diffusion_steps"]
    for size in summary["test_sizes"]:
        res = summary["by_size"][size]
        evals = [len(range(t, 0, -s)) for s in summary["strides"]]
        line = ax[0].plot(evals, [res[f"diffusion_s{s}"]["gap_pct_mean"] for s in summary["strides"]], "o-",
                          label=size)[0]
        ax[0].axhline(res["greedy_ls"]["gap_pct_mean"], color=line.get_color(), ls=":", lw=1)
        ax[1].plot(evals, [res[f"diffusion_s{s}"]["decoded_gap_pct_mean"] or np.nan for s in summary["strides"]],
                   "o-", label=size)
    ax[0].set_title("after local-search repair (best of k)\n(dotted: greedy + the same local search)", fontsize=9)
    ax[1].set_title("decoded, before repair (feasible samples)", fontsize=9)
    for a in ax:
        a.set_xlabel("network evaluations (T / stride)")
        a.set_xticks(sorted({len(range(t, 0, -s)) for s in summary["strides"]}))
        a.set_ylabel("gap to MILP optimum (%)")
        a.legend(title="N x M", fontsize=8)
    return save_figure(fig, path)


def plot_time_vs_size(summary: dict, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    sizes = summary["test_sizes"]
    x = [np.prod(parse_size(s)) for s in sizes]
    for m in summary["results"]:
        ax.plot(x, [summary["by_size"][s][m]["wall_ms_mean"] for s in sizes], "o-", label=m)
    ax.set_xticks(x, sizes)
    ax.set_yscale("log")
    ax.set_xlabel("instance size N x M")
    ax.set_ylabel("wall time per instance (ms, mean)")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def _f(x, spec=".2f") -> str:
    return "—" if x is None else format(x, spec)


def format_table(summary: dict, results: dict | None = None) -> str:
    res = results or summary["results"]
    rows = ["| method | gap % mean | gap % p95 | feasible (raw) | feasible | wall ms mean | decoded before repair: "
            "feasible, gap % mean |", "|---|---|---|---|---|---|---|"]
    for m, r in res.items():
        dec = (f"{_f(r['decoded_feasible_rate'], '.3f')}, {_f(r['decoded_gap_pct_mean'])}"
               if "decoded_feasible_rate" in r else "—")
        rows.append(f"| {m} | {_f(r['gap_pct_mean'])} | {_f(r['gap_pct_p95'])} | {_f(r['feasible_rate_raw'], '.3f')} "
                    f"| {_f(r['feasible_rate'], '.3f')} | {_f(r['wall_ms_mean'], '.1f')} | {dec} |")
    return "\n".join(rows)


def report_section(run_dir: Path, summary: dict, figures: Path, out_dir: Path) -> list[str]:
    """BENCHMARKS.md section of a ``cot_bench`` run."""
    from edgegen.report import copy_plots

    acc, tr = summary["acceptance"], summary["train"]
    lines = [f"### CoT deployment by graph diffusion vs exact MILP: `{run_dir}`", "",
             f"Command: `{summary.get('command', '')}`; bench wall time {summary['bench_wall_s'] / 60:.1f} min "
             f"({summary['workers']} job(s) at a time, one thread each; includes labelling and training when they "
             "were not cached).", "",
             f"Training: {tr['labels_total']} MILP-labelled instances ({tr['labels_optimal']} proven optimal) of sizes "
             + ", ".join(f"{n}x{m}" for n, m in tr["train_sizes"])
             + f" (labelling {tr['label_milp_ms_total'] / 1e3:.0f} s of MILP); {tr['num_parameters']:,}-parameter "
             f"denoiser, {tr['train_iters']} steps in {tr['train_wall_s']:.0f} s on one thread, final loss "
             f"{tr['final_loss']:.3f}. Sampling: T = {summary['diffusion_steps']}, best of k = {summary['samples']}.",
             "", f"Held-out: {summary['instances']} instances, sizes "
             + ", ".join(f"{s} ×{c}" for s, c in zip(summary["test_sizes"], summary["test_per_size"], strict=True))
             + f"; MILP time limit {summary['milp_time_limit_s']:g} s, {summary['reference_not_optimal']} instance(s) "
             "without a proven optimum (their gap is to the best feasible latency found).", "",
             "All held-out instances:", "", format_table(summary), ""]
    for s in summary["test_sizes"]:
        milp = summary["by_size"][s]["milp"]
        lines += [f"Size {s} (MILP proven optimal on {100 * milp['optimal_rate']:.0f}%, max MILP wall "
                  f"{milp['wall_ms_max'] / 1e3:.1f} s):", "", format_table(summary, summary["by_size"][s]), ""]
    lines += ["Acceptance (from summary.json):", ""]
    for s in summary["strides"]:
        a = acc[f"diffusion_s{s}"]
        lines.append(f"- diffusion stride {s}: mean gap {a['gap_pct_mean']:.2f}% (≤ 2%: **{a['gap_le_2pct']}**), "
                     f"feasible after repair {100 * a['feasible_rate']:.0f}% (all: **{a['all_feasible']}**), raw "
                     f"(argmax, before masks / repair) {100 * a['feasible_rate_raw']:.0f}%, "
                     f"{a['speedup_vs_milp']:.1f}× faster than the MILP at {acc['size_for_speedup']} "
                     f"(≥ 10×: **{a['speedup_ge_10x']}**).")
    if "stride2_time_ratio" in acc:
        lines.append(f"- stride 2 vs 1: gap difference {acc['stride2_gap_minus_stride1_points']:+.2f} points (≤ 0.5: "
                     f"**{acc['stride2_within_0_5_points']}**), time ratio {acc['stride2_time_ratio']:.2f}.")
    return lines + copy_plots(run_dir, figures, out_dir) + [""]
