"""Device selection and bandwidth allocation that minimise the latency of one federated LoRA round.

Pure numpy maths on top of :mod:`edgegen.wireless`. A round has K selected devices; device k

1. computes its local LoRA update in ``compute_s[k]`` seconds,
2. uploads ``upload_bits[k]`` over OFDMA holding a share b_k of the band B with its own power P_k:
   r_up = b_k·B·log2(1 + P_k·g_k / (b_k·B·N0)) (:func:`edgegen.wireless.ofdma_rate_bps`),
3. downloads ``download_bits[k]`` by unicast on the same share b_k. The base station spreads its total
   power ``downlink_power_w`` evenly over the band, so device k's sub-band gets b_k·P_BS and
   r_down = b_k·B·log2(1 + P_BS·g_k / (B·N0)) (reciprocal channel: the same gain g_k both ways).

Its latency is T_k = T_up + T_comp + T_down and the round lasts max_k T_k (synchronous aggregation).
T_k is decreasing in b_k, so the min-max allocation equalises the finish times (:func:`min_max_bandwidth`).

Per-device arguments are scalars or 1-D arrays broadcast against each other; shares sum to at most 1.
Invalid inputs raise ``ValueError`` naming the argument.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edgegen import wireless as wl

__all__ = [
    "DEFAULT_DOWNLINK_POWER_W",
    "device_latency_s",
    "equal_bandwidth",
    "min_max_bandwidth",
    "random_selection",
    "round_latency_s",
    "select_devices",
]

DEFAULT_DOWNLINK_POWER_W = 10.0  # 40 dBm base-station power over the whole band
_SHARE_SUM_TOL = 1e-9


# --------------------------------------------------------------------------- helpers


def _nonneg(name: str, value: npt.ArrayLike) -> np.ndarray:
    x = np.asarray(value, dtype=float)
    if x.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a 1-D array, got shape {x.shape}")
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise ValueError(f"{name} must be finite and >= 0, got {x.tolist()}")
    return x


def _devices(**arrays: npt.ArrayLike) -> dict[str, np.ndarray]:
    """Validate the per-device arguments and broadcast them to one common 1-D length."""
    checked = {name: _nonneg(name, value) for name, value in arrays.items()}
    try:
        shape = np.broadcast_shapes(*(x.shape for x in checked.values()))
    except ValueError as err:
        sizes = {name: x.shape for name, x in checked.items()}
        raise ValueError(f"per-device arguments must have a common length, got shapes {sizes}") from err
    n = int(np.prod(shape)) if shape else 1
    if n == 0:
        raise ValueError("at least one device is needed, got empty per-device arrays")
    return {name: np.broadcast_to(x, (n,)).astype(float) for name, x in checked.items()}


def _positive(name: str, value: float) -> float:
    v = float(value)
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return v


def _latencies(
    dev: dict[str, np.ndarray],
    shares: np.ndarray,
    total_bandwidth_hz: float,
    downlink_power_w: float,
    noise_psd_dbm_per_hz: float,
) -> np.ndarray:
    """Per-device T_k for validated, broadcast arrays."""
    up_rate = wl.ofdma_rate_bps(shares, total_bandwidth_hz, dev["tx_power_w"], dev["gain"], noise_psd_dbm_per_hz)
    # Flat base-station PSD: the sub-band of share b gets power b·P_BS.
    down_rate = wl.ofdma_rate_bps(
        shares, total_bandwidth_hz, shares * downlink_power_w, dev["gain"], noise_psd_dbm_per_hz
    )
    t_up = np.asarray(wl.transmit_time_s(dev["upload_bits"], up_rate))
    t_down = np.asarray(wl.transmit_time_s(dev["download_bits"], down_rate))
    return t_up + dev["compute_s"] + t_down


def _check_shares(shares: npt.ArrayLike, n: int) -> np.ndarray:
    b = np.asarray(shares, dtype=float)
    if b.shape != (n,):
        raise ValueError(f"shares must hold one entry per device ({n}), got shape {b.shape}")
    if not np.all(np.isfinite(b)) or np.any(b < 0) or np.any(b > 1):
        raise ValueError(f"shares must be in [0, 1], got {b.tolist()}")
    if b.sum() > 1.0 + _SHARE_SUM_TOL:
        raise ValueError(f"shares must sum to at most 1, got {b.sum():.12g}")
    return b


# --------------------------------------------------------------------------- latency


def device_latency_s(
    upload_bits: npt.ArrayLike,
    download_bits: npt.ArrayLike,
    compute_s: npt.ArrayLike,
    shares: npt.ArrayLike,
    total_bandwidth_hz: float,
    tx_power_w: npt.ArrayLike,
    gain: npt.ArrayLike,
    downlink_power_w: float = DEFAULT_DOWNLINK_POWER_W,
    noise_psd_dbm_per_hz: float = -174.0,
) -> np.ndarray:
    """Per-device round latency T_k = T_up + T_comp + T_down in s (``inf`` for a zero share with bits to send).

    ``shares`` is the 1-D array of band fractions b_k (one per device, Σ b_k ≤ 1), used for both the
    OFDMA uplink (device power ``tx_power_w``) and the unicast downlink (base-station power
    ``downlink_power_w`` spread over the whole band). See the module docstring for the rates.
    """
    b = np.asarray(shares, dtype=float)
    if b.ndim != 1:
        raise ValueError(f"shares must be a 1-D array (one entry per device), got shape {b.shape}")
    dev = _devices(
        upload_bits=upload_bits,
        download_bits=download_bits,
        compute_s=compute_s,
        tx_power_w=tx_power_w,
        gain=gain,
        shares=b,
    )
    b = _check_shares(dev.pop("shares"), b.size)
    total = _positive("total_bandwidth_hz", total_bandwidth_hz)
    p_down = _positive("downlink_power_w", downlink_power_w)
    return _latencies(dev, b, total, p_down, noise_psd_dbm_per_hz)


def round_latency_s(
    upload_bits: npt.ArrayLike,
    download_bits: npt.ArrayLike,
    compute_s: npt.ArrayLike,
    shares: npt.ArrayLike,
    total_bandwidth_hz: float,
    tx_power_w: npt.ArrayLike,
    gain: npt.ArrayLike,
    downlink_power_w: float = DEFAULT_DOWNLINK_POWER_W,
    noise_psd_dbm_per_hz: float = -174.0,
) -> float:
    """Latency of a synchronous round: max_k T_k over the selected devices (the arrays passed in).

    Arguments as in :func:`device_latency_s`.
    """
    t = device_latency_s(
        upload_bits,
        download_bits,
        compute_s,
        shares,
        total_bandwidth_hz,
        tx_power_w,
        gain,
        downlink_power_w,
        noise_psd_dbm_per_hz,
    )
    return float(np.max(t))


# --------------------------------------------------------------------------- bandwidth allocation


def equal_bandwidth(n: int) -> np.ndarray:
    """Equal shares 1/n for n devices."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return np.full(int(n), 1.0 / n)


