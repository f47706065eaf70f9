"""`edgegen report`: run directories -> BENCHMARKS.md tables (mean ± std over seeds) and figures.

Every number in BENCHMARKS.md comes from a summary.json written by a run; nothing is typed by hand.
Figures are copied next to the report so that the report is self-contained in the repository.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import tyro

# Published reference returns of the AaaS heuristics on the canonical ASP set (10 episodes, mean ± std):
# ../shared/specs/aigc_env.md, measured on the reference implementation GitHub Lizonghang/AGOD.
AIGC_REFERENCE = {"random": (-136.8, 24.5), "round_robin": (219.4, 18.9), "crash_avoid": (355.7, 11.9),
                  "prophet": (557.9, 12.1)}


@dataclass(frozen=True)
class ReportArgs:
    """Collect summary.json files below the given directories into a markdown report."""

    runs: tyro.conf.Positional[tuple[Path, ...]] = (Path("runs"),)
    """Directories to scan (recursively) for bench and speed summaries."""
    out: Path = Path("BENCHMARKS.md")
    """Markdown file to write."""
    figures: Path = Path("benchmarks/figures")
    """Where figures are copied (relative paths in the report point here)."""
    readme: Path | None = Path("README.md")
    """README whose block between the results markers is replaced by the headline table (None: skip)."""
    notes: Path = Path("benchmarks/notes.md")
    """Prose appended to the report (gaps, caveats), followed by every benchmarks/notes/*.md (the folder named
    like this file without its suffix); every figure stays in the generated tables."""


def find_summaries(roots) -> list[tuple[Path, dict]]:
    found = []
    for root in roots:
        for path in sorted(Path(root).rglob("summary.json")):
            try:
                found.append((path.parent, json.loads(path.read_text())))
            except (OSError, json.JSONDecodeError):
                continue
    return found


def with_environment(section: list[str], run_dir: Path) -> list[str]:
    """A run subsection followed by a line naming where the runs below `run_dir` ran (Python, CPU, torch's kernel
    set, library versions), from the "environment" of their summary.json files; a value that differs between runs
    is given as all its values, "a / b". No line when no summary records it (runs older than the record)."""
    if not section:
        return section
    seen: dict[str, set[str]] = {}
    for _, summary in find_summaries([run_dir]):
        env = summary.get("environment")
        if not isinstance(env, dict):
            continue
        items = {"Python": env.get("python"), "CPU": f"{env.get('cpu')} × {env.get('cpu_count')}",
                 "torch kernels": env.get("torch_cpu_capability"), **env.get("libraries", {})}
        for name, value in items.items():
            if value is not None:  # an older record may lack a field
                seen.setdefault(name, set()).add(str(value))
    if not seen:
        return section
    parts = [f"{name} {' / '.join(sorted(values))}" for name, values in seen.items()]
    gap = [""] if section and section[-1].strip() else []
    return [*section, *gap, f"Environment of these runs: {', '.join(parts)}.", ""]


def aigc_bench_section(run_dir: Path, summary: dict, figures: Path, out_dir: Path) -> list[str]:
    res = summary["results"]
    cfg = json.loads((run_dir / "bench_config.json").read_text()) if (run_dir / "bench_config.json").exists() else {}
    prophet = res.get("prophet", {}).get("return_mean")
    lines = [f"### AaaS scheduling: `{run_dir}`", ""]
    kind = "canonical" if summary["asp_seed"] == 0 else "new draw"
    lines.append(f"ASP set `asp_seed={summary['asp_seed']}` ({kind}),"
                 f" {summary['seeds']} seed(s), {summary['test_episodes']} greedy test episodes per seed,"
                 f" {summary['total_env_steps']} env steps per learner and seed.")
    if cfg.get("workers"):
        lines.append(f"Jobs ran {cfg['workers']} at a time (one CPU core each).")
    if summary.get("command"):
        lines += ["", f"Command: `{summary['command']}`"]
    lines += ["", "| algorithm | return (mean ± std over seeds) | % of Prophet | crash steps / episode | "
              "train wall s / seed (mean, max) | env steps | seeds whose curve reached 95%, 100% of Prophet | "
              "train wall s to reach it (mean over those seeds) |",
              "|---|---|---|---|---|---|---|---|"]
    for algo, r in res.items():
        pct = f"{100 * r['return_mean'] / prophet:.1f}%" if prophet else "—"
        runs = per_seed_summaries(run_dir, algo)
        walls = [x["train_wall_s"] for x in runs]
        reach, reach_s = [], []
        for key, label in (("wall_s_to_95pct_prophet", "95%"), ("wall_s_to_prophet", "100%")):
            hit = [x[key] for x in runs if x.get(key) is not None]
            reach.append(f"{label}: {len(hit)}/{len(runs)}")
            reach_s.append(f"{label}: {sum(hit) / len(hit):.0f}" if hit else f"{label}: —")
        learned = r["env_steps"] > 0
        lines.append(
            f"| {algo} | {r['return_mean']:.1f} ± {r['return_std']:.1f} | {pct} | {r['crash_steps_mean']:.2f} | "
            + (f"{r['train_wall_s_mean']:.0f}, {max(walls):.0f} | " if learned and walls else "— | ")
            + f"{r['env_steps']} | " + (", ".join(reach) if learned else "—") + " | "
            + (", ".join(reach_s) if learned else "—") + " |")
    bound = capacity_free_bound_mean(summary["asp_seed"], cfg.get("first_seed", 0), summary["seeds"],
                                     summary["test_episodes"])
    lines += ["", f"Capacity-free upper bound on the same test episodes (Σ_tasks max_k U_k(T), ignores capacity, "
              f"not achievable): {bound:.1f}" + (f" = {100 * bound / prophet:.1f}% of Prophet." if prophet else ".")]
    if summary["asp_seed"] == 0:
        episodes = summary["seeds"] * summary["test_episodes"]
        lines += ["", f"Heuristics against the reference (edgegen: {episodes} test episodes; reference: 10 episodes, "
                  "../shared/specs/aigc_env.md):", "",
                  "| heuristic | edgegen | reference | difference |", "|---|---|---|---|"]
        for algo, (ref, ref_std) in AIGC_REFERENCE.items():
            if algo in res:
                ours = res[algo]["return_mean"]
                lines.append(f"| {algo} | {ours:.1f} | {ref} ± {ref_std} | {100 * (ours - ref) / abs(ref):+.1f}% |")
    return lines + copy_plots(run_dir, figures, out_dir) + [""]


def copy_plots(run_dir: Path, figures: Path, out_dir: Path) -> list[str]:
    """Copy a bench's plots/*.png next to the report; markdown image lines for them."""
    plots = sorted((run_dir / "plots").glob("*.png")) if (run_dir / "plots").exists() else []
    if not plots:
        return []
    figures.mkdir(parents=True, exist_ok=True)
    lines = [""]
    tag = "_".join(run_dir.parts[-2:])
    for p in plots:
        dest = figures / f"{tag}_{p.name}"
        shutil.copyfile(p, dest)
        lines.append(f"![{p.stem}]({_relative(dest, out_dir)})")
    return lines


def fedtune_lora_section(run_dir: Path, summary: dict, figures: Path, out_dir: Path) -> list[str]:
    """One heterogeneous-rank LoRA bench: every method's accuracy, bytes, latency, wall time; checks."""
    res, cfg = summary["results"], summary["config"]
    lines = [f"### Federated LoRA, {summary['tier']} tier: `{run_dir}`", "",
             f"{summary['seeds']} seed(s); {cfg['num_clients']} devices with ranks {list(cfg['client_ranks'])} "
             f"(cycled) and speeds {list(cfg['device_gflops'])} GFLOP/s; Dirichlet α = {cfg['dirichlet_alpha']}; "
             f"{cfg['rounds']} rounds of {cfg['local_steps']} local steps × batch {cfg['batch_size']}, lr {cfg['lr']}; "
             f"selection `{summary['selection']}`, bandwidth `{summary['bandwidth']}` over "
             f"{cfg['total_bandwidth_hz'] / 1e6:g} MHz. Bytes are totals per run (mean over seeds), float32.",
             "", f"Command: `{summary.get('command', '')}`", ""]
    if "bench_wall_s" in summary:
        lines += [f"Bench wall time: {summary['bench_wall_s'] / 60:.1f} min with {summary['workers']} job(s) at a "
                  "time, one CPU core each.", ""]
    lines += [
             "| method | test accuracy (mean ± std) | per seed | uplink MB / run | downlink MB / run | "
             "round latency s | equal-bandwidth s | latency cut | wall s / run (mean, max) | rejected, dropped |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m, r in res.items():
        seeds = ", ".join(f"{a:.3f}" for a in r["test_acc_per_seed"])
        lines.append(f"| {m} | {r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f} | {seeds} | "
                     f"{r['uplink_bytes'] / 1e6:.3f} | {r['downlink_bytes'] / 1e6:.3f} | "
                     f"{r['round_latency_s_mean']:.3f} | {r['round_latency_equal_s_mean']:.3f} | "
                     f"{r['latency_cut_vs_equal_pct']:.1f}% | {r['wall_s_mean']:.0f}, {r['wall_s_max']:.0f} | "
                     f"{r['rejected']}, {r['dropped']} |")
    checks = []
    base, flora = res.get("homlora_min"), res.get("flora")
    for m in ("hetlora_size", "hetlora_frobenius", "hetlora_slice"):
        if m not in res:
            continue
        if base:
            diff = res[m]["test_acc_mean"] - base["test_acc_mean"]
            checks.append(f"- {m} accuracy {'≥' if diff >= 0 else '<'} homlora_min: {res[m]['test_acc_mean']:.4f} vs "
                          f"{base['test_acc_mean']:.4f} ({100 * diff:+.2f} points).")
        if flora:
            ratio = res[m]["downlink_bytes"] / flora["downlink_bytes"]
            checks.append(f"- {m} downlink bytes = {100 * ratio:.1f}% of flora's.")
    if checks:
        lines += ["", "Acceptance checks (computed from the table):", "", *checks]
    return lines + copy_plots(run_dir, figures, out_dir) + [""]


def capacity_free_bound_mean(asp_seed: int, first_seed: int, seeds: int, episodes: int) -> float:
    import numpy as np

    from edgegen.aigc.bench import episode_seeds
    from edgegen.aigc.env import AaaSConfig, AaaSEnv, capacity_free_bound

    env = AaaSEnv(AaaSConfig(asp_seed=asp_seed))
    values = []
    for seed in range(first_seed, first_seed + seeds):
        for s in episode_seeds(seed, episodes):
            env.reset(seed=s)
            values.append(capacity_free_bound(env))
    return float(np.mean(values))


def per_seed_summaries(run_dir: Path, algo: str) -> list[dict]:
    out = []
    for path in sorted((run_dir / algo).glob("seed_*/summary.json")):
        out.append(json.loads(path.read_text()))
    return out


