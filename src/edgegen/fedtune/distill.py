"""Knowledge-distillation federated fine-tuning across data modalities (Edge-LAM, Wang, Shi, Letaief 2025).

Every device holds one modality of the same task and runs two modules on a common embedding:

* a **local, modality-specific module**: an encoder E_k (modality input → ``embed_dim``) and a local head
  h_k (embedding → classes); never leaves the device;
* the **shared module** S (embedding → hidden → classes), the same architecture everywhere; the server
  averages it (by data size) and sends it back every round.

With p = softmax(z / T), one local step of the ``kd`` method minimises (FedKD-style mutual distillation)

    L_shared = T² · KL(p_local ‖ p_shared) + μ · CE(z_shared, y)     (what the local model knows → S)
    L_local  = T² · KL(p_shared ‖ p_local) + λ · CE(z_local, y)      (what S knows → the local model)

with the teacher side of each KL detached (:func:`kd_kl`); the encoder receives the gradients of both, so
it learns an embedding that the shared module can read. Baselines: ``local_only`` (E_k + h_k, task loss,
no communication), ``shared_no_kd`` (E_k + S, task loss, S averaged), ``fedavg_full`` (E_k + S averaged
within each modality group — plain FedAvg where modalities match, S across all). A device predicts through
the shared module on its own encoder (the module that carries the federation's knowledge), except
``local_only``, which has only its local head; ``kd`` also logs the accuracy of its local head, which sees
only the device's own (non-IID) classes.

Uplink and downlink both carry the shared module (plus the encoder for ``fedavg_full``) every round; the
round's two-way delay T_k = T_up + T_comp + T_down uses :mod:`edgegen.wireless` through
:mod:`edgegen.fedtune.allocation`, with equal shares or the min-max allocation (finish times equalised).

Data (:func:`bbc_modalities`): BBC News seen through two genuinely different modalities — the frozen
all-MiniLM-L6-v2 sentence embedding (384-d, mean-pooled token states) and a TF-IDF bag of words fitted on the
training articles — one per device, alternating; the articles themselves are split Dirichlet non-IID.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edgegen import wireless as wl
from edgegen.config import ConfigError, check_choice, check_range
from edgegen.fedtune import allocation
from edgegen.fedtune.tasks import dirichlet_split
from edgegen.runs import RunDir
from edgegen.seeding import derive_seed, seed_everything

KD_METHODS = ("local_only", "shared_no_kd", "kd", "fedavg_full")
MODALITIES = ("minilm", "tfidf")
BYTES_PER_PARAM = 4

# --------------------------------------------------------------------------- KD objectives (pure)


def kd_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · mean over the batch of KL(softmax(teacher/T) ‖ softmax(student/T)); the teacher is detached.

    The T² factor keeps the gradient magnitude comparable to a cross-entropy term as T changes (Hinton et
    al., 2015). Gradients flow into ``student_logits`` only.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if teacher_logits.shape != student_logits.shape or teacher_logits.ndim != 2:
        raise ValueError(f"logits must both be (batch, classes), got {tuple(teacher_logits.shape)} and "
                         f"{tuple(student_logits.shape)}")
    log_p_teacher = torch.log_softmax(teacher_logits.detach() / temperature, dim=1)
    log_p_student = torch.log_softmax(student_logits / temperature, dim=1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1)
    return temperature**2 * kl.mean()


def shared_loss(local_logits: torch.Tensor, shared_logits: torch.Tensor, labels: torch.Tensor,
                temperature: float, task_weight: float) -> torch.Tensor:
    """L_shared = T²·KL(p_local ‖ p_shared) + μ·CE(shared): distil the local module into the shared one."""
    return kd_kl(local_logits, shared_logits, temperature) + task_weight * nn.functional.cross_entropy(
        shared_logits, labels)


def local_loss(local_logits: torch.Tensor, shared_logits: torch.Tensor, labels: torch.Tensor,
               temperature: float, lam: float) -> torch.Tensor:
    """L_local = T²·KL(p_shared ‖ p_local) + λ·CE(local): distil the shared module into the local one."""
    return kd_kl(shared_logits, local_logits, temperature) + lam * nn.functional.cross_entropy(local_logits, labels)


# --------------------------------------------------------------------------- data: two modalities of BBC News


def _embedding_cache(cache_dir: str) -> Path:
    return Path(cache_dir) / "minilm_bbc_sentence_embeddings_len128.pt"


def minilm_sentence_embeddings(cache_dir: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) all-MiniLM-L6-v2 sentence embeddings (mean-pooled final token states, 384-d) of the BBC
    articles in the MiniLM tier's split; computed once from its activation cache, then cached (3.4 MB)."""
    path = _embedding_cache(cache_dir)
    if path.exists():
        data = torch.load(path, weights_only=True)
        return data["train"], data["test"]
    from edgegen.fedtune.minilm import minilm_task

    task = minilm_task(cache_dir=cache_dir)
    top = task.make_base()
    out = {}
    with torch.no_grad():
        for name, (hidden, mask, _) in (("train", task.train), ("test", task.test)):
            out[name] = torch.cat([top.pool(top.encode(hidden[i:i + 64], mask[i:i + 64]), mask[i:i + 64])
                                   for i in range(0, len(mask), 64)])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(out, tmp)
    os.replace(tmp, path)
    return out["train"], out["test"]


