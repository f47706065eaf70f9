"""`edgegen <area> <verb> [--flags]`: one entry point; flags are generated from the config dataclasses."""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from edgegen.aigc.bench import BenchConfig
from edgegen.aigc.d2sac import CheckpointError, D2SACConfig
from edgegen.aigc.speed import SpeedArgs
from edgegen.config import ConfigError, from_dict
from edgegen.fedtune.bench import LoraBenchConfig
from edgegen.fedtune.kd_bench import KDBenchConfig
from edgegen.fedtune.rounds import FedConfig
from edgegen.fedtune.unlearn_bench import UnlearnBenchConfig
from edgegen.gdm.ddpo_bench import DDPOBenchConfig as GdmDDPOBenchConfig
from edgegen.gdm.detect_bench import DetectBenchConfig as GdmDetectBenchConfig
from edgegen.gdm.fed_bench import GdmFedBenchConfig
from edgegen.gdm.train import TrainArgs as GdmTrainArgs
from edgegen.gdm.train import TrainBenchConfig as GdmTrainBenchConfig
from edgegen.microservices.cot.bench import CotBenchConfig
from edgegen.microservices.cot.case_study import CaseStudyConfig
from edgegen.microservices.moe.bench import MoEBenchConfig, TracesArgs
from edgegen.report import ReportArgs
from edgegen.scheduling.bench import ScheduleBenchConfig, ScheduleTrainArgs
from edgegen.serve.bench import ServeBenchConfig
from edgegen.serve.gateway import ServeConfig
from edgegen.serve.worker import WorkerConfig


def aigc_bench(cfg) -> None:
    from edgegen.aigc.bench import format_table, run_bench

    summary = run_bench(cfg)
    print(format_table(summary))
    print(f"\nsummary: {cfg.out / 'summary.json'}")
    print(f"plots:   {cfg.out / 'plots' / 'return_vs_env_steps.png'}  {cfg.out / 'plots' / 'return_vs_wall_s.png'}")


@dataclass(frozen=True)
class TrainArgs:
    """Train one D2SAC (or discrete-SAC) agent on AaaS-v0."""

    out: Path = Path("runs/aigc-train")
    """Run directory."""
    seed: int = 0
    """Run seed."""
    asp_seed: int = 0
    """ASP set: 0 = canonical reference set."""
    test_episodes: int = 10
    """Greedy test episodes after training."""
    resume: Path | None = None
    """Continue the run in this directory from its last checkpoint (its config is reused)."""
    reference: bool = False
    """Start from the reference hyperparameters instead of edgegen's CPU recipe."""
    d2sac: D2SACConfig = dataclasses.field(default_factory=D2SACConfig)
    """D2SAC hyperparameters."""
    quiet: bool = False
    """Disable the progress bar."""


def aigc_train(args) -> None:
    from edgegen.aigc.bench import episode_seeds
    from edgegen.aigc.d2sac import train
    from edgegen.aigc.env import AaaSConfig
    from edgegen.runs import RunDir

    if args.resume is not None:
        if not (args.resume / "config.json").exists():
            raise CheckpointError(f"--resume {args.resume}: no run directory there (config.json missing)")
        run = RunDir(args.resume)
        saved = run.read_config()
        cfg, env_cfg, seed = from_dict(D2SACConfig, saved["d2sac"]), from_dict(AaaSConfig, saved["env"]), saved["seed"]
    else:
        run = RunDir(args.out)
        cfg = args.d2sac
        if args.reference:
            cfg = D2SACConfig.reference(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
                                           if getattr(cfg, f.name) != f.default})
        env_cfg, seed = AaaSConfig(asp_seed=args.asp_seed), args.seed
    result = train(cfg, env_cfg, seed, run, resume=args.resume is not None, progress=not args.quiet,
                   test_seeds=episode_seeds(seed, args.test_episodes))
    run.close()
    summary = run.write_summary({"algo": "d2sac" if cfg.actor == "diffusion" else "sac_discrete", **result}, seed)
    print(json.dumps({k: v for k, v in summary.items() if k != "test_returns"}, indent=2))


def aigc_speed(args) -> None:
    from edgegen.aigc.speed import run_speed

    print(json.dumps(run_speed(args), indent=2))


def fedtune_lora_bench(cfg) -> None:
    from edgegen.fedtune.bench import format_table, run_bench

    summary = run_bench(cfg)
    print(format_table(summary))
    print(f"\nsummary: {cfg.out / 'summary.json'}")
    print(f"plots:   {cfg.out / 'plots'}/accuracy_vs_{{rounds,bytes,time}}.png")


def fedtune_kd_bench(cfg) -> None:
    from edgegen.fedtune.kd_bench import format_table, run_bench

    summary = run_bench(cfg)
    print(format_table(summary))
    print(f"\nsummary: {cfg.out / 'summary.json'}\nplot:    {cfg.out / 'plots' / 'accuracy_per_modality.png'}")


