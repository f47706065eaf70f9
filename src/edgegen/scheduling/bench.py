"""`edgegen schedule bench` / `train`: heuristics, masked PPO and RLlib PPO on held-out DL workloads.

Protocol
    Training (learned policies only): episodes of the training mixes (``train_mixes``, default inference-heavy,
    training-heavy, data-heavy) at loads drawn from ``train_loads``, from seeds derived from the run seed under
    "train". Test: ``test_episodes`` episodes per load of the held-out mix ``test_mix`` (default ``balanced``, never
    trained on) from seeds derived under "test", identical for every policy. Each seed's value is the mean over its
    test episodes; the summary reports mean and std over seeds.
    ``lower_bound`` is :func:`edgegen.scheduling.heuristics.lower_bound` on the same test episodes.
    Online adaptation (job ``online``): a masked-PPO specialist trained on (``pre_mix``, ``pre_load``) alone
    schedules a stream whose workload shifts to (``post_mix``, ``post_load``), which it never saw; a frozen copy vs
    a copy that keeps learning (:func:`edgegen.scheduling.ppo.online_adaptation`).

Layout: OUT/<job>/seed_<s>/ is one RunDir per (job, seed) with jobs ``heuristics``, ``masked_ppo`` (training,
curve, test, model in ckpt/model.zip), ``rllib_ppo``, ``rollout_oracle`` and ``online`` (the specialist in
ckpt/specialist.zip, its curve, the stream results); OUT/summary.json (kind
``schedule_bench``) has ``{"results": {LOAD: {POLICY: {avg_jct_s, avg_jct_s_std, p95_jct_s, makespan_s,
utilization, ...}}}, "acceptance": {LOAD: {best_heuristic, masked_ppo_gain_pct, rllib_ppo_gain_pct}},
"online": {...}}``. A finished (job, seed) is skipped on a re-run; an interrupted training restarts that job, except
for masked PPO's rollout-labelled warm-start decisions (most of its time), which resume from
``masked_ppo/seed_<s>/ckpt/warm_start_labels.npz`` (saved every two minutes; ppo.warm_start_labels).
When only test settings changed (TEST_ONLY_FIELDS: the loads, the test mix or episodes, the episodes' version),
``--reevaluate`` re-runs the finished jobs on the new test episodes without retraining: masked PPO and RLlib PPO are
tested from their saved models (an RLlib job with the "mlp" network, or finished before it saved one, retrains), the
online job plays its stream again with its saved specialist, the other jobs re-run in full.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgegen.config import ConfigError, check_choice, check_range
from edgegen.jobs import earlier_wall_s, run_jobs
from edgegen.runs import RunDir, current_command, save_figure
from edgegen.scheduling.env import MIXES, DLScheduleConfig, DLScheduleEnv, run_episode
from edgegen.scheduling.heuristics import (
    HEURISTICS,
    REFERENCE_RULES,
    heuristic_policy,
    lower_bound,
    rollout_oracle_policy,
    sampled_rollout_policy,
)
from edgegen.scheduling.ppo import FROZEN_OF, OnlineConfig, PPOConfig, check_rollout_rules, recovery_episode
from edgegen.scheduling.rllib import NETWORKS as RLLIB_NETWORKS
from edgegen.seeding import derive_seed

LEARNED = ("masked_ppo", "rllib_ppo")
ORACLE = "rollout_oracle"
"""Clairvoyant one-step rollout over every valid action with MCT as base policy (heuristics.rollout_oracle_policy):
a reference, not a competitor, since it sees the episode's future arrivals."""
SAMPLED = "sampled_rollout"
"""Online one-step rollout over the warm-start teachers' decisions (the hint rules if masked PPO starts from random
weights) with Monte-Carlo futures (heuristics.sampled_rollout_policy with the base and futures of the bench's
PPOConfig): the teacher of masked PPO's rollout-labelled warm start. It does not see the future, but it simulates
(knows the load and mix) and costs rollouts at every contested decision, so it is a reference row, not a
heuristic."""
ROLLOUTS = (SAMPLED, ORACLE)
REFERENCES = (*REFERENCE_RULES, *ROLLOUTS)
"""Reference rows: reported with their gain over the best heuristic, never counted as a heuristic."""
POLICIES = (*HEURISTICS, *REFERENCES, *LEARNED)
METRICS = ("avg_jct_s", "p95_jct_s", "makespan_s", "utilization")
REFERENCE_HEURISTICS = ("mct", "min_min")  # yardsticks logged on the learning curves
ONLINE_ROWS = ("frozen", "online", "frozen_fresh", "online_greedy")
EPISODES_VERSION = 2
"""Version of how test and stream episodes are drawn, stored with every finished job. 2: env.reset draws a load or
mix only when the options do not give one, so a test episode no longer depends on the length of the load list
(version 1, unstored, drew from the list even when the load was given)."""


