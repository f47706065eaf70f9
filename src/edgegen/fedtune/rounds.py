"""The in-process federated LoRA loop: selection, local training, aggregation, evaluation, wireless latency.

One round, read top to bottom in :func:`run_round`:

1. **Channel and selection.** Every device k has a distance to the base station (fixed per run), a compute
   speed and a LoRA rank r_k (faster devices afford higher ranks); this round's Rayleigh fading is drawn.
   ``selection`` picks the round's devices: ``all``, ``random`` (``clients_per_round`` uniformly) or
   ``deadline`` (the devices whose latency alone fits ``deadline_s``, see :mod:`.allocation`).
2. **Downlink.** The server sends each selected device its own payload (:func:`client_payload`): the
   rank-r_k truncation of the zero-padded global factors (HetLoRA, HomLoRA), the rank-r_k SVD factors of
   the global update (FlexLoRA), the whole stack of last round's adapters (FLoRA) or the full model
   (``full_ft``); plus the shared head if the task has one.
3. **Local training** (:func:`local_update`): the frozen pre-trained model with PEFT LoRA of rank r_k
   (``lora_alpha = r_k``, scale 1), Adam for ``local_steps`` mini-batches drawn from the device's data by
   its own generator. A selected device may drop out (``dropout_prob``) and a device may send a malformed
   update (``corrupt_prob``: NaN entries or a wrong shape, fault injection); :func:`check_update` rejects
   the latter and the round completes with the rest.
4. **Aggregation** (:func:`aggregate`) with :mod:`.lora`, then **evaluation** of the global model
   ``W0 + ΔW`` on the test set.
5. **Latency**: T_k = T_up + T_comp + T_down from :mod:`.allocation` with the payload bits, the compute
   FLOPs over the device speed and the round's channel gains; the round lasts max_k T_k. Both the
   configured allocation (``bandwidth``) and equal shares are logged, on the same draws.

Everything random in round t is drawn from generators seeded by ``derive_seed(seed, name, t, ...)``, so a
run killed after round t resumes from its checkpoint and reproduces the uninterrupted run exactly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edgegen import wireless as wl
from edgegen.config import ConfigError, check_choice, check_range
from edgegen.fedtune import allocation, lora
from edgegen.fedtune.tasks import Task, dirichlet_split, linear_dims, load_task
from edgegen.runs import RunDir
from edgegen.seeding import derive_seed, seed_everything

METHODS = ("homlora_min", "homlora_max", "hetlora_size", "hetlora_frobenius", "hetlora_slice", "flora",
           "flexlora", "full_ft")
ZERO_PAD_METHODS = ("homlora_min", "homlora_max", "hetlora_size", "hetlora_frobenius", "hetlora_slice")
CKPT_FORMAT = 1
BYTES_PER_PARAM = 4  # float32 on the wire


@dataclass(frozen=True)
class FedConfig:
    """One federated fine-tuning run."""

    tier: str = "digits"
    """Model tier: ``digits`` (MLP on sklearn digits) or ``minilm`` (all-MiniLM-L6-v2 on BBC News)."""
    method: str = "hetlora_size"
    """One of homlora_min, homlora_max, hetlora_size, hetlora_frobenius, hetlora_slice, flora, flexlora, full_ft."""
    seed: int = 0
    """Run seed (data split, LoRA init, batches, channel, faults)."""
    num_clients: int = 10
    """Devices holding private data."""
    client_ranks: tuple[int, ...] = (2, 4, 8, 16)
    """LoRA ranks by device tier; device k gets client_ranks[k % len] (and the matching compute speed)."""
    device_gflops: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    """Compute speed (GFLOP/s) by device tier, same cycle as client_ranks: faster devices train higher ranks."""
    rounds: int = 30
    """Federated rounds."""
    local_steps: int = 10
    """Local Adam steps per selected device and round."""
    batch_size: int = 32
    """Local mini-batch size."""
    lr: float = 3e-2
    """Local Adam learning rate (fresh optimiser state every round)."""
    dirichlet_alpha: float = 0.5
    """Non-IID concentration of the label split (smaller = more skewed)."""
    selection: str = "all"
    """Device selection per round: all, random (clients_per_round of them) or deadline."""
    clients_per_round: int = 10
    """Devices drawn per round when selection=random; the minimum kept when selection=deadline."""
    deadline_s: float = 1.0
    """Round deadline (s) for selection=deadline, against each device's latency under equal shares."""
    bandwidth: str = "minmax"
    """Bandwidth allocation: equal shares or minmax (equalise finish times by bisection)."""
    total_bandwidth_hz: float = 1e6
    """Band shared by the round's devices (OFDMA uplink, unicast downlink)."""
    tx_power_w: float = 0.2
    """Device transmit power (23 dBm)."""
    downlink_power_w: float = allocation.DEFAULT_DOWNLINK_POWER_W
    """Base-station power over the whole band."""
    min_distance_m: float = 50.0
    """Devices are placed uniformly in distance between min_distance_m and max_distance_m."""
    max_distance_m: float = 500.0
    """Cell edge distance (m)."""
    dropout_prob: float = 0.0
    """Probability that a selected device fails mid-round (no update)."""
    corrupt_prob: float = 0.0
    """Fault injection: probability that a device's update is malformed (NaN or wrong shape)."""
    eval_every: int = 1
    """Evaluate the global model every this many rounds (and after the last)."""
    cache_dir: str = "runs/cache"
    """Where the MiniLM tier caches its frozen lower-layer activations."""

    def validate(self) -> FedConfig:
        check_choice("tier", self.tier, ("digits", "minilm"))
        check_choice("method", self.method, METHODS)
        if self.method == "full_ft" and self.tier != "digits":
            raise ConfigError("method full_ft is only offered on the digits tier "
                              "(full fine-tuning of MiniLM on 2 CPU cores is out of budget)")
        check_choice("selection", self.selection, ("all", "random", "deadline"))
        check_choice("bandwidth", self.bandwidth, ("equal", "minmax"))
        check_range("num_clients", self.num_clients, 1, 10_000)
        check_range("rounds", self.rounds, 1, 100_000)
        check_range("local_steps", self.local_steps, 1, 100_000)
        check_range("batch_size", self.batch_size, 1, 100_000)
        check_range("lr", self.lr, 1e-8, 10.0)
        check_range("clients_per_round", self.clients_per_round, 1, self.num_clients)
        check_range("dirichlet_alpha", self.dirichlet_alpha, 1e-3, 1e6)
        check_range("dropout_prob", self.dropout_prob, 0.0, 1.0)
        check_range("corrupt_prob", self.corrupt_prob, 0.0, 1.0)
        check_range("eval_every", self.eval_every, 1, 100_000)
        check_range("deadline_s", self.deadline_s, 1e-9, 1e9)
        check_range("total_bandwidth_hz", self.total_bandwidth_hz, 1.0, 1e12)
        check_range("tx_power_w", self.tx_power_w, 1e-9, 1e3)
        check_range("downlink_power_w", self.downlink_power_w, 1e-9, 1e6)
        check_range("min_distance_m", self.min_distance_m, 1.0, 1e6)
        check_range("max_distance_m", self.max_distance_m, self.min_distance_m, 1e6)
        if not self.client_ranks or any(int(r) != r or r < 1 for r in self.client_ranks):
            raise ConfigError(f"client_ranks must be integers >= 1, got {self.client_ranks}")
        if len(self.device_gflops) != len(self.client_ranks) or any(g <= 0 for g in self.device_gflops):
            raise ConfigError(f"device_gflops must hold one positive speed per rank tier "
                              f"({len(self.client_ranks)}), got {self.device_gflops}")
        return self


