"""Masked PPO (sb3-contrib MaskablePPO) on `edgegen/DLSchedule-v0`, with a pair-scoring policy, and online adaptation.

Policy network (the only change to MaskablePPO's defaults besides hyperparameters): Decima (Mao et al., SIGCOMM
2019) scores each schedulable node with one shared network so the policy does not depend on slot order and
scales with the number of choices. Here every (window task, agent) pair is scored by one shared MLP over
[pair features, task features, agent features, global features] (:class:`PairScorer`); the wait logit comes from
the max-pooled pair embeddings and the global features. Invalid pairs are removed by MaskablePPO's mask. The
value function is a plain MLP on the flat observation.

Online adaptation (:func:`online_adaptation`): a policy trained on one workload schedules a stream of episodes
whose workload shifts part-way; the ``online`` copy keeps learning from the episodes it schedules, the ``frozen``
copy acts greedily without updates. The online copy learns in one of two ways (``OnlineConfig.update``): PPO
updates on its own stochastic play (it pays for its exploration), or approximate policy iteration: it schedules
greedily, a sampled rollout whose futures come from the recently observed jobs labels each of its decisions, and
after the episode it imitates those labels. Both see the same episode sequence. To separate adaptation from
exploration cost without scoring a policy on the episode it just trained on, every stream position i also has
FRESH episodes (same mix and load, other seeds, never trained on): ``online_greedy`` is the online copy's greedy
policy right after the update that stream episode i fed, played on fresh episodes i; ``frozen_fresh`` is the
frozen policy on the same fresh episodes. Each row's per-episode ratio is its avg JCT over the best of the
yardstick heuristics on the same episode. The bench deploys a *specialist* (:func:`train_specialist`: trained on
the pre-shift workload alone), the situation online learning is for; a policy trained on a mixture that already
covers the post-shift workload has little to recover from.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgegen.config import check_choice, check_range
from edgegen.scheduling.env import HINTABLE, MIXES, DLScheduleConfig, DLScheduleEnv, run_episode
from edgegen.seeding import derive_seed, seed_everything


@dataclass(frozen=True)
class PPOConfig:
    """MaskablePPO hyperparameters (defaults tuned on the training mixes, never on the held-out ones)."""

    total_env_steps: int = 150_000
    """Training budget in env steps (decisions), summed over the parallel envs."""
    n_envs: int = 4
    """Parallel envs (in-process DummyVecEnv)."""
    n_steps: int = 512
    """Rollout length per env between updates."""
    batch_size: int = 256
    """Minibatch size."""
    n_epochs: int = 5
    """Passes over each rollout."""
    learning_rate: float = 3e-4
    """Adam learning rate."""
    gamma: float = 0.995
    """Discount per decision (the undiscounted return is -avg JCT / time scale)."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    ent_coef: float = 0.01
    """Entropy bonus."""
    clip_range: float = 0.2
    """PPO clip range."""
    hidden_size: int = 64
    """Width of the pair scorer's two hidden layers; the value MLP has two layers of twice this width."""
    eval_every_env_steps: int = 10_000
    """Env steps between learning-curve points (0: none)."""
    curve_episodes: int = 4
    """Greedy episodes per learning-curve point (training mixes and loads, curve seeds: never the test set)."""
    warm_start: str = ""
    """Heuristic(s) to imitate before PPO ("" = start from random weights; "mct"; or several joined by "+", e.g.
    "mct+min_min"): behaviour cloning on training-mix episodes, then PPO fine-tuning. The episodes are played by
    the named heuristics in turn; every visited state is labelled with the action of EVERY named heuristic
    (cross-entropy on the masked logits, averaged over them) and with the discounted return that followed (value
    MSE). With one name the policy copies that heuristic; with several it starts as a mixture that is uncertain
    exactly where they disagree, so PPO's exploration concentrates on choosing between them. The PPO budget
    (total_env_steps) excludes the cloning decisions, which are reported separately."""
    warm_start_labels: str = "all"
    """How the warm-start states are labelled: "all" = as above (episodes played by the named heuristics in turn,
    every state labelled with each one's action); "rollout" = episodes played, and every state labelled, by the
    online rollout over the named heuristics' decisions (heuristics.sampled_rollout_policy: where they disagree,
    the action with the lowest mean JCT over `rollout_futures` Monte-Carlo futures, each finished with
    `rollout_base`): one label per state, the better heuristic's decision on that state."""
    rollout_base: str = "tied_spt"
    """Base rule that finishes the rollouts of warm_start_labels="rollout"."""
    rollout_futures: int = 4
    """Monte-Carlo futures per rollout of warm_start_labels="rollout"."""
    warm_start_decisions: int = 20_000
    """Heuristic decisions collected for the warm start."""
    warm_start_epochs: int = 10
    """Passes over the collected decisions (Adam, learning rate 1e-3 decayed to 0 by a cosine over the passes)."""
    keep_best: bool = True
    """Return the checkpoint with the best learning-curve JCT (validation on training-mix episodes) instead of
    the last one (PPO's greedy policy is not monotone in training steps)."""

    def validate(self) -> None:
        check_range("total_env_steps", self.total_env_steps, 1, 1 << 40)
        check_range("n_envs", self.n_envs, 1, 256)
        check_range("n_steps", self.n_steps, 2, 1 << 20)
        check_range("batch_size", self.batch_size, 2, 1 << 20)
        check_range("n_epochs", self.n_epochs, 1, 1000)
        check_range("learning_rate", self.learning_rate, 1e-8, 1.0)
        check_range("gamma", self.gamma, 0.0, 1.0)
        check_range("gae_lambda", self.gae_lambda, 0.0, 1.0)
        check_range("ent_coef", self.ent_coef, 0.0, 10.0)
        check_range("clip_range", self.clip_range, 1e-3, 10.0)
        check_range("hidden_size", self.hidden_size, 4, 4096)
        check_range("eval_every_env_steps", self.eval_every_env_steps, 0, 1 << 40)
        check_range("curve_episodes", self.curve_episodes, 1, 1000)
        check_teachers("warm_start", self.warm_start)
        check_range("warm_start_decisions", self.warm_start_decisions, 1, 1 << 30)
        check_choice("warm_start_labels", self.warm_start_labels, ("all", "rollout"))
        if self.warm_start_labels == "rollout":
            check_rollout_rules("warm_start / rollout_base (rollout labels)", (*self.warm_start_names(),
                                                                               self.rollout_base))
            check_range("rollout_futures", self.rollout_futures, 1, 10_000)
        check_range("warm_start_epochs", self.warm_start_epochs, 0, 10_000)

    def warm_start_names(self) -> list[str]:
        return teacher_names(self.warm_start)


