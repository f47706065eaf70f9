"""Backdoor-trigger detection at the edge on SS-Diff's displacement statistic, plus a trivial noise baseline.

SS-Diff (IEEE IoT J. 2024): after the t shared DDIM steps of collaborative sampling the edge knows, for every
uploaded noise, d_i = ‖x_T^i − x_{T−t}^i‖₂ (``sampling.displacement``). Triggered noises follow the backdoor's
trajectory towards the target and move differently from clean ones, so an unsupervised two-way split of the
batch's {d_i} flags them. The four split rules (pure numpy, a threshold θ on d):

- ``average``: θ = mean(d);
- ``max_min``: θ = (max(d) + min(d)) / 2;
- ``maxsplit``: θ = the middle of the largest gap between consecutive sorted values;
- ``kmeans``: 1-D 2-means, solved exactly (the optimal 2-clustering of points on a line is a split of the sorted
  values, found by scanning every split with prefix sums); θ = the mean of the two centroids.

A split has two sides; which one is "triggered" is decided by calibration: the edge runs fresh clean noise
through the same t steps of the same model (``Calibration``) and flags the side whose median is farther from the
clean median. The gap test keeps an all-clean batch whole: the flagged side must stand apart from the clean
calibration, i.e. its separation |median(flagged side) − clean median| / clean scale (robust units) must exceed
the (1 − α) quantile of the same rule's separation on all-clean batches of the same size resampled from the
calibration set (``gap_threshold``). So, under calibration, an all-clean batch is split with probability ≤ α
by every rule. (A test on the margin at the cut, or on the largest sorted gap, was much weaker here: on 64
dimensions the triggered cluster usually touches the clean tail even when the two are well separated overall.)

``noise_stats_pvalue`` is the trivial baseline, blind to the model: a per-input test that the raw uploaded noise
is N(0, I) (χ² test of ‖x‖², z-test of the pixel mean, Kolmogorov-Smirnov test of the values; Bonferroni-combined).
DisDet (Sui et al., TMLR 2025) shows such distribution tests catch the usual triggers; its adaptive trigger, like
``backdoor.make_trigger("adaptive")``, is built to pass them.

Mitigation (``mitigate``): flagged inputs are dropped (not served) or re-noised: replaced by fresh N(0, I) noise
and sampled again, so a triggered upload yields an ordinary sample instead of the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DETECTORS = ("average", "maxsplit", "max_min", "kmeans")
BASELINE = "noise_stats"
MITIGATIONS = ("renoise", "drop")
_MAD_TO_STD = 1.4826


def _as_1d(d) -> np.ndarray:
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    if d.size == 0 or not np.all(np.isfinite(d)):
        raise ValueError("d must be a non-empty array of finite numbers")
    return d


def threshold_average(d) -> float:
    """θ = mean(d)."""
    return float(np.mean(_as_1d(d)))


def threshold_max_min(d) -> float:
    """θ = (max(d) + min(d)) / 2."""
    d = _as_1d(d)
    return float((d.max() + d.min()) / 2)


def threshold_maxsplit(d) -> float:
    """θ = middle of the largest gap between consecutive sorted values (the first such gap on ties; a single
    value gives θ = that value)."""
    s = np.sort(_as_1d(d))
    if s.size == 1:
        return float(s[0])
    i = int(np.argmax(np.diff(s)))
    return float((s[i] + s[i + 1]) / 2)


def threshold_kmeans(d) -> float:
    """Exact 1-D 2-means: the split of the sorted values into a prefix and a suffix with the least within-cluster
    sum of squares; θ = (mean(prefix) + mean(suffix)) / 2 (a single distinct value gives θ = that value)."""
    s = np.sort(_as_1d(d))
    n = s.size
    if n == 1 or s[0] == s[-1]:
        return float(s[0])
    c1, c2 = np.cumsum(s), np.cumsum(s**2)
    k = np.arange(1, n)  # prefix sizes 1..n-1
    left_sse = c2[k - 1] - c1[k - 1] ** 2 / k
    right_sum, right_sq = c1[-1] - c1[k - 1], c2[-1] - c2[k - 1]
    right_sse = right_sq - right_sum**2 / (n - k)
    best = int(np.argmin(left_sse + right_sse))
    m = best + 1
    return float((c1[m - 1] / m + (c1[-1] - c1[m - 1]) / (n - m)) / 2)


THRESHOLDS = {"average": threshold_average, "maxsplit": threshold_maxsplit, "max_min": threshold_max_min,
              "kmeans": threshold_kmeans}


def max_gap(d) -> float:
    """The largest gap between consecutive sorted values (0 for one value)."""
    s = np.sort(_as_1d(d))
    return float(np.diff(s).max()) if s.size > 1 else 0.0


@dataclass(frozen=True)
class Calibration:
    """What the edge learns from fresh clean noise run through the same t steps of the same model."""

    center: float
    """Median of the clean displacements."""
    scale: float
    """Robust standard deviation of the clean displacements (1.4826 · MAD, or the std if the MAD is 0)."""
    clean: np.ndarray
    """The clean displacements themselves (for the gap test's resampling)."""


def calibrate(d_clean) -> Calibration:
    """Calibration from clean displacements (at least 2)."""
    d = _as_1d(d_clean)
    if d.size < 2:
        raise ValueError("calibration needs at least 2 clean displacements")
    center = float(np.median(d))
    scale = _MAD_TO_STD * float(np.median(np.abs(d - center)))
    if scale <= 0:
        scale = float(np.std(d)) or 1.0
    return Calibration(center, scale, d.copy())


def _sides(d: np.ndarray, detector: str, calib: Calibration) -> tuple[float, np.ndarray, np.ndarray, bool]:
    """(θ, high mask, low mask, high side is triggered) of one rule on one batch."""
    theta = THRESHOLDS[detector](d)
    high = d > theta
    low = ~high
    if not high.any() or not low.any():
        return theta, high, low, True
    high_dev = abs(float(np.median(d[high])) - calib.center)
    low_dev = abs(float(np.median(d[low])) - calib.center)
    return theta, high, low, high_dev >= low_dev


def separation(d, detector: str, calib: Calibration) -> float:
    """The gap-test statistic of one rule on one batch: |median of the flagged side − clean median| / clean scale
    (0 when the rule leaves one side empty)."""
    d = _as_1d(d)
    _, high, low, high_trig = _sides(d, detector, calib)
    side = high if high_trig else low
    if not high.any() or not low.any():
        return 0.0
    return abs(float(np.median(d[side])) - calib.center) / calib.scale


def gap_threshold(calib: Calibration, batch_size: int, detector: str, alpha: float = 0.01, draws: int = 2000,
                  seed: int = 0) -> float:
    """The (1 − alpha) quantile of ``separation`` of `detector` on `draws` all-clean batches of `batch_size`
    displacements drawn by a smoothed bootstrap from the calibration set: resampled with replacement plus Gaussian
    kernel noise of Silverman's bandwidth 1.06·min(std, IQR/1.34)·n^(-1/5), so that a batch can reach beyond the
    calibration set's extremes (a plain bootstrap cannot, and rules that flag one extreme upload need that tail)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if detector not in THRESHOLDS:
        raise ValueError(f"detector must be one of {list(THRESHOLDS)}, got {detector!r}")
    rng = np.random.default_rng(seed)
    c = calib.clean
    iqr = float(np.subtract(*np.quantile(c, [0.75, 0.25])))
    spread = min(float(np.std(c)), iqr / 1.34) or float(np.std(c)) or calib.scale
    bandwidth = 1.06 * spread * c.size ** -0.2
    batches = rng.choice(c, size=(draws, batch_size), replace=True) + bandwidth * rng.standard_normal((draws,
                                                                                                      batch_size))
    return float(np.quantile([separation(b, detector, calib) for b in batches], 1 - alpha))


@dataclass(frozen=True)
class Split:
    """One detector's decision on one batch."""

    flags: np.ndarray
    """bool (N,): flagged as triggered."""
    threshold: float
    """θ of the split rule."""
    high_is_triggered: bool
    """Which side calibration called triggered."""
    separation: float
    """|median of the flagged side − clean median| / clean scale (the gap-test statistic)."""
    margin: float
    """(min above θ − max below θ) / clean scale (0 if one side is empty), for information."""
    accepted: bool
    """The split passed the gap test."""
    scores: np.ndarray
    """Oriented score (N,): ±(d − θ)/scale, positive on the triggered side (AUROC uses it; flags need also the
    gap test)."""


def split_batch(d, detector: str, calib: Calibration, min_separation: float) -> Split:
    """Split one batch's displacements with `detector`, orient the split by calibration and apply the gap test
    (accept when the separation exceeds `min_separation`, e.g. ``gap_threshold``)."""
    if detector not in THRESHOLDS:
        raise ValueError(f"detector must be one of {list(THRESHOLDS)}, got {detector!r}")
    d = _as_1d(d)
    theta, high, low, high_trig = _sides(d, detector, calib)
    sign = 1.0 if high_trig else -1.0
    scores = sign * (d - theta) / calib.scale
    if not high.any() or not low.any():
        return Split(np.zeros(d.size, bool), theta, True, 0.0, 0.0, False, scores)
    margin = float((d[high].min() - d[low].max()) / calib.scale)
    sep = separation(d, detector, calib)
    accepted = sep > min_separation
    flags = (high if high_trig else low) & accepted
    return Split(flags, theta, high_trig, sep, margin, accepted, scores)


# --------------------------------------------------------------------------------------------- trivial baseline

def noise_stats_pvalue(x) -> np.ndarray:
    """Per-input p-value (N,) of H0 "x_i ~ N(0, I_D)" for raw noises x (N, D): the smallest of three two-sided
    tests (χ²_D on ‖x‖², z = √D·mean(x), Kolmogorov-Smirnov of the D values against N(0, 1)), ×3 (Bonferroni)."""
    from scipy import stats

    x = np.asarray(x, dtype=np.float64)
    x = x.reshape(len(x), -1)
    dim = x.shape[1]
    sq = (x**2).sum(1)
    chi_cdf = stats.chi2.cdf(sq, dim)
    p_norm = 2 * np.minimum(chi_cdf, 1 - chi_cdf)
    p_mean = 2 * stats.norm.sf(np.abs(np.sqrt(dim) * x.mean(1)))
    p_ks = np.array([stats.kstest(row, "norm").pvalue for row in x])
    return np.minimum(1.0, 3 * np.minimum(np.minimum(p_norm, p_mean), p_ks))


# ------------------------------------------------------------------------------------------------ scoring

def binary_metrics(flags, truth) -> dict[str, float]:
    """TPR (recall), FPR and F1 of boolean flags against boolean truth (TPR nan without positives, FPR nan
    without negatives, F1 0 when nothing is flagged and there are positives)."""
    f, y = np.asarray(flags, bool), np.asarray(truth, bool)
    tp, fp = int((f & y).sum()), int((f & ~y).sum())
    fn = int((~f & y).sum())
    pos, neg = int(y.sum()), int((~y).sum())
    tpr = tp / pos if pos else float("nan")
    fpr = fp / neg if neg else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else float("nan")
    return {"tpr": tpr, "fpr": fpr, "f1": f1}


def auroc(scores, truth) -> float:
    """Area under the ROC curve = P(score of a random positive > score of a random negative) + ½ P(tie)
    (the Mann-Whitney U statistic / (n_pos·n_neg), average ranks for ties)."""
    from scipy.stats import rankdata

    s, y = np.asarray(scores, np.float64), np.asarray(truth, bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def roc_curve(scores, truth) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) arrays of the ROC curve, thresholds at every distinct score from high to low, from (0, 0)."""
    s, y = np.asarray(scores, np.float64), np.asarray(truth, bool)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each run of equal scores
    tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
    return np.r_[0.0, fp / max(1, (~y).sum())], np.r_[0.0, tp / max(1, y.sum())]


# ---------------------------------------------------------------------------------------------- mitigation

def mitigate(x_T: np.ndarray, flags, mode: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(new noises (N, D), served mask (N,)) after treating flagged inputs: `renoise` replaces each flagged
    noise by a fresh N(0, I) draw (all inputs are served), `drop` serves only the unflagged ones."""
    if mode not in MITIGATIONS:
        raise ValueError(f"mitigation must be one of {list(MITIGATIONS)}, got {mode!r}")
    x = np.array(x_T, dtype=np.float64, copy=True)
    f = np.asarray(flags, bool)
    if mode == "drop":
        return x, ~f
    x[f] = rng.standard_normal((int(f.sum()), x.shape[1]))
    return x, np.ones(len(x), bool)