# --------------------------------------------------------------------------- devices


@dataclass
class Devices:
    ranks: list[int]  # the rank each device trains in this method
    gflops: np.ndarray
    distance_m: np.ndarray
    shards: list[np.ndarray]  # indices into task.train
    eligible: np.ndarray  # devices that take part at all (homlora_max: only those that afford r_max)


def make_devices(cfg: FedConfig, task: Task) -> Devices:
    """Devices of a run: ranks and speeds by tier (k mod tiers), distances and Dirichlet shards by seed."""
    tiers = len(cfg.client_ranks)
    native = [int(cfg.client_ranks[k % tiers]) for k in range(cfg.num_clients)]
    gflops = np.array([cfg.device_gflops[k % tiers] for k in range(cfg.num_clients)], dtype=float)
    rng = np.random.default_rng(derive_seed(cfg.seed, "devices"))
    distance = rng.uniform(cfg.min_distance_m, cfg.max_distance_m, cfg.num_clients)
    shards = dirichlet_split(task.train_labels.numpy(), cfg.num_clients, cfg.dirichlet_alpha,
                             np.random.default_rng(derive_seed(cfg.seed, "split")))
    eligible = np.ones(cfg.num_clients, dtype=bool)
    if cfg.method == "homlora_min":
        ranks = [min(native)] * cfg.num_clients
    elif cfg.method == "homlora_max":
        ranks = [max(native)] * cfg.num_clients
        eligible = np.array(native) == max(native)
    else:
        ranks = native
    return Devices(ranks=ranks, gflops=gflops, distance_m=distance, shards=shards, eligible=eligible)


