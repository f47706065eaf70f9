"""Gate traces of a small MoE language model trained here, their statistics, and the expert-FFN timing.

These are a SMALL model's traces: a ``transformers`` ``MixtralForCausalLM`` built from a ``MixtralConfig`` with a
few hundred thousand parameters (default: 4 layers, hidden 64, 8 experts of FFN width 64, top-2 routing as in
Mixtral 8x7B, Jiang et al. 2024), random init, trained for a few minutes on this CPU on locally generated text.
Real large-model traces have other skew and locality; the scheduler does not depend on them being realistic, the
statistics are reported so that a reader can judge what the workload looked like.

Data: a character-level stream of three kinds of generated chains, one per line:
    arithmetic   ``7+5=12;12*3=36;36-9=27.`` (2-4 steps, each step starts from the previous result, values 0..99)
    comparison   ``max(37,52)=52.`` / ``min(37,52)=37.``
    reversal     ``rev 4821=1284.``
The tokenizer is the fixed alphabet :data:`ALPHABET` (one id per character).

Trace: for held-out sequences, the router logits of every layer (``output_router_logits=True``); the top-k experts
per token and layer are ``topk(softmax(logits))`` exactly as ``MixtralTopKRouter`` selects them. Statistics
(:func:`trace_stats`): per-layer expert-usage entropy (skew), temporal locality (overlap of consecutive tokens'
expert sets vs independent draws), co-activation lift of expert pairs, and cross-layer mutual information.

The trained model and traces are cached under ``cache_dir/moe-traces-<fingerprint>`` where the fingerprint
hashes the :class:`TraceConfig`, the format version and the torch / transformers versions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgegen.config import ConfigError, check_range

FORMAT_VERSION = 1
ALPHABET = "\n 0123456789+-*=;.,()aeimnrvx"


@dataclass(frozen=True)
class TraceConfig:
    """The small MoE language model whose gate choices drive the scheduler."""

    num_layers: int = 4
    """Decoder layers, each with one MoE block (= MoE layers of the edge system)."""
    hidden_size: int = 64
    """Model width."""
    ffn_size: int = 64
    """Width of each expert's SwiGLU FFN."""
    num_experts: int = 8
    """Experts per MoE layer (Mixtral: 8)."""
    top_k: int = 2
    """Experts activated per token and layer (Mixtral: 2)."""
    num_heads: int = 4
    """Attention heads."""
    seq_len: int = 64
    """Training / tracing sequence length in characters."""
    train_steps: int = 1500
    """AdamW steps."""
    batch_size: int = 32
    """Sequences per step."""
    lr: float = 3e-3
    """Peak learning rate (linear warm-up over 5% of the steps, then cosine decay to 10%)."""
    router_aux_loss_coef: float = 0.01
    """Weight of Mixtral's load-balancing loss (transformers default 0.001)."""
    trace_sequences: int = 128
    """Held-out sequences whose gate choices are recorded (trace tokens = trace_sequences · seq_len)."""
    seed: int = 0
    """Seed of the data, the init and the training order."""

    def validate(self) -> TraceConfig:
        check_range("traces.num_layers", self.num_layers, 1, 32)
        check_range("traces.hidden_size", self.hidden_size, 8, 4096)
        check_range("traces.ffn_size", self.ffn_size, 4, 16384)
        check_range("traces.num_experts", self.num_experts, 2, 64)
        check_range("traces.top_k", self.top_k, 1, self.num_experts)
        check_range("traces.num_heads", self.num_heads, 1, 64)
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise ConfigError(f"traces.hidden_size ({self.hidden_size}) must be divisible by traces.num_heads "
                              f"({self.num_heads}) with an even head size")
        check_range("traces.seq_len", self.seq_len, 8, 4096)
        check_range("traces.train_steps", self.train_steps, 0, 10**7)
        check_range("traces.batch_size", self.batch_size, 1, 4096)
        check_range("traces.lr", self.lr, 1e-7, 1.0)
        check_range("traces.router_aux_loss_coef", self.router_aux_loss_coef, 0.0, 10.0)
        check_range("traces.trace_sequences", self.trace_sequences, 1, 10**6)
        return self

    def fingerprint(self) -> str:
        import torch
        import transformers

        text = json.dumps({"cfg": dataclasses.asdict(self), "format": FORMAT_VERSION, "torch": torch.__version__,
                           "transformers": transformers.__version__, "alphabet": ALPHABET}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- data


def encode(text: str) -> list[int]:
    """Character ids in :data:`ALPHABET`; an unknown character raises ValueError."""
    try:
        return [ALPHABET.index(c) for c in text]
    except ValueError as exc:
        bad = next(c for c in text if c not in ALPHABET)
        raise ValueError(f"character {bad!r} is not in the tokenizer alphabet {ALPHABET!r}") from exc


def decode(ids) -> str:
    return "".join(ALPHABET[int(i)] for i in ids)


def arithmetic_chain(rng: np.random.Generator) -> str:
    """``x op b = y;`` steps, each starting from the previous result, all values in 0..99."""
    x = int(rng.integers(1, 20))
    steps = []
    for _ in range(int(rng.integers(2, 5))):
        op, b = "+-*"[int(rng.integers(3))], int(rng.integers(1, 10))
        if op == "*" and x * b > 99:
            op = "-"
        if op == "-" and x - b < 0:
            op = "+"
        if op == "+" and x + b > 99:
            op = "-"
        y = x + b if op == "+" else x - b if op == "-" else x * b
        steps.append(f"{x}{op}{b}={y}")
        x = y
    return ";".join(steps) + "."


def comparison_chain(rng: np.random.Generator) -> str:
    a, b = (int(v) for v in rng.integers(0, 100, size=2))
    fn = "max" if rng.random() < 0.5 else "min"
    return f"{fn}({a},{b})={max(a, b) if fn == 'max' else min(a, b)}."


def reversal_chain(rng: np.random.Generator) -> str:
    digits = "".join(str(int(d)) for d in rng.integers(0, 10, size=int(rng.integers(3, 7))))
    return f"rev {digits}={digits[::-1]}."


def generate_text(rng: np.random.Generator, num_chars: int) -> str:
    """A stream of chains (50% arithmetic, 25% comparison, 25% reversal), one per line, ≥ ``num_chars`` long."""
    lines, n = [], 0
    while n < num_chars:
        u = rng.random()
        line = arithmetic_chain(rng) if u < 0.5 else comparison_chain(rng) if u < 0.75 else reversal_chain(rng)
        lines.append(line)
        n += len(line) + 1
    return "\n".join(lines) + "\n"


def make_batches(rng: np.random.Generator, num_sequences: int, seq_len: int) -> np.ndarray:
    """``(num_sequences, seq_len)`` token ids: windows of one generated stream at random offsets."""
    ids = np.array(encode(generate_text(rng, num_sequences * seq_len + 4 * seq_len)), dtype=np.int64)
    starts = rng.integers(0, len(ids) - seq_len, size=num_sequences)
    return np.stack([ids[s:s + seq_len] for s in starts])


# --------------------------------------------------------------------------- model, training, tracing


def build_model(cfg: TraceConfig):
    """A randomly initialised ``MixtralForCausalLM`` (router logits on, jitter off, tied embeddings)."""
    from transformers import MixtralConfig, MixtralForCausalLM

    mc = MixtralConfig(vocab_size=len(ALPHABET), hidden_size=cfg.hidden_size, intermediate_size=cfg.ffn_size,
                       num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                       num_key_value_heads=max(1, cfg.num_heads // 2), num_local_experts=cfg.num_experts,
                       num_experts_per_tok=cfg.top_k, max_position_embeddings=max(128, cfg.seq_len),
                       output_router_logits=True, router_aux_loss_coef=cfg.router_aux_loss_coef,
                       router_jitter_noise=0.0, tie_word_embeddings=True, sliding_window=None)
    return MixtralForCausalLM(mc)


def train_model(cfg: TraceConfig, quiet: bool = True) -> tuple[object, dict]:
    """Train :func:`build_model` on generated chains; returns (model, {"train_loss", "heldout_loss", ...})."""
    import torch
    from tqdm import tqdm

    from edgegen.seeding import derive_seed, seed_everything

    seed_everything(cfg.seed)
    model = build_model(cfg)
    rng = np.random.default_rng(derive_seed(cfg.seed, "moe-train-data"))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    warm = max(1, cfg.train_steps // 20)

    def lr_at(step: int) -> float:
        if step < warm:
            return cfg.lr * (step + 1) / warm
        frac = (step - warm) / max(1, cfg.train_steps - warm)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    started, losses = time.perf_counter(), []
    model.train()
    for step in tqdm(range(cfg.train_steps), desc="train MoE LM", disable=True if quiet else None):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        x = torch.from_numpy(make_batches(rng, cfg.batch_size, cfg.seq_len))
        out = model(input_ids=x, labels=x, output_router_logits=True)
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(out.loss.detach()) - cfg.router_aux_loss_coef * float(out.aux_loss.detach()))
    model.eval()
    held = torch.from_numpy(make_batches(np.random.default_rng(derive_seed(cfg.seed, "moe-heldout")), 64,
                                         cfg.seq_len))
    with torch.no_grad():
        out = model(input_ids=held, labels=held)
        pred = out.logits[:, :-1].argmax(-1)
        acc = float((pred == held[:, 1:]).float().mean())
    info = {"train_loss_last100": float(np.mean(losses[-100:])) if losses else float("nan"),
            "heldout_loss": float(out.loss) - cfg.router_aux_loss_coef * float(out.aux_loss),
            "heldout_next_char_acc": acc, "train_wall_s": time.perf_counter() - started,
            "num_parameters": int(sum(p.numel() for p in model.parameters())),
            "uniform_loss": math.log(len(ALPHABET))}
    return model, info


def record_traces(model, cfg: TraceConfig) -> tuple[np.ndarray, np.ndarray]:
    """Gate choices on held-out sequences: ``(tokens (N, S), experts (N, S, L, k))``, experts ordered by gate
    weight (largest first), exactly the router's ``topk`` of the softmax."""
    import torch

    from edgegen.seeding import derive_seed

    tokens = make_batches(np.random.default_rng(derive_seed(cfg.seed, "moe-trace")), cfg.trace_sequences,
                          cfg.seq_len)
    experts = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(tokens), 32):
            x = torch.from_numpy(tokens[start:start + 32])
            out = model(input_ids=x, output_router_logits=True)
            per_layer = [torch.topk(torch.softmax(lg.float(), -1), cfg.top_k, dim=-1).indices
                         .reshape(x.shape[0], x.shape[1], cfg.top_k) for lg in out.router_logits]
            experts.append(torch.stack(per_layer, dim=2).numpy())
    return tokens, np.concatenate(experts).astype(np.int16)


def load_or_build(cfg: TraceConfig, cache_dir: Path, quiet: bool = True) -> dict:
    """Cached traces (train + record on a cache miss): ``{"tokens", "experts", "stats", "train", "dir"}``."""
    import torch

    cfg.validate()
    d = Path(cache_dir) / f"moe-traces-{cfg.fingerprint()}"
    if not (d / "meta.json").exists():
        model, train_info = train_model(cfg, quiet=quiet)
        tokens, experts = record_traces(model, cfg)
        d.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), d / "model.pt")
        np.savez_compressed(d / "traces.npz", tokens=tokens, experts=experts)
        stats = trace_stats(experts, cfg.num_experts)
        (d / "stats.json").write_text(json.dumps(stats, indent=2))
        meta = {"config": dataclasses.asdict(cfg), "fingerprint": cfg.fingerprint(), "format": FORMAT_VERSION,
                "train": train_info}
        (d / "meta.json").write_text(json.dumps(meta, indent=2))  # written last: marks the cache entry complete
    data = np.load(d / "traces.npz")
    return {"tokens": data["tokens"], "experts": data["experts"], "dir": d,
            "stats": json.loads((d / "stats.json").read_text()),
            "train": json.loads((d / "meta.json").read_text())["train"]}