def aigc_speed_section(run_dir: Path, s: dict) -> list[str]:
    return [
        f"### AaaS speed: `{run_dir}`", "",
        f"Command: `{s.get('command', '')}` (torch threads: {s['torch_threads']}, actor: {s['actor']})", "",
        "| metric | value |", "|---|---|",
        f"| env steps/s (single env, random actions) | {s['env_steps_per_s']:,.0f} |",
        f"| D2SAC act p50, batch 1, greedy (ms) | {s['act_greedy_p50_ms']:.3f} |",
        f"| D2SAC act p50, batch 1, sampling (ms) | {s['act_sample_p50_ms']:.3f} |",
        f"| D2SAC update p50 at batch {s['update_batch_size']} (ms) | {s['update_p50_ms']:.1f} |", "",
    ]


def fedtune_kd_section(run_dir: Path, summary: dict, figures: Path, out_dir: Path) -> list[str]:
    """The KD bench: the four methods at the main (T, λ), then the KD sweep; acceptance checks."""
    cfg, res = summary["config"], summary["results"]
    mods = list(next(iter(res.values()))["per_modality_acc"])
    lines = [f"### Cross-modality knowledge distillation: `{run_dir}`", "",
             f"BBC News on {cfg['num_clients']} devices, modalities {list(cfg['modalities'])} alternating, "
             f"Dirichlet α = {cfg['dirichlet_alpha']}; {cfg['rounds']} rounds of {cfg['local_steps']} local Adam steps "
             f"(batch {cfg['batch_size']}, lr {cfg['lr']}); main comparison at T = {summary['temperature']:g}, "
             f"λ = {summary['lam']:g}, μ = {cfg['shared_task_weight']:g}; {summary['seeds']} seed(s). Accuracy: "
             "each device's prediction on the whole test set of its modality, averaged over the modality's devices.",
             "", f"Command: `{summary.get('command', '')}`", "",
             f"Bench wall time: {summary['bench_wall_s'] / 60:.1f} min with {summary['workers']} job(s) at a time.", "",
             "| run | T | λ | test accuracy (mean ± std) | " + " | ".join(mods)
             + " | KD local head | bytes / round | round delay s (min-max) | equal split s | ratio |",
             "|---|---|---|---|" + "---|" * len(mods) + "---|---|---|---|---|"]
    rows = [(m, summary["temperature"], summary["lam"], r) for m, r in res.items()]
    rows += [(n, r["temperature"], r["lam"], r) for n, r in summary["sweep"].items()]
    rows += [(n, summary["temperature"], summary["lam"], r) for n, r in summary.get("frozen_encoders", {}).items()]
    for name, t, lam, r in rows:
        local = ", ".join(f"{r['local_path_acc'][m]:.3f}" for m in mods) if "local_path_acc" in r else "—"
        kd_params = name.startswith("kd")  # T and λ only matter to the KD runs
        lines.append(f"| {name} | {t:g} | {lam:g} | " if kd_params else f"| {name} | — | — | ")
        lines[-1] += (f"{r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f} | "
                      + " | ".join(f"{r['per_modality_acc'][m]:.4f} ± {r['per_modality_acc_std'][m]:.4f}" for m in mods)
                      + f" | {local} | {r['bytes_per_round'] / 1e6:.2f} MB | {r['round_delay_s_mean']:.2f} | "
                      f"{r['round_delay_equal_s_mean']:.2f} | {r['delay_ratio_vs_equal']:.3f} |")
    checks = []
    kd, local, shared = res.get("kd"), res.get("local_only"), res.get("shared_no_kd")
    if kd and local:
        for m in mods:
            a, b = kd["per_modality_acc"][m], local["per_modality_acc"][m]
            checks.append(f"- kd vs local_only on {m}: {a:.4f} vs {b:.4f} ({'beats' if a > b else 'does not beat'}).")
    if kd and shared:
        a, b = kd["test_acc_mean"], shared["test_acc_mean"]
        checks.append(f"- kd vs shared_no_kd on average: {a:.4f} vs {b:.4f} ({'beats' if a > b else 'does not beat'}).")
    frozen = summary.get("frozen_encoders", {})
    if "kd_frozen_enc" in frozen and "local_only_frozen_enc" in frozen and "shared_no_kd_frozen_enc" in frozen:
        a, b, c = (frozen[n]["test_acc_mean"] for n in ("kd_frozen_enc", "local_only_frozen_enc",
                                                        "shared_no_kd_frozen_enc"))
        checks.append(f"- with frozen encoders (`*_frozen_enc` rows): kd {a:.4f}, local_only {b:.4f}, "
                      f"shared_no_kd {c:.4f}.")
    if kd:
        checks.append(f"- two-way delay, min-max allocation / equal split: {kd['delay_ratio_vs_equal']:.3f}.")
    if checks:
        lines += ["", "Acceptance checks (computed from the table):", "", *checks]
    return lines + copy_plots(run_dir, figures, out_dir) + [""]