def fedtune_unlearn_bench(cfg) -> None:
    from edgegen.fedtune.unlearn_bench import format_table, run_bench

    summary = run_bench(cfg)
    print(format_table(summary))
    print(f"\nsummary: {cfg.out / 'summary.json'}\nplot:    {cfg.out / 'plots' / 'dp_noise_sweep.png'}")


@dataclass(frozen=True)
class FedConfigArgs:
    """One federated LoRA fine-tuning run."""

    out: Path = Path("runs/fedtune-train")
    """Run directory (an interrupted run there is resumed)."""
    fed: FedConfig = dataclasses.field(default_factory=FedConfig)
    """Run configuration."""
    quiet: bool = False
    """Disable the progress bar."""


def fedtune_lora_train(args) -> None:
    from edgegen.fedtune.rounds import run

    summary = run(args.fed, args.out, quiet=args.quiet)
    print(json.dumps({k: summary[k] for k in ("test_acc", "uplink_bytes", "downlink_bytes",
                                              "round_latency_s_mean", "wall_s")}, indent=2))


def moe_bench(cfg) -> None:
    from edgegen.microservices.moe.bench import format_table, run_bench

    summary = run_bench(cfg)
    print(format_table(summary, "results"))
    print(json.dumps({"bound": {k: summary["bound"][k] for k in ("C_star", "B")}, **summary["acceptance"]}, indent=2))
    print(f"\nsummary: {cfg.out / 'summary.json'}\nplots:   {cfg.out / 'plots'}")


def moe_traces(args) -> None:
    from edgegen.microservices.moe.bench import run_traces

    stats = run_traces(args)
    print(json.dumps({k: v for k, v in stats.items() if k not in ("usage", "coactivation")}, indent=2))
    print(f"\nstats: {args.out / 'trace_stats.json'}\nplot:  {args.out / 'plots' / 'trace_stats.png'}")


def schedule_bench(cfg) -> None:
    from edgegen.scheduling.bench import format_table, run_bench

    summary = run_bench(cfg)
    print(format_table(summary))
    print(f"\nsummary: {cfg.out / 'summary.json'}\nplots:   {cfg.out / 'plots'}/{{jct_vs_load,learning_curves,"
          "online_adaptation}.png")


def schedule_train(args) -> None:
    from edgegen.scheduling.bench import train_command

    summary = train_command(args)
    print(json.dumps({p: {ld: round(r["avg_jct_s"], 2) for ld, r in res.items()}
                      for p, res in summary["results"].items()}, indent=2))
    print(f"avg JCT (s) per policy and load; model: {summary['model']}")


def gdm_train(args) -> None:
    from edgegen.gdm.train import train_command

    summary = train_command(args)
    print(json.dumps({k: summary[k] for k in ("feature_fid", "real_floor_fid", "fid_ratio", "class_entropy",
                                              "precision", "recall", "train_wall_s")}, indent=2))
    print(f"\nsamples: {(args.resume or args.out) / 'plots' / 'samples.png'}")


def gdm_train_bench(cfg) -> None:
    from edgegen.gdm.train import format_table, run_bench

    summary = run_bench(cfg)
    print(format_table(summary))
    print(f"\nsummary: {cfg.out / 'summary.json'}\nplots:   {cfg.out / 'plots'}")


def _bench_command(module: str, *tables: str):
    """A command that runs `module.run_bench(cfg)`, prints the module's tables of the summary (functions named in
    `tables`) and its acceptance block, and says where the summary and plots are."""

    def command(cfg) -> None:
        import importlib

        mod = importlib.import_module(module)
        summary = mod.run_bench(cfg)
        for table in tables:
            print(getattr(mod, table)(summary))
        print(json.dumps(summary["acceptance"], indent=2))
        print(f"\nsummary: {cfg.out / 'summary.json'}\nplots:   {cfg.out / 'plots'}")

    return command


gdm_fed_bench = _bench_command("edgegen.gdm.fed_bench", "format_table")
gdm_ddpo = _bench_command("edgegen.gdm.ddpo_bench", "format_table")
gdm_detect_bench = _bench_command("edgegen.gdm.detect_bench", "format_attack_table", "format_detection_table")
cot_bench = _bench_command("edgegen.microservices.cot.bench", "format_table")


def cot_case_study(cfg) -> None:
    from edgegen.microservices.cot.case_study import format_table, run_case_study

    summary = run_case_study(cfg)
    print(format_table(summary))
    print(json.dumps(summary["verdict"], indent=2))
    print(f"\nsummary: {cfg.out / 'summary.json'}\nplot:    {cfg.out / 'plots' / 'case_study.png'}")


def serve_gateway(cfg) -> None:
    from edgegen.serve.gateway import serve

    serve(cfg)


def serve_worker(cfg) -> None:
    from edgegen.serve.worker import serve_worker as run

    run(cfg)