def bbc_modalities(cache_dir: str = "runs/cache", tfidf_features: int = 2000, public_fraction: float = 0.1):
    """BBC News seen through two modalities, in the MiniLM tier's 80/20 split.

    * ``minilm``: frozen all-MiniLM-L6-v2 sentence embeddings (384-d), standardised with train statistics;
    * ``tfidf``: sublinear TF-IDF over the ``tfidf_features`` most frequent terms (English stop words
      removed), fitted on the training articles.

    A public, unlabelled ``public_fraction`` of the training articles (stratified, seed 0) pre-aligns the
    modalities: a ridge regression from TF-IDF to the (standardised) MiniLM embedding, used to initialise
    the TF-IDF devices' encoders, so that both modalities start in one 384-d embedding space (the role a
    pre-trained multimodal encoder plays on real devices). The public articles are not used otherwise.

    Returns ``{"views": {modality: (x_train, x_test)}, "y_train", "y_test", "align": (W, b)}`` where the
    train arrays hold the private articles only and ``x @ W + b`` maps TF-IDF into the embedding space.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import train_test_split

    from edgegen.fedtune.minilm import bbc_docs, bbc_split

    texts, labels, _ = bbc_docs()
    train_idx, test_idx = bbc_split(labels, 0)
    emb_train, emb_test = minilm_sentence_embeddings(cache_dir)
    mu, sd = emb_train.mean(0), emb_train.std(0).clamp_min(1e-6)
    emb_train, emb_test = (emb_train - mu) / sd, (emb_test - mu) / sd
    vec = TfidfVectorizer(max_features=tfidf_features, sublinear_tf=True, stop_words="english")
    tf_train = vec.fit_transform([texts[i] for i in train_idx]).toarray().astype(np.float32)
    tf_test = vec.transform([texts[i] for i in test_idx]).toarray().astype(np.float32)
    private, public = train_test_split(np.arange(len(train_idx)), test_size=public_fraction,
                                       stratify=labels[train_idx], random_state=0)
    private = np.sort(private)
    ridge = Ridge(alpha=1.0).fit(tf_train[public], emb_train[public].numpy())
    align = (torch.from_numpy(ridge.coef_.T.astype(np.float32)),
             torch.from_numpy(ridge.intercept_.astype(np.float32)))
    views = {"minilm": (emb_train[private], emb_test),
             "tfidf": (torch.from_numpy(tf_train[private]), torch.from_numpy(tf_test))}
    return {"views": views, "y_train": torch.from_numpy(labels[train_idx][private]),
            "y_test": torch.from_numpy(labels[test_idx]), "align": align}


# --------------------------------------------------------------------------- models


class DeviceModel(nn.Module):
    """Local encoder + local head (modality-specific) and the shared module, on one device.

    The encoder is a linear map of the modality input into the common embedding (``embed_dim`` = the MiniLM
    width, 384), initialised to the identity for MiniLM devices and to the public ridge alignment for
    TF-IDF devices (see :func:`bbc_modalities`).
    """

    def __init__(self, in_dim: int, embed_dim: int, shared_hidden: int, num_classes: int,
                 init: tuple[torch.Tensor, torch.Tensor] | None = None):
        super().__init__()
        self.encoder = nn.Linear(in_dim, embed_dim)
        if init is not None:
            with torch.no_grad():
                self.encoder.weight.copy_(init[0].T)
                self.encoder.bias.copy_(init[1])
        self.local_head = nn.Linear(embed_dim, num_classes)
        self.shared = nn.Sequential(nn.Linear(embed_dim, shared_hidden), nn.ReLU(),
                                    nn.Linear(shared_hidden, num_classes))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return self.local_head(z), self.shared(z)


def encoder_init(modality: str, in_dim: int, align: tuple[torch.Tensor, torch.Tensor]):
    """(W (in × embed), b) the encoder starts from: identity for MiniLM, the ridge alignment for TF-IDF."""
    if modality == "minilm":
        return torch.eye(in_dim), torch.zeros(in_dim)
    return align


def module_state(model: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(prefix)}


def average(states: list[dict[str, torch.Tensor]], sizes: list[int]) -> dict[str, torch.Tensor]:
    """Data-size weighted average of state dicts with the same keys."""
    w = np.asarray(sizes, dtype=float) / float(np.sum(sizes))
    return {k: sum(float(wi) * s[k] for wi, s in zip(w, states, strict=True)) for k in states[0]}


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class KDConfig:
    """One knowledge-distillation federated run."""

    method: str = "kd"
    """local_only, shared_no_kd, kd or fedavg_full."""
    seed: int = 0
    """Run seed (split, init, batches, channel)."""
    num_clients: int = 10
    """Devices; device k holds modality modalities[k % len(modalities)]."""
    modalities: tuple[str, ...] = MODALITIES
    """Modalities to cycle over the devices (minilm, tfidf)."""
    rounds: int = 30
    """Federated rounds."""
    local_steps: int = 10
    """Local Adam steps per round."""
    batch_size: int = 32
    """Local mini-batch size."""
    lr: float = 3e-3
    """Local Adam learning rate (optimiser state kept on the device across rounds)."""
    encoder_lr_scale: float = 1.0
    """Encoder learning rate = lr × this (0 freezes the encoders at their aligned initialisation)."""
    temperature: float = 2.0
    """KD temperature T."""
    lam: float = 1.0
    """λ: task-loss weight in the local module's loss."""
    shared_task_weight: float = 1.0
    """μ: task-loss weight in the shared module's loss (0 = pure distillation)."""
    shared_hidden: int = 256
    """Hidden width of the shared module."""
    dirichlet_alpha: float = 0.3
    """Non-IID concentration of the article split."""
    device_gflops: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    """Device speeds (GFLOP/s), cycled over the devices."""
    total_bandwidth_hz: float = 1e6
    """Band shared by the devices, both directions on each device's sub-band."""
    tx_power_w: float = 0.2
    """Device transmit power."""
    min_distance_m: float = 50.0
    """Devices are placed uniformly between min_distance_m and max_distance_m."""
    max_distance_m: float = 500.0
    """Cell edge (m)."""
    bandwidth: str = "minmax"
    """equal or minmax (two-way delay equalised); the equal-split delay is logged in every run."""
    tfidf_features: int = 2000
    """TF-IDF vocabulary size."""
    cache_dir: str = "runs/cache"
    """MiniLM activation / embedding cache."""

    def validate(self) -> KDConfig:
        check_choice("method", self.method, KD_METHODS)
        check_choice("bandwidth", self.bandwidth, ("equal", "minmax"))
        if not self.modalities or any(m not in MODALITIES for m in self.modalities):
            raise ConfigError(f"modalities must be a non-empty subset of {MODALITIES}, got {self.modalities}")
        check_range("num_clients", self.num_clients, len(self.modalities), 1000)
        check_range("rounds", self.rounds, 1, 100_000)
        check_range("local_steps", self.local_steps, 1, 100_000)
        check_range("batch_size", self.batch_size, 1, 100_000)
        check_range("lr", self.lr, 1e-8, 10.0)
        check_range("encoder_lr_scale", self.encoder_lr_scale, 0.0, 1e3)
        check_range("temperature", self.temperature, 1e-3, 1e3)
        check_range("lam", self.lam, 0.0, 1e3)
        check_range("shared_task_weight", self.shared_task_weight, 0.0, 1e3)
        check_range("shared_hidden", self.shared_hidden, 1, 100_000)
        check_range("dirichlet_alpha", self.dirichlet_alpha, 1e-3, 1e6)
        check_range("total_bandwidth_hz", self.total_bandwidth_hz, 1.0, 1e12)
        check_range("max_distance_m", self.max_distance_m, self.min_distance_m, 1e6)
        if not self.device_gflops or any(g <= 0 for g in self.device_gflops):
            raise ConfigError(f"device_gflops must be positive speeds, got {self.device_gflops}")
        return self


