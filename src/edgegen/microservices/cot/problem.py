"""Chain-of-thought (CoT) microservice deployment: instances, latency, feasibility, JSON in/out.

Edge-LAM (Wang, Shi, Letaief 2025) splits a chain of thought into N sequential reasoning steps; each step is a
microservice that runs on edge devices. A deployment is X ∈ {0,1}^{N×M} (x_ij = 1: step i is deployed on device j);
every step needs at least one device and device j holds at most C_j bytes: Σ_i x_ij·r_i ≤ C_j. The reasoning flow is
a path graph (step i hands its state to step i+1), and the end-to-end latency sums compute and device-to-device
communication along that path.

Latency along the served path
-----------------------------
One device serves each step: ``serve[i] = j`` with x_ij = 1. The latency of a request is

    L(serve) = s_in / R[src, serve_0]                                     (prompt from the requesting device)
             + Σ_i c_i / f_{serve_i}                                       (compute of every step)
             + Σ_{i<N-1} s_i / R[serve_i, serve_{i+1}]                     (hand-off to the next step)
             + s_out / R[serve_{N-1}, src]                                 (answer back),

with R[j, j] = ∞ (no transfer on the same device). Extra replicas (a row of X with more than one 1) only take
capacity: they never change L, so an optimal deployment has exactly one device per step and the problem is a
shortest path through the N×M layered graph with knapsack capacities (NP-hard: it contains bin packing).

Why not the literal objective: taking the compute of a step as the max over its replicas and each hand-off as the
min over replica pairs (:func:`literal_latency`) rewards replicas for an artefact — a replica on a device next to
the following step cuts the hand-off although no request would be split that way — and it makes the model bilinear
(a min over pairs of products of binaries): its MILP linearisation with M² pair indicators per hand-off could not
be solved to optimality at N = 10, M = 10 within 60 s, which rules out exact labels and exact gaps.

Instance distributions (:func:`generate`, all draws from one ``np.random.Generator``)
----------------------------------------------------------------------------------
- Steps run a step model with the Qwen2.5-1.5B architecture (28 layers, 2 KV heads of dim 128, 1.31e9
  non-embedding parameters; Qwen2.5 technical report / its HF config) with int8 weights; each microservice holds
  its own weight copy (independently deployable) plus the KV cache of ``concurrent_chains`` requests.
- Token budget of step i: τ_i ~ Uniform{tokens_min, …, tokens_max}; prompt P ~ Uniform{prompt_min, …, prompt_max}.
  Context after step i: L_i = P + Σ_{k≤i} τ_k.
- Compute c_i = 2·P_ne·τ_i + 4·n_layers·d_attn·Σ_{t=L_{i-1}}^{L_i-1} t FLOP (decode with a KV cache: weight
  matmuls + attention over the context); step 0 also pre-fills the prompt (2·P_ne·P).
- Memory r_i = weight bytes + concurrent_chains · kv_bytes_per_token · L_i.
- Hand-off payload s_i = KV cache of the context L_i (8·kv_bytes_per_token·L_i bits, so step i+1 need not pre-fill
  again); s_in = 32·P bits of prompt text, s_out = 32·τ_{N-1} bits of answer text.
- Device speed f_j ~ LogUniform[speed_min, speed_max] FLOP/s; device 0 is the requesting device (``source``).
- Capacity C_j = u_j · slack · Σ_i r_i / M with u_j ~ Uniform[0.5, 1.5], raised to at least max_i r_i so that every
  step fits somewhere; the tightness stays the same at every N, M.
- Devices uniform in a square of side ``area_m``; D2D rate R_jk = B·log2(1 + P_tx·g_jk/(N0·B)) with log-distance
  path loss (exponent ``path_loss_exponent``, free-space loss at 1 m, 2.4 GHz) and one Rayleigh draw per
  unordered pair (reciprocal, quasi-static), via :mod:`edgegen.wireless`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgegen import wireless
from edgegen.config import ConfigError, check_range

# Qwen2.5-1.5B (HF config.json): 28 layers, hidden 1536, 12 heads, 2 KV heads, head dim 128, 1.54e9 parameters of
# which 1.31e9 outside the embeddings.
STEP_MODEL_NON_EMBEDDING_PARAMS = 1.31e9
STEP_MODEL_PARAMS = 1.54e9
STEP_MODEL_LAYERS = 28
STEP_MODEL_ATTN_DIM = 12 * 128  # query heads × head dim
STEP_MODEL_KV_BYTES_PER_TOKEN = 28 * 2 * 2 * 128 * 2  # layers × (K, V) × kv heads × head dim × fp16 = 28,672 B


@dataclass(frozen=True)
class InstanceConfig:
    """Distribution of CoT deployment instances (see the module docstring)."""

    tokens_min: int = 32
    """Smallest token budget of one reasoning step."""
    tokens_max: int = 256
    """Largest token budget of one reasoning step."""
    prompt_min: int = 64
    """Shortest prompt (tokens)."""
    prompt_max: int = 256
    """Longest prompt (tokens)."""
    concurrent_chains: int = 16
    """Requests whose KV cache each microservice holds at once (memory only)."""
    weight_bytes_per_param: float = 1.0
    """Bytes per step-model weight (1 = int8)."""
    speed_min_flops: float = 0.05e12
    """Slowest device's effective speed (FLOP/s)."""
    speed_max_flops: float = 1.0e12
    """Fastest device's effective speed (FLOP/s)."""
    capacity_slack: float = 2.5
    """Mean device capacity × M / total step memory."""
    area_m: float = 100.0
    """Side of the square the devices are placed in (m)."""
    bandwidth_hz: float = 20e6
    """D2D channel bandwidth."""
    tx_power_w: float = 0.1
    """D2D transmit power."""
    path_loss_exponent: float = 3.0
    """Log-distance path-loss exponent."""
    noise_psd_dbm_per_hz: float = -174.0
    """Noise power spectral density."""

    def validate(self) -> InstanceConfig:
        check_range("tokens_min", self.tokens_min, 1, 100_000)
        check_range("tokens_max", self.tokens_max, self.tokens_min, 100_000)
        check_range("prompt_min", self.prompt_min, 1, 100_000)
        check_range("prompt_max", self.prompt_max, self.prompt_min, 100_000)
        check_range("concurrent_chains", self.concurrent_chains, 1, 10_000)
        check_range("weight_bytes_per_param", self.weight_bytes_per_param, 0.0625, 8.0)
        check_range("speed_min_flops", self.speed_min_flops, 1e6, 1e18)
        check_range("speed_max_flops", self.speed_max_flops, self.speed_min_flops, 1e18)
        check_range("capacity_slack", self.capacity_slack, 1.0, 100.0)
        check_range("area_m", self.area_m, 1.0, 1e5)
        check_range("bandwidth_hz", self.bandwidth_hz, 1e3, 1e11)
        check_range("tx_power_w", self.tx_power_w, 1e-6, 100.0)
        check_range("path_loss_exponent", self.path_loss_exponent, 1.5, 6.0)
        check_range("noise_psd_dbm_per_hz", self.noise_psd_dbm_per_hz, -220.0, -100.0)
        return self


