"""`edgegen cot case-study`: monolithic vs microservice CoT inference — memory and latency vs max tokens per device.

Edge-LAM's case study (GSM8K, Qwen2.5-7B-Instruct, up to 10 devices) reports that 128-token CoT microservices cut
total memory by 70.8% and latency by 59.6% against monolithic inference. This module measures the same comparison on
a real transformer on this CPU and projects it to the Qwen2.5-7B configuration.

Deployments of one request (prompt of P tokens, a chain of thought of G generated tokens):
- monolithic: one device pre-fills the prompt and decodes all G tokens with a KV cache of up to P + G tokens;
- microservices with at most T tokens per device: ⌈G/T⌉ steps on distinct devices; step s receives the prompt and
  the previous step's text (≤ T tokens, sent over a D2D link), pre-fills them and decodes its own ≤ T tokens, so its
  KV cache holds at most P + 2T tokens.

Measured (one thread, random-init ``Qwen2ForCausalLM`` built from a small config, no download): wall time of every
pre-fill and decode, and the bytes of the KV cache tensors (``DynamicCache``) at the end of every device's work.
"Active memory" = KV cache (weights are the same on every device and listed separately).

Projection to Qwen2.5-7B (HF config ``Qwen/Qwen2.5-7B-Instruct``: hidden 3584, FFN 18944, 28 layers, 28 query heads,
4 KV heads, head dim 128, vocab 152064, untied embeddings; 7.62e9 parameters, counted here on the meta device):
a roofline on this CPU: every forward pass takes max(FLOP / θ, bytes / BW), with θ the FLOP/s measured for the small
model's pre-fill (the dense-matmul regime, one thread) and BW the main-memory bandwidth measured by a large copy;
weight FLOP 2·P_ne per token (+ LM head), attention 4·L·d_q per attended context position; a decode pass reads the
bf16 weights (2 bytes/parameter) and the KV cache (2·L·kv_heads·head_dim·2 = 57,344 B/token). So 7B decode is
bandwidth-bound and pre-fill compute-bound, as on real edge hardware (with this CPU's θ and BW).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgegen.config import check_range
from edgegen.runs import current_command, environment, save_figure

PAPER_MEMORY_CUT_PCT = 70.8  # Edge-LAM case study, 128-token microservices vs monolithic
PAPER_LATENCY_CUT_PCT = 59.6
QWEN25_7B = {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
             "num_key_value_heads": 4, "vocab_size": 152064, "tie_word_embeddings": False}


@dataclass(frozen=True)
class CaseStudyConfig:
    """Monolithic vs microservice CoT inference on a small Qwen2-architecture model, projected to Qwen2.5-7B."""

    out: Path = Path("runs/cot-case-study")
    """Output directory (summary.json, plots/)."""
    prompt_tokens: int = 128
    """P: prompt length (a GSM8K question with its instruction)."""
    cot_tokens: int = 640
    """G: generated chain-of-thought tokens of one request."""
    max_tokens_per_device: tuple[int, ...] = (64, 128, 256)
    """T values (the microservice granularity)."""
    max_devices: int = 10
    """Devices available (⌈G/T⌉ must not exceed it)."""
    hidden_size: int = 512
    """Small model: hidden size."""
    intermediate_size: int = 1408
    """Small model: FFN size."""
    num_layers: int = 4
    """Small model: layers."""
    num_heads: int = 8
    """Small model: query heads."""
    num_kv_heads: int = 2
    """Small model: KV heads (grouped-query attention, as Qwen2)."""
    vocab_size: int = 4096
    """Small model: vocabulary."""
    repeats: int = 2
    """Timed repetitions of every deployment (the median is kept)."""
    link_rate_bps: float = 100e6
    """D2D rate for the text hand-off between microservices (32 bits per token)."""
    seed: int = 0
    """Weights and prompt."""
    quiet: bool = False
    """No progress bar."""

    def validate(self) -> CaseStudyConfig:
        check_range("prompt_tokens", self.prompt_tokens, 1, 32_768)
        check_range("cot_tokens", self.cot_tokens, 1, 32_768)
        for i, t in enumerate(self.max_tokens_per_device):
            check_range(f"max_tokens_per_device[{i}]", t, 1, self.cot_tokens)
            check_range(f"steps for max_tokens_per_device[{i}]={t}", math.ceil(self.cot_tokens / t), 1,
                        self.max_devices)
        check_range("hidden_size", self.hidden_size, 8, 8192)
        check_range("num_heads", self.num_heads, 1, 128)
        check_range("num_kv_heads", self.num_kv_heads, 1, self.num_heads)
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            from edgegen.config import ConfigError

            raise ConfigError("hidden_size must be divisible by num_heads, and num_heads by num_kv_heads")
        check_range("intermediate_size", self.intermediate_size, 8, 65_536)
        check_range("num_layers", self.num_layers, 1, 128)
        check_range("vocab_size", self.vocab_size, 16, 300_000)
        check_range("repeats", self.repeats, 1, 100)
        check_range("link_rate_bps", self.link_rate_bps, 1e3, 1e12)
        return self


# --------------------------------------------------------------------------- analytic FLOP / byte models


def step_lengths(cot_tokens: int, max_tokens: int) -> list[int]:
    """Tokens generated by each microservice: T, T, …, remainder."""
    n = math.ceil(cot_tokens / max_tokens)
    return [max_tokens] * (n - 1) + [cot_tokens - max_tokens * (n - 1)]


def plan(cot_tokens: int, prompt_tokens: int, max_tokens: int | None) -> list[dict]:
    """Device work of one request: per device, the tokens it pre-fills and decodes (None = monolithic)."""
    if max_tokens is None:
        return [{"prefill": prompt_tokens, "decode": cot_tokens}]
    lens = step_lengths(cot_tokens, max_tokens)
    return [{"prefill": prompt_tokens + (lens[s - 1] if s else 0), "decode": g} for s, g in enumerate(lens)]


def work_flop(work: dict, weight_flop_per_token: float, attn_flop_per_position: float) -> tuple[float, float]:
    """(pre-fill FLOP, decode FLOP) of one device: weights per token + attention per attended position (causal)."""
    p, g = work["prefill"], work["decode"]
    prefill = weight_flop_per_token * p + attn_flop_per_position * p * (p + 1) / 2
    decode = weight_flop_per_token * g + attn_flop_per_position * (g * p + g * (g + 1) / 2)
    return prefill, decode


def roofline_time_s(work: dict, weight_flop_per_token: float, attn_flop_per_position: float, weight_bytes: float,
                    kv_bytes_per_token: float, flops_per_s: float, bytes_per_s: float) -> float:
    """Roofline time of one device's work: every forward pass takes max(FLOP / θ, bytes read / bandwidth).

    Pre-fill is one pass over p tokens (reads the weights once); decode is one pass per token at context c
    (reads the weights and the KV cache of c tokens)."""
    p, g = work["prefill"], work["decode"]
    pre_flop = weight_flop_per_token * p + attn_flop_per_position * p * (p + 1) / 2
    t = max(pre_flop / flops_per_s, (weight_bytes + kv_bytes_per_token * p) / bytes_per_s)
    c = np.arange(p, p + g, dtype=float)
    dec = np.maximum((weight_flop_per_token + attn_flop_per_position * (c + 1)) / flops_per_s,
                     (weight_bytes + kv_bytes_per_token * c) / bytes_per_s)
    return float(t + dec.sum())


def measure_bandwidth_bytes_per_s(mbytes: int = 256, repeats: int = 5) -> float:
    """Main-memory bandwidth of this machine: bytes read + written by a large numpy copy (best of ``repeats``)."""
    src = np.ones(mbytes * 2**20 // 8)
    dst = np.empty_like(src)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * src.nbytes / best


def kv_tokens(work: dict) -> int:
    return work["prefill"] + work["decode"]


# --------------------------------------------------------------------------- measurement


def _model_flops(cfg) -> tuple[float, float, int]:
    """(weight FLOP per token incl. LM head, attention FLOP per attended position, KV values per token)."""
    d, layers, heads, kv = cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = d // heads
    per_layer = d * d * 2 + 2 * d * kv * head_dim + 3 * d * cfg.intermediate_size
    weight = 2.0 * (layers * per_layer + d * cfg.vocab_size)
    attn = 4.0 * layers * heads * head_dim
    return weight, attn, 2 * layers * kv * head_dim


def _cache_bytes(cache) -> int:
    return int(sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers))


def run_device(model, work: dict, prompt: np.ndarray) -> dict:
    """Pre-fill then greedy decode on one device: wall times and the KV cache bytes at the end."""
    import torch

    ids = torch.as_tensor(prompt[: work["prefill"]], dtype=torch.long)[None]
    with torch.no_grad():
        t0 = time.perf_counter()
        out = model(ids, use_cache=True)
        t1 = time.perf_counter()
        cache = out.past_key_values
        tok = out.logits[:, -1:].argmax(-1)
        for _ in range(work["decode"]):
            out = model(tok, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            tok = out.logits[:, -1:].argmax(-1)
        t2 = time.perf_counter()
    return {"prefill_s": t1 - t0, "decode_s": t2 - t1, "kv_bytes": _cache_bytes(cache),
            "kv_tokens": cache.get_seq_length()}


def run_case_study(cfg: CaseStudyConfig) -> dict:
    import torch
    from tqdm import tqdm
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg.validate()
    torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    small_cfg = Qwen2Config(hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                            num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                            num_key_value_heads=cfg.num_kv_heads, vocab_size=cfg.vocab_size,
                            max_position_embeddings=4 * (cfg.prompt_tokens + cfg.cot_tokens), tie_word_embeddings=False)
    model = Qwen2ForCausalLM(small_cfg).eval()
    weight_bytes_small = sum(p.numel() * p.element_size() for p in model.parameters())
    rng = np.random.default_rng(cfg.seed)
    prompt = rng.integers(0, cfg.vocab_size, size=cfg.prompt_tokens + max(cfg.max_tokens_per_device) + 1)
    w_small, a_small, _ = _model_flops(small_cfg)
    settings = [None, *cfg.max_tokens_per_device]
    measured: dict = {}
    started = time.perf_counter()
    with tqdm(total=len(settings) * cfg.repeats, desc="cot case study", disable=True if cfg.quiet else None) as bar:
        for t in settings:
            works = plan(cfg.cot_tokens, cfg.prompt_tokens, t)
            reps = []
            for _ in range(cfg.repeats):
                reps.append([run_device(model, w, prompt) for w in works])
                bar.update(1)
            totals = [sum(d["prefill_s"] + d["decode_s"] for d in r) for r in reps]
            devs = reps[int(np.argsort(totals)[len(totals) // 2])]
            comm_s = sum(32.0 * w["prefill"] / cfg.link_rate_bps for w in works)  # prompt (+ previous text) in
            measured["monolithic" if t is None else f"T{t}"] = {
                "max_tokens_per_device": t, "devices": len(works), "works": works,
                "compute_s": sum(d["prefill_s"] + d["decode_s"] for d in devs), "comm_s": comm_s,
                "prefill_s": sum(d["prefill_s"] for d in devs), "decode_s": sum(d["decode_s"] for d in devs),
                "kv_bytes_per_device_max": max(d["kv_bytes"] for d in devs),
                "kv_bytes_total": sum(d["kv_bytes"] for d in devs),
                "kv_tokens_per_device_max": max(d["kv_tokens"] for d in devs)}
    for r in measured.values():
        r["latency_s"] = r["compute_s"] + r["comm_s"]
    # CPU throughput in the dense-matmul regime: the monolithic pre-fill of the small model
    mono = measured["monolithic"]
    prefill_flop, _ = work_flop(mono["works"][0], w_small, a_small)
    theta = prefill_flop / mono["prefill_s"]
    bandwidth = measure_bandwidth_bytes_per_s()

    with torch.device("meta"):
        big = Qwen2ForCausalLM(Qwen2Config(**QWEN25_7B))
    big_params = sum(p.numel() for p in big.parameters())
    big_cfg = big.config
    w_big, a_big, kv_values_big = _model_flops(big_cfg)
    kv_bytes_big = kv_values_big * 2  # bf16: 2 bytes per value
    projected: dict = {}
    for key, r in measured.items():
        compute_s = sum(roofline_time_s(w, w_big, a_big, 2.0 * big_params, kv_bytes_big, theta, bandwidth)
                        for w in r["works"])
        flop_only_s = sum(sum(work_flop(w, w_big, a_big)) for w in r["works"]) / theta
        kv_dev = max(kv_tokens(w) for w in r["works"]) * kv_bytes_big
        projected[key] = {"max_tokens_per_device": r["max_tokens_per_device"], "compute_s": compute_s,
                          "flop_bound_s": flop_only_s, "comm_s": r["comm_s"], "latency_s": compute_s + r["comm_s"],
                          "kv_bytes_per_device_max": kv_dev,
                          "kv_bytes_total": sum(kv_tokens(w) for w in r["works"]) * kv_bytes_big,
                          "memory_bytes_per_device_max": 2.0 * big_params + kv_dev,
                          "memory_bytes_total": len(r["works"]) * 2.0 * big_params
                          + sum(kv_tokens(w) for w in r["works"]) * kv_bytes_big}
    for table in (measured, projected):
        base = table["monolithic"]
        for r in table.values():
            r["latency_cut_pct"] = 100.0 * (1 - r["latency_s"] / base["latency_s"])
            r["active_memory_cut_pct"] = 100.0 * (1 - r["kv_bytes_per_device_max"] / base["kv_bytes_per_device_max"])
            r["active_memory_total_cut_pct"] = 100.0 * (1 - r["kv_bytes_total"] / base["kv_bytes_total"])
            if "memory_bytes_per_device_max" in r:
                r["memory_cut_pct"] = 100.0 * (1 - r["memory_bytes_per_device_max"]
                                               / base["memory_bytes_per_device_max"])
                r["memory_total_cut_pct"] = 100.0 * (1 - r["memory_bytes_total"] / base["memory_bytes_total"])
    t128 = projected.get("T128")
    verdict = None
    if t128 is not None:
        verdict = {"active_memory_cut_pct": t128["active_memory_cut_pct"],
                   "memory_cut_pct_with_weights": t128["memory_cut_pct"], "latency_cut_pct": t128["latency_cut_pct"],
                   "memory_trend_reproduces": bool(t128["active_memory_cut_pct"] > 0),
                   "memory_magnitude_within_10_points": bool(abs(t128["active_memory_cut_pct"]
                                                                 - PAPER_MEMORY_CUT_PCT) <= 10),
                   "latency_trend_reproduces": bool(t128["latency_cut_pct"] > 0),
                   "latency_magnitude_within_10_points": bool(abs(t128["latency_cut_pct"] - PAPER_LATENCY_CUT_PCT)
                                                              <= 10)}
    summary = {"kind": "cot_case_study", "config": json.loads(json.dumps(asdict(cfg), default=str)),
               "small_model": {"parameters": sum(p.numel() for p in model.parameters()),
                               "weight_bytes": weight_bytes_small, "weight_flop_per_token": w_small,
                               "attn_flop_per_position": a_small},
               "qwen25_7b": {**QWEN25_7B, "parameters": big_params, "weight_flop_per_token": w_big,
                             "attn_flop_per_position": a_big, "kv_bytes_per_token_bf16": kv_bytes_big,
                             "weight_bytes_bf16": 2.0 * big_params},
               "cpu_flops_per_s": theta, "memory_bandwidth_bytes_per_s": bandwidth,
               "measured": measured, "projected_qwen25_7b": projected,
               "paper": {"memory_cut_pct": PAPER_MEMORY_CUT_PCT, "latency_cut_pct": PAPER_LATENCY_CUT_PCT,
                         "max_tokens_per_device": 128},
               "verdict": verdict, "wall_s": time.perf_counter() - started, "command": current_command(),
               "environment": environment()}
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    plot_case_study(summary, cfg.out / "plots" / "case_study.png")
    return summary


def plot_case_study(summary: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, table, style in (("measured (small model, this CPU)", summary["measured"], "o-"),
                               ("projected Qwen2.5-7B", summary["projected_qwen25_7b"], "s--")):
        keys = [k for k in table if k != "monolithic"]
        x = [table[k]["max_tokens_per_device"] for k in keys]
        ax[0].plot(x, [table[k]["active_memory_cut_pct"] for k in keys], style, label=name)
        ax[1].plot(x, [table[k]["latency_cut_pct"] for k in keys], style, label=name)
    proj = summary["projected_qwen25_7b"]
    keys = [k for k in proj if k != "monolithic"]
    ax[0].plot([proj[k]["max_tokens_per_device"] for k in keys], [proj[k]["memory_cut_pct"] for k in keys], "^:",
               label="projected 7B incl. weights")
    ax[0].plot([128], [summary["paper"]["memory_cut_pct"]], "r*", ms=12, label="paper")
    ax[1].plot([128], [summary["paper"]["latency_cut_pct"]], "r*", ms=12, label="paper")
    ax[0].set_ylabel("memory cut per device vs monolithic (%)")
    ax[1].set_ylabel("latency cut vs monolithic (%)")
    for a in ax:
        a.set_xscale("log", base=2)
        a.set_xlabel("max tokens per device T")
        a.axhline(0, color="grey", lw=0.5)
        a.legend(fontsize=7)
    return save_figure(fig, path)


def format_table(summary: dict) -> str:
    rows = ["| deployment | devices | KV tokens / device (max) | measured latency s | measured active-memory cut | "
            "7B latency s (projected) | 7B latency cut | 7B active-memory cut | 7B memory cut incl. weights "
            "(per device, total over devices) |", "|---|---|---|---|---|---|---|---|---|"]
    for key, r in summary["measured"].items():
        p = summary["projected_qwen25_7b"][key]
        rows.append(f"| {key} | {r['devices']} | {r['kv_tokens_per_device_max']} | {r['latency_s']:.2f} | "
                    f"{r['active_memory_cut_pct']:.1f}% | {p['latency_s']:.1f} | {p['latency_cut_pct']:.1f}% | "
                    f"{p['active_memory_cut_pct']:.1f}% | {p['memory_cut_pct']:.1f}%, "
                    f"{p['memory_total_cut_pct']:.1f}% |")
    return "\n".join(rows)


def report_section(run_dir: Path, summary: dict, figures: Path, out_dir: Path) -> list[str]:
    """BENCHMARKS.md section of a ``cot_case_study`` run."""
    from edgegen.report import copy_plots

    c, sm, big, v = summary["config"], summary["small_model"], summary["qwen25_7b"], summary["verdict"]
    lines = [f"### CoT case study: monolithic vs microservices: `{run_dir}`", "",
             f"Command: `{summary.get('command', '')}` ({summary['wall_s']:.0f} s). One request: prompt "
             f"{c['prompt_tokens']} tokens, chain of thought {c['cot_tokens']} tokens; microservices of at most T "
             f"tokens on ⌈G/T⌉ devices, each pre-filling the prompt + the previous step's text. Measured on a "
             f"random-init `Qwen2ForCausalLM` ({sm['parameters']:,} parameters: hidden {c['hidden_size']}, "
             f"{c['num_layers']} layers, {c['num_heads']}/{c['num_kv_heads']} heads) on this CPU, one thread "
             f"(pre-fill throughput {summary['cpu_flops_per_s'] / 1e9:.1f} GFLOP/s, memory bandwidth "
             f"{summary['memory_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s); projected by a roofline to Qwen2.5-7B "
             f"({big['parameters'] / 1e9:.2f}e9 parameters, {big['num_hidden_layers']} layers, hidden "
             f"{big['hidden_size']}, {big['num_attention_heads']}/{big['num_key_value_heads']} heads; "
             f"{big['kv_bytes_per_token_bf16']:,} KV bytes per token in bf16).", "", format_table(summary), ""]
    if v is not None:
        lines.append(
            f"Against the paper (T = 128: {summary['paper']['memory_cut_pct']}% memory, "
            f"{summary['paper']['latency_cut_pct']}% latency): projected 7B active-memory (KV) cut per device "
            f"{v['active_memory_cut_pct']:.1f}% — trend reproduces: **{v['memory_trend_reproduces']}**, within 10 "
            f"points: **{v['memory_magnitude_within_10_points']}**; with the weights counted the per-device cut is "
            f"{v['memory_cut_pct_with_weights']:.1f}%. Latency cut {v['latency_cut_pct']:.1f}% — trend reproduces: "
            f"**{v['latency_trend_reproduces']}**, within 10 points: **{v['latency_magnitude_within_10_points']}**.")
    return lines + copy_plots(run_dir, figures, out_dir) + [""]