# --------------------------------------------------------------------------- global state


def init_state(cfg: FedConfig, task: Task, devices: Devices) -> dict[str, torch.Tensor]:
    """The server's global state (flat dict of tensors).

    zero-pad methods: ``lora.<layer>.B`` (d_out × r_max, zeros) and ``.A`` (r_max × d_in, PEFT's
    kaiming-uniform bound 1/sqrt(d_in)); flora / flexlora: ``delta.<layer>`` (d_out × d_in, zeros);
    full_ft: ``full.<param>`` for every parameter; plus ``head.<param>`` of the task's head modules.
    """
    base = task.make_base()
    gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "lora-init"))
    state: dict[str, torch.Tensor] = {}
    r_max = max(devices.ranks)
    if cfg.method == "full_ft":
        state.update({f"full.{n}": p.detach().clone() for n, p in base.named_parameters()})
        return state
    for name, (d_out, d_in) in zip(task.lora_targets, linear_dims(base, task.lora_targets), strict=True):
        if cfg.method in ZERO_PAD_METHODS:
            bound = 1.0 / np.sqrt(d_in)
            state[f"lora.{name}.B"] = torch.zeros(d_out, r_max)
            state[f"lora.{name}.A"] = (torch.rand(r_max, d_in, generator=gen) * 2 - 1) * bound
        else:
            state[f"delta.{name}"] = torch.zeros(d_out, d_in)
    state.update(_head_params(base, task))
    return state


def _head_params(model: nn.Module, task: Task) -> dict[str, torch.Tensor]:
    modules = dict(model.named_modules())
    return {f"head.{m}.{n}": p.detach().clone() for m in task.head_modules for n, p in modules[m].named_parameters()}