# --------------------------------------------------------------------------- statistics (pure numpy)


def expert_usage(experts: np.ndarray, num_experts: int) -> np.ndarray:
    """``(L, E)``: fraction of tokens whose top-k set at layer l contains expert e (rows sum to k)."""
    n, s, layers, k = experts.shape
    flat = experts.reshape(n * s, layers, k)
    usage = np.zeros((layers, num_experts))
    for layer in range(layers):
        usage[layer] = np.bincount(flat[:, layer].ravel(), minlength=num_experts) / (n * s)
    return usage


def normalized_entropy(p: np.ndarray) -> float:
    """Shannon entropy of a distribution divided by log(len(p)): 1 = uniform, 0 = one outcome."""
    p = np.asarray(p, dtype=float)
    p = p / p.sum()
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum() / math.log(len(p)))


def temporal_locality(experts: np.ndarray, num_experts: int) -> tuple[np.ndarray, np.ndarray]:
    """Per layer: mean |S_t ∩ S_{t+1}| / k over consecutive tokens of a sequence, and the same quantity for
    independent tokens with the same marginals, Σ_e P(e ∈ S)² / k."""
    n, s, layers, k = experts.shape
    onehot = np.zeros((n, s, layers, num_experts), dtype=bool)
    np.put_along_axis(onehot, experts.astype(np.int64), True, axis=-1)
    overlap = (onehot[:, 1:] & onehot[:, :-1]).sum(-1).mean(axis=(0, 1)) / k
    usage = expert_usage(experts, num_experts)
    return overlap, (usage**2).sum(-1) / k


