"""Graph diffusion model that generates CoT microservice deployments (Edge-LAM, Wang, Shi, Letaief 2025).

Reads top to bottom: features → GNN encoder of the device graph (z_G) → denoiser over the N×M deployment grid →
categorical diffusion (training loss, skip-step sampler) → mask decoding → local-search repair → best-of-k.

- Variables: the served device of every step, y_i ∈ {0..M-1} (the one-hot rows of X; one device per step by
  construction). Categorical diffusion with uniform noise (D3PM; DIFUSCO's discrete diffusion, Sun & Yang,
  NeurIPS 2023): q(y_t | y_0) = ᾱ_t·onehot(y_0) + (1 − ᾱ_t)/M, cosine ᾱ, T steps. The network predicts p(y_0 | y_t,
  z_G) and is trained with cross-entropy on MILP labels (supervised, like DIFUSCO on Concorde/LKH labels).
- Encoder: dense message passing over the device graph (node features: speed, capacity, source flag; edge features:
  link cost of a mean hand-off) gives device embeddings z_G, shared by all steps.
- Denoiser: every (step i, device j) cell carries a state built from its cost features, z_G[j], the noisy one-hot
  y_t and the time; each layer passes messages along the reasoning chain (from cells of steps i ± 1, gated by the
  hand-off cost j → k), down the device column (capacity competition) and across the step's row.
- Sampler: p(y_{t-s} | y_t) = Σ_{y_0} q(y_{t-s} | y_t, y_0)·p_θ(y_0 | y_t) for any stride s (s = 2 is the paper's
  skip-step p(G_{t-2} | G_t), halving the network evaluations; DIFUSCO's sampler allows any stride).
- Decoding: the last p_θ(y_0) is decoded greedily, most confident step first, each to its most probable device that
  still has room (capacity mask; the one-device-per-step mask holds by construction); "raw" = plain argmax per
  step, reported for feasibility before any mask or repair. Then :func:`~.solvers.local_search` (repair +
  descent, like DIFUSCO's 2-opt) and the best of k samples drawn in one batch.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgegen.config import check_range
from edgegen.microservices.cot.problem import Tables, overflow_bytes, path_latency_s
from edgegen.microservices.cot.solvers import local_search

FORMAT_VERSION = 1
PAIR_FEATURES = 8
EDGE_FEATURES = 3
DEVICE_FEATURES = 5


@dataclass(frozen=True)
class DiffusionConfig:
    """Graph diffusion model and its training."""

    hidden: int = 64
    """Width of every embedding."""
    encoder_layers: int = 2
    """Message-passing layers over the device graph (z_G)."""
    denoiser_layers: int = 3
    """Message-passing layers over the deployment grid."""
    diffusion_steps: int = 20
    """T: noise levels of the categorical diffusion (stride s samples with ⌈T/s⌉ network evaluations)."""
    train_iters: int = 2500
    """Optimiser steps."""
    batch_size: int = 32
    """Instances per step (one size per batch)."""
    lr: float = 1e-3
    """AdamW learning rate (cosine decay to 5%)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    seed: int = 0
    """Initialisation and batch order."""

    def validate(self) -> DiffusionConfig:
        check_range("hidden", self.hidden, 4, 4096)
        check_range("encoder_layers", self.encoder_layers, 0, 32)
        check_range("denoiser_layers", self.denoiser_layers, 1, 32)
        check_range("diffusion_steps", self.diffusion_steps, 1, 10_000)
        check_range("train_iters", self.train_iters, 1, 10**7)
        check_range("batch_size", self.batch_size, 1, 10_000)
        check_range("lr", self.lr, 1e-7, 1.0)
        check_range("weight_decay", self.weight_decay, 0.0, 1.0)
        return self

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


# --------------------------------------------------------------------------- features


def features(t: Tables) -> dict[str, np.ndarray]:
    """Scale-free features of one instance: times in units of the mean compute time, memory of capacity."""
    n, m = t.n_steps, t.n_devices
    tau = float(t.comp.mean())
    pos = np.arange(n) / max(1, n - 1)
    pair = np.zeros((n, m, PAIR_FEATURES), np.float32)
    pair[..., 0] = t.comp / tau
    pair[..., 1] = t.comp / t.comp.min(axis=1, keepdims=True)
    pair[..., 2] = t.mem[:, None] / t.cap[None, :]
    pair[0, :, 3] = t.inp / tau
    pair[-1, :, 4] = t.out / tau
    pair[..., 5] = pos[:, None]
    pair[..., 6] = t.mem.sum() / t.cap.sum()
    pair[..., 7] = np.log(t.cap / t.mem.mean())[None, :]
    comm = t.comm / tau  # (N-1, M, M)
    edge = np.stack([comm, np.log1p(comm), np.broadcast_to(np.eye(m), comm.shape)], axis=-1).astype(np.float32)
    link = t.comm.mean(axis=0) / tau if n > 1 else np.zeros((m, m))
    speed = t.comp.min(axis=0) / t.comp.min()  # relative slowness of each device (1 = fastest)
    source = (t.inp == 0).astype(float)
    dev = np.stack([1.0 / speed, np.log(t.cap / t.mem.mean()), source, np.log1p(link.mean(axis=1)),
                    np.log1p(link.mean(axis=0))], axis=-1).astype(np.float32)
    dev_edge = np.stack([link, np.log1p(link), np.eye(m)], axis=-1).astype(np.float32)
    return {"pair": pair, "edge": edge, "dev": dev, "dev_edge": dev_edge}