# Issue 5's acceptance: |method − retrain| within these (fractions / AUC units), and ≥ 5× cheaper than retraining.
UNLEARN_TOLERANCE = {"backdoor_asr": 0.05, "forget_acc": 0.03, "mia_auc": 0.05, "remaining_acc": 0.02,
                     "test_acc": 0.02}
UNLEARN_MIN_SAVING = 5.0


def unlearn_misses(result: dict, retrain: dict) -> list[str]:
    """The acceptance targets an unlearning method's mean result misses against retraining ([] = all met)."""
    missed = [k for k, tol in UNLEARN_TOLERANCE.items() if abs(result[k] - retrain[k]) > tol]
    for key, name in (("bytes_ratio_vs_retrain", "bytes"), ("wall_ratio_vs_retrain", "wall time")):
        if not result[key] * UNLEARN_MIN_SAVING <= 1.0:
            missed.append(f"{name} saving")
    return missed


def fedtune_unlearn_section(run_dir: Path, summary: dict, figures: Path, out_dir: Path) -> list[str]:
    """The unlearning bench table (from the bench's own formatter) and the acceptance gaps to retraining."""
    from edgegen.fedtune.unlearn_bench import format_table

    res = summary["results"]
    lines = [f"### Federated unlearning, {summary['tier']} tier: `{run_dir}`", "",
             f"{summary['seeds']} seed(s), mean ± std. Command: `{summary.get('command', '')}`", "",
             f"Bench wall time: {summary['bench_wall_s'] / 60:.1f} min with {summary['workers']} job(s) at a time.",
             "", format_table(summary)]
    ref = res.get("retrain")
    checks = []
    for m in ("paper_projection", "fedosd", "gradient_ascent"):
        if ref is None or m not in res:
            continue
        r = res[m]
        gap = {k: r[k] - ref[k] for k in ("backdoor_asr", "forget_acc", "mia_auc", "remaining_acc", "test_acc")}
        checks.append(
            f"- {m} − retrain: backdoor ASR {100 * gap['backdoor_asr']:+.1f} points, forget accuracy "
            f"{100 * gap['forget_acc']:+.1f} points, MIA AUC {gap['mia_auc']:+.3f}, remaining accuracy "
            f"{100 * gap['remaining_acc']:+.1f} points, test accuracy {100 * gap['test_acc']:+.1f} points; cost vs "
            f"retraining: {1 / r['bytes_ratio_vs_retrain']:.1f}× fewer bytes, "
            f"{1 / r['wall_ratio_vs_retrain']:.1f}× less wall time"
            + (f", {1 / r['cpu_ratio_vs_retrain']:.1f}× less CPU time." if math.isfinite(
                r.get("cpu_ratio_vs_retrain") or float("nan")) else " (CPU time not recorded in this run)."))
        if m != "gradient_ascent":  # the baseline is not held to the targets
            miss = unlearn_misses(r, ref)
            checks[-1] += " Targets " + (f"**not met**: {', '.join(miss)}." if miss else "all **met**.")
    if checks:
        lines += ["", "Gaps to retraining from scratch (computed from the table; targets: backdoor ASR within 5 "
                  "points, forget accuracy within 3, MIA AUC within 0.05, remaining and test accuracy within 2 of "
                  "retraining, at least 5× fewer bytes and less wall time):", "", *checks]
    return lines + copy_plots(run_dir, figures, out_dir) + [""]