def min_max_bandwidth(
    upload_bits: npt.ArrayLike,
    download_bits: npt.ArrayLike,
    compute_s: npt.ArrayLike,
    total_bandwidth_hz: float,
    tx_power_w: npt.ArrayLike,
    gain: npt.ArrayLike,
    downlink_power_w: float = DEFAULT_DOWNLINK_POWER_W,
    noise_psd_dbm_per_hz: float = -174.0,
    rel_tol: float = 1e-9,
    max_iter: int = 200,
) -> tuple[np.ndarray, float]:
    """Shares minimising the round latency max_k T_k(b_k) subject to Σ b_k = 1, b_k ≥ 0.

    Bisection on the target latency T: for a given T, device k needs the smallest share b_k(T) with
    T_k(b_k) ≤ T (found by an inner bisection, T_k is decreasing in b_k), and T is feasible iff
    Σ b_k(T) ≤ 1. The search starts from [max_k T_k(1), max_k T_k(1/K)] (equal shares are feasible) and
    stops when the bracket is narrower than ``rel_tol`` · T. Band left over at the optimum
    (≤ the tolerance) is handed out in proportion to b_k so the shares sum to 1.

    At the optimum every device with a payload finishes at the same time, unless a device's compute time
    alone is the bottleneck. A device with nothing to send gets share 0 (equal shares if nobody sends).
    Returns ``(shares, latency)`` with ``latency = round_latency_s(..., shares, ...)``, which is never
    above the equal-bandwidth latency. Raises ``ValueError`` if a device with bits to send has a zero rate.
    """
    dev = _devices(
        upload_bits=upload_bits, download_bits=download_bits, compute_s=compute_s, tx_power_w=tx_power_w, gain=gain
    )
    total = _positive("total_bandwidth_hz", total_bandwidth_hz)
    p_down = _positive("downlink_power_w", downlink_power_w)
    tol = _positive("rel_tol", rel_tol)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    n = dev["gain"].size

    def latencies(b: np.ndarray) -> np.ndarray:
        return _latencies(dev, b, total, p_down, noise_psd_dbm_per_hz)

    sends = (dev["upload_bits"] > 0) | (dev["download_bits"] > 0)
    equal = equal_bandwidth(n)
    if not np.any(sends):
        return equal, float(np.max(latencies(equal)))
    best_t = latencies(np.ones(n))
    if not np.all(np.isfinite(best_t)):
        k = int(np.flatnonzero(~np.isfinite(best_t))[0])
        raise ValueError(
            f"device {k} has a zero rate with bits to send: check gain, tx_power_w and downlink_power_w "
            f"(gain={dev['gain'][k]!r}, tx_power_w={dev['tx_power_w'][k]!r})"
        )

    def needed_shares(target: float) -> np.ndarray:
        """Smallest b_k with T_k(b_k) ≤ target (upper end of a bisection bracket, so it is feasible)."""
        lo, hi = np.zeros(n), np.ones(n)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            ok = latencies(mid) <= target
            hi = np.where(ok, mid, hi)
            lo = np.where(ok, lo, mid)
        return np.where(sends, hi, 0.0)

    t_lo = float(np.max(best_t))  # nobody can beat its whole-band latency
    t_hi = float(np.max(latencies(equal)))  # equal shares are feasible
    shares = equal
    if t_lo >= t_hi:  # e.g. a single device, or compute-bound
        return equal, t_hi
    b = needed_shares(t_lo)
    if b.sum() <= 1.0:
        t_hi, shares = t_lo, b
    else:
        for _ in range(max_iter):
            if t_hi - t_lo <= tol * t_hi:
                break
            mid = 0.5 * (t_lo + t_hi)
            b = needed_shares(mid)
            if b.sum() <= 1.0:
                t_hi, shares = mid, b
            else:
                t_lo = mid
    shares = shares / shares.sum()  # hand out the left-over band; only lowers each T_k
    return shares, float(np.max(latencies(shares)))