@dataclass
class Instance:
    """One deployment problem. Arrays: steps (N), devices (M), rates (M, M) with ∞ on the diagonal."""

    compute_flop: np.ndarray
    """c_i, FLOP of step i."""
    memory_bytes: np.ndarray
    """r_i, memory of step i."""
    handoff_bits: np.ndarray
    """s_i, bits step i sends to step i+1 (length N-1)."""
    input_bits: float
    """s_in, bits the requesting device sends to step 0."""
    output_bits: float
    """s_out, bits the last step sends back."""
    speed_flops: np.ndarray
    """f_j, effective FLOP/s of device j."""
    capacity_bytes: np.ndarray
    """C_j, memory of device j available to microservices."""
    rate_bps: np.ndarray
    """R_jk, D2D rate from device j to k (∞ for j = k)."""
    source: int = 0
    """The requesting device."""

    @property
    def n_steps(self) -> int:
        return len(self.compute_flop)

    @property
    def n_devices(self) -> int:
        return len(self.speed_flops)

    # ------------------------------------------------------------------ latency tables (seconds)
    def compute_s(self) -> np.ndarray:
        """(N, M) compute time of step i on device j."""
        return self.compute_flop[:, None] / self.speed_flops[None, :]

    def handoff_s(self) -> np.ndarray:
        """(N-1, M, M) time to hand step i's state from device j to device k (0 on the diagonal)."""
        inv = np.where(np.isinf(self.rate_bps), 0.0, 1.0 / np.where(np.isinf(self.rate_bps), 1.0, self.rate_bps))
        return self.handoff_bits[:, None, None] * inv[None]

    def input_s(self) -> np.ndarray:
        """(M,) prompt transfer from the source to device j."""
        return _transfer_s(self.input_bits, self.rate_bps[self.source])

    def output_s(self) -> np.ndarray:
        """(M,) answer transfer from device j back to the source."""
        return _transfer_s(self.output_bits, self.rate_bps[:, self.source])

    def tables(self) -> Tables:
        return Tables(self.compute_s(), self.handoff_s(), self.input_s(), self.output_s(),
                      self.memory_bytes.astype(float), self.capacity_bytes.astype(float))

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        d = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}
        d["rate_bps"] = [[None if np.isinf(x) else x for x in row] for row in self.rate_bps.tolist()]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Instance:
        rate = np.array([[np.inf if x is None else x for x in row] for row in d["rate_bps"]], float)
        inst = cls(np.asarray(d["compute_flop"], float), np.asarray(d["memory_bytes"], float),
                   np.asarray(d["handoff_bits"], float), float(d["input_bits"]), float(d["output_bits"]),
                   np.asarray(d["speed_flops"], float), np.asarray(d["capacity_bytes"], float), rate,
                   int(d.get("source", 0)))
        inst.validate()
        return inst

    def validate(self) -> Instance:
        n, m = self.n_steps, self.n_devices
        if n < 1 or m < 1:
            raise ConfigError(f"an instance needs ≥ 1 step and ≥ 1 device, got N={n}, M={m}")
        shapes = {"memory_bytes": (self.memory_bytes, (n,)), "handoff_bits": (self.handoff_bits, (n - 1,)),
                  "capacity_bytes": (self.capacity_bytes, (m,)), "rate_bps": (self.rate_bps, (m, m))}
        for name, (arr, shape) in shapes.items():
            if arr.shape != shape:
                raise ConfigError(f"{name} must have shape {shape} (N={n}, M={m}), got {arr.shape}")
        for name in ("compute_flop", "memory_bytes", "handoff_bits", "speed_flops", "capacity_bytes", "rate_bps"):
            arr = getattr(self, name)
            if np.any(np.isnan(arr)) or np.any(arr < 0):
                raise ConfigError(f"{name} must be ≥ 0 (no NaN)")
        if np.any(self.speed_flops <= 0):
            raise ConfigError("speed_flops must be > 0")
        if not 0 <= self.source < m:
            raise ConfigError(f"source must be in [0, {m - 1}], got {self.source}")
        return self