# Report sections after the AaaS one, in order: (summary.json "kind", heading, "module:function"). A section
# function takes (run_dir, summary, figures_dir, report_dir) and returns markdown lines; consecutive kinds that
# share a heading share the section. Each area registers its bench here with one line.
SECTIONS = [
    ("fedtune_lora_bench", "## 2. Heterogeneous-rank federated LoRA", "edgegen.report:fedtune_lora_section"),
    ("fedtune_kd_bench", "## 3. Knowledge-distillation federated fine-tuning across modalities",
     "edgegen.report:fedtune_kd_section"),
    ("fedtune_unlearn_bench", "## 4. Federated unlearning", "edgegen.report:fedtune_unlearn_section"),
    ("moe_bench", "## 5. MoE microservices (Lyapunov scheduling)", "edgegen.microservices.moe.bench:report_section"),
    ("cot_bench", "## 6. CoT microservices (graph diffusion deployment)",
     "edgegen.microservices.cot.bench:report_section"),
    ("cot_case_study", "## 6. CoT microservices (graph diffusion deployment)",
     "edgegen.microservices.cot.case_study:report_section"),
    ("gdm_train_bench", "## 7. Quantized federated diffusion training", "edgegen.gdm.train:report_section"),
    ("gdm_fed_bench", "## 7. Quantized federated diffusion training", "edgegen.gdm.fed_bench:report_section"),
    ("gdm_detect_bench", "## 8. Secure collaborative sampling (backdoor detection)",
     "edgegen.gdm.detect_bench:report_section"),
    ("gdm_ddpo_bench", "## 9. RL fine-tuning of diffusion models (DDPO)", "edgegen.gdm.ddpo_bench:report_section"),
    ("schedule_bench", "## 10. RL scheduling of deep-learning tasks", "edgegen.scheduling.bench:report_section"),
    ("serve_bench", "## 11. Live AaaS service", "edgegen.serve.bench:report_section"),
]