def coactivation(experts: np.ndarray, num_experts: int) -> np.ndarray:
    """``(L, E, E)``: P(experts i and j both in a token's top-k set) per layer (diagonal: P(i in set))."""
    n, s, layers, k = experts.shape
    onehot = np.zeros((n * s, layers, num_experts))
    np.put_along_axis(onehot, experts.reshape(n * s, layers, k).astype(np.int64), 1.0, axis=-1)
    return np.einsum("tli,tlj->lij", onehot, onehot) / (n * s)


def cross_layer_mutual_information_bits(experts: np.ndarray, num_experts: int) -> np.ndarray:
    """``(L-1,)``: mutual information (bits) between a token's top-1 expert at layer l and at layer l+1."""
    top1 = experts[..., 0].reshape(-1, experts.shape[2])
    out = []
    for layer in range(top1.shape[1] - 1):
        joint = np.zeros((num_experts, num_experts))
        np.add.at(joint, (top1[:, layer], top1[:, layer + 1]), 1.0)
        joint /= joint.sum()
        pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
        nz = joint > 0
        out.append(float((joint[nz] * np.log2(joint[nz] / (pa @ pb)[nz])).sum()))
    return np.array(out)


def trace_stats(experts: np.ndarray, num_experts: int) -> dict:
    """Skew, temporal locality, co-activation and cross-layer dependence of a trace (JSON-friendly)."""
    usage = expert_usage(experts, num_experts)
    k = experts.shape[-1]
    overlap, overlap_indep = temporal_locality(experts, num_experts)
    co = coactivation(experts, num_experts)
    lifts, top_pairs = [], []
    for layer in range(usage.shape[0]):
        p = usage[layer]
        lift = np.where(np.outer(p, p) > 0, co[layer] / np.maximum(np.outer(p, p), 1e-12), 0.0)
        np.fill_diagonal(lift, 0.0)
        i, j = np.unravel_index(np.argmax(np.triu(co[layer], 1)), lift.shape)
        top_pairs.append({"experts": [int(i), int(j)], "share": float(co[layer, i, j]), "lift": float(lift[i, j])})
        lifts.append(lift)
    return {"tokens": int(experts.shape[0] * experts.shape[1]), "num_layers": int(usage.shape[0]),
            "num_experts": num_experts, "top_k": int(k),
            "usage": usage.tolist(),
            "entropy_norm": [normalized_entropy(u) for u in usage],
            "max_share": (usage.max(1) / k).tolist(),
            "locality_overlap": overlap.tolist(), "locality_overlap_independent": overlap_indep.tolist(),
            "coactivation": co.tolist(), "top_pair": top_pairs,
            "max_pair_lift": [float(x.max()) for x in lifts],
            "cross_layer_mi_bits": cross_layer_mutual_information_bits(experts, num_experts).tolist(),
            "cross_layer_mi_max_bits": math.log2(num_experts)}