@dataclass
class Tables:
    """Latency tables of an instance (seconds) and its memory data: what every solver works on."""

    comp: np.ndarray
    """(N, M) compute time."""
    comm: np.ndarray
    """(N-1, M, M) hand-off time."""
    inp: np.ndarray
    """(M,) prompt transfer."""
    out: np.ndarray
    """(M,) answer transfer."""
    mem: np.ndarray
    """(N,) step memory."""
    cap: np.ndarray
    """(M,) device capacity."""

    @property
    def n_steps(self) -> int:
        return self.comp.shape[0]

    @property
    def n_devices(self) -> int:
        return self.comp.shape[1]


def _transfer_s(bits: float, rate: np.ndarray) -> np.ndarray:
    return np.where(np.isinf(rate), 0.0, bits / np.where(np.isinf(rate), 1.0, np.maximum(rate, 1e-300)))


# --------------------------------------------------------------------------- objective and constraints


def path_latency_s(t: Tables, serve: np.ndarray) -> float:
    """L(serve): latency along the served path (module docstring)."""
    serve = np.asarray(serve, int)
    n = t.n_steps
    total = t.inp[serve[0]] + t.comp[np.arange(n), serve].sum() + t.out[serve[-1]]
    if n > 1:
        total += t.comm[np.arange(n - 1), serve[:-1], serve[1:]].sum()
    return float(total)


def deployment_matrix(serve: np.ndarray, n_devices: int) -> np.ndarray:
    """X ∈ {0,1}^{N×M} with one device per step."""
    serve = np.asarray(serve, int)
    x = np.zeros((len(serve), n_devices), dtype=np.int8)
    x[np.arange(len(serve)), serve] = 1
    return x


def load_bytes(t: Tables, x: np.ndarray) -> np.ndarray:
    """(M,) memory used on each device by deployment X: Σ_i x_ij·r_i."""
    return np.asarray(x, float).T @ t.mem


def overflow_bytes(t: Tables, serve: np.ndarray) -> float:
    """Total memory above capacity, Σ_j max(0, load_j − C_j) (0 = feasible)."""
    used = np.bincount(np.asarray(serve, int), weights=t.mem, minlength=t.n_devices)
    return float(np.maximum(used - t.cap, 0.0).sum())


def is_feasible(t: Tables, x: np.ndarray, serve: np.ndarray | None = None, rtol: float = 1e-9) -> bool:
    """Every step on ≥ 1 device, capacity respected, and (if given) every step served by one of its devices."""
    x = np.asarray(x)
    if x.shape != (t.n_steps, t.n_devices) or np.any(x.sum(axis=1) < 1):
        return False
    if np.any(load_bytes(t, x) > t.cap * (1 + rtol)):
        return False
    return serve is None or bool(np.all(x[np.arange(t.n_steps), np.asarray(serve, int)] == 1))