def _section_function(target: str):
    import importlib

    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _relative(path: Path, start: Path) -> str:
    try:
        return str(path.resolve().relative_to(start.resolve()))
    except ValueError:
        return str(path)


AIGC_HEADING = "## 1. AaaS scheduling (D2SAC)"
CARRIED_PREFIX = "_Carried over from the previous report"
CARRIED = (f"{CARRIED_PREFIX}: this run directory, or its summary.json (an unfinished run), was not found when the "
           "report was regenerated._")


def previous_subsections(report: Path) -> dict[str, list[tuple[str, list[str]]]]:
    """The run subsections of an earlier report: {"## heading": [(run_dir, lines), ...]}, where a run subsection
    starts at a "### ...: `run_dir`" line and ends at the next such line or "## " heading. The notes are not
    included."""
    if not report.is_file():
        return {}
    found: dict[str, list[tuple[str, list[str]]]] = {}
    heading, current = None, None
    for line in report.read_text().splitlines():
        if line.startswith("## "):
            heading, current = line, None
        elif line.startswith("### ") and heading is not None and heading != "## Notes" and line.endswith("`") \
                and line.count("`") >= 2:
            current = (line[line.rindex("`", 0, len(line) - 1) + 1:-1], [line])
            found.setdefault(heading, []).append(current)
        elif current is not None:
            current[1].append(line)
    return found