# --------------------------------------------------------------------------- device selection


def select_devices(latency_alone_s: npt.ArrayLike, deadline_s: float, min_devices: int) -> np.ndarray:
    """Indices (ascending) of the devices whose latency fits ``deadline_s``.

    ``latency_alone_s[k]`` is device k's latency under some reference allocation (e.g. equal shares).
    If fewer than ``min_devices`` fit, the ``min_devices`` fastest are taken instead (ties by index).
    """
    t = np.asarray(latency_alone_s, dtype=float)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"latency_alone_s must be a non-empty 1-D array, got shape {t.shape}")
    if np.any(np.isnan(t)) or np.any(t < 0):
        raise ValueError(f"latency_alone_s must be >= 0 (inf allowed), got {t.tolist()}")
    deadline = float(deadline_s)
    if np.isnan(deadline) or deadline <= 0:
        raise ValueError(f"deadline_s must be > 0, got {deadline_s!r}")
    if isinstance(min_devices, bool) or not isinstance(min_devices, int | np.integer) or not 0 <= min_devices <= t.size:
        raise ValueError(f"min_devices must be an integer in [0, {t.size}], got {min_devices!r}")
    fit = np.flatnonzero(t <= deadline)
    if fit.size >= min_devices:
        return fit
    return np.sort(np.argsort(t, kind="stable")[:min_devices])


def random_selection(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """k distinct device indices out of n drawn uniformly from ``rng``, sorted ascending."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a np.random.Generator, got {type(rng).__name__}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 0 <= k <= n:
        raise ValueError(f"k must be an integer in [0, {n}], got {k!r}")
    return np.sort(rng.choice(int(n), size=int(k), replace=False))