def batch_features(tables: list[Tables]) -> dict[str, torch.Tensor]:
    """Stack the features of same-size instances into tensors with a batch dimension."""
    fs = [features(t) for t in tables]
    return {k: torch.from_numpy(np.stack([f[k] for f in fs])) for k in fs[0]}


# --------------------------------------------------------------------------- network


def _mlp(i: int, h: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.SiLU(), nn.Linear(h, o))


class DeviceEncoder(nn.Module):
    """GNN over the (complete) device graph: z_G = device embeddings after dense message passing."""

    def __init__(self, hidden: int, layers: int):
        super().__init__()
        self.inp = _mlp(DEVICE_FEATURES, hidden, hidden)
        self.edge = nn.ModuleList(_mlp(EDGE_FEATURES, hidden, hidden) for _ in range(layers))
        self.msg = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.upd = nn.ModuleList(_mlp(2 * hidden, hidden, hidden) for _ in range(layers))
        self.norm = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))

    def forward(self, dev: torch.Tensor, dev_edge: torch.Tensor) -> torch.Tensor:
        h = self.inp(dev)  # (B, M, H)
        for edge, msg, upd, norm in zip(self.edge, self.msg, self.upd, self.norm, strict=True):
            gate = torch.sigmoid(edge(dev_edge))  # (B, M, M, H)
            m = (gate * msg(h)[:, None, :, :]).mean(dim=2)
            h = norm(h + upd(torch.cat([h, m], dim=-1)))
        return h