@dataclass(frozen=True)
class ScheduleBenchConfig:
    """DL-task scheduling bench: every policy on held-out workloads at several loads."""

    out: Path = Path("runs/schedule-bench")
    """Bench directory (OUT/<job>/seed_<s> per job; finished jobs are skipped on a re-run, which is refused if a
    setting their results depend on changed: see JOB_FIELDS, and `reevaluate` for changed test settings)."""
    load: tuple[float, ...] = (0.5, 0.8, 0.95)
    """Test loads (fraction of the pool's fluid capacity)."""
    seeds: int = 3
    """Number of seeds."""
    first_seed: int = 0
    """Seeds are first_seed .. first_seed + seeds - 1."""
    policies: tuple[str, ...] = POLICIES
    """Policies: heuristics fifo sjf lpt random round_robin met mct min_min max_min heft; references tied_spt and
    tied_srpt (rules derived here, heuristics.tied_spt / tied_srpt), the simulating sampled_rollout and the
    clairvoyant rollout_oracle; learned masked_ppo, rllib_ppo.
    lower_bound is always reported."""
    test_mix: str = "balanced"
    """Held-out test workload mix (must not be among train_mixes)."""
    test_episodes: int = 10
    """Test episodes per seed and load (identical for every policy)."""
    train_mixes: tuple[str, ...] = ("inference_heavy", "training_heavy", "data_heavy")
    """Workload mixes of the training episodes."""
    train_loads: tuple[float, ...] = (0.5, 0.65, 0.8, 0.9, 0.95, 1.0)
    """Loads of the training episodes (one drawn per episode)."""
    num_jobs: int = 60
    """Jobs per episode."""
    dag: bool = True
    """DAG jobs (True) or single-task jobs."""
    window: int = 12
    """Visible ready tasks."""
    hints: tuple[str, ...] = ("mct", "min_min", "tied_spt", "tied_srpt")
    """Heuristics whose current decision is an observation feature of the learned policies (env `hints`)."""
    reward_baseline: str = "mct"
    """Training reward relative to this heuristic on the same episode (env `reward_baseline`, an input-dependent
    baseline; "" = Decima's plain reward). Test metrics do not depend on it."""
    ppo: PPOConfig = field(default_factory=lambda: PPOConfig(warm_start="mct+min_min+tied_spt+tied_srpt",
                                                             learning_rate=1e-4, curve_episodes=12,
                                                             warm_start_labels="rollout", rollout_base="tied_srpt",
                                                             warm_start_epochs=60))
    """Masked PPO hyperparameters and budget; the bench starts PPO from a behaviour clone of MCT, Min-Min and the
    reference rules tied_spt and tied_srpt whose every state is labelled with the sampled rollout's choice among
    their decisions, finished with tied_srpt (``--ppo.warm-start-labels all`` for the plain mixture,
    ``--ppo.warm-start ""`` for random weights, Decima's recipe). Learning rate, curve episodes, the teachers, the
    rollout labels and base were chosen on validation seeds 100-101, the cloning epochs on seed 100
    (benchmarks/notes/scheduling.md)."""
    rllib_env_steps: int = 100_000
    """RLlib PPO training budget in env steps."""
    rllib_train_batch_size: int = 2000
    """RLlib PPO train batch per iteration (env steps)."""
    rllib_network: str = "pair"
    """RLlib RLModule: "pair" (the masked-PPO path's pair-scoring network, `ppo.hidden_size` wide, random initial
    weights) or "mlp" (RLlib's example action-masking MLP on the flat observation)."""
    online: bool = True
    """Run the online-adaptation experiment (a job of its own; only when masked_ppo is among the policies)."""
    online_cfg: OnlineConfig = field(default_factory=OnlineConfig)
    """Online-adaptation experiment."""
    workers: int = 1
    """Parallel jobs; > 1 runs (job, seed) pairs as Ray tasks, one CPU each."""
    ray_address: str | None = None
    """Ray cluster address (default: a local Ray with `workers` CPUs)."""
    quiet: bool = False
    """Disable progress bars."""
    reevaluate: bool = False
    """Re-run finished jobs whose stored settings differ from this run's only in test settings (load, test_mix,
    test_episodes, the rules asked for, or how episodes are drawn: EPISODES_VERSION) on this run's test episodes,
    re-using the learned policies' saved models and the online job's saved specialist instead of retraining them."""

    def validate(self) -> None:
        unknown = [p for p in self.policies if p not in POLICIES]
        if unknown:
            raise ConfigError(f"policies: unknown {unknown}; known: {list(POLICIES)}")
        if not self.policies:
            raise ConfigError("policies must name at least one policy")
        if not self.load:
            raise ConfigError("load must hold at least one load")
        for x in self.load:
            check_range("load[*]", x, 0.05, 2.0)
        check_range("seeds", self.seeds, 1, 10_000)
        check_range("test_episodes", self.test_episodes, 1, 100_000)
        check_choice("test_mix", self.test_mix, MIXES)
        if self.test_mix in self.train_mixes and any(p in LEARNED for p in self.policies):
            raise ConfigError(f"test_mix {self.test_mix!r} is among train_mixes {list(self.train_mixes)}; the test "
                              "workload must be held out")
        check_range("rllib_env_steps", self.rllib_env_steps, 1, 1 << 40)
        check_range("rllib_train_batch_size", self.rllib_train_batch_size, 32, 1 << 30)
        check_choice("rllib_network", self.rllib_network, RLLIB_NETWORKS)
        check_range("workers", self.workers, 1, 4096)
        self.ppo.validate()
        if SAMPLED in self.policies:
            if not self.rollout_candidates():
                raise ConfigError(f"policies: {SAMPLED} needs candidate rules (ppo.warm_start or hints)")
            check_rollout_rules(f"ppo.warm_start / ppo.rollout_base ({SAMPLED})",
                                (*self.rollout_candidates(), self.ppo.rollout_base))
        self.online_cfg.validate()
        self.env_config(train=True).validate()
        self.env_config(train=False).validate()

    def online_env_config(self) -> DLScheduleConfig:
        """The online job's env: the training env with the online experiment's reward baseline and hints (its
        mixes and loads come from the episodes' options)."""
        return dataclasses.replace(self.env_config(train=True), reward_baseline=self.online_cfg.reward_baseline,
                                   hints=self.online_cfg.hints)

    def rollout_candidates(self) -> tuple[str, ...]:
        """Candidate rules of the sampled_rollout row: the warm-start teachers, else the hint rules."""
        return tuple(self.ppo.warm_start_names()) or self.hints

    def env_config(self, train: bool) -> DLScheduleConfig:
        mixes, loads = (self.train_mixes, self.train_loads) if train else ((self.test_mix,), self.load)
        return DLScheduleConfig(num_jobs=self.num_jobs, dag=self.dag, window=self.window, mixes=mixes, loads=loads,
                                hints=self.hints, reward_baseline=self.reward_baseline if train else "")


def test_episodes(cfg: ScheduleBenchConfig, seed: int, load: float) -> list[tuple[int, dict]]:
    return [(derive_seed(seed, "test", load, i), {"load": load, "mix": cfg.test_mix}) for i in range(cfg.test_episodes)]


def evaluate(cfg: ScheduleBenchConfig, seed: int, act, plain: bool = False) -> dict:
    """{load: {metric: mean over the seed's test episodes, "avg_jct_s_episodes": each episode's avg JCT}} of one
    policy; `plain`: without the hint features (a policy that does not read the observation; same dynamics, cheaper
    steps)."""
    env_cfg = cfg.env_config(train=False)
    env = DLScheduleEnv(dataclasses.replace(env_cfg, hints=()) if plain else env_cfg)
    out = {}
    for load in cfg.load:
        eps = [run_episode(env, act, s, o) for s, o in test_episodes(cfg, seed, load)]
        out[str(load)] = {**{m: float(np.mean([e[m] for e in eps])) for m in METRICS},
                          "avg_jct_s_episodes": [e["avg_jct_s"] for e in eps]}
    return out