def serve_bench(cfg) -> None:
    from edgegen.serve.bench import format_table, run_bench

    summary = run_bench(cfg)
    print(format_table(summary))
    print(json.dumps(summary["acceptance"], indent=2))
    print(f"\nsummary: {cfg.out / 'summary.json'}\nplots:   {cfg.out / 'plots'}")


def report(args) -> None:
    from edgegen.report import write_report

    path = write_report(args)
    print(f"wrote {path}")


COMMANDS = {
    "aigc": {
        "bench": (BenchConfig, aigc_bench, "Benchmark heuristics, D2SAC, discrete SAC and SB3 peers."),
        "train": (TrainArgs, aigc_train, "Train one D2SAC agent (resumable)."),
        "speed": (SpeedArgs, aigc_speed, "Measure env steps/s, D2SAC act latency and update time."),
    },
    "fedtune": {
        "lora": {
            "bench": (LoraBenchConfig, fedtune_lora_bench, "Heterogeneous-rank federated LoRA: every method x seeds."),
            "train": (FedConfigArgs, fedtune_lora_train, "One federated LoRA run (resumable)."),
        },
        "kd": {
            "bench": (KDBenchConfig, fedtune_kd_bench, "Cross-modality KD fine-tuning vs baselines, T/λ sweep."),
        },
        "unlearn": {
            "bench": (UnlearnBenchConfig, fedtune_unlearn_bench,
                      "Unlearning a backdoored device: projection, FedOSD, ascent, DP vs retraining."),
        },
    },
    "moe": {
        "bench": (MoEBenchConfig, moe_bench, "MoE expert microservices: Lyapunov V sweep, baselines, bound check."),
        "traces": (TracesArgs, moe_traces, "Train the small MoE LM, record gate traces, print their statistics."),
    },
    "schedule": {
        "bench": (ScheduleBenchConfig, schedule_bench,
                  "DL-task scheduling: heuristics vs masked PPO / RLlib PPO on held-out workloads, online adaptation."),
        "train": (ScheduleTrainArgs, schedule_train, "Train one masked-PPO DL-task scheduler and test it."),
    },
    "gdm": {
        "train": (GdmTrainArgs, gdm_train, "Train one digits DDPM centrally (resumable)."),
        "train-bench": (GdmTrainBenchConfig, gdm_train_bench,
                        "Central digits DDPM over seeds: feature-FID vs the real floor, entropy, P/R."),
        "fed": {
            "bench": (GdmFedBenchConfig, gdm_fed_bench,
                      "Federated DDPM: fp32 FedAvg vs fixed-Q vs dynamic-Q with energy-optimal allocation."),
        },
        "ddpo": (GdmDDPOBenchConfig, gdm_ddpo,
                 "DDPO fine-tuning of the digits DDPM: class / set / diversity / multitask / mixed rewards, λ sweep."),
        "detect": {
            "bench": (GdmDetectBenchConfig, gdm_detect_bench,
                      "Backdoored federated DDPM: collaborative sampling, trigger detectors, ASR before/after."),
        },
    },
    "cot": {
        "bench": (CotBenchConfig, cot_bench,
                  "CoT microservice deployment: graph diffusion vs exact MILP, DP and greedy on held-out instances."),
        "case-study": (CaseStudyConfig, cot_case_study,
                       "Monolithic vs microservice CoT memory / latency (small Qwen2 measured, 7B projected)."),
    },
    "serve": {
        "": (ServeConfig, serve_gateway,
             "Live AaaS gateway: HTTP API over ASP worker processes, routed by D2SAC or a heuristic."),
        "worker": (WorkerConfig, serve_worker, "One ASP worker serving a conditional digits DDPM (any host)."),
        "bench": (ServeBenchConfig, serve_bench,
                  "Load test of the live service per policy on loopback, plus a worker-kill fault injection."),
    },
    "report": (ReportArgs, report, "Turn run directories into BENCHMARKS.md tables and figures."),
}


def _usage(commands: dict, prefix: str = "edgegen") -> list[str]:
    lines = []
    for name, entry in commands.items():
        if isinstance(entry, dict):
            lines += _usage(entry, f"{prefix} {name}")
        else:
            lines.append(f"  {prefix} {name} [--help]    {entry[2]}")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = "usage:\n" + "\n".join(_usage(COMMANDS))
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0
    entry, prog = COMMANDS, "edgegen"
    while isinstance(entry, dict):  # descend: area, then sub-area / verb
        word = argv.pop(0) if argv and not argv[0].startswith("-") else ""
        if word not in entry:
            print(f"{prog}: unknown command {word!r}; choose from {list(entry)}\n{usage}", file=sys.stderr)
            return 2
        entry, prog = entry[word], f"{prog} {word}"
    cls, fn, desc = entry
    args = tyro.cli(cls, args=argv, prog=prog, description=desc)
    try:
        fn(args)
    except (ConfigError, CheckpointError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
