"""Fine-tuning tasks for the federated LoRA experiments: data, a frozen pre-trained model, LoRA targets.

A :class:`Task` is everything the federated loop needs to know about a model tier:

* ``train`` / ``test``: tuples of tensors ``(*inputs, labels)``; the model is called as ``model(*inputs)``;
* ``make_base()``: a fresh copy of the frozen pre-trained model (its weights never change in LoRA runs);
* ``lora_targets``: dotted names of the ``nn.Linear`` modules that get LoRA adapters (PEFT ``target_modules``);
* ``head_modules``: modules trained fully by every client and averaged by data size (PEFT
  ``modules_to_save``), e.g. a new classification head; empty when the model's own output layer is adapted;
* ``train_flops_per_sample``: forward + backward FLOPs of one training sample (for the compute-time model).

Tiers: :func:`digits_task` here (fast, seconds) and :func:`edgegen.fedtune.minilm.minilm_task` (real LAM).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

__all__ = ["DIGITS_HIDDEN", "Task", "digits_split", "digits_task", "dirichlet_split", "linear_dims", "load_task"]


@dataclass
class Task:
    name: str
    train: tuple[torch.Tensor, ...]
    test: tuple[torch.Tensor, ...]
    num_classes: int
    make_base: Callable[[], nn.Module]
    lora_targets: list[str]
    head_modules: list[str] = field(default_factory=list)
    train_flops_per_sample: float = 0.0
    description: str = ""

    @property
    def train_labels(self) -> torch.Tensor:
        return self.train[-1]


def linear_dims(model: nn.Module, names: list[str]) -> list[tuple[int, int]]:
    """(d_out, d_in) of each named ``nn.Linear`` in ``model``."""
    modules = dict(model.named_modules())
    dims = []
    for name in names:
        m = modules.get(name)
        if not isinstance(m, nn.Linear):
            raise ValueError(f"LoRA target {name!r} must name an nn.Linear in the model, got {type(m).__name__}")
        dims.append((m.out_features, m.in_features))
    return dims


def dirichlet_split(labels: np.ndarray, num_clients: int, alpha: float, rng: np.random.Generator,
                    min_size: int = 10) -> list[np.ndarray]:
    """Non-IID split: for every class, the share of its samples per client is drawn from Dir(alpha).

    Redraws (up to 100 times) until every client holds at least ``min_size`` samples. Returns sorted
    index arrays, one per client, that partition ``range(len(labels))``.
    """
    labels = np.asarray(labels)
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}")
    if not alpha > 0:
        raise ValueError(f"dirichlet_alpha must be > 0, got {alpha}")
    if len(labels) < num_clients * min_size:
        raise ValueError(f"{len(labels)} samples cannot give {num_clients} clients {min_size} each")
    for _ in range(100):
        parts: list[list[int]] = [[] for _ in range(num_clients)]
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(num_clients, alpha))) * len(idx)).astype(int)[:-1]
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.array(p, dtype=np.int64)) for p in parts]
    raise ValueError(f"no Dirichlet({alpha}) split gave every one of {num_clients} clients >= {min_size} samples")


# --------------------------------------------------------------------------- digits tier

DIGITS_HIDDEN = (128, 128)
DIGITS_TEST_FRACTION = 0.2
DIGITS_PUBLIC_FRACTION = 0.3
DIGITS_PUBLIC_CLASSES = (0, 1, 2, 3, 4)


class DigitsMLP(nn.Module):
    """64 → 128 → 128 → 10 ReLU MLP on 8×8 digit images scaled to [0, 1]."""

    def __init__(self, hidden: tuple[int, int] = DIGITS_HIDDEN, num_classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(64, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.out = nn.Linear(hidden[1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def digits_split(split_seed: int = 0):
    """(public, private, test) splits of sklearn digits as (x, y) pairs; see :func:`digits_task`."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_pool, x_test, y_pool, y_test = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, stratify=y, random_state=split_seed)
    x_priv, x_pub, y_priv, y_pub = train_test_split(
        x_pool, y_pool, test_size=DIGITS_PUBLIC_FRACTION, stratify=y_pool, random_state=split_seed)
    return (x_pub, y_pub), (x_priv, y_priv), (x_test, y_test)


def pretrain_digits(x: np.ndarray, y: np.ndarray, epochs: int = 200, seed: int = 0) -> DigitsMLP:
    """Full-batch Adam (lr 1e-2) on the public split; deterministic for a given seed."""
    gen = torch.Generator().manual_seed(seed)
    model = DigitsMLP()
    with torch.no_grad():  # re-draw the default init from our own generator
        for p in model.parameters():
            p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) / np.sqrt(p.shape[-1]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    return model.eval()


def digits_task() -> Task:
    """sklearn digits (1,797 images). Splits, all stratified with ``random_state=0``:

    * test: 20% (360 images);
    * public: 30% of the rest (432 images), of which only the classes 0-4 (the "public split", 215 images)
      pre-train the MLP for 200 full-batch Adam steps — so the pre-trained model has never seen 5-9;
    * private: the other 1,005 images, split across the clients (see :func:`dirichlet_split`).

    The pre-trained output layer is replaced by a new 10-class head (``out``), trained fully on every device
    and averaged by data size; LoRA adapts the two hidden layers ``fc1`` and ``fc2``.
    """
    (x_pub, y_pub), (x_priv, y_priv), (x_test, y_test) = digits_split()
    keep = np.isin(y_pub, DIGITS_PUBLIC_CLASSES)
    base = pretrain_digits(x_pub[keep], y_pub[keep])
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a new 10-class head: the pre-trained one has only ever seen classes 0-4
        bound = 1.0 / np.sqrt(base.out.in_features)
        base.out.weight.copy_((torch.rand(base.out.weight.shape, generator=gen) * 2 - 1) * bound)
        base.out.bias.zero_()
    for p in base.parameters():
        p.requires_grad_(False)
    n_params = sum(p.numel() for p in base.parameters())
    return Task(
        name="digits",
        train=(torch.from_numpy(x_priv), torch.from_numpy(y_priv).long()),
        test=(torch.from_numpy(x_test), torch.from_numpy(y_test).long()),
        num_classes=10,
        make_base=lambda: copy.deepcopy(base),
        lora_targets=["fc1", "fc2"],
        head_modules=["out"],
        train_flops_per_sample=6.0 * n_params,
        description="sklearn digits, MLP 64-128-128-10 pre-trained on public classes 0-4, new head, LoRA on fc1/fc2",
    )


def load_task(tier: str, cache_dir: str | None = None) -> Task:
    """The task of a tier: ``digits`` or ``minilm`` (BBC News on all-MiniLM-L6-v2)."""
    if tier == "digits":
        return digits_task()
    if tier == "minilm":
        from edgegen.fedtune.minilm import minilm_task

        return minilm_task(cache_dir=cache_dir)
    raise ValueError(f"tier must be one of ['digits', 'minilm'], got {tier!r}")