class Denoiser(nn.Module):
    """p_θ(y_0 | y_t, z_G): logits (B, N, M) over the serving device of every step."""

    def __init__(self, cfg: DiffusionConfig):
        super().__init__()
        h = cfg.hidden
        self.encoder = DeviceEncoder(h, cfg.encoder_layers)
        self.pair = _mlp(PAIR_FEATURES, h, h)
        self.xt = nn.Embedding(2, h)
        self.time = _mlp(h, h, h)
        self.edge = _mlp(EDGE_FEATURES, h, 2 * h)
        n = cfg.denoiser_layers
        self.v = nn.ModuleList(nn.Linear(h, 4 * h) for _ in range(n))
        self.upd = nn.ModuleList(_mlp(5 * h, h, h) for _ in range(n))
        self.norm = nn.ModuleList(nn.LayerNorm(h) for _ in range(n))
        self.head = nn.Linear(h, 1)
        self.hidden = h

    def time_embedding(self, t: torch.Tensor) -> torch.Tensor:
        half = self.hidden // 2
        freq = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=torch.float32) / half)
        ang = t.float()[:, None] * freq[None]
        return self.time(torch.cat([ang.sin(), ang.cos()], dim=-1))

    def encode(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The parts that do not depend on y_t or t (computed once per instance when sampling)."""
        zg = self.encoder(feats["dev"], feats["dev_edge"])  # z_G: (B, M, H)
        base = self.pair(feats["pair"]) + zg[:, None]
        gates = None
        if feats["pair"].shape[1] > 1:
            g = torch.sigmoid(self.edge(feats["edge"]))  # (B, N-1, M_j, M_k, 2H): hand-off gate of j → k
            hd = self.hidden
            gates = (g[..., :hd].permute(0, 1, 4, 3, 2).contiguous(),  # forward: to k from j
                     g[..., hd:].permute(0, 1, 4, 2, 3).contiguous())  # backward: to j from k
        return {"base": base, "gates": gates}

    def denoise(self, enc: dict[str, torch.Tensor], y_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Logits (K, N, M) of p_θ(y_0 | y_t); ``enc`` of batch 1 is shared by K samples."""
        base, gates = enc["base"], enc["gates"]
        m = base.shape[2]
        h = base + self.xt(torch.nn.functional.one_hot(y_t, m)) + self.time_embedding(t)[:, None, None]
        hd = self.hidden
        for v, upd, norm in zip(self.v, self.upd, self.norm, strict=True):
            vp, vn, vd, vr = v(h).split(hd, dim=-1)
            prev = torch.zeros_like(h)
            nxt = torch.zeros_like(h)
            if gates is not None:
                # cell (i+1, k) hears (i, j) through the hand-off gate of j → k; (i, j) hears (i+1, k) likewise
                # gates as (B, N-1, H, M_to, M_from) matrices: one matrix-vector product per (step, channel)
                prev[:, 1:] = (gates[0] @ vp[:, :-1].transpose(2, 3).unsqueeze(-1)).squeeze(-1).transpose(2, 3) / m
                nxt[:, :-1] = (gates[1] @ vn[:, 1:].transpose(2, 3).unsqueeze(-1)).squeeze(-1).transpose(2, 3) / m
            col = vd.mean(dim=1, keepdim=True).expand_as(h)
            row = vr.mean(dim=2, keepdim=True).expand_as(h)
            h = norm(h + upd(torch.cat([h, prev, nxt, col, row], dim=-1)))
        return self.head(h).squeeze(-1)

    def forward(self, feats: dict[str, torch.Tensor], y_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.denoise(self.encode(feats), y_t, t)


# --------------------------------------------------------------------------- diffusion maths (plain tensors)


def alpha_bar(steps: int, s: float = 0.008) -> torch.Tensor:
    """Cosine schedule ᾱ_0..ᾱ_T (Nichol & Dhariwal 2021), ᾱ_0 = 1."""
    x = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((x + s) / (1 + s) * math.pi / 2) ** 2
    return (f / f[0]).clamp(min=1e-6).float()


def q_sample(y0: torch.Tensor, abar_t: torch.Tensor, m: int, gen: torch.Generator | None = None) -> torch.Tensor:
    """y_t ~ ᾱ_t·onehot(y_0) + (1 − ᾱ_t)/M (per batch element ᾱ_t)."""
    keep = torch.rand(y0.shape, generator=gen) < abar_t.view(-1, *[1] * (y0.dim() - 1))
    noise = torch.randint(0, m, y0.shape, generator=gen)
    return torch.where(keep, y0, noise)


def posterior(y_t: torch.Tensor, p0: torch.Tensor, abar_t: float, abar_s: float) -> torch.Tensor:
    """p(y_s | y_t) = Σ_{y_0} q(y_s | y_t, y_0)·p0(y_0) for s < t, as probabilities (..., M).

    q(y_s | y_t, y_0) ∝ q(y_t | y_s)·q(y_s | y_0) with q(y_t | y_s) = α·δ + (1 − α)/M, α = ᾱ_t/ᾱ_s; marginalising
    over y_0 replaces onehot(y_0) by p0 in q(y_s | y_0).
    """
    m = p0.shape[-1]
    a = abar_t / abar_s
    like = a * torch.nn.functional.one_hot(y_t, m).float() + (1 - a) / m  # q(y_t | y_s = c) as a function of c
    prior = abar_s * p0 + (1 - abar_s) / m
    post = like * prior
    return post / post.sum(dim=-1, keepdim=True)


def timesteps(total: int, stride: int) -> list[int]:
    """T, T−s, …, down to 0 (the last jump may be shorter)."""
    ts = list(range(total, 0, -stride))
    return ts + [0]


# --------------------------------------------------------------------------- training


def train(cfg: DiffusionConfig, data: list[tuple[Tables, np.ndarray]], ckpt_dir: Path, quiet: bool = False,
          ckpt_every: int = 200) -> tuple[Denoiser, dict]:
    """Supervised denoising on (instance, MILP label) pairs; resumes from ``ckpt_dir/train_state.pt``."""
    from tqdm import tqdm

    cfg.validate()
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = Denoiser(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(k, cfg.train_iters) / cfg.train_iters)))
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    state_path = ckpt_dir / "train_state.pt"
    step, losses, wall_s = 0, [], 0.0
    if state_path.exists():
        st = torch.load(state_path, weights_only=False)
        if st["format_version"] != FORMAT_VERSION or st["config"] != asdict(cfg):
            raise ValueError(f"{state_path}: checkpoint of another config; delete it to retrain")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        gen.set_state(st["gen"])
        rng.bit_generator.state = st["rng"]
        step, losses, wall_s = st["step"], st["losses"], st["wall_s"]
    groups: dict[tuple[int, int], list[int]] = {}
    for k, (t, _) in enumerate(data):
        groups.setdefault((t.n_steps, t.n_devices), []).append(k)
    keys = sorted(groups)
    weights = np.array([len(groups[k]) for k in keys], float)
    feats = [features(t) for t, _ in data]
    labels = [torch.as_tensor(np.asarray(y), dtype=torch.long) for _, y in data]
    abar = alpha_bar(cfg.diffusion_steps)
    started = time.perf_counter()
    model.train()
    with tqdm(total=cfg.train_iters, initial=step, desc="cot diffusion training",
              disable=True if quiet else None) as bar:
        while step < cfg.train_iters:
            key = keys[rng.choice(len(keys), p=weights / weights.sum())]
            idx = rng.choice(groups[key], size=min(cfg.batch_size, len(groups[key])), replace=False)
            fb = {k: torch.from_numpy(np.stack([feats[i][k] for i in idx])) for k in feats[0]}
            y0 = torch.stack([labels[i] for i in idx])
            t = torch.randint(1, cfg.diffusion_steps + 1, (len(idx),), generator=gen)
            y_t = q_sample(y0, abar[t], key[1], gen)
            logits = model(fb, y_t, t)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, key[1]), y0.reshape(-1))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            losses.append(float(loss.detach()))
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
            if step % ckpt_every == 0 or step == cfg.train_iters:
                torch.save({"format_version": FORMAT_VERSION, "config": asdict(cfg), "model": model.state_dict(),
                            "opt": opt.state_dict(), "sched": sched.state_dict(), "gen": gen.get_state(),
                            "rng": rng.bit_generator.state, "step": step, "losses": losses,
                            "wall_s": wall_s + time.perf_counter() - started}, state_path)
    wall_s += time.perf_counter() - started
    model.eval()
    info = {"train_iters": step, "train_wall_s": wall_s, "final_loss": float(np.mean(losses[-100:])),
            "num_parameters": sum(p.numel() for p in model.parameters()), "train_instances": len(data),
            "train_sizes": [list(k) for k in keys]}
    return model, info