def curve_reference(cfg: ScheduleBenchConfig, seed: int) -> dict[str, float]:
    from edgegen.scheduling.ppo import curve_seeds

    env = DLScheduleEnv(cfg.env_config(train=True))
    return {h: float(np.mean([run_episode(env, heuristic_policy(h, seed), s)["avg_jct_s"]
                              for s in curve_seeds(seed, cfg.ppo.curve_episodes)])) for h in REFERENCE_HEURISTICS}


def config_json(cfg: ScheduleBenchConfig) -> dict:
    """The bench config as a job's config.json stores it (JSON types: lists for tuples, strings for paths)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def run_job(cfg: ScheduleBenchConfig, job: str, seed: int, command: str, reevaluate: bool = False) -> dict:
    """One (job, seed): job is "heuristics", a rollout row, "masked_ppo", "rllib_ppo" or "online". Writes
    OUT/job/seed_<s>/summary.json. A finished job is returned as stored unless `reevaluate`: then masked PPO is
    tested again from ckpt/model.zip, RLlib PPO from ckpt/module.pt if it saved one ("pair" network), and the
    online job's stream replayed with ckpt/specialist.zip (keeping the stored training figures, under the stored
    training command); every other job runs again in full."""
    import torch

    torch.set_num_threads(1)
    run = RunDir(cfg.out / job / f"seed_{seed}", tensorboard=False)
    if (run.path / "summary.json").exists():
        if not reevaluate:
            return run.read_summary()
        if job in ("masked_ppo", "online") or (job == "rllib_ppo" and (run.ckpt / "module.pt").exists()):
            return reevaluate_trained(cfg, job, seed, run, command)
        (run.path / "summary.json").unlink()  # runs again in full; an interruption leaves it unfinished
    run.write_config(job_config(cfg, job, seed))
    if job == "heuristics":
        results: dict = {}
        t0 = time.perf_counter()
        for name in (p for p in cfg.policies if p in HEURISTICS or p in REFERENCE_RULES):
            act = heuristic_policy(name, derive_seed(seed, "heuristic", name))
            results[name] = evaluate(cfg, seed, act, plain=True)
        env = DLScheduleEnv(cfg.env_config(train=False))
        bound = {}
        for load in cfg.load:
            values = []
            for s, o in test_episodes(cfg, seed, load):
                env.reset(seed=s, options=o)
                values.append(lower_bound(**env.instance()))
            bound[str(load)] = {m: float(np.mean([v[m] for v in values])) for m in ("avg_jct_s", "makespan_s")}
        results["lower_bound"] = bound
        return run.write_summary({"results": results, "test_wall_s": time.perf_counter() - t0}, seed, command)
    if job in ROLLOUTS:
        t0 = time.perf_counter()
        act = rollout_oracle_policy("mct") if job == ORACLE else sampled_rollout_policy(
            cfg.rollout_candidates(), cfg.ppo.rollout_base, cfg.ppo.rollout_futures,
            derive_seed(seed, "sampled_rollout"))
        results = {job: evaluate(cfg, seed, act, plain=True)}
        return run.write_summary({"results": results, "test_wall_s": time.perf_counter() - t0}, seed, command)
    run.truncate_metrics(-1)  # an interrupted training restarts, resuming only its warm-start labels (ckpt/)
    reference = curve_reference(cfg, seed)
    if job == "masked_ppo":
        from edgegen.scheduling.ppo import greedy_policy, train

        model, info = train(cfg.ppo, cfg.env_config(train=True), seed, run, progress=False, reference=reference)
        model.save(run.ckpt / "model.zip")
        t0 = time.perf_counter()
        res = evaluate(cfg, seed, greedy_policy(model))
        summary = {"results": {job: res}, **info, "test_wall_s": time.perf_counter() - t0}
        return run.write_summary(summary, seed, command)
    if job == "online":
        from edgegen.scheduling.ppo import online_adaptation, train_specialist

        env_cfg = cfg.online_env_config()
        model, info = train_specialist(cfg.online_cfg, cfg.ppo, env_cfg, seed, run)
        model.save(run.ckpt / "specialist.zip")
        online = online_adaptation(run.ckpt / "specialist.zip", cfg.online_cfg, env_cfg, seed, cfg.ppo)
        return run.write_summary({"online": online, "specialist": info}, seed, command)
    if job == "rllib_ppo":
        from edgegen.scheduling.ppo import curve_seeds
        from edgegen.scheduling.rllib import greedy_policy as rllib_greedy
        from edgegen.scheduling.rllib import save_module, train_rllib

        curve_env = DLScheduleEnv(cfg.env_config(train=True))

        def curve(step: int, wall: float, act) -> None:
            jct = float(np.mean([run_episode(curve_env, act, s)["avg_jct_s"]
                                 for s in curve_seeds(seed, cfg.ppo.curve_episodes)]))
            run.log(step, curve_avg_jct_s=jct, train_wall_s=wall, **{f"{k}_avg_jct_s": v for k, v in reference.items()})
            return jct

        algo, module, info = train_rllib(cfg.env_config(train=True), seed, cfg.rllib_env_steps, curve=curve,
                                         keep_best=cfg.ppo.keep_best, train_batch_size=cfg.rllib_train_batch_size,
                                         gamma=cfg.ppo.gamma, hidden=cfg.ppo.hidden_size, network=cfg.rllib_network)
        if cfg.rllib_network == "pair":
            save_module(module, run.ckpt / "module.pt")
        t0 = time.perf_counter()
        res = evaluate(cfg, seed, rllib_greedy(module))
        algo.stop()
        return run.write_summary({"results": {job: res}, **info, "test_wall_s": time.perf_counter() - t0}, seed,
                                 command)
    raise ValueError(f"unknown job {job!r}")


def job_config(cfg: ScheduleBenchConfig, job: str, seed: int) -> dict:
    return {"bench": config_json(cfg), "job": job, "seed": seed, "episodes": EPISODES_VERSION}


def reevaluate_trained(cfg: ScheduleBenchConfig, job: str, seed: int, run: RunDir, command: str) -> dict:
    """A finished masked_ppo / rllib_ppo / online job tested again from its saved model (run_job's `reevaluate`).
    The new summary is written before the new config, so an interruption leaves the job to be re-evaluated again."""
    from sb3_contrib import MaskablePPO

    from edgegen.scheduling.ppo import greedy_policy, online_adaptation

    trained = run.read_summary()
    kept = {k: v for k, v in trained.items() if k not in ("command", "seed", "git_sha", "edgegen_version",
                                                          "environment", "results", "test_wall_s", "online")}
    kept.setdefault("trained_by", {k: trained.get(k) for k in ("command", "git_sha", "edgegen_version")})
    t0 = time.perf_counter()
    if job in LEARNED:
        if job == "masked_ppo":
            act = greedy_policy(MaskablePPO.load(run.ckpt / "model.zip", device="cpu"))
        else:
            from edgegen.scheduling.rllib import greedy_policy as rllib_greedy
            from edgegen.scheduling.rllib import load_module

            act = rllib_greedy(load_module(cfg.env_config(train=True), run.ckpt / "module.pt", cfg.ppo.hidden_size))
        kept["results"] = {job: evaluate(cfg, seed, act)}
        kept["test_wall_s"] = time.perf_counter() - t0
    else:
        env_cfg = cfg.online_env_config()
        kept["online"] = online_adaptation(run.ckpt / "specialist.zip", cfg.online_cfg, env_cfg, seed, cfg.ppo)
    out = run.write_summary(kept, seed, command)
    run.write_config(job_config(cfg, job, seed))
    return out


_TEST_FIELDS = ("load", "test_mix", "test_episodes", "num_jobs", "dag", "window")
_TRAIN_FIELDS = (*_TEST_FIELDS, "train_mixes", "train_loads", "hints", "reward_baseline", "ppo")
JOB_FIELDS = {"heuristics": _TEST_FIELDS, "masked_ppo": _TRAIN_FIELDS,
              "rllib_ppo": (*_TRAIN_FIELDS, "rllib_env_steps", "rllib_train_batch_size", "rllib_network"),
              ORACLE: _TEST_FIELDS, SAMPLED: (*_TEST_FIELDS, "hints", "ppo"),
              "online": ("num_jobs", "dag", "window", "ppo", "online_cfg")}  # its own mixes, loads and hints
"""The ScheduleBenchConfig fields a finished job's results depend on (and, for the heuristics job, which rules it
ran: see changed_fields)."""
TEST_ONLY_FIELDS = ("load", "test_mix", "test_episodes", "policies", "episodes")
"""Changed fields that `--reevaluate` may re-run a finished job for: they change its test episodes (or, for the
heuristics job, which rules it ran), not its training. "episodes" is EPISODES_VERSION. The online job's stream
depends on no bench test field, only on the version."""


def changed_fields(stored: dict, current: dict, job: str) -> list[str]:
    """Dotted names of the fields in JOB_FIELDS[job] whose value in the `stored` bench config (a finished job's
    config.json) differs from the `current` one (both as JSON); a field missing from the stored config counts as
    changed. The heuristics job has changed `policies` if the current run asks for a rule it did not run."""
    def flat(value, name: str) -> dict:
        if isinstance(value, dict):
            return {k: v for key, sub in value.items() for k, v in flat(sub, f"{name}.{key}").items()}
        return {name: value}

    def relevant(cfg: dict) -> dict:
        return {k: v for name in JOB_FIELDS[job] for k, v in flat(cfg.get(name), name).items()}

    old, new = relevant(stored), relevant(current)
    changed = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
    rules = [p for p in current["policies"] if p in HEURISTICS or p in REFERENCE_RULES]
    if job == "heuristics" and not set(rules) <= set(stored.get("policies", [])):
        changed.add("policies")
    return sorted(changed)


def check_finished_jobs(cfg: ScheduleBenchConfig, jobs: list[str], seeds: list[int]) -> set[tuple[str, int]]:
    """A finished (job, seed) is skipped on a re-run: refuse when its stored config differs from this run's in a
    field its results depend on, so that no table mixes settings. With `cfg.reevaluate`, the finished jobs that
    differ only in TEST_ONLY_FIELDS are returned, to be re-run without retraining."""
    current = config_json(cfg)
    again = set()
    for job in jobs:
        for seed in seeds:
            path = cfg.out / job / f"seed_{seed}"
            if not (path / "summary.json").exists():
                continue
            stored = RunDir(path, tensorboard=False).read_config()
            changed = changed_fields(stored["bench"], current, job)
            if stored.get("episodes", 1) != EPISODES_VERSION:
                changed.append("episodes")
            if not changed:
                continue
            test_only = set(changed) <= set(TEST_ONLY_FIELDS)
            if test_only and cfg.reevaluate:
                again.add((job, seed))
                continue
            hint = (" --reevaluate re-runs it on this run's test episodes without retraining, or use another --out."
                    if test_only else " Use another --out, or move that directory aside to re-run it.")
            raise ConfigError(f"{path} finished with other settings ({', '.join(changed[:6])}"
                              f"{', ...' if len(changed) > 6 else ''} differ); re-running would mix them in one "
                              "table." + hint)
    return again


def jobs_of(cfg: ScheduleBenchConfig) -> list[str]:
    jobs = [j for j in ("masked_ppo", "rllib_ppo", *ROLLOUTS) if j in cfg.policies]
    online = ["online"] if cfg.online and "masked_ppo" in cfg.policies else []
    return jobs + online + ["heuristics"]  # longest first


def run_bench(cfg: ScheduleBenchConfig) -> dict:
    cfg.validate()
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "bench_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
    command = current_command()
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
    earlier_s = earlier_wall_s(cfg.out)
    started = time.perf_counter()
    if "rllib_ppo" in cfg.policies:
        from edgegen.scheduling.rllib import require_rllib

        require_rllib(cfg.rllib_network)
    again = check_finished_jobs(cfg, jobs_of(cfg), seeds)
    jobs = [(cfg, j, s, command, (j, s) in again) for j in jobs_of(cfg) for s in seeds]
    done = run_jobs(run_job, jobs, cfg.workers, cfg.ray_address, cfg.quiet,
                    describe=lambda job, r: f"{job[1]} seed {job[2]} done")
    per_seed = {(job[1], job[2]): r for job, r in done.items()}
    summary = aggregate(cfg, per_seed, seeds)
    summary.update({"command": command, "bench_wall_s": earlier_s + time.perf_counter() - started,
                    "workers": cfg.workers})
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    plot_jct_vs_load(cfg, summary)
    plot_learning_curves(cfg, seeds)
    if summary.get("online"):
        plot_online(cfg, summary)
    return summary


def first_curve_avg_jct_s(run_dir: Path) -> float:
    """The first learning-curve point of a learned job (masked PPO: step 0, the warm-started policy)."""
    with open(run_dir / "metrics.csv") as f:
        return float(next(csv.DictReader(f))["curve_avg_jct_s"])


def gain_interval_pct(jct_episodes: dict[str, np.ndarray], name: str, heuristics: list[str],
                      resamples: int = 2000, level: float = 0.95, seed: int = 0) -> list[float]:
    """Percentile-bootstrap interval of `name`'s gain (%) in average JCT over the best of `heuristics`, the
    acceptance figure 100 (best - name) / best. Each array holds (seeds, episodes) average JCTs of the same test
    episodes. Episodes are resampled within each seed, the same indices for every policy (the comparison is
    paired), and the best heuristic is chosen again in every resample. The trained policies of the seeds stay
    fixed: the interval is the test episodes' sampling noise, not the spread over training seeds."""
    rng = np.random.default_rng(seed)
    n_seeds, n_episodes = jct_episodes[name].shape
    idx = rng.integers(n_episodes, size=(resamples, n_seeds, n_episodes))
    rows = np.arange(n_seeds)[None, :, None]

    def means(jct: np.ndarray) -> np.ndarray:  # (resamples,) mean over seeds of each seed's resampled mean
        return jct[rows, idx].mean(axis=(1, 2))

    best = np.min([means(jct_episodes[h]) for h in heuristics], axis=0)
    gain = 100.0 * (best - means(jct_episodes[name])) / best
    return [float(x) for x in np.quantile(gain, [(1 - level) / 2, (1 + level) / 2])]