def literal_latency(t: Tables, x: np.ndarray) -> float:
    """The literal replica objective (documented, NOT optimised): compute of a step = max over its replicas,
    hand-off = min over replica pairs. Adding a replica can lower it — the artefact the served-path latency avoids."""
    x = np.asarray(x, bool)
    n = t.n_steps
    total = min(t.inp[j] for j in np.flatnonzero(x[0])) + min(t.out[j] for j in np.flatnonzero(x[-1]))
    for i in range(n):
        total += t.comp[i, x[i]].max()
    for i in range(n - 1):
        total += t.comm[i][np.ix_(x[i], x[i + 1])].min()
    return float(total)


# --------------------------------------------------------------------------- generator


def _step_tables(cfg: InstanceConfig, tokens: np.ndarray, prompt: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ctx_end = prompt + np.cumsum(tokens)
    ctx_start = ctx_end - tokens
    # Σ_{t=a}^{b-1} t = (a + b - 1)·(b - a)/2 context positions attended to while decoding the step's tokens
    attended = (ctx_start + ctx_end - 1) * tokens / 2.0
    compute = 2.0 * STEP_MODEL_NON_EMBEDDING_PARAMS * tokens + 4.0 * STEP_MODEL_LAYERS * STEP_MODEL_ATTN_DIM * attended
    compute[0] += 2.0 * STEP_MODEL_NON_EMBEDDING_PARAMS * prompt
    memory = (STEP_MODEL_PARAMS * cfg.weight_bytes_per_param
              + cfg.concurrent_chains * STEP_MODEL_KV_BYTES_PER_TOKEN * ctx_end)
    handoff = 8.0 * STEP_MODEL_KV_BYTES_PER_TOKEN * ctx_end[:-1]
    return compute.astype(float), memory.astype(float), handoff.astype(float)


def generate(n_steps: int, n_devices: int, rng: np.random.Generator, cfg: InstanceConfig | None = None) -> Instance:
    """Draw one instance (distributions in the module docstring)."""
    cfg = (cfg or InstanceConfig()).validate()
    check_range("n_steps", n_steps, 1, 10_000)
    check_range("n_devices", n_devices, 1, 10_000)
    tokens = rng.integers(cfg.tokens_min, cfg.tokens_max + 1, size=n_steps)
    prompt = int(rng.integers(cfg.prompt_min, cfg.prompt_max + 1))
    compute, memory, handoff = _step_tables(cfg, tokens, prompt)
    speed = np.exp(rng.uniform(np.log(cfg.speed_min_flops), np.log(cfg.speed_max_flops), size=n_devices))
    cap = rng.uniform(0.5, 1.5, size=n_devices) * cfg.capacity_slack * memory.sum() / n_devices
    cap = np.maximum(cap, memory.max())
    pos = rng.uniform(0.0, cfg.area_m, size=(n_devices, 2))
    dist = np.maximum(np.linalg.norm(pos[:, None] - pos[None], axis=-1), 1.0)
    fading = np.asarray(wireless.rayleigh_power_gain(rng, size=(n_devices, n_devices)))
    fading = np.triu(fading, 1) + np.triu(fading, 1).T  # one draw per unordered pair
    rate = np.full((n_devices, n_devices), np.inf)
    off = ~np.eye(n_devices, dtype=bool)
    if n_devices > 1:
        loss_db = np.asarray(wireless.log_distance_path_loss_db(dist[off], cfg.path_loss_exponent))
        gain = np.power(10.0, -loss_db / 10.0) * fading[off]
        snr = wireless.snr(cfg.tx_power_w, gain, cfg.bandwidth_hz, cfg.noise_psd_dbm_per_hz)
        rate[off] = np.maximum(np.asarray(wireless.shannon_rate_bps(cfg.bandwidth_hz, snr)), 1e3)
    return Instance(compute, memory, handoff, 32.0 * prompt, 32.0 * float(tokens[-1]), speed, cap, rate, 0).validate()


def save_instances(path: Path, instances: list[Instance], extra: list[dict] | None = None) -> None:
    """JSON list of instances (each optionally with extra keys, e.g. its MILP label)."""
    rows = [{**inst.to_dict(), **((extra or [{}] * len(instances))[k])} for k, inst in enumerate(instances)]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(rows))


def load_instances(path: Path) -> tuple[list[Instance], list[dict]]:
    rows = json.loads(Path(path).read_text())
    keys = set(Instance.__dataclass_fields__)
    return [Instance.from_dict({k: v for k, v in r.items() if k in keys}) for r in rows], \
        [{k: v for k, v in r.items() if k not in keys} for r in rows]