def global_delta(cfg: FedConfig, state: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """The global dense update ΔW of one LoRA layer (B̄Ā for zero-pad methods)."""
    if cfg.method in ZERO_PAD_METHODS:
        return state[f"lora.{name}.B"] @ state[f"lora.{name}.A"]
    return state[f"delta.{name}"]


def global_model(cfg: FedConfig, task: Task, state: dict[str, torch.Tensor]) -> nn.Module:
    """The server's model for evaluation: W0 + ΔW merged into the frozen base, plus the shared head."""
    model = task.make_base()
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    with torch.no_grad():
        if cfg.method == "full_ft":
            for n, p in params.items():
                p.copy_(state[f"full.{n}"])
        else:
            for name in task.lora_targets:
                modules[name].weight.add_(global_delta(cfg, state, name))
            _load_head(model, task, state)
    return model.eval()


def _load_head(model: nn.Module, task: Task, payload: dict[str, torch.Tensor]) -> None:
    modules = dict(model.named_modules())
    with torch.no_grad():
        for m in task.head_modules:
            for n, p in modules[m].named_parameters():
                p.copy_(payload[f"head.{m}.{n}"])


# --------------------------------------------------------------------------- downlink


def client_payload(cfg: FedConfig, task: Task, state: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    """What the server sends a device of this rank this round (unicast).

    FLoRA devices receive the stack of the last round's adapters and merge it into their copy of the base
    weights; in this simulation the payload carries the merged ``delta.<layer>`` instead, so a device keeps
    no state between rounds; :func:`downlink_bytes` counts the bytes of the stack.
    """
    out = {k: v for k, v in state.items() if k.startswith("head.")}
    if cfg.method == "full_ft":
        return dict(state)
    for name in task.lora_targets:
        if cfg.method in ZERO_PAD_METHODS:
            B, A = lora.truncate(state[f"lora.{name}.B"], state[f"lora.{name}.A"], rank)
        elif cfg.method == "flexlora":
            delta = state[f"delta.{name}"]
            if not torch.any(delta):
                B, A = None, None  # first round: fresh PEFT-style init on the device
            else:
                B, A = lora.svd_factors(delta, rank)
        else:  # flora: fresh adapters every round on top of the merged base
            B, A = None, None
            out[f"delta.{name}"] = state[f"delta.{name}"]
        if B is not None:
            out[f"lora.{name}.B"], out[f"lora.{name}.A"] = B, A
    return out


def downlink_bytes(cfg: FedConfig, dims: list[tuple[int, int]], rank: int, round_ranks: list[int],
                   head_bytes: int, full_bytes: int) -> int:
    """Exact bytes the server sends one device this round."""
    if cfg.method == "full_ft":
        return full_bytes
    if cfg.method == "flora":
        return lora.downlink_bytes_flora(dims, round_ranks, BYTES_PER_PARAM) + head_bytes
    return lora.downlink_bytes_zero_pad(dims, rank, BYTES_PER_PARAM) + head_bytes


def uplink_bytes(cfg: FedConfig, dims: list[tuple[int, int]], rank: int, head_bytes: int, full_bytes: int) -> int:
    if cfg.method == "full_ft":
        return full_bytes
    return lora.uplink_bytes(dims, rank, BYTES_PER_PARAM) + head_bytes


# --------------------------------------------------------------------------- local training


def client_model(cfg: FedConfig, task: Task, payload: dict[str, torch.Tensor], rank: int,
                 init_seed: int) -> nn.Module:
    """The device's trainable model: frozen base (+ merged ΔW for FLoRA) with PEFT LoRA of its rank."""
    model = task.make_base()
    if cfg.method == "full_ft":
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(payload[f"full.{n}"])
                p.requires_grad_(True)
        return model
    from peft import LoraConfig, inject_adapter_in_model

    modules = dict(model.named_modules())
    with torch.no_grad():
        for name in task.lora_targets:
            if f"delta.{name}" in payload:
                modules[name].weight.add_(payload[f"delta.{name}"])
    model = inject_adapter_in_model(
        LoraConfig(r=rank, lora_alpha=rank, target_modules=list(task.lora_targets), lora_dropout=0.0), model)
    modules = dict(model.named_modules())
    gen = torch.Generator().manual_seed(init_seed)
    with torch.no_grad():
        for name in task.lora_targets:
            layer = modules[name]
            A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
            if f"lora.{name}.B" in payload:
                B.copy_(payload[f"lora.{name}.B"])
                A.copy_(payload[f"lora.{name}.A"])
            else:  # fresh adapter from the device's own generator: A ~ U(±1/sqrt(d_in)), B = 0
                A.copy_((torch.rand(A.shape, generator=gen) * 2 - 1) / np.sqrt(A.shape[1]))
                B.zero_()
    _load_head(model, task, payload)
    for m in task.head_modules:
        for p in modules[m].parameters():
            p.requires_grad_(True)
    return model


def local_update(cfg: FedConfig, task: Task, payload: dict[str, torch.Tensor], rank: int,
                 shard: np.ndarray, seed: int) -> tuple[dict[str, torch.Tensor], float]:
    """Train on one device's shard; return (update, mean training loss).

    The update holds ``lora.<layer>.B/.A`` (the device's factors after training, rank r_k) — or
    ``full.<param>`` for full_ft — and ``head.<param>``. Deterministic given ``seed``.
    """
    model = client_model(cfg, task, payload, rank, derive_seed(seed, "init"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    gen = torch.Generator().manual_seed(derive_seed(seed, "batches"))
    idx = torch.as_tensor(shard, dtype=torch.long)
    losses = []
    for _ in range(cfg.local_steps):
        batch = idx[torch.randint(len(idx), (min(cfg.batch_size, len(idx)),), generator=gen)]
        *inputs, labels = (t[batch] for t in task.train)
        loss = nn.functional.cross_entropy(model(*inputs), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return extract_update(cfg, task, model), float(np.mean(losses))


def extract_update(cfg: FedConfig, task: Task, model: nn.Module) -> dict[str, torch.Tensor]:
    if cfg.method == "full_ft":
        return {f"full.{n}": p.detach().clone() for n, p in model.named_parameters()}
    modules = dict(model.named_modules())
    update = {}
    for name in task.lora_targets:
        update[f"lora.{name}.B"] = modules[name].lora_B["default"].weight.detach().clone()
        update[f"lora.{name}.A"] = modules[name].lora_A["default"].weight.detach().clone()
    update.update(_head_params(model, task))
    return update


def check_update(update: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]]) -> str | None:
    """Why an update is malformed (missing/extra keys, wrong shape, NaN/Inf), or None if it is fine."""
    if set(update) != set(expected):
        missing, extra = sorted(set(expected) - set(update)), sorted(set(update) - set(expected))
        return f"keys differ: missing {missing}, extra {extra}"
    for key, shape in expected.items():
        t = update[key]
        if tuple(t.shape) != tuple(shape):
            return f"{key} has shape {tuple(t.shape)}, expected {tuple(shape)}"
        if not torch.all(torch.isfinite(t)):
            return f"{key} has NaN/Inf entries"
    return None


def expected_shapes(cfg: FedConfig, task: Task, state: dict[str, torch.Tensor], rank: int) -> dict[str, tuple]:
    """Shapes of a well-formed update from a device of this rank."""
    if cfg.method == "full_ft":
        return {k: tuple(v.shape) for k, v in state.items()}
    dims = linear_dims(task.make_base(), task.lora_targets)
    shapes = {k: tuple(v.shape) for k, v in state.items() if k.startswith("head.")}
    for name, (d_out, d_in) in zip(task.lora_targets, dims, strict=True):
        shapes[f"lora.{name}.B"] = (d_out, rank)
        shapes[f"lora.{name}.A"] = (rank, d_in)
    return shapes


def corrupt(update: dict[str, torch.Tensor], rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Fault injection: NaN in one tensor, or one tensor with a dropped column."""
    bad = dict(update)
    key = sorted(bad)[int(rng.integers(len(bad)))]
    t = bad[key].clone()
    if rng.random() < 0.5 or t.ndim < 2:
        t.view(-1)[0] = float("nan")
    else:
        t = t[:, :-1]
    bad[key] = t
    return bad


# --------------------------------------------------------------------------- aggregation


def aggregate(cfg: FedConfig, task: Task, state: dict[str, torch.Tensor],
              updates: list[tuple[dict[str, torch.Tensor], int, int]]) -> dict[str, torch.Tensor]:
    """New global state from the round's well-formed updates ``(update, rank, num_samples)``.

    No updates: the state is unchanged. Heads and full_ft parameters: data-size weighted average.
    """
    if not updates:
        return state
    sizes = lora.data_size_weights([n for _, _, n in updates])
    new: dict[str, torch.Tensor] = {}
    fedavg_keys = [k for k in state if k.startswith(("head.", "full."))]
    for key in fedavg_keys:
        new[key] = sum(float(w) * u[key] for w, (u, _, _) in zip(sizes, updates, strict=True))
    if cfg.method == "full_ft":
        return new
    r_max = max(t.shape[1] for k, t in state.items() if k.endswith(".B")) if cfg.method in ZERO_PAD_METHODS else None
    for name in task.lora_targets:
        Bs = [u[f"lora.{name}.B"] for u, _, _ in updates]
        As = [u[f"lora.{name}.A"] for u, _, _ in updates]
        if cfg.method == "hetlora_frobenius":
            weights = lora.frobenius_weights(Bs, As)
        else:
            weights = sizes
        if cfg.method == "hetlora_slice":
            B_bar, A_bar = lora.aggregate_slice_normalised(Bs, As, weights)
            B_bar, A_bar = lora.zero_pad(B_bar, A_bar, r_max)
            owned = max(B.shape[1] for B in Bs)  # slices nobody trained this round keep their old value
            B_bar[:, owned:] = state[f"lora.{name}.B"][:, owned:]
            A_bar[owned:, :] = state[f"lora.{name}.A"][owned:, :]
        elif cfg.method in ZERO_PAD_METHODS:
            B_bar, A_bar = lora.aggregate_zero_pad(Bs, As, weights, r_max=r_max)
        if cfg.method in ZERO_PAD_METHODS:
            new[f"lora.{name}.B"], new[f"lora.{name}.A"] = B_bar.float(), A_bar.float()
        elif cfg.method == "flora":  # stack exactly, then merge the stack into the base
            B_stack, A_stack = lora.flora_stack(Bs, As, weights)
            new[f"delta.{name}"] = state[f"delta.{name}"] + (B_stack @ A_stack).float()
        else:  # flexlora: the global update is the weighted sum of the devices' products
            new[f"delta.{name}"] = lora.weighted_product(Bs, As, weights).float()
    return new


# --------------------------------------------------------------------------- evaluation and latency


@torch.no_grad()
def evaluate(model: nn.Module, data: tuple[torch.Tensor, ...], batch_size: int = 256) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) on a dataset."""
    model.eval()
    *inputs, labels = data
    correct, total_loss = 0, 0.0
    for i in range(0, len(labels), batch_size):
        logits = model(*(t[i:i + batch_size] for t in inputs))
        y = labels[i:i + batch_size]
        total_loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(dim=1) == y).sum())
    return correct / len(labels), total_loss / len(labels)


def channel_gains(cfg: FedConfig, devices: Devices, round_idx: int) -> np.ndarray:
    """This round's power gains: 3GPP path loss at each device's distance × Rayleigh |h|²."""
    rng = np.random.default_rng(derive_seed(cfg.seed, "channel", round_idx))
    return np.asarray(wl.channel_gain(devices.distance_m / 1000.0, rng), dtype=float)


def select(cfg: FedConfig, devices: Devices, round_idx: int, latency_alone_s: np.ndarray) -> np.ndarray:
    """Indices of the round's devices among the eligible ones."""
    pool = np.flatnonzero(devices.eligible)
    if cfg.selection == "all":
        return pool
    if cfg.selection == "random":
        rng = np.random.default_rng(derive_seed(cfg.seed, "select", round_idx))
        k = min(cfg.clients_per_round, len(pool))
        return pool[allocation.random_selection(rng, len(pool), k)]
    k = min(cfg.clients_per_round, len(pool))
    return pool[allocation.select_devices(latency_alone_s[pool], cfg.deadline_s, k)]


# --------------------------------------------------------------------------- the loop


def run(cfg: FedConfig, out: str | Path, quiet: bool = False, resume: bool = True, task: Task | None = None,
        command: str | None = None) -> dict:
    """Run (or resume) a federated fine-tuning run into ``out``; return its summary."""
    cfg.validate()
    seed_everything(cfg.seed)
    task = task or load_task(cfg.tier, cfg.cache_dir)
    ckpt, meta_path = Path(out) / "ckpt" / "state.pt", Path(out) / "ckpt" / "state.json"
    resuming = resume and meta_path.exists() and ckpt.exists()
    if not resuming:  # a fresh run: forget the metrics of any earlier run in this directory
        (Path(out) / "metrics.csv").unlink(missing_ok=True)
    run_dir = RunDir(out)
    devices = make_devices(cfg, task)
    state = init_state(cfg, task, devices)
    start = 0
    if resuming:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != CKPT_FORMAT or meta.get("config") != json.loads(json.dumps(dataclasses.asdict(cfg))):
            raise ConfigError(f"{out}: checkpoint was written by another config or format; use a new --out")
        state = torch.load(ckpt, weights_only=True)
        start = int(meta["round"])
        run_dir.truncate_metrics(start)
    run_dir.write_config(dataclasses.asdict(cfg))

    base = task.make_base()
    dims = linear_dims(base, task.lora_targets)
    head_bytes = sum(v.numel() for k, v in state.items() if k.startswith("head.")) * BYTES_PER_PARAM
    full_bytes = sum(p.numel() for p in base.parameters()) * BYTES_PER_PARAM
    bar = tqdm(range(start, cfg.rounds), desc=f"{cfg.tier}/{cfg.method}/s{cfg.seed}", initial=start,
               total=cfg.rounds, disable=quiet or not os.isatty(2))
    for t in bar:
        t0 = time.perf_counter()
        state, row = run_round(cfg, task, devices, state, t, dims, head_bytes, full_bytes)
        row["test_acc"], row["test_loss"] = float("nan"), float("nan")  # NaN: not evaluated this round
        if (t + 1) % cfg.eval_every == 0 or t + 1 == cfg.rounds:
            row["test_acc"], row["test_loss"] = evaluate(global_model(cfg, task, state), task.test)
            bar.set_postfix(acc=f"{row['test_acc']:.3f}")
        row["round_wall_s"] = time.perf_counter() - t0
        run_dir.log(t + 1, **row)
        _save(ckpt, meta_path, state, t + 1, cfg)
    run_dir.close()
    summary = summarise(cfg, run_dir, devices)
    run_dir.write_summary(summary, seed=cfg.seed, command=command)
    return summary


def run_round(cfg: FedConfig, task: Task, devices: Devices, state: dict[str, torch.Tensor], t: int,
              dims: list[tuple[int, int]], head_bytes: int, full_bytes: int) -> tuple[dict, dict]:
    """One round (see the module docstring); returns the new state and the round's metrics row."""
    n = len(devices.ranks)
    gains = channel_gains(cfg, devices, t)
    all_ranks = [devices.ranks[k] for k in range(n) if devices.eligible[k]]
    up_bits = np.array([8 * uplink_bytes(cfg, dims, r, head_bytes, full_bytes) for r in devices.ranks], float)
    down_bits = np.array([8 * downlink_bytes(cfg, dims, r, all_ranks, head_bytes, full_bytes)
                          for r in devices.ranks], float)
    samples = np.array([min(cfg.batch_size, len(s)) * cfg.local_steps for s in devices.shards], float)
    compute_s = samples * task.train_flops_per_sample / (devices.gflops * 1e9)
    alone = allocation.device_latency_s(up_bits, down_bits, compute_s, allocation.equal_bandwidth(n),
                                        cfg.total_bandwidth_hz, cfg.tx_power_w, gains, cfg.downlink_power_w)
    chosen = select(cfg, devices, t, alone)

    # Downlink bytes are exact for the chosen set (FLoRA's stack holds the round's ranks).
    round_ranks = [devices.ranks[k] for k in chosen]
    down_bits[chosen] = [8 * downlink_bytes(cfg, dims, devices.ranks[k], round_ranks, head_bytes, full_bytes)
                         for k in chosen]
    faults = np.random.default_rng(derive_seed(cfg.seed, "faults", t))
    updates, dropped, rejected, losses, up_bytes = [], 0, 0, [], 0
    for k in chosen:
        rank = devices.ranks[k]
        if faults.random() < cfg.dropout_prob:
            dropped += 1
            continue
        payload = client_payload(cfg, task, state, rank)
        update, loss = local_update(cfg, task, payload, rank, devices.shards[k], derive_seed(cfg.seed, "client", k, t))
        if faults.random() < cfg.corrupt_prob:
            update = corrupt(update, faults)
        up_bytes += int(up_bits[k] // 8)
        if check_update(update, expected_shapes(cfg, task, state, rank)) is not None:
            rejected += 1
            continue
        updates.append((update, rank, len(devices.shards[k])))
        losses.append(loss)
    state = aggregate(cfg, task, state, updates)

    args = (up_bits[chosen], down_bits[chosen], compute_s[chosen])
    radio = (cfg.total_bandwidth_hz, cfg.tx_power_w, gains[chosen], cfg.downlink_power_w)
    equal_s = allocation.round_latency_s(*args, allocation.equal_bandwidth(len(chosen)), *radio)
    if cfg.bandwidth == "minmax":
        _, latency_s = allocation.min_max_bandwidth(*args, *radio, rel_tol=1e-6)
    else:
        latency_s = equal_s
    row = {
        "clients": len(chosen), "aggregated": len(updates), "dropped": dropped, "rejected": rejected,
        "train_loss": float(np.mean(losses)) if losses else float("nan"),
        "uplink_bytes": up_bytes, "downlink_bytes": int(down_bits[chosen].sum() // 8),
        "round_latency_s": latency_s, "round_latency_equal_s": equal_s,
    }
    return state, row


def _save(ckpt: Path, meta_path: Path, state: dict, round_done: int, cfg: FedConfig) -> None:
    tmp = ckpt.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, ckpt)
    meta_tmp = meta_path.with_suffix(".tmp")
    meta_tmp.write_text(json.dumps({"format": CKPT_FORMAT, "round": round_done, "config": dataclasses.asdict(cfg)}))
    os.replace(meta_tmp, meta_path)


def summarise(cfg: FedConfig, run_dir: RunDir, devices: Devices) -> dict:
    """The run's summary.json; ``wall_s`` sums the rounds' wall times (a resumed run counts every round once)."""
    rows = run_dir.read_metrics()
    evals = [r for r in rows if np.isfinite(r["test_acc"])]
    return {
        "tier": cfg.tier, "method": cfg.method,
        "test_acc": evals[-1]["test_acc"], "test_loss": evals[-1]["test_loss"],
        "uplink_bytes": int(sum(r["uplink_bytes"] for r in rows)),
        "downlink_bytes": int(sum(r["downlink_bytes"] for r in rows)),
        "round_latency_s_mean": float(np.mean([r["round_latency_s"] for r in rows])),
        "round_latency_equal_s_mean": float(np.mean([r["round_latency_equal_s"] for r in rows])),
        "rounds": len(rows), "dropped": int(sum(r["dropped"] for r in rows)),
        "rejected": int(sum(r["rejected"] for r in rows)),
        "device_ranks": devices.ranks, "wall_s": float(sum(r["round_wall_s"] for r in rows)),
    }