def plot_trace_stats(stats: dict, path: Path) -> Path:
    """Expert usage per layer (bars) and the co-activation matrix of the most skewed layer (heatmap)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgegen.runs import save_figure

    usage = np.array(stats["usage"]) / stats["top_k"]
    layers, e = usage.shape
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / layers
    for layer in range(layers):
        axes[0].bar(np.arange(e) + layer * width, usage[layer], width,
                    label=f"layer {layer} (H/log E = {stats['entropy_norm'][layer]:.2f})")
    axes[0].axhline(1 / e, color="k", lw=0.8, ls="--", label="uniform")
    axes[0].set_xlabel("expert")
    axes[0].set_ylabel("share of routed (token, slot) pairs")
    axes[0].set_title(f"Expert usage of the small traced MoE ({stats['tokens']} tokens, top-{stats['top_k']})")
    axes[0].legend(fontsize=7)
    worst = int(np.argmin(stats["entropy_norm"]))
    im = axes[1].imshow(np.array(stats["coactivation"][worst]), cmap="viridis")
    axes[1].set_title(f"Co-activation P(i and j in top-k), layer {worst}")
    axes[1].set_xlabel("expert j")
    axes[1].set_ylabel("expert i")
    fig.colorbar(im, ax=axes[1])
    return save_figure(fig, path)


# --------------------------------------------------------------------------- calibration


def calibrate_expert_ffn(hidden_size: int, ffn_size: int, repeats: int = 30) -> dict:
    """Time one token through a real ``MixtralExperts`` FFN (one expert of the given size, SwiGLU: gate/up
    projection ``hidden→2·ffn`` and down projection ``ffn→hidden``) on this CPU with one torch thread.

    Returns ``{"seconds_per_token"`` (median), ``"flops_per_token"`` (2·3·hidden·ffn multiply-adds counted as 2
    FLOPs), ``"flops_per_s"``, ``"repeats"}``.
    """
    import torch
    from transformers import MixtralConfig
    from transformers.models.mixtral.modeling_mixtral import MixtralExperts
    from transformers.utils import logging as hf_logging

    check_range("repeats", repeats, 1, 10**6)
    threads, verbosity = torch.get_num_threads(), hf_logging.get_verbosity()
    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()  # a standalone expert module has no dispatch config; eager is what we time
    try:
        cfg = MixtralConfig(hidden_size=hidden_size, intermediate_size=ffn_size, num_local_experts=1,
                            num_experts_per_tok=1)
        experts = MixtralExperts(cfg)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            experts.gate_up_proj.normal_(0.0, 0.02, generator=gen)
            experts.down_proj.normal_(0.0, 0.02, generator=gen)
            x = torch.randn(1, hidden_size, generator=gen)
            idx, w = torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1)
            for _ in range(3):
                experts(x, idx, w)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                experts(x, idx, w)
                times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
        hf_logging.set_verbosity(verbosity)
    sec = float(np.median(times))
    flops = 2.0 * 3 * hidden_size * ffn_size
    return {"seconds_per_token": sec, "flops_per_token": flops, "flops_per_s": flops / sec, "repeats": repeats,
            "hidden_size": hidden_size, "ffn_size": ffn_size}