def carried_over(old: list[tuple[str, list[str]]], generated_dirs: set[str]) -> list[str]:
    """Old run subsections whose run directory was not regenerated, marked as carried over (once)."""
    lines = []
    for run_dir, block in old:
        if run_dir in generated_dirs:
            continue
        body = [line for line in block[1:] if not line.startswith(CARRIED_PREFIX)]  # also an older wording
        while body and not body[0].strip():
            body.pop(0)
        while body and not body[-1].strip():
            body.pop()
        lines += [block[0], "", CARRIED, "", *body, ""]
    return lines


def write_report(args: ReportArgs) -> Path:
    """Write the report from the summaries found below `args.runs`. A run subsection of the previous report whose
    run directory is no longer on this machine (the runs live outside the repository) is kept, marked as carried
    over, so that regenerating one area's figures does not drop the others."""
    out_dir = args.out.parent
    previous = previous_subsections(args.out)
    summaries = find_summaries(args.runs)
    bench = sorted([(d, s) for d, s in summaries if "results" in s and "asp_seed" in s],
                   key=lambda item: (item[1]["asp_seed"] != 0, str(item[0])))
    speed = [(d, s) for d, s in summaries if s.get("kind") == "aigc_speed"]
    fedtune = [(d, s) for d, s in summaries if s.get("kind") == "fedtune_lora_bench"]
    sections: dict[str, list[str]] = {AIGC_HEADING: []}
    generated: dict[str, set[str]] = {AIGC_HEADING: {str(d) for d, _ in bench + speed}}
    for d, s in bench:
        sections[AIGC_HEADING] += with_environment(aigc_bench_section(d, s, args.figures, out_dir), d)
    for d, s in speed:
        sections[AIGC_HEADING] += with_environment(aigc_speed_section(d, s), d)
    for kind, heading, target in SECTIONS:
        sections.setdefault(heading, [])
        for d, s in summaries:
            if s.get("kind") == kind:
                sections[heading] += with_environment(_section_function(target)(d, s, args.figures, out_dir), d)
                generated.setdefault(heading, set()).add(str(d))
    lines = ["# edgegen benchmarks", "",
             f"Generated by `edgegen report {' '.join(map(str, args.runs))}` on "
             f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC from the run directories' summary.json files. "
             "Do not edit by hand: re-run the commands below and `make report`.", ""]
    for heading, body in sections.items():
        body = body + carried_over(previous.get(heading, []), generated.get(heading, set()))
        if body:
            lines += [heading, "", *body]
    notes = [args.notes] if args.notes.is_file() else []
    notes += sorted(args.notes.with_suffix("").glob("*.md"))  # benchmarks/notes/<area>.md, one file per area
    if notes:
        lines += ["## Notes", ""]
        for path in notes:
            lines += [path.read_text().strip(), ""]
    if not summaries and not previous:
        lines.append("No run directories found.")
    args.out.write_text("\n".join(lines).rstrip() + "\n")
    if args.readme is not None and args.readme.exists() and (bench or fedtune):
        update_readme(args.readme, bench, args.out, fedtune)
    return args.out


