"""Wireless-link and device-energy maths shared by every edgegen area.

Pure numpy, no torch. Every function accepts Python scalars or numpy arrays and broadcasts them
against each other; a result is a Python ``float`` when all inputs are scalars and an
``np.ndarray`` otherwise. Units are part of the parameter names (``distance_km``, ``bandwidth_hz``,
``tx_power_w``, ``noise_psd_dbm_per_hz``, ``cycles``, ``freq_hz``, ...). Inputs outside their
physical range raise ``ValueError`` naming the argument and the allowed range.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = [
    "FSPL_1M_2_4GHZ_DB",
    "channel_gain",
    "compute_energy_j",
    "compute_time_s",
    "db_to_linear",
    "dbm_to_watt",
    "linear_to_db",
    "log_distance_path_loss_db",
    "noise_power_w",
    "ofdma_rate_bps",
    "path_loss_db",
    "rayleigh_power_gain",
    "shannon_rate_bps",
    "snr",
    "transmit_energy_j",
    "transmit_time_s",
    "watt_to_dbm",
]

Scalar = float | np.ndarray

SPEED_OF_LIGHT_M_PER_S = 299_792_458.0
# Free-space path loss at 1 m and 2.4 GHz: 20·log10(4π·d·f/c) ≈ 40.05 dB.
FSPL_1M_2_4GHZ_DB = 20.0 * math.log10(4.0 * math.pi * 1.0 * 2.4e9 / SPEED_OF_LIGHT_M_PER_S)

_FADING_MODELS = ("rayleigh", "none")


# --------------------------------------------------------------------------- helpers


def _out(x: np.ndarray) -> Scalar:
    """Return a Python float for 0-d results, the array otherwise."""
    return float(x) if np.ndim(x) == 0 else x


def _check(
    name: str,
    value: npt.ArrayLike,
    *,
    low: float | None = None,
    low_open: bool = False,
    high: float | None = None,
    allow_inf: bool = True,
) -> np.ndarray:
    """Convert ``value`` to a float array and check ``low <=/< value <= high`` (NaN always fails)."""
    x = np.asarray(value, dtype=float)
    ok = ~np.isnan(x)
    if not allow_inf:
        ok &= np.isfinite(x)
    if low is not None:
        ok &= (x > low) if low_open else (x >= low)
    if high is not None:
        ok &= x <= high
    if not np.all(ok):
        lo = "(-inf" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "inf)" if high is None else f"{high:g}]"
        kind = "" if allow_inf else "finite and "
        bad = float(x[~ok].flat[0]) if x.ndim else float(x)
        raise ValueError(f"{name} must be {kind}in {lo}, {hi}; got {bad!r}")
    return x


def _check_rng(rng: object) -> np.random.Generator:
    if rng is None:
        raise ValueError("rng must be a np.random.Generator (e.g. np.random.default_rng(seed)), got None")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a np.random.Generator, got {type(rng).__name__}")
    return rng


# --------------------------------------------------------------------------- unit conversions


def db_to_linear(db: npt.ArrayLike) -> Scalar:
    """Power ratio from decibels: 10^(dB/10). ``-inf`` dB maps to 0."""
    x = _check("db", db)
    return _out(np.power(10.0, x / 10.0))


def linear_to_db(x: npt.ArrayLike) -> Scalar:
    """Decibels from a power ratio ``x >= 0``: 10·log10(x). ``x = 0`` maps to ``-inf``."""
    v = _check("x", x, low=0.0)
    with np.errstate(divide="ignore"):
        return _out(10.0 * np.log10(v))


def dbm_to_watt(dbm: npt.ArrayLike) -> Scalar:
    """Watts from dBm: 10^(dBm/10) · 1e-3."""
    x = _check("dbm", dbm)
    return _out(np.power(10.0, x / 10.0) * 1e-3)


def watt_to_dbm(w: npt.ArrayLike) -> Scalar:
    """dBm from watts ``w >= 0``: 10·log10(w / 1 mW). ``w = 0`` maps to ``-inf``."""
    v = _check("w", w, low=0.0)
    with np.errstate(divide="ignore"):
        return _out(10.0 * np.log10(v * 1e3))


# --------------------------------------------------------------------------- path loss and fading


def path_loss_db(distance_km: npt.ArrayLike) -> Scalar:
    """3GPP macro-cell path loss in dB: 128.1 + 37.6·log10(d_km), ``distance_km > 0``."""
    d = _check("distance_km", distance_km, low=0.0, low_open=True)
    return _out(128.1 + 37.6 * np.log10(d))


def log_distance_path_loss_db(
    distance_m: npt.ArrayLike,
    exponent: npt.ArrayLike,
    ref_loss_db: npt.ArrayLike = FSPL_1M_2_4GHZ_DB,
    ref_distance_m: npt.ArrayLike = 1.0,
) -> Scalar:
    """Log-distance path loss in dB: PL(d0) + 10·n·log10(d / d0).

    ``ref_loss_db`` defaults to the free-space loss at 1 m and 2.4 GHz (≈ 40.05 dB).
    """
    d = _check("distance_m", distance_m, low=0.0, low_open=True)
    n = _check("exponent", exponent, low=0.0, low_open=True, allow_inf=False)
    pl0 = _check("ref_loss_db", ref_loss_db, allow_inf=False)
    d0 = _check("ref_distance_m", ref_distance_m, low=0.0, low_open=True, allow_inf=False)
    return _out(pl0 + 10.0 * n * np.log10(d / d0))


def rayleigh_power_gain(rng: np.random.Generator, size: int | tuple[int, ...] | None = None) -> Scalar:
    """Rayleigh small-scale fading power |h|² ~ Exponential(1), drawn from ``rng``."""
    rng = _check_rng(rng)
    return _out(np.asarray(rng.exponential(1.0, size=size), dtype=float))


def channel_gain(
    distance_km: npt.ArrayLike,
    rng: np.random.Generator | None = None,
    fading: str = "rayleigh",
) -> Scalar:
    """Linear channel power gain 10^(−PL(d)/10) · |h|².

    ``fading="rayleigh"`` draws |h|² ~ Exp(1) from ``rng`` (one draw per element of
    ``distance_km``; ``rng`` is required); ``fading="none"`` uses |h|² = 1 and ignores ``rng``.
    """
    if fading not in _FADING_MODELS:
        raise ValueError(f"fading must be one of {_FADING_MODELS}, got {fading!r}")
    large_scale = np.power(10.0, -np.asarray(path_loss_db(distance_km)) / 10.0)
    if fading == "none":
        return _out(large_scale)
    rng = _check_rng(rng)
    h2 = rng.exponential(1.0, size=large_scale.shape)
    return _out(large_scale * h2)


# --------------------------------------------------------------------------- noise, SNR, rates


def noise_power_w(
    bandwidth_hz: npt.ArrayLike,
    noise_psd_dbm_per_hz: npt.ArrayLike = -174.0,
    noise_figure_db: npt.ArrayLike = 0.0,
) -> Scalar:
    """Thermal noise power in W: N0 · NF · B, with N0 given in dBm/Hz and NF in dB."""
    b = _check("bandwidth_hz", bandwidth_hz, low=0.0, allow_inf=False)
    psd = _check("noise_psd_dbm_per_hz", noise_psd_dbm_per_hz, allow_inf=False)
    nf = _check("noise_figure_db", noise_figure_db, low=0.0, allow_inf=False)
    return _out(np.power(10.0, (psd + nf) / 10.0) * 1e-3 * b)


def snr(
    tx_power_w: npt.ArrayLike,
    gain: npt.ArrayLike,
    bandwidth_hz: npt.ArrayLike,
    noise_psd_dbm_per_hz: npt.ArrayLike = -174.0,
) -> Scalar:
    """Linear signal-to-noise ratio P·g / (N0·B)."""
    p = _check("tx_power_w", tx_power_w, low=0.0, allow_inf=False)
    g = _check("gain", gain, low=0.0, allow_inf=False)
    b = _check("bandwidth_hz", bandwidth_hz, low=0.0, low_open=True, allow_inf=False)
    noise = np.asarray(noise_power_w(b, noise_psd_dbm_per_hz))
    return _out(p * g / noise)


def shannon_rate_bps(bandwidth_hz: npt.ArrayLike, snr_linear: npt.ArrayLike) -> Scalar:
    """Shannon capacity in bit/s: B·log2(1 + SNR)."""
    b = _check("bandwidth_hz", bandwidth_hz, low=0.0, allow_inf=False)
    s = _check("snr_linear", snr_linear, low=0.0)
    return _out(b * np.log2(1.0 + s))


def ofdma_rate_bps(
    bandwidth_share: npt.ArrayLike,
    total_bandwidth_hz: npt.ArrayLike,
    tx_power_w: npt.ArrayLike,
    gain: npt.ArrayLike,
    noise_psd_dbm_per_hz: npt.ArrayLike = -174.0,
) -> Scalar:
    """OFDMA uplink rate in bit/s for a device holding fraction b_k of the band.

    r = b_k·B·log2(1 + P·g / (b_k·B·N0)); a zero share (or zero band) gives rate 0.
    """
    share = _check("bandwidth_share", bandwidth_share, low=0.0, high=1.0)
    total = _check("total_bandwidth_hz", total_bandwidth_hz, low=0.0, allow_inf=False)
    p = _check("tx_power_w", tx_power_w, low=0.0, allow_inf=False)
    g = _check("gain", gain, low=0.0, allow_inf=False)
    psd = _check("noise_psd_dbm_per_hz", noise_psd_dbm_per_hz, allow_inf=False)
    n0_w_per_hz = np.power(10.0, psd / 10.0) * 1e-3
    band = share * total
    active = band > 0.0
    safe_band = np.where(active, band, 1.0)
    rate = np.where(active, band * np.log2(1.0 + p * g / (safe_band * n0_w_per_hz)), 0.0)
    return _out(rate)


# --------------------------------------------------------------------------- latency and energy


def transmit_time_s(payload_bits: npt.ArrayLike, rate_bps: npt.ArrayLike) -> Scalar:
    """Upload time S/R in s; ``inf`` when R = 0 and S > 0, and 0 whenever S = 0."""
    s = _check("payload_bits", payload_bits, low=0.0, allow_inf=False)
    r = _check("rate_bps", rate_bps, low=0.0)
    s, r = np.broadcast_arrays(s, r)
    safe_r = np.where(r > 0.0, r, 1.0)
    t = np.where(s == 0.0, 0.0, np.where(r > 0.0, s / safe_r, np.inf))
    return _out(t)


def compute_time_s(cycles: npt.ArrayLike, freq_hz: npt.ArrayLike) -> Scalar:
    """Local computation time C/f in s."""
    c = _check("cycles", cycles, low=0.0, allow_inf=False)
    f = _check("freq_hz", freq_hz, low=0.0, low_open=True, allow_inf=False)
    return _out(c / f)


def compute_energy_j(cycles: npt.ArrayLike, freq_hz: npt.ArrayLike, kappa: npt.ArrayLike = 1e-28) -> Scalar:
    """CPU energy κ·f²·C in J (κ is the effective switched capacitance)."""
    c = _check("cycles", cycles, low=0.0, allow_inf=False)
    f = _check("freq_hz", freq_hz, low=0.0, low_open=True, allow_inf=False)
    k = _check("kappa", kappa, low=0.0, allow_inf=False)
    return _out(k * f**2 * c)


def transmit_energy_j(tx_power_w: npt.ArrayLike, time_s: npt.ArrayLike) -> Scalar:
    """Radio energy P·t in J; zero power gives 0 J even for an infinite time."""
    p = _check("tx_power_w", tx_power_w, low=0.0, allow_inf=False)
    t = _check("time_s", time_s, low=0.0)
    with np.errstate(invalid="ignore"):
        e = np.where(p == 0.0, 0.0, p * t)
    return _out(e)