def aggregate(cfg: ScheduleBenchConfig, per_seed: dict, seeds: list[int]) -> dict:
    names = ([p for p in cfg.policies if p in HEURISTICS] + ["lower_bound"]
             + [p for p in (*REFERENCES, *LEARNED) if p in cfg.policies])
    results: dict = {}
    for load in map(str, cfg.load):
        results[load] = {}
        for name in names:
            job = name if name in (*ROLLOUTS, *LEARNED) else "heuristics"
            rows = [per_seed[(job, s)]["results"][name][load] for s in seeds]
            r: dict = {}
            for m in (m for m in rows[0] if not m.endswith("_episodes")):
                vals = [row[m] for row in rows]
                r[m] = float(np.mean(vals))
                r[f"{m}_std"] = float(np.std(vals))
            r["avg_jct_s_per_seed"] = [row["avg_jct_s"] for row in rows]
            if all("avg_jct_s_episodes" in row for row in rows):  # (seeds, episodes); absent from older results
                r["avg_jct_s_episodes"] = [row["avg_jct_s_episodes"] for row in rows]
            if name == "lower_bound":
                r["utilization"] = None
            if name in LEARNED:
                r["train_wall_s_mean"] = float(np.mean([per_seed[(job, s)]["train_wall_s"] for s in seeds]))
                r["env_steps"] = int(np.mean([per_seed[(job, s)]["env_steps"] for s in seeds]))
                r["warm_start_decisions"] = int(np.mean([per_seed[(job, s)].get("warm_start_decisions", 0)
                                                         for s in seeds]))
                r["curve_first_avg_jct_s"] = float(np.mean([first_curve_avg_jct_s(cfg.out / job / f"seed_{s}")
                                                            for s in seeds]))
                r["curve_kept_avg_jct_s"] = float(np.mean([per_seed[(job, s)]["kept_curve_avg_jct_s"]
                                                           for s in seeds]))
            results[load][name] = r
    acceptance = {}
    heur = [p for p in cfg.policies if p in HEURISTICS]
    for load, res in results.items():
        if not heur:
            break
        best = min(heur, key=lambda h: res[h]["avg_jct_s"])
        a = {"best_heuristic": best, "best_heuristic_avg_jct_s": res[best]["avg_jct_s"]}
        for name in (*LEARNED, *REFERENCES):
            if name in res:
                ref = res[best]["avg_jct_s"]
                a[f"{name}_gain_pct"] = 100.0 * (ref - res[name]["avg_jct_s"]) / ref
                # per seed: against the heuristic that is best on that seed's episodes
                gains = []
                for i in range(len(seeds)):
                    b = min(res[h]["avg_jct_s_per_seed"][i] for h in heur)
                    gains.append(100.0 * (b - res[name]["avg_jct_s_per_seed"][i]) / b)
                a[f"{name}_gain_pct_per_seed"] = gains
                if all("avg_jct_s_episodes" in res[p] for p in (name, *heur)):
                    a[f"{name}_gain_pct_interval95"] = gain_interval_pct(
                        {p: np.array(res[p]["avg_jct_s_episodes"]) for p in (name, *heur)}, name, heur)
        acceptance[load] = a
    out = {"kind": "schedule_bench", "seeds": cfg.seeds, "test_mix": cfg.test_mix, "train_mixes": list(cfg.train_mixes),
           "train_loads": list(cfg.train_loads), "test_episodes": cfg.test_episodes, "num_jobs": cfg.num_jobs,
           "dag": cfg.dag, "window": cfg.window, "ppo_env_steps": cfg.ppo.total_env_steps,
           "ppo_warm_start": cfg.ppo.warm_start, "ppo_warm_start_labels": cfg.ppo.warm_start_labels,
           "ppo_rollout_base": cfg.ppo.rollout_base, "ppo_rollout_futures": cfg.ppo.rollout_futures,
           "hints": list(cfg.hints),
           "reward_baseline": cfg.reward_baseline,
           "rllib_env_steps": cfg.rllib_env_steps, "rllib_network": cfg.rllib_network, "results": results,
           "acceptance": acceptance}
    online = [per_seed[("online", s)] for s in seeds if ("online", s) in per_seed]
    if online:
        out["online"] = aggregate_online(cfg, online)
    return out