# --------------------------------------------------------------------------- the protocol


def make_optimizer(cfg: KDConfig, model: DeviceModel) -> torch.optim.Optimizer:
    """Adam at ``lr``, the encoder at ``lr × encoder_lr_scale`` (kept on the device across rounds)."""
    enc = list(model.encoder.parameters())
    rest = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    return torch.optim.Adam([{"params": rest}, {"params": enc, "lr": cfg.lr * cfg.encoder_lr_scale}], lr=cfg.lr)


def local_round(cfg: KDConfig, model: DeviceModel, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                gen: torch.Generator) -> float:
    """``local_steps`` Adam steps of the method's objective on one device; returns the mean loss."""
    model.train()
    losses = []
    for _ in range(cfg.local_steps):
        idx = torch.randint(len(y), (min(cfg.batch_size, len(y)),), generator=gen)
        z_local, z_shared = model(x[idx])
        if cfg.method == "local_only":
            loss = nn.functional.cross_entropy(z_local, y[idx])
        elif cfg.method in ("shared_no_kd", "fedavg_full"):
            loss = nn.functional.cross_entropy(z_shared, y[idx])
        else:
            loss = (shared_loss(z_local, z_shared, y[idx], cfg.temperature, cfg.shared_task_weight)
                    + local_loss(z_local, z_shared, y[idx], cfg.temperature, cfg.lam))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def payload_keys(cfg: KDConfig, model: DeviceModel) -> list[str]:
    """State-dict keys that travel each round (both directions)."""
    if cfg.method == "local_only":
        return []
    prefixes = ("shared.", "encoder.") if cfg.method == "fedavg_full" else ("shared.",)
    return [k for k in model.state_dict() if k.startswith(prefixes)]