def teacher_names(spec: str) -> list[str]:
    """"mct+min_min" -> ["mct", "min_min"]; "" -> [] (no warm start)."""
    return [n for n in spec.split("+") if n]


def check_rollout_rules(field_name: str, names) -> None:
    """Rules simulated by a rollout (heuristics.sampled_rollout_policy) must be deterministic and memoryless."""
    for name in names:
        check_choice(f"{field_name} (rollouts need deterministic rules)", name, HINTABLE)


def check_teachers(field_name: str, spec: str) -> None:
    """Each '+'-separated name of a warm-start spec must be a heuristic or reference rule."""
    from edgegen.scheduling.heuristics import RULES

    for name in teacher_names(spec):
        check_choice(f"{field_name} (each name between '+')", name, tuple(RULES))


class PairScorer(nn.Module):
    """Flat observation -> (W x M + 1) logits: a shared MLP per (task, agent) pair, then a wait logit."""

    def __init__(self, layout: dict, hidden: int):
        super().__init__()
        self.layout = {k: (v[0], v[1], tuple(v[2])) for k, v in layout.items()}
        w, m, fp = self.layout["pair"][2]
        ft = self.layout["task"][2][1]
        fa = self.layout["agent"][2][1]
        fg = self.layout["global"][2][0]
        self.w, self.m = w, m
        self.body = nn.Sequential(nn.Linear(fp + ft + fa + fg, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())
        self.pair_head = nn.Linear(hidden, 1)
        self.wait_head = nn.Sequential(nn.Linear(hidden + fg, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def _block(self, x, name):
        a, b, shape = self.layout[name]
        return x[:, a:b].reshape(x.shape[0], *shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, w, m = x.shape[0], self.w, self.m
        pair, task = self._block(x, "pair"), self._block(x, "task")
        agent, glob = self._block(x, "agent"), self._block(x, "global")
        feats = torch.cat([pair, task[:, :, None, :].expand(n, w, m, -1), agent[:, None, :, :].expand(n, w, m, -1),
                           glob[:, None, None, :].expand(n, w, m, -1)], dim=-1)
        h = self.body(feats)  # (n, w, m, hidden)
        logits = self.pair_head(h).reshape(n, w * m)
        valid = pair[..., 0:1] > 0.5
        pooled = torch.where(valid, h, torch.full_like(h, -1.0)).amax(dim=(1, 2))  # tanh range: -1 = nothing valid
        wait = self.wait_head(torch.cat([pooled, glob], dim=-1))
        return torch.cat([logits, wait], dim=-1)


def make_policy_class():
    from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy

    class PairPolicy(MaskableActorCriticPolicy):
        """MaskableActorCriticPolicy whose action net is a PairScorer over the flat observation."""

        def __init__(self, *args, layout: dict, hidden: int = 64, **kwargs):
            self._layout, self._hidden = layout, hidden
            kwargs.setdefault("net_arch", {"pi": [], "vf": [2 * hidden, 2 * hidden]})
            super().__init__(*args, **kwargs)

        def _build(self, lr_schedule) -> None:
            super()._build(lr_schedule)
            self.action_net = PairScorer(self._layout, self._hidden)
            self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

        def _get_constructor_parameters(self) -> dict:
            return {**super()._get_constructor_parameters(), "layout": self._layout, "hidden": self._hidden}

    return PairPolicy


def make_model(cfg: PPOConfig, env_cfg: DLScheduleConfig, seed: int, n_envs: int | None = None, env_fns=None):
    """A fresh MaskablePPO on `n_envs` copies of the env (seeded from `seed`)."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    n = n_envs or cfg.n_envs
    fns = env_fns or [lambda: DLScheduleEnv(env_cfg) for _ in range(n)]
    venv = DummyVecEnv(fns)
    venv.seed(derive_seed(seed, "train"))
    layout = DLScheduleEnv(env_cfg).obs_layout()
    return MaskablePPO(make_policy_class(), venv, learning_rate=cfg.learning_rate, n_steps=cfg.n_steps,
                       batch_size=cfg.batch_size, n_epochs=cfg.n_epochs, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda,
                       ent_coef=cfg.ent_coef, clip_range=cfg.clip_range, seed=seed, device="cpu", verbose=0,
                       policy_kwargs={"layout": layout, "hidden": cfg.hidden_size})


LABELS_SAVE_EVERY_S = 120.0
"""Seconds between saves of the warm-start labels checkpoint (rollout labels)."""


def warm_start_labels(cfg: PPOConfig, env_cfg: DLScheduleConfig, seed: int, progress: bool = False,
                      checkpoint: Path | None = None) -> dict:
    """The warm start's training-mix episodes and their labels (see PPOConfig.warm_start / warm_start_labels):
    {"obs", "mask", "acts" (n, labels per state), "rets" (discounted return from each state), "episode_len",
    "wall_s" (collection time over all invocations; an interrupted one counts up to its last save)}. Whole
    episodes are collected until there are at least `cfg.warm_start_decisions` decisions.

    With rollout labels (about half an hour of CPU for the bench's 20,000 decisions) and a `checkpoint` path, the
    collection is saved there (whole episodes and the rollout's random state) every LABELS_SAVE_EVERY_S seconds and
    at the end, and a later call resumes from it: the result is the same as one uninterrupted collection. A
    checkpoint made with other settings (seed, env, teachers, base, futures, gamma) is set aside and the collection
    starts afresh; one holding more decisions than asked for is cut to the episodes a fresh collection would keep."""
    from tqdm import tqdm

    from edgegen.scheduling.heuristics import heuristic_policy, sampled_rollout_policy

    names = cfg.warm_start_names()
    env = DLScheduleEnv(env_cfg)
    rollout = cfg.warm_start_labels == "rollout"
    key = json.dumps({"seed": seed, "env": dataclasses.asdict(env_cfg), "warm_start": cfg.warm_start,
                      "rollout_base": cfg.rollout_base, "rollout_futures": cfg.rollout_futures, "gamma": cfg.gamma},
                     sort_keys=True, default=str)
    if rollout:
        rng = np.random.default_rng(derive_seed(seed, "warm_start_rollout"))
        chooser = sampled_rollout_policy(tuple(names), cfg.rollout_base, cfg.rollout_futures, rng)
    else:
        checkpoint = None  # seconds of work: nothing worth resuming
        teachers = [heuristic_policy(h, derive_seed(seed, "warm_start", h)) for h in names]
    obs_l, mask_l, act_l, ret_l, lens, earlier_wall_s = [], [], [], [], [], 0.0
    if checkpoint is not None and Path(checkpoint).exists():
        with np.load(checkpoint) as saved:
            if str(saved["key"]) != key:
                Path(checkpoint).rename(Path(checkpoint).with_suffix(".other_settings.npz"))
            else:
                lens = [int(n) for n in saved["episode_len"]]
                obs_l, mask_l = list(saved["obs"]), list(saved["mask"])
                act_l, ret_l = [list(a) for a in saved["acts"]], list(saved["rets"])
                rng.bit_generator.state = json.loads(str(saved["rng_state"]))
                earlier_wall_s = float(saved["wall_s"])
                keep = int(np.searchsorted(np.cumsum(lens), cfg.warm_start_decisions)) + 1  # what a fresh run keeps
                if keep < len(lens):
                    lens = lens[:keep]
                    n = sum(lens)
                    obs_l, mask_l, act_l, ret_l = obs_l[:n], mask_l[:n], act_l[:n], ret_l[:n]

    t0 = time.perf_counter()
    last_save = t0

    def save() -> None:
        tmp = Path(checkpoint).with_suffix(".tmp.npz")
        np.savez(tmp, obs=np.array(obs_l, dtype=np.float32), mask=np.array(mask_l, dtype=bool),
                 acts=np.array(act_l, dtype=np.int64), rets=np.array(ret_l, dtype=np.float32),
                 episode_len=np.array(lens, dtype=np.int64), key=np.array(key),
                 rng_state=np.array(json.dumps(rng.bit_generator.state)),
                 wall_s=np.array(earlier_wall_s + time.perf_counter() - t0))
        tmp.replace(checkpoint)

    bar = tqdm(total=cfg.warm_start_decisions, initial=min(len(obs_l), cfg.warm_start_decisions),
               desc=f"warm start ({cfg.warm_start_labels} labels)", unit="decision", disable=not progress)
    while len(obs_l) < cfg.warm_start_decisions:
        episode = len(lens)
        obs, info = env.reset(seed=derive_seed(seed, "warm_start", episode))
        behaviour = episode % len(names)
        rewards, done = [], False
        while not done:
            mask = info["action_mask"].astype(bool)
            labels = [chooser(env, obs, mask)] if rollout else [t(env, obs, mask) for t in teachers]
            obs_l.append(obs)
            mask_l.append(mask)
            act_l.append(labels)
            obs, reward, terminated, truncated, info = env.step(labels[0 if rollout else behaviour])
            rewards.append(reward)
            done = terminated or truncated
        bar.update(min(len(rewards), bar.total - bar.n))
        g, rets = 0.0, []
        for r in reversed(rewards):
            g = r + cfg.gamma * g
            rets.append(g)
        ret_l += rets[::-1]
        lens.append(len(rewards))
        if checkpoint is not None and (time.perf_counter() - last_save >= LABELS_SAVE_EVERY_S
                                       or len(obs_l) >= cfg.warm_start_decisions):
            save()
            last_save = time.perf_counter()
    bar.close()
    return {"obs": np.array(obs_l, dtype=np.float32), "mask": np.array(mask_l, dtype=bool),
            "acts": np.array(act_l, dtype=np.int64), "rets": np.array(ret_l, dtype=np.float32),
            "episode_len": np.array(lens), "wall_s": earlier_wall_s + time.perf_counter() - t0}


def warm_start(model, cfg: PPOConfig, env_cfg: DLScheduleConfig, seed: int, progress: bool = False,
               checkpoint: Path | None = None) -> dict:
    """Behaviour cloning of heuristic(s) `cfg.warm_start` into the model's policy and value nets (see PPOConfig);
    the labels come from :func:`warm_start_labels` (resumable from `checkpoint`)."""
    t0 = time.perf_counter()
    data = warm_start_labels(cfg, env_cfg, seed, progress, checkpoint)
    collect_s = time.perf_counter() - t0
    obs_t = torch.as_tensor(data["obs"])
    masks, acts = data["mask"], torch.as_tensor(data["acts"])  # acts: (n, labels per state)
    rets_t = torch.as_tensor(data["rets"])
    policy = model.policy
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(derive_seed(seed, "warm_start_batches"))
    n = len(obs_t)
    steps, step = cfg.warm_start_epochs * -(-n // cfg.batch_size), 0
    for _ in range(cfg.warm_start_epochs):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, cfg.batch_size):
            for g in opt.param_groups:  # cosine decay from 1e-3 to 0 over the cloning steps
                g["lr"] = 1e-3 * 0.5 * (1.0 + np.cos(np.pi * step / steps))
            step += 1
            idx = perm[start:start + cfg.batch_size]
            dist = policy.get_distribution(obs_t[idx], action_masks=masks[idx.numpy()])
            values = policy.predict_values(obs_t[idx]).flatten()
            nll = -torch.stack([dist.log_prob(acts[idx, h]) for h in range(acts.shape[1])]).mean()
            loss = nll + 0.5 * torch.nn.functional.mse_loss(values, rets_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        dist = policy.get_distribution(obs_t, action_masks=masks)
        greedy = dist.get_actions(deterministic=True)
        agree = float((acts == greedy[:, None]).any(dim=1).float().mean())
    return {"warm_start_decisions": n, "warm_start_agreement": agree,
            "warm_start_wall_s": data["wall_s"] + time.perf_counter() - t0 - collect_s}


def greedy_policy(model):
    """`act(env, obs, mask)` for `run_episode`: the model's most likely valid action."""
    def act(env, obs, mask):
        return int(model.predict(obs, deterministic=True, action_masks=mask)[0])
    return act


def curve_seeds(seed: int, episodes: int) -> list[int]:
    return [derive_seed(seed, "curve", i) for i in range(episodes)]


def train(cfg: PPOConfig, env_cfg: DLScheduleConfig, seed: int, run=None, progress: bool = False,
          reference: dict | None = None) -> tuple[object, dict]:
    """Train MaskablePPO; log a greedy learning curve (avg JCT on fixed curve episodes) to `run`.

    reference: optional {name: avg_jct_s} of heuristics on the same curve episodes, logged alongside.
    Returns (model, {"train_wall_s", "env_steps"}).
    """
    from stable_baselines3.common.callbacks import BaseCallback

    cfg.validate()
    env_cfg.validate()
    seed_everything(seed)
    model = make_model(cfg, env_cfg, seed)
    labels_ckpt = None if run is None else run.ckpt / "warm_start_labels.npz"
    warm = warm_start(model, cfg, env_cfg, seed, progress, labels_ckpt) if cfg.warm_start else {}
    eval_env = DLScheduleEnv(env_cfg)
    seeds = curve_seeds(seed, cfg.curve_episodes)
    state = {"wall": 0.0, "t0": time.perf_counter(), "next": cfg.eval_every_env_steps, "best": np.inf,
             "best_step": 0, "best_params": None}

    def evaluate(step: int) -> None:
        state["wall"] += time.perf_counter() - state["t0"]
        act = greedy_policy(model)
        jct = float(np.mean([run_episode(eval_env, act, s)["avg_jct_s"] for s in seeds]))
        if cfg.keep_best and jct < state["best"]:
            state["best"], state["best_step"] = jct, step
            state["best_params"] = {k: v.detach().clone() for k, v in model.policy.state_dict().items()}
        if run is not None:
            run.log(step, curve_avg_jct_s=jct, train_wall_s=state["wall"],
                    **{f"{k}_avg_jct_s": v for k, v in (reference or {}).items()})
        state["t0"] = time.perf_counter()

    class Curve(BaseCallback):
        def _on_step(self) -> bool:
            if cfg.eval_every_env_steps and self.num_timesteps >= state["next"]:
                state["next"] += cfg.eval_every_env_steps
                evaluate(self.num_timesteps)
            return True

    if cfg.eval_every_env_steps:
        evaluate(0)
    model.learn(total_timesteps=cfg.total_env_steps, callback=Curve(), progress_bar=progress)
    if cfg.eval_every_env_steps and state["next"] - cfg.eval_every_env_steps < model.num_timesteps:
        evaluate(int(model.num_timesteps))  # the final point
    state["wall"] += time.perf_counter() - state["t0"]
    info = {"train_wall_s": state["wall"] + warm.get("warm_start_wall_s", 0.0), "env_steps": int(model.num_timesteps),
            **warm}
    if cfg.keep_best and state["best_params"] is not None:
        model.policy.load_state_dict(state["best_params"])
        info.update(kept_step=state["best_step"], kept_curve_avg_jct_s=state["best"])
    return model, info


def _stream_env(env_cfg: DLScheduleConfig, stream: list[tuple[int, dict]], played: list):
    import gymnasium as gym

    class Stream(gym.Wrapper):
        def __init__(self):
            super().__init__(DLScheduleEnv(env_cfg))
            self.i = 0

        def reset(self, *, seed=None, options=None):
            s, opts = stream[min(self.i, len(stream) - 1)]
            self.i += 1
            return self.env.reset(seed=s, options=opts)

        def step(self, action):
            out = super().step(action)
            if out[2]:
                played.append(self.env.unwrapped.episode_metrics()["avg_jct_s"])
            return out

        def action_masks(self):
            return self.env.unwrapped.action_masks()

    return Stream


@dataclass(frozen=True)
class OnlineConfig:
    """Online adaptation experiment: a workload shift in a stream of episodes."""

    pre_mix: str = "training_heavy"
    """Workload mix before the shift: the only mix the specialist trains on (on it MCT beats Min-Min)."""
    pre_load: float = 0.95
    """Load before the shift (the specialist's training load)."""
    post_mix: str = "data_heavy"
    """Workload mix after the shift, never seen by the specialist (on it Min-Min beats MCT)."""
    post_load: float = 0.95
    """Load after the shift."""
    pre_episodes: int = 4
    """Episodes before the shift."""
    post_episodes: int = 30
    """Episodes after the shift."""
    reward_baseline: str = ""
    """Reward baseline (env `reward_baseline`) of the specialist's training and the online updates; "" = Decima's
    plain reward (the bench's MCT baseline made the online updates worse in a bench run; notes)."""
    hints: tuple[str, ...] = ("mct", "min_min")
    """Observation hints of the specialist and the online copy (env `hints`). Without the bench's third hint
    (tied_spt): with it, the specialist stayed at the best heuristic's level after the shift on validation seeds
    100-101, so there was nothing to recover from (notes)."""
    specialist_warm_start: str = "mct+min_min"
    """Heuristic(s) the specialist is behaviour-cloned from before its PPO steps (PPOConfig.warm_start)."""
    specialist_env_steps: int = 30_000
    """PPO env steps of the specialist on (pre_mix, pre_load), after the behaviour-cloning warm start
    `specialist_warm_start` (the bench's PPOConfig otherwise); the kept checkpoint is the best on pre-shift curve
    episodes."""
    update: str = "rollout"
    """How the online copy learns. "ppo": PPO updates on the episodes it schedules with its stochastic actions.
    "rollout": it schedules greedily, and after every stream episode every decision it made is labelled by a sampled
    rollout over `rollout_candidates` (heuristics.sampled_rollout_policy, base `rollout_base`) whose futures come
    from an empirical model of the recent stream (the jobs and arrival rate of the last `memory_episodes` episodes
    and the current one; no knowledge of the mix or load); it then runs `imitation_epochs` of cross-entropy on the
    labelled decisions of the last `memory_episodes` episodes (approximate policy iteration, as in the warm start)."""
    learning_rate: float = 1e-4
    """update "ppo": Adam learning rate of the PPO updates."""
    rollout_candidates: tuple[str, ...] = ("mct", "min_min", "tied_srpt")
    """update "rollout": the rules whose decisions the labelling rollout compares."""
    rollout_base: str = "tied_srpt"
    """update "rollout": the rule that finishes each rollout."""
    rollout_futures: int = 4
    """update "rollout": sampled futures per compared decision."""
    memory_episodes: int = 4
    """update "rollout": stream episodes whose labelled decisions are trained on and whose jobs form the empirical
    arrival model."""
    imitation_epochs: int = 4
    """update "rollout": passes over the labelled decisions after each stream episode."""
    imitation_learning_rate: float = 3e-4
    """update "rollout": Adam learning rate of the imitation steps."""
    n_steps: int = 256
    """update "ppo": rollout length between PPO updates (one env)."""
    gae_lambda: float = 0.95
    """update "ppo": GAE lambda of the PPO updates. With 1 the advantages are Monte-Carlo returns minus the value
    estimate, so a value function fitted to the old workload only adds variance; below 1 it also biases them. 1 did
    worse on validation seeds (benchmarks/notes/scheduling.md)."""
    fresh_episodes: int = 4
    """Fresh episodes per stream episode on which the frozen policy and the learner's greedy policy are compared
    (their ratios averaged): one 60-job episode's ratio varies by about 0.1, more than the recovery tolerance."""
    recovery_window: int = 3
    """Rolling window (episodes) of the recovery test."""
    recovery_tolerance: float = 0.05
    """Recovered once the rolling JCT / best-heuristic JCT ratio stays within this fraction of the frozen
    specialist's pre-shift ratio (on the same episodes) for the rest of the stream; the same bar for the frozen
    policy and the learner."""

    def validate(self) -> None:
        check_choice("pre_mix", self.pre_mix, MIXES)
        check_choice("post_mix", self.post_mix, MIXES)
        check_range("specialist_env_steps", self.specialist_env_steps, 1, 1 << 40)
        for h in self.hints:
            check_choice("hints[*]", h, HINTABLE)
        check_teachers("specialist_warm_start", self.specialist_warm_start)
        if self.reward_baseline:
            check_choice("reward_baseline", self.reward_baseline, HINTABLE)
        check_range("pre_load", self.pre_load, 0.05, 2.0)
        check_range("post_load", self.post_load, 0.05, 2.0)
        check_range("pre_episodes", self.pre_episodes, 1, 100_000)
        check_range("post_episodes", self.post_episodes, 1, 100_000)
        check_range("learning_rate", self.learning_rate, 1e-8, 1.0)
        check_choice("update", self.update, ("ppo", "rollout"))
        check_rollout_rules("rollout_candidates", self.rollout_candidates)
        check_rollout_rules("rollout_base", (self.rollout_base,))
        check_range("rollout_futures", self.rollout_futures, 1, 1000)
        check_range("memory_episodes", self.memory_episodes, 1, 1000)
        check_range("imitation_epochs", self.imitation_epochs, 1, 1000)
        check_range("imitation_learning_rate", self.imitation_learning_rate, 1e-8, 1.0)
        check_range("n_steps", self.n_steps, 2, 1 << 20)
        check_range("gae_lambda", self.gae_lambda, 0.0, 1.0)
        check_range("fresh_episodes", self.fresh_episodes, 1, 1000)
        check_range("recovery_window", self.recovery_window, 1, 1000)
        check_range("recovery_tolerance", self.recovery_tolerance, 0.0, 10.0)


FROZEN_OF = {"online": "frozen", "online_greedy": "frozen_fresh"}
"""The frozen row each online row is compared with (same episodes)."""


def recovery_episode(ratio: list[float], pre: int, window: int, tolerance: float,
                     pre_ratio: float | None = None) -> int | None:
    """Settling episode: the first post-shift episode index (0 = first after the shift) from which on the rolling
    mean of `window` ratios, all taken after the shift, stays at most (1 + tolerance) x the pre-shift level until
    the end of the stream; None if the last window is above it. (A first-crossing rule counts a single lucky window
    as recovery.) The pre-shift level is `pre_ratio`, by default the mean ratio of the `pre` pre-shift episodes."""
    target = (1.0 + tolerance) * (float(np.mean(ratio[:pre])) if pre_ratio is None else pre_ratio)
    post = ratio[pre:]
    settled = None
    for end in range(len(post), window - 1, -1):
        if np.mean(post[end - window: end]) > target:
            break
        settled = end - 1
    return settled


def train_specialist(cfg: OnlineConfig, ppo: PPOConfig, env_cfg: DLScheduleConfig, seed: int, run=None):
    """The online experiment's deployed policy: masked PPO (warm start `cfg.specialist_warm_start` with every state
    labelled by each teacher, i.e. warm_start_labels "all"; hyperparameters of `ppo`, `cfg.specialist_env_steps`
    PPO steps) trained on (pre_mix, pre_load) alone. Returns train()'s (model, info)."""
    spec_env = dataclasses.replace(env_cfg, mixes=(cfg.pre_mix,), loads=(cfg.pre_load,))
    return train(dataclasses.replace(ppo, total_env_steps=cfg.specialist_env_steps,
                                     warm_start=cfg.specialist_warm_start, warm_start_labels="all"), spec_env,
                 derive_seed(seed, "specialist"), run)


def online_adaptation(model_path, cfg: OnlineConfig, env_cfg: DLScheduleConfig, seed: int, ppo: PPOConfig,
                      best_heuristic: dict[str, float] | None = None) -> dict:
    """Frozen vs online copies of a trained model on the same shifting stream of episodes.

    Returns per-episode avg JCT of each ("frozen", "online" on the stream; "frozen_fresh", "online_greedy" on the
    fresh episodes), the per-episode best-heuristic JCT used as the yardstick (min over `best_heuristic`'s names,
    each played on the same episode) and recovery episodes.
    """
    from sb3_contrib import MaskablePPO

    from edgegen.scheduling.heuristics import heuristic_policy

    cfg.validate()
    seed_everything(seed)
    n = cfg.pre_episodes + cfg.post_episodes
    stream = [(derive_seed(seed, "online", i), {"mix": cfg.pre_mix if i < cfg.pre_episodes else cfg.post_mix,
                                                 "load": cfg.pre_load if i < cfg.pre_episodes else cfg.post_load})
              for i in range(n)]
    env = DLScheduleEnv(env_cfg)
    names = list(best_heuristic or ("mct", "min_min"))
    yard = [min(run_episode(env, heuristic_policy(h, seed), s, o)["avg_jct_s"] for h in names) for s, o in stream]

    # fresh[i]: fresh_episodes episodes of stream episode i's mix and load, never trained on
    fresh = [[(derive_seed(seed, "online_fresh", i, j), o) for j in range(cfg.fresh_episodes)]
             for i, (_, o) in enumerate(stream)]
    yard_fresh = [[min(run_episode(env, heuristic_policy(h, seed), s, o)["avg_jct_s"] for h in names) for s, o in eps]
                  for eps in fresh]

    def play_fresh(act, i: int) -> list[float]:
        return [run_episode(env, act, s, o)["avg_jct_s"] for s, o in fresh[i]]

    frozen = MaskablePPO.load(model_path, device="cpu")
    act = greedy_policy(frozen)
    frozen_jct = [run_episode(env, act, s, o)["avg_jct_s"] for s, o in stream]
    frozen_fresh = [play_fresh(act, i) for i in range(n)]

    t0 = time.perf_counter()
    online = _online_ppo if cfg.update == "ppo" else _online_rollout
    online_jct, replay = online(model_path, cfg, env_cfg, seed, ppo, stream, play_fresh)
    wall = time.perf_counter() - t0
    out = {"yardstick_avg_jct_s": yard, "yardstick_fresh_avg_jct_s": yard_fresh, "yardstick_heuristics": names,
           "shift_episode": cfg.pre_episodes, "online_wall_s": wall, "update": cfg.update}
    single = [[x] for x in yard]  # the stream: one episode per point
    for name, jct, ref in (("frozen", [[x] for x in frozen_jct], single), ("online", [[x] for x in online_jct], single),
                           ("frozen_fresh", frozen_fresh, yard_fresh), ("online_greedy", replay, yard_fresh)):
        ratio = [float(np.mean(np.divide(a, b))) for a, b in zip(jct, ref, strict=True)]  # mean over a point's episodes
        jct = [float(np.mean(a)) for a in jct]
        # both policies must get back to the frozen specialist's pre-shift level on the same episodes (a learner
        # that got worse before the shift must not get a looser bar)
        pre_ratio = float(np.mean((out[FROZEN_OF[name]]["ratio"] if name in FROZEN_OF else ratio)[:cfg.pre_episodes]))
        out[name] = {"avg_jct_s": jct, "ratio": ratio, "recovery_pre_ratio": pre_ratio,
                     "recovery_episode": recovery_episode(ratio, cfg.pre_episodes, cfg.recovery_window,
                                                          cfg.recovery_tolerance, pre_ratio),
                     "post_ratio_last": float(np.mean(ratio[-max(cfg.recovery_window, cfg.post_episodes // 3):]))}
    return out


def _online_ppo(model_path, cfg: OnlineConfig, env_cfg: DLScheduleConfig, seed: int, ppo: PPOConfig, stream,
                play_fresh) -> tuple[list[float], list[list[float]]]:
    """update "ppo": the learner schedules the stream with its stochastic actions and runs a PPO update every
    `cfg.n_steps` decisions. Returns (avg JCT per stream episode, fresh-episode JCTs of its greedy policy right
    after the update each stream episode fed)."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    n = len(stream)
    played: list[float] = []
    venv = DummyVecEnv([_stream_env(env_cfg, stream, played)])
    online = MaskablePPO.load(model_path, env=venv, device="cpu", seed=seed,
                              custom_objects={"learning_rate": cfg.learning_rate, "n_steps": cfg.n_steps,
                                              "gae_lambda": cfg.gae_lambda, "lr_schedule": lambda _: cfg.learning_rate})
    online.n_steps, online.gae_lambda = cfg.n_steps, cfg.gae_lambda
    online._setup_model()  # rebuild the rollout buffer for the new n_steps / n_envs (keeps the loaded weights)
    online.set_parameters(model_path, exact_match=True, device="cpu")
    for g in online.policy.optimizer.param_groups:
        g["lr"] = cfg.learning_rate
    replay: list[list[float]] = []  # fresh episodes i played by the greedy policy right after update episode i fed
    while len(played) < n:
        before = len(played)
        online.learn(total_timesteps=cfg.n_steps, reset_num_timesteps=False)
        act_now = greedy_policy(online)
        for i in range(before, min(len(played), n)):
            replay.append(play_fresh(act_now, i))
    return played[:n], replay


def empirical_arrival_model(episodes: list[tuple[np.ndarray, list]]) -> tuple[float, list] | None:
    """resample_future's empirical `model` from observed episodes [(arrival times (s) of their arrived jobs, the jobs
    in DLScheduleEnv.arrived_jobs's format)]: the rate is the number of inter-arrival gaps over their total length
    (the maximum-likelihood rate of a Poisson process), the jobs are pooled. None before any gap was observed."""
    gaps = [np.diff(np.asarray(arrivals_s, dtype=float)) for arrivals_s, _ in episodes]
    count, total_s = sum(len(g) for g in gaps), float(sum(g.sum() for g in gaps))
    if count == 0 or total_s <= 0:
        return None
    return count / total_s, [job for _, jobs in episodes for job in jobs]


def _online_rollout(model_path, cfg: OnlineConfig, env_cfg: DLScheduleConfig, seed: int, ppo: PPOConfig, stream,
                    play_fresh) -> tuple[list[float], list[list[float]]]:
    """update "rollout" (see OnlineConfig.update): the learner schedules each stream episode greedily while a
    sampled rollout labels its decisions, then imitates the labels of the last `memory_episodes` episodes."""
    from collections import deque

    from sb3_contrib import MaskablePPO

    from edgegen.scheduling.heuristics import sampled_rollout_policy

    learner = MaskablePPO.load(model_path, device="cpu")
    policy, act = learner.policy, greedy_policy(learner)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.imitation_learning_rate)
    gen = torch.Generator().manual_seed(derive_seed(seed, "online_batches"))
    # (arrival times, jobs, labelled decisions) of the last finished stream episodes
    recent: deque = deque(maxlen=cfg.memory_episodes)

    def future_model(env: DLScheduleEnv):
        jobs = env.arrived_jobs()
        return empirical_arrival_model([(a, j) for a, j, _ in recent] + [(env.job_arrival_s[:len(jobs)], jobs)])

    label = sampled_rollout_policy(cfg.rollout_candidates, cfg.rollout_base, cfg.rollout_futures,
                                   derive_seed(seed, "online_rollout"), future_model=future_model)
    env = DLScheduleEnv(env_cfg)
    played, replay = [], []
    for i, (episode_seed, options) in enumerate(stream):
        obs, info = env.reset(seed=episode_seed, options=options)
        decisions, done = [], False
        while not done:
            mask = info["action_mask"].astype(bool)
            decisions.append((obs, mask, label(env, obs, mask)))
            obs, _, terminated, truncated, info = env.step(act(env, obs, mask))
            done = terminated or truncated
        played.append(env.episode_metrics()["avg_jct_s"])
        recent.append((env.job_arrival_s.copy(), env.arrived_jobs(), decisions))
        data = [d for *_, episode in recent for d in episode]
        obs_t = torch.as_tensor(np.array([d[0] for d in data]))
        masks, acts = np.array([d[1] for d in data]), torch.as_tensor([d[2] for d in data])
        for _ in range(cfg.imitation_epochs):
            perm = torch.randperm(len(data), generator=gen)
            for start in range(0, len(data), ppo.batch_size):
                idx = perm[start:start + ppo.batch_size]
                loss = -policy.get_distribution(obs_t[idx], action_masks=masks[idx.numpy()]).log_prob(acts[idx]).mean()
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
                opt.step()
        replay.append(play_fresh(act, i))
    return played, replay