def aggregate_online(cfg: ScheduleBenchConfig, per_seed: list[dict]) -> dict:
    """Online-adaptation rows over the seeds' `online` job summaries."""
    oc = cfg.online_cfg
    runs = [r["online"] for r in per_seed]
    out: dict = {"config": dataclasses.asdict(oc), "shift_episode": oc.pre_episodes,
                 "specialist_train_wall_s_mean": float(np.mean([r["specialist"]["train_wall_s"] for r in per_seed])),
                 "yardstick_heuristics": runs[0]["yardstick_heuristics"],
                 "online_wall_s_mean": float(np.mean([r["online_wall_s"] for r in runs]))}
    for name in ONLINE_ROWS:
        if name not in runs[0]:
            continue
        ratio = np.array([r[name]["ratio"] for r in runs])
        rec = [r[name]["recovery_episode"] for r in runs]
        frozen = np.array([r[FROZEN_OF.get(name, name)]["ratio"] for r in runs])  # the level to return to
        pre_ratio = float(frozen[:, : oc.pre_episodes].mean())
        out[name] = {"ratio_mean": ratio.mean(0).tolist(), "recovery_episode_per_seed": rec,
                     "recovery_pre_ratio": pre_ratio,
                     "mean_curve_recovery_episode": recovery_episode(ratio.mean(0).tolist(), oc.pre_episodes,
                                                                     oc.recovery_window, oc.recovery_tolerance,
                                                                     pre_ratio),
                     "recovered_seeds": sum(x is not None for x in rec),
                     "post_ratio_last_mean": float(np.mean([r[name]["post_ratio_last"] for r in runs])),
                     "pre_ratio_mean": float(ratio[:, : oc.pre_episodes].mean())}
    return out