def aggregate_round(cfg: KDConfig, models: list[DeviceModel], modality_of: list[str], sizes: list[int]) -> None:
    """Server step, in place: the shared module averaged over every device; for fedavg_full the encoders
    (and nothing else) averaged within each modality group."""
    if cfg.method == "local_only":
        return
    shared = average([module_state(m, "shared.") for m in models], sizes)
    for m in models:
        m.load_state_dict(shared, strict=False)
    if cfg.method == "fedavg_full":
        for mod in set(modality_of):
            group = [i for i, g in enumerate(modality_of) if g == mod]
            enc = average([module_state(models[i], "encoder.") for i in group], [sizes[i] for i in group])
            for i in group:
                models[i].load_state_dict(enc, strict=False)


@torch.no_grad()
def accuracy(model: DeviceModel, x: torch.Tensor, y: torch.Tensor, path: str) -> float:
    model.eval()
    z_local, z_shared = model(x)
    return float(((z_local if path == "local" else z_shared).argmax(1) == y).float().mean())


def round_delays(cfg: KDConfig, payload_bits: np.ndarray, compute_s: np.ndarray, distance_m: np.ndarray,
                 round_idx: int) -> tuple[float, float]:
    """(configured, equal-split) two-way delay of a round in s: max_k T_up + T_comp + T_down, where device k
    sends and receives ``payload_bits[k]``."""
    n = len(compute_s)
    if not np.any(payload_bits):
        return float(compute_s.max()), float(compute_s.max())
    gains = np.asarray(wl.channel_gain(distance_m / 1000.0, np.random.default_rng(
        derive_seed(cfg.seed, "channel", round_idx))), dtype=float)
    args = (payload_bits, payload_bits, compute_s)
    radio = (cfg.total_bandwidth_hz, cfg.tx_power_w, gains)
    equal = allocation.round_latency_s(*args, allocation.equal_bandwidth(n), *radio)
    if cfg.bandwidth == "equal":
        return equal, equal
    return allocation.min_max_bandwidth(*args, *radio, rel_tol=1e-6)[1], equal