README_BEGIN, README_END = "<!-- results:begin (edgegen report) -->", "<!-- results:end -->"
README_LORA = "Heterogeneous-rank federated LoRA, from"


def update_readme(readme: Path, bench: list[tuple[Path, dict]], report: Path,
                  fedtune: list[tuple[Path, dict]] | None = None) -> None:
    """Replace the README's results block with headline rows: each AaaS bench's algorithms, then each
    federated LoRA bench's methods. A part whose runs are all missing keeps its earlier rows (carried over,
    as in the report)."""
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        return
    head, rest = text.split(README_BEGIN, 1)
    old, tail = rest.split(README_END, 1)
    old = old.rstrip("\n")
    cut = old.find("\n\n" + README_LORA)
    old_aigc, old_lora = (old, "") if cut < 0 else (old[:cut], old[cut:])
    aigc = "\n" + "\n".join(_readme_aigc_rows(bench, report)) if bench else old_aigc
    lora = old_lora
    if fedtune:
        block = [f"{README_LORA} [{report.name}]({report.name}):", "",
                 "| tier | selection | seeds | method | test accuracy (mean ± std) | uplink MB / run | "
                 "downlink MB / run | round latency s (min-max bandwidth) | vs equal bandwidth |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for _, summary in fedtune:
            for m, r in summary["results"].items():
                block.append(f"| {summary['tier']} | {summary['selection']} | {summary['seeds']} | {m} | "
                             f"{r['test_acc_mean']:.4f} ± "
                             f"{r['test_acc_std']:.4f} | {r['uplink_bytes'] / 1e6:.2f} | "
                             f"{r['downlink_bytes'] / 1e6:.2f} | {r['round_latency_s_mean']:.3f} | "
                             f"{-r['latency_cut_vs_equal_pct']:+.1f}% |")
        lora = "\n\n" + "\n".join(block)
    readme.write_text(head + README_BEGIN + aigc + lora + "\n" + README_END + tail)


def _readme_aigc_rows(bench: list[tuple[Path, dict]], report: Path) -> list[str]:
    rows = ["| ASP set | algorithm | return (mean ± std over seeds) | % of Prophet | crash steps / episode | "
            "train wall s / seed |", "|---|---|---|---|---|---|"]
    for _, summary in bench:
        prophet = summary["results"].get("prophet", {}).get("return_mean")
        for algo, r in summary["results"].items():
            pct = f"{100 * r['return_mean'] / prophet:.1f}%" if prophet else "—"
            wall = f"{r['train_wall_s_mean']:.0f}" if r["env_steps"] else "—"
            rows.append(f"| {summary['asp_seed']} | {algo} | {r['return_mean']:.1f} ± {r['return_std']:.1f} | {pct} | "
                        f"{r['crash_steps_mean']:.2f} | {wall} |")
    return [f"AaaS scheduling, from [{report.name}]({report.name}) "
            f"({bench[0][1]['seeds']} seeds, {bench[0][1]['total_env_steps']} env steps per learner):", "", *rows]