# --------------------------------------------------------------------------- plots

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_jct_vs_load(cfg: ScheduleBenchConfig, summary: dict) -> Path:
    plt = _plt()
    loads = list(summary["results"])
    x = [float(v) for v in loads]
    names = list(summary["results"][loads[0]])
    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    colors = iter(plt.get_cmap("tab20").colors)  # heuristics; learned and reference rows get fixed strong colours
    fixed = {"masked_ppo": "#1a9641", "rllib_ppo": "#d7191c", ORACLE: "#e66101", SAMPLED: "#b2abd2",
             "tied_spt": "#5e3c99", "tied_srpt": "#2c7bb6"}
    for name in names:
        y = [summary["results"][ld][name]["avg_jct_s"] for ld in loads]
        e = [summary["results"][ld][name]["avg_jct_s_std"] for ld in loads]
        style = {"lw": 2.4, "marker": "o"} if name in LEARNED else {"lw": 1.0, "marker": ".", "alpha": 0.8}
        if name in REFERENCES:
            style = {"lw": 1.6, "ls": "-.", "marker": "s", "ms": 4}
        if name == "lower_bound":
            style = {"ls": "--", "color": "k", "lw": 1.2}
        color = fixed[name] if name in fixed else next(colors)
        ax.errorbar(x, y, yerr=e, capsize=3, label=name, **{"color": color, **style})
    ax.set_yscale("log")
    ax.set_xlabel("offered load (fraction of the pool's fluid capacity)")
    ax.set_ylabel("average job completion time (s, log scale)")
    ax.set_title(f"Held-out mix '{summary['test_mix']}', mean ± std over {summary['seeds']} seed(s)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return save_figure(fig, cfg.out / "plots" / "jct_vs_load.png")


def plot_learning_curves(cfg: ScheduleBenchConfig, seeds: list[int]) -> Path | None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for job in LEARNED:
        curves = [RunDir(cfg.out / job / f"seed_{s}", tensorboard=False).read_metrics() for s in seeds]
        n = min((len(c) for c in curves), default=0)
        if n == 0:
            continue
        steps = np.mean([[r["step"] for r in c[:n]] for c in curves], axis=0)
        y = np.array([[r["curve_avg_jct_s"] for r in c[:n]] for c in curves])
        line, = ax.plot(steps, y.mean(0), marker="o", ms=3, label=f"{job} (greedy)")
        ax.fill_between(steps, y.min(0), y.max(0), color=line.get_color(), alpha=0.15)
        if not drawn:
            for h, ls in zip(REFERENCE_HEURISTICS, ("--", ":"), strict=True):
                ax.axhline(np.mean([c[0][f"{h}_avg_jct_s"] for c in curves]), color="k", ls=ls, lw=1, label=h)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_yscale("log")
    ax.set_xlabel("training env steps (decisions)")
    ax.set_ylabel("average JCT on the curve episodes (s)")
    ax.set_title("Learning curves on training-mix episodes\nmean over seeds, band = min..max", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save_figure(fig, cfg.out / "plots" / "learning_curves.png")


def _episode(x) -> str:
    return "never" if x is None else str(x)


def faster_seeds(learner: list, frozen: list) -> int:
    """Seeds on which the learner's recovery episode is earlier than the frozen policy's (None = never)."""
    inf = float("inf")
    return sum((a if a is not None else inf) < (b if b is not None else inf) for a, b in zip(learner, frozen,
                                                                                            strict=True))


def _rolling(y, window: int) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    return np.array([y[max(0, i - window + 1): i + 1].mean() for i in range(len(y))])


def plot_online(cfg: ScheduleBenchConfig, summary: dict) -> Path:
    """Two panels: the stream as scheduled (frozen vs online learner) and fresh episodes (frozen vs the learner's
    greedy policy after each update); faint = per episode, bold = rolling mean of the recovery window."""
    plt = _plt()
    on = summary["online"]
    oc = on["config"]
    w = oc["recovery_window"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    played = "greedy" if _rollout_update(oc) else "its stochastic actions"
    panels = ((axes[0], "stream episodes, as scheduled", (("frozen", "C3", "frozen (greedy)"),
                                                          ("online", "C0", f"online learner ({played})"))),
              (axes[1], "fresh episodes (never trained on)", (("frozen_fresh", "C3", "frozen (greedy)"),
                                                              ("online_greedy", "C2", "online learner, greedy after "
                                                               "each update"))))
    for ax, title, rows in panels:
        for name, color, label in rows:
            if name not in on:
                continue
            r = on[name]["ratio_mean"]
            ax.plot(range(len(r)), r, color=color, alpha=0.3, lw=0.8)
            ax.plot(range(len(r)), _rolling(r, w), color=color, lw=2, label=f"{label}, {w}-episode rolling mean")
        ax.axvline(on["shift_episode"] - 0.5, color="k", ls="--", lw=1, label="workload shift")
        ax.axhline((1 + oc["recovery_tolerance"]) * on[rows[0][0]]["recovery_pre_ratio"], color="C3", ls="--", lw=0.8,
                   label="recovery bar (frozen pre-shift ratio + tolerance)")
        ax.axhline(1.0, color="0.5", ls=":", lw=1, label=f"best of {'/'.join(on['yardstick_heuristics'])} = 1")
        ax.set_xlabel(f"stream episode ({oc['pre_mix']} @ {oc['pre_load']} → {oc['post_mix']} @ {oc['post_load']})")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("avg JCT / best heuristic's avg JCT (same episode)")
    fig.suptitle(f"Online adaptation vs frozen policy, mean over {len(on['frozen']['recovery_episode_per_seed'])} "
                 "seed(s)")
    return save_figure(fig, cfg.out / "plots" / "online_adaptation.png")


# --------------------------------------------------------------------------- text

def _rollout_update(oc: dict) -> bool:
    """Whether the online copy learned from rollout labels (OnlineConfig.update; runs before the field existed used
    PPO)."""
    return oc.get("update", "ppo") == "rollout"


def _online_update_text(oc: dict) -> str:
    """How the online copy learned."""
    if _rollout_update(oc):
        return (f"The learner schedules greedily; after every stream episode a sampled rollout over "
                f"{list(oc['rollout_candidates'])} (base `{oc['rollout_base']}`, {oc['rollout_futures']} futures drawn "
                f"from the jobs and arrival rate of the last {oc['memory_episodes']} stream episodes and the current "
                "one's arrivals so far, not from the mix or load) labels each decision it made, and it takes "
                f"{oc['imitation_epochs']} epochs of cross-entropy on the labelled decisions of the last "
                f"{oc['memory_episodes']} episodes (learning rate {oc['imitation_learning_rate']:g}).")
    return (f"The learner runs PPO updates every {oc['n_steps']} decisions of its own stochastic play (learning rate "
            f"{oc['learning_rate']:g}, GAE λ {oc.get('gae_lambda', 0.95):g}).")


def format_table(summary: dict) -> str:
    lines = []
    for load, res in summary["results"].items():
        lines += [f"load {load}:", "| policy | avg JCT s (mean ± std) | p95 JCT s | makespan s | utilization |",
                  "|---|---|---|---|---|"]
        for name, r in sorted(res.items(), key=lambda kv: kv[1]["avg_jct_s"]):
            util = "—" if r.get("utilization") is None else f"{r['utilization']:.3f}"
            p95 = f"{r['p95_jct_s']:.1f}" if "p95_jct_s" in r else "—"
            lines.append(f"| {name} | {r['avg_jct_s']:.2f} ± {r['avg_jct_s_std']:.2f} | {p95} | "
                         f"{r['makespan_s']:.1f} | {util} |")
        a = summary["acceptance"].get(load, {})
        for name in LEARNED:
            if f"{name}_gain_pct" in a:
                lines.append(f"{name} vs best heuristic ({a['best_heuristic']}): {a[f'{name}_gain_pct']:+.1f}% "
                             "avg JCT reduction")
        lines.append("")
    return "\n".join(lines)


def report_section(run_dir: Path, summary: dict, figures: Path, out_dir: Path) -> list[str]:
    """BENCHMARKS.md section of one schedule bench: per-load tables, acceptance checks, online adaptation."""
    from edgegen.report import copy_plots

    lines = [f"### DL-task scheduling on heterogeneous agents: `{run_dir}`", "",
             f"{summary['seeds']} seed(s); held-out test mix `{summary['test_mix']}` ({summary['test_episodes']} "
             f"episodes of {summary['num_jobs']} {'DAG ' if summary['dag'] else 'single-task '}jobs per seed and "
             f"load, identical for every policy); learned policies trained on mixes {summary['train_mixes']} at loads "
             f"{summary['train_loads']} (masked PPO: {summary['ppo_env_steps']} env steps"
             + (f" after behaviour cloning of `{summary['ppo_warm_start']}`" + (
                 f", each state labelled by the sampled rollout over their decisions (base "
                 f"`{summary['ppo_rollout_base']}`, {summary['ppo_rollout_futures']} Monte-Carlo futures"
                 + ("; the `sampled_rollout` row)" if SAMPLED in summary["results"][next(iter(summary["results"]))]
                    else ")") if summary.get("ppo_warm_start_labels") == "rollout" else "")
                if summary.get("ppo_warm_start") else " from random weights")
             + (f", RLlib PPO: {summary['rllib_env_steps']} from random weights"
                + {"pair": " with the same pair-scoring network", "mlp": " with RLlib's example masking MLP"}.get(
                    summary.get("rllib_network", "mlp"), "") if "rllib_ppo" in summary["results"][next(iter(
                 summary["results"]))] else "")
             + ")" + (f"; learned policies observe the current decisions of {summary['hints']} as features"
                      if summary.get("hints") else "")
             + (f"; training reward relative to `{summary['reward_baseline']}` on the same episode (input-dependent "
                "baseline)" if summary.get("reward_baseline") else "")
             + ". Values: mean ± std over seeds of each seed's mean over its episodes.",
             "", f"Command: `{summary.get('command', '')}`", ""]
    if "bench_wall_s" in summary:
        lines += [f"Bench wall time: {summary['bench_wall_s'] / 60:.1f} min with {summary['workers']} job(s) at a "
                  "time, one CPU core each.", ""]
    loads = list(summary["results"])
    names = list(summary["results"][loads[0]])
    lines += ["Average job completion time (s) per load:", "",
              "| policy | " + " | ".join(f"load {ld}" for ld in loads) + " |", "|---|" + "---|" * len(loads)]
    for name in names:
        rs = [summary["results"][ld][name] for ld in loads]
        cells = [f"{r['avg_jct_s']:.2f} ± {r['avg_jct_s_std']:.2f}" for r in rs]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Makespan (s) / utilization per load:", "",
              "| policy | " + " | ".join(f"load {ld}" for ld in loads) + " |", "|---|" + "---|" * len(loads)]
    for name in names:
        cells = []
        for ld in loads:
            r = summary["results"][ld][name]
            util = "—" if r.get("utilization") is None else f"{r['utilization']:.3f}"
            cells.append(f"{r['makespan_s']:.1f} / {util}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    learned = [n for n in LEARNED if n in names]
    if learned:
        lines += ["", "| learned policy | train wall s / seed (incl. warm start) | PPO env steps | heuristic decisions "
                  "cloned before PPO | curve avg JCT s: first point → kept (training mixes) |", "|---|---|---|---|---|"]
        r0 = summary["results"][loads[0]]
        for n in learned:
            curve = f"{r0[n]['curve_first_avg_jct_s']:.2f} → {r0[n]['curve_kept_avg_jct_s']:.2f}"
            lines.append(f"| {n} | {r0[n]['train_wall_s_mean']:.0f} | {r0[n]['env_steps']} | "
                         f"{r0[n].get('warm_start_decisions', 0)} | {curve} |")
        lines += ["", "Curve = greedy avg JCT on the fixed learning-curve episodes of the training mixes, mean over "
                  "seeds; masked PPO's first point is its warm-started policy (step 0), RLlib's the first evaluation "
                  "after its first training batch."]
    checks = []
    for ld, a in summary.get("acceptance", {}).items():
        for n in (*learned, *(r for r in REFERENCES if r in names)):
            if f"{n}_gain_pct" not in a:
                continue
            per = ", ".join(f"{g:+.1f}%" for g in a[f"{n}_gain_pct_per_seed"])
            lo_hi = a.get(f"{n}_gain_pct_interval95")
            interval = f" (95% interval over the test episodes {lo_hi[0]:+.1f}% to {lo_hi[1]:+.1f}%)" if lo_hi else ""
            verdict = "meets" if a[f"{n}_gain_pct"] >= 10.0 else "misses"
            extra = f" ({verdict} the ≥ 10% target)" if n == "masked_ppo" and float(ld) >= 0.8 else ""
            extra = " (clairvoyant reference: sees the episode's future arrivals)" if n == ORACLE else extra
            extra = (" (reference: masked PPO's warm-start teacher, simulates Monte-Carlo futures at every contested "
                     "decision)") if n == SAMPLED else extra
            extra = " (reference rule derived here, not a standard heuristic)" if n in REFERENCE_RULES else extra
            checks.append(f"- load {ld}: {n} avg JCT {a[f'{n}_gain_pct']:+.1f}%{interval} vs the best heuristic "
                          f"`{a['best_heuristic']}` ({a['best_heuristic_avg_jct_s']:.2f} s){extra}; per seed vs that "
                          f"seed's best heuristic: {per}.")
    if checks:
        lines += ["", "Acceptance checks (positive = lower average JCT than the best heuristic; computed from the "
                  "table). The 95% intervals are percentile bootstraps over the test episodes, resampled within each "
                  "seed and paired across policies, with the best heuristic chosen again in every resample "
                  "(`bench.gain_interval_pct`); the trained policies stay fixed, so the intervals do not include the "
                  "spread over training seeds:", "", *checks]
    on = summary.get("online")
    if on:
        oc = on["config"]
        spec = (f"a masked-PPO specialist trained on `{oc['pre_mix']}` at load {oc['pre_load']} alone "
                f"({oc['specialist_env_steps']} PPO env steps after behaviour cloning of "
                f"`{oc['specialist_warm_start']}`, observation hints "
                f"{list(oc['hints'])}, "
                f"{on['specialist_train_wall_s_mean']:.0f} s wall per seed) schedules ")
        lines += ["", f"Online adaptation: {spec}a stream of {oc['pre_episodes']} episodes of `{oc['pre_mix']}` at "
                  f"load {oc['pre_load']}, then {oc['post_episodes']} of `{oc['post_mix']}` at load "
                  f"{oc['post_load']}, a mix the specialist never saw; ratio = policy's avg JCT / best of "
                  f"{on['yardstick_heuristics']} on the same episode; recovered = the post-shift episode from which "
                  f"on the {oc['recovery_window']}-episode rolling ratio stays within "
                  f"{100 * oc['recovery_tolerance']:.0f}% of the frozen specialist's pre-shift ratio on the same "
                  "episodes (one bar for both policies) to the end of the stream. " + _online_update_text(oc)
                  + " `online` = the episodes as the learner scheduled them "
                  + ("(greedy)" if _rollout_update(oc) else "(stochastic actions)")
                  + " and `frozen` = the specialist, greedy, no updates, on the same stream episodes; "
                  + ("`online_greedy` = the learner's greedy policy right after the update stream episode i fed, "
                     f"played on {oc.get('fresh_episodes', 1)} fresh episode(s) i (same mix and load, other seeds, "
                     "never trained on; ratio averaged over them) and `frozen_fresh` = the frozen policy on the same "
                     "fresh episodes. " if "online_greedy" in on else "")
                  + f"Online updates and the learner's fresh-episode replays: {on['online_wall_s_mean']:.0f} s wall "
                  "per seed.", "",
                  "| policy | pre-shift ratio | last-third post-shift ratio | recovered seeds | "
                  "recovery episode per seed | recovery episode of the seed-mean curve (figure) |",
                  "|---|---|---|---|---|---|"]
        for name in ONLINE_ROWS:
            if name not in on:
                continue
            r = on[name]
            rec = ", ".join(_episode(x) for x in r["recovery_episode_per_seed"])
            lines.append(f"| {name} | {r['pre_ratio_mean']:.3f} | {r['post_ratio_last_mean']:.3f} | "
                         f"{r['recovered_seeds']}/{len(r['recovery_episode_per_seed'])} | {rec} | "
                         f"{_episode(r.get('mean_curve_recovery_episode', 'n/a'))} |")
        for learner, frozen in (("online", "frozen"), ("online_greedy", "frozen_fresh")):
            if learner in on and frozen in on:
                n = faster_seeds(on[learner]["recovery_episode_per_seed"], on[frozen]["recovery_episode_per_seed"])
                lines += ["", f"`{learner}` recovers earlier than `{frozen}` (never = after the stream) on {n}/"
                                  f"{len(on[frozen]['recovery_episode_per_seed'])} seeds."]
    return lines + copy_plots(run_dir, figures, out_dir) + [""]


@dataclass(frozen=True)
class ScheduleTrainArgs:
    """Train one masked-PPO scheduler and test it against MCT and Min-Min on the held-out mix."""

    out: Path = Path("runs/schedule-train")
    """Run directory (model in ckpt/model.zip; a re-run with the same settings resumes the rollout-labelled warm
    start from ckpt/warm_start_labels.npz and trains again from there)."""
    seed: int = 0
    """Run seed."""
    bench: ScheduleBenchConfig = field(default_factory=lambda: ScheduleBenchConfig(policies=("mct", "min_min",
                                                                                             "masked_ppo")))
    """Env, training and test settings (bench.out, bench.seeds and bench.workers are ignored)."""
    quiet: bool = False
    """Disable the progress bar."""


def train_command(args: ScheduleTrainArgs) -> dict:
    from edgegen.scheduling.ppo import greedy_policy, train

    cfg = dataclasses.replace(args.bench, out=args.out)
    cfg.validate()
    run = RunDir(args.out, tensorboard=False)
    run.truncate_metrics(-1)
    run.write_config({"bench": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)), "seed": args.seed})
    model, info = train(cfg.ppo, cfg.env_config(train=True), args.seed, run, progress=not args.quiet,
                        reference=curve_reference(cfg, args.seed))
    model.save(run.ckpt / "model.zip")
    results = {"masked_ppo": evaluate(cfg, args.seed, greedy_policy(model))}
    for h in (p for p in cfg.policies if p in HEURISTICS):
        results[h] = evaluate(cfg, args.seed, heuristic_policy(h, derive_seed(args.seed, "heuristic", h)))
    return run.write_summary({"results": results, **info, "model": str(run.ckpt / "model.zip")}, args.seed)
