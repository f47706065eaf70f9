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
from edgegen.report import ReportArgs


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
    "report": (ReportArgs, report, "Turn run directories into BENCHMARKS.md tables and figures."),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = COMMANDS
    usage = "usage: edgegen {" + ",".join(commands) + "} ...\n  edgegen aigc {bench,train,speed} [--help]\n" \
            "  edgegen report [--help]"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0
    area = argv.pop(0)
    if area not in commands:
        print(f"edgegen: unknown area {area!r}; choose from {list(commands)}\n{usage}", file=sys.stderr)
        return 2
    entry = commands[area]
    if isinstance(entry, dict):
        if not argv or argv[0] not in entry:
            verb = argv[0] if argv else ""
            print(f"edgegen {area}: unknown command {verb!r}; choose from {list(entry)}", file=sys.stderr)
            return 2
        verb = argv.pop(0)
        cls, fn, desc = entry[verb]
        prog = f"edgegen {area} {verb}"
    else:
        cls, fn, desc = entry
        prog = f"edgegen {area}"
    args = tyro.cli(cls, args=argv, prog=prog, description=desc)
    try:
        fn(args)
    except (ConfigError, CheckpointError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