def load_model(cfg: DiffusionConfig, ckpt_dir: Path) -> Denoiser:
    st = torch.load(ckpt_dir / "train_state.pt", weights_only=False)
    if st["config"] != asdict(cfg) or st["step"] < cfg.train_iters:
        raise ValueError(f"{ckpt_dir}: no finished model of this config")
    model = Denoiser(cfg)
    model.load_state_dict(st["model"])
    model.eval()
    return model


# --------------------------------------------------------------------------- sampling, decoding, repair


@torch.no_grad()
def sample_probs(model: Denoiser, t: Tables, stride: int, k: int, gen: torch.Generator,
                 diffusion_steps: int) -> torch.Tensor:
    """k samples of p_θ(y_0 | y_1..) for one instance with the skip-step sampler: (k, N, M) probabilities."""
    m = t.n_devices
    enc = model.encode(batch_features([t]))
    abar = alpha_bar(diffusion_steps)
    y = torch.randint(0, m, (k, t.n_steps), generator=gen)
    ts = timesteps(diffusion_steps, stride)
    p0 = None
    for cur, nxt in zip(ts[:-1], ts[1:], strict=True):
        p0 = torch.softmax(model.denoise(enc, y, torch.full((k,), cur)), dim=-1)
        if nxt == 0:
            break
        post = posterior(y, p0, float(abar[cur]), float(abar[nxt]))
        y = torch.multinomial(post.reshape(-1, m), 1, generator=gen).view(k, t.n_steps)
    return p0


def decode(t: Tables, probs: np.ndarray) -> np.ndarray:
    """Greedy masked decode: most confident step first, each to its most probable device with room."""
    used = np.zeros(t.n_devices)
    serve = np.full(t.n_steps, -1)
    for i in np.argsort(-probs.max(axis=1), kind="stable"):
        room = used + t.mem[i] <= t.cap * (1 + 1e-9)
        j = int(np.where(room, probs[i], -1.0).argmax()) if room.any() else int((t.cap - used).argmax())
        serve[i] = j
        used[j] += t.mem[i]
    return serve


def solve(model: Denoiser, t: Tables, stride: int, k: int, seed: int, diffusion_steps: int,
          repair: bool = True) -> dict:
    """Sample k deployments, decode with masks, repair by local search, keep the best. Keys: serve, latency_s,
    feasible, raw_feasible (argmax before masks), decoded_feasible, decoded_latency_s, wall_ms."""
    started = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    probs = sample_probs(model, t, stride, k, gen, diffusion_steps).numpy()
    raw = [overflow_bytes(t, p.argmax(axis=1)) == 0 for p in probs]
    decoded = [decode(t, p) for p in probs]
    dec_lat = [path_latency_s(t, s) if overflow_bytes(t, s) == 0 else np.inf for s in decoded]
    final = [local_search(t, s) for s in decoded] if repair else decoded
    keyed = [(overflow_bytes(t, s) > 0, path_latency_s(t, s), s) for s in final]
    infeasible, lat, best = min(keyed, key=lambda x: x[:2])
    return {"serve": best, "latency_s": lat, "feasible": not infeasible, "raw_feasible": bool(np.mean(raw) == 1.0),
            "raw_feasible_frac": float(np.mean(raw)), "decoded_feasible": bool(np.isfinite(min(dec_lat))),
            "decoded_latency_s": float(min(dec_lat)), "wall_ms": 1e3 * (time.perf_counter() - started)}