def run(cfg: KDConfig, out: str | Path, quiet: bool = False, data=None, command: str | None = None) -> dict:
    """One KD federated run into ``out``; returns its summary. ``data`` = :func:`bbc_modalities` output."""
    cfg.validate()
    seed_everything(cfg.seed)
    data = data or bbc_modalities(cfg.cache_dir, cfg.tfidf_features)
    views, y_train, y_test = data["views"], data["y_train"], data["y_test"]
    embed_dim = views["minilm"][0].shape[1]
    n = cfg.num_clients
    modality_of = [cfg.modalities[k % len(cfg.modalities)] for k in range(n)]
    shards = dirichlet_split(y_train.numpy(), n, cfg.dirichlet_alpha,
                             np.random.default_rng(derive_seed(cfg.seed, "split")))
    torch.manual_seed(derive_seed(cfg.seed, "init"))
    shared_init = None
    models, opts = [], []
    for k in range(n):
        in_dim = views[modality_of[k]][0].shape[1]
        m = DeviceModel(in_dim, embed_dim, cfg.shared_hidden, int(y_train.max()) + 1,
                        init=encoder_init(modality_of[k], in_dim, data["align"]))
        if shared_init is None:
            shared_init = module_state(m, "shared.")
        m.load_state_dict(shared_init, strict=False)  # one global shared module to start from
        models.append(m)
        opts.append(make_optimizer(cfg, m))
    gens = [torch.Generator().manual_seed(derive_seed(cfg.seed, "batches", k)) for k in range(n)]
    sizes = [len(s) for s in shards]
    keys = payload_keys(cfg, models[0])
    per_device_bytes = [sum(models[k].state_dict()[key].numel() for key in keys) * BYTES_PER_PARAM for k in range(n)]
    flops = np.array([6.0 * sum(p.numel() for p in m.parameters()) for m in models])  # fwd + bwd per sample
    gflops = np.array([cfg.device_gflops[k % len(cfg.device_gflops)] for k in range(n)])
    compute_s = flops * cfg.local_steps * cfg.batch_size / (gflops * 1e9)
    distance = np.random.default_rng(derive_seed(cfg.seed, "devices")).uniform(cfg.min_distance_m,
                                                                                cfg.max_distance_m, n)
    (Path(out) / "metrics.csv").unlink(missing_ok=True)  # a run of seconds restarts rather than resumes
    run_dir = RunDir(out)
    run_dir.write_config(dataclasses.asdict(cfg))
    path = "local" if cfg.method == "local_only" else "shared"
    bar = tqdm(range(cfg.rounds), desc=f"kd/{cfg.method}/s{cfg.seed}", disable=quiet or not os.isatty(2))
    for t in bar:
        losses = [local_round(cfg, models[k], opts[k], views[modality_of[k]][0][shards[k]], y_train[shards[k]],
                              gens[k]) for k in range(n)]
        aggregate_round(cfg, models, modality_of, sizes)
        delay, delay_equal = round_delays(cfg, 8.0 * np.array(per_device_bytes, dtype=float), compute_s, distance, t)
        row = {"train_loss": float(np.mean(losses)), "bytes_per_round": 2 * sum(per_device_bytes),
               "round_delay_s": delay, "round_delay_equal_s": delay_equal}
        for mod in cfg.modalities:
            group = [k for k in range(n) if modality_of[k] == mod]
            x_test = views[mod][1]
            row[f"acc_{mod}"] = float(np.mean([accuracy(models[k], x_test, y_test, path) for k in group]))
            if cfg.method == "kd":
                row[f"acc_local_path_{mod}"] = float(np.mean([accuracy(models[k], x_test, y_test, "local")
                                                              for k in group]))
        row["test_acc"] = float(np.mean([row[f"acc_{mod}"] for mod in cfg.modalities]))
        bar.set_postfix(acc=f"{row['test_acc']:.3f}")
        run_dir.log(t + 1, **row)
    run_dir.close()
    rows = run_dir.read_metrics()
    last = rows[-1]
    summary = {
        "method": cfg.method, "test_acc": last["test_acc"],
        "per_modality_acc": {mod: last[f"acc_{mod}"] for mod in cfg.modalities},
        "bytes_per_round": int(last["bytes_per_round"]),
        "round_delay_s_mean": float(np.mean([r["round_delay_s"] for r in rows])),
        "round_delay_equal_s_mean": float(np.mean([r["round_delay_equal_s"] for r in rows])),
        "temperature": cfg.temperature, "lam": cfg.lam,
    }
    if cfg.method == "kd":
        summary["local_path_acc"] = {mod: last[f"acc_local_path_{mod}"] for mod in cfg.modalities}
    run_dir.write_summary(summary, seed=cfg.seed, command=command)
    return summary
