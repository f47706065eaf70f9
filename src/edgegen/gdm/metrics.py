"""Offline quality metrics for 8×8 digit samples, computed with a small digits classifier trained here.

- feature-FID: Fréchet distance between Gaussians fitted to the classifier's penultimate-layer features (the
  FID recipe of Heusel et al. 2017 with this classifier in place of Inception-v3). FID is biased by the sample
  count, so compare a model's FID with ``real_floor`` computed at the same n: both use n = 898 (half of the 1797
  sklearn digits) against the same reference half.
- class entropy: entropy (nats, max ln 10 ≈ 2.303) of the histogram of predicted classes (mode coverage) and the
  mean per-sample confidence (sharpness), the two ingredients of the Inception Score.
- k-NN precision / recall (Kynkäänniemi et al. 2019, k = 3 as in the paper) in the same feature space.

The classifier (an MLP 64-256-64-10) trains in a few seconds on all 1797 digits scaled to [-1, 1] (the DDPM data)
and is cached under ``runs/cache/`` with a fingerprint of its data and recipe (set ``EDGEGEN_CACHE`` to move it).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

NUM_CLASSES = 10
FEATURE_DIM = 64
_RECIPE = {"arch": [64, 256, FEATURE_DIM, NUM_CLASSES], "epochs": 40, "batch": 64, "lr": 2e-3, "wd": 1e-4,
           "noise_std": 0.1, "seed": 0, "version": 1}


def digits_data() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 sklearn digits: X float32 (1797, 64) with pixels 0..16 mapped to [-1, 1], y int64 (1797,)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 8.0 - 1.0).astype(np.float32), d.target.astype(np.int64)


def real_halves(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random halves (898 digits each) of the data: (A, B). B is the reference of every FID here."""
    x, _ = digits_data()
    perm = np.random.default_rng(seed).permutation(len(x))
    n = len(x) // 2
    return x[perm[:n]], x[perm[n:2 * n]]


class DigitsClassifier(nn.Module):
    """MLP 64 → 256 → 64 (penultimate features) → 10."""

    def __init__(self):
        super().__init__()
        d_in, d_h, d_f, d_out = _RECIPE["arch"]
        self.body = nn.Sequential(nn.Linear(d_in, d_h), nn.ReLU(), nn.Linear(d_h, d_f), nn.ReLU())
        self.head = nn.Linear(d_f, d_out)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _fingerprint() -> str:
    x, y = digits_data()
    h = hashlib.sha256(json.dumps(_RECIPE, sort_keys=True).encode())
    h.update(x.tobytes())
    h.update(y.tobytes())
    return h.hexdigest()[:12]


@torch.enable_grad()
def _train_classifier() -> DigitsClassifier:
    x, y = (torch.from_numpy(a) for a in digits_data())
    gen = torch.Generator().manual_seed(_RECIPE["seed"])
    with torch.random.fork_rng():
        torch.manual_seed(_RECIPE["seed"])
        model = DigitsClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=_RECIPE["lr"], weight_decay=_RECIPE["wd"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny MLP: 1 thread is several times faster than 2 on this class of machine
    for _ in range(_RECIPE["epochs"]):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), _RECIPE["batch"]):
            idx = perm[i:i + _RECIPE["batch"]]
            xb = x[idx] + _RECIPE["noise_std"] * torch.randn(len(idx), x.shape[1], generator=gen)
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.set_num_threads(threads)
    return model.eval()


@functools.lru_cache(maxsize=4)
def digits_classifier(cache_dir: str | None = None) -> DigitsClassifier:
    """The cached digits classifier (trained and saved on first use; retrained when its fingerprint changes)."""
    cache = Path(cache_dir or os.environ.get("EDGEGEN_CACHE", "runs/cache"))
    path = cache / f"gdm_digits_classifier_{_fingerprint()}.pt"
    if path.exists():
        model = DigitsClassifier()
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    model = _train_classifier()
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    return model


def _as_tensor(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32)).reshape(len(x), -1)


@torch.no_grad()
def digit_features(x) -> np.ndarray:
    """Penultimate-layer features (N, 64) float64 of digits x (N, 64) or (N, 8, 8) in [-1, 1]."""
    return digits_classifier().features(_as_tensor(x)).double().numpy()


@torch.no_grad()
def digit_probs(x) -> torch.Tensor:
    """Class probabilities (N, 10) of digits x (N, 64) in [-1, 1] (no gradient; e.g. a DDPO reward)."""
    return torch.softmax(digits_classifier()(_as_tensor(x)), dim=1)


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """‖μ1-μ2‖² + tr(Σ1 + Σ2 - 2(Σ1^½ Σ2 Σ1^½)^½): the squared 2-Wasserstein distance between two Gaussians.

    Computed with symmetric eigen-decompositions (negative eigenvalues from round-off clipped to 0), which stays
    real and stable for singular covariances, unlike a general matrix square root of Σ1Σ2."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    w, v = np.linalg.eigh((cov1 + cov1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root1 @ cov2 @ root1
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * cross)


def fid_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted (mean, unbiased covariance) to two feature sets (N, d)."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    return frechet_distance(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))


def feature_fid(samples, reference) -> float:
    """Feature-FID between digit samples and reference digits (both (N, 64) in [-1, 1])."""
    return fid_from_features(digit_features(samples), digit_features(reference))


def real_floor(seed: int = 0, n: int | None = None) -> float:
    """Feature-FID of the first `n` digits of half A (default all 898) against all of half B of
    ``real_halves(seed)``: the floor for a model evaluated with n samples against half B."""
    a, b = real_halves(seed)
    return feature_fid(a[:n], b)


def class_entropy(samples) -> tuple[float, float]:
    """(entropy in nats of the predicted-class histogram, mean max-class probability) of digit samples."""
    p = digit_probs(samples)
    hist = torch.bincount(p.argmax(1), minlength=NUM_CLASSES).double()
    q = hist / hist.sum()
    entropy = -(q[q > 0] * q[q > 0].log()).sum()
    return float(entropy), float(p.max(1).values.mean())


def precision_recall_from_features(f_samples: np.ndarray, f_reference: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union of balls around
    its points with radius = distance to the point's k-th nearest neighbour in the same set; precision = share of
    samples inside the reference manifold, recall = share of reference points inside the sample manifold."""
    fs, fr = (torch.as_tensor(np.asarray(f, np.float64)) for f in (f_samples, f_reference))
    if not 1 <= k < min(len(fs), len(fr)):
        raise ValueError(f"k must be in [1, {min(len(fs), len(fr)) - 1}] (set sizes {len(fs)}, {len(fr)}), got {k}")

    def radii(f: torch.Tensor) -> torch.Tensor:
        return torch.cdist(f, f).kthvalue(k + 1, dim=1).values  # the 1st "neighbour" is the point itself

    def inside(points: torch.Tensor, centres: torch.Tensor, r: torch.Tensor) -> float:
        return float((torch.cdist(points, centres) <= r[None]).any(1).double().mean())

    return inside(fs, fr, radii(fr)), inside(fr, fs, radii(fs))


def knn_precision_recall(samples, reference, k: int = 3) -> tuple[float, float]:
    """k-NN precision and recall of digit samples against reference digits, in classifier feature space."""
    return precision_recall_from_features(digit_features(samples), digit_features(reference), k)


def evaluate_samples(samples, reference=None, k: int = 3) -> dict[str, float]:
    """All metrics of digit samples against `reference` (default: half B of ``real_halves()``, the floor's
    reference; pass 898 samples to match the floor's sample size): feature_fid, class_entropy,
    class_confidence, precision, recall."""
    if reference is None:
        reference = real_halves()[1]
    fs, fr = digit_features(samples), digit_features(reference)
    entropy, confidence = class_entropy(samples)
    precision, recall = precision_recall_from_features(fs, fr, k)
    return {"feature_fid": fid_from_features(fs, fr), "class_entropy": entropy, "class_confidence": confidence,
            "precision": precision, "recall": recall}
