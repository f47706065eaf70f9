"""Unit tests for edgegen.wireless against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgegen import wireless as wl

# ----------------------------------------------------------------------------- unit conversions


def test_db_to_linear() -> None:
    assert wl.db_to_linear(0.0) == pytest.approx(1.0)  # 10^0 = 1
    assert wl.db_to_linear(10.0) == pytest.approx(10.0)  # 10^(10/10) = 10
    assert wl.db_to_linear(-20.0) == pytest.approx(0.01)  # 10^(-2) = 0.01
    assert wl.db_to_linear(3.0) == pytest.approx(1.9953, rel=1e-4)  # 10^0.3 ≈ 1.9953
    assert wl.db_to_linear(-math.inf) == 0.0  # 10^(-inf) = 0


def test_linear_to_db() -> None:
    assert wl.linear_to_db(1.0) == pytest.approx(0.0)  # 10·log10(1) = 0
    assert wl.linear_to_db(100.0) == pytest.approx(20.0)  # 10·log10(100) = 20
    assert wl.linear_to_db(0.5) == pytest.approx(-3.0103, rel=1e-4)  # 10·log10(0.5) ≈ −3.0103
    assert wl.linear_to_db(0.0) == -math.inf  # log10(0) = −inf, no warning raised


def test_dbm_watt_conversions() -> None:
    assert wl.dbm_to_watt(30.0) == pytest.approx(1.0)  # 30 dBm = 10^3 mW = 1 W
    assert wl.dbm_to_watt(0.0) == pytest.approx(1e-3)  # 0 dBm = 1 mW
    assert wl.dbm_to_watt(20.0) == pytest.approx(0.1)  # 20 dBm = 100 mW
    assert wl.watt_to_dbm(1.0) == pytest.approx(30.0)  # 10·log10(1 W / 1 mW) = 30
    assert wl.watt_to_dbm(1e-3) == pytest.approx(0.0)  # 1 mW = 0 dBm
    assert wl.watt_to_dbm(0.0) == -math.inf


def test_conversions_round_trip_and_broadcast() -> None:
    db = np.array([-30.0, -3.0, 0.0, 17.5])
    np.testing.assert_allclose(wl.linear_to_db(wl.db_to_linear(db)), db)
    np.testing.assert_allclose(wl.watt_to_dbm(wl.dbm_to_watt(db)), db)
    out = wl.db_to_linear(np.array([[0.0], [10.0]]))
    assert isinstance(out, np.ndarray) and out.shape == (2, 1)


# ----------------------------------------------------------------------------- path loss


def test_path_loss_db_3gpp() -> None:
    assert wl.path_loss_db(1.0) == pytest.approx(128.1)  # 128.1 + 37.6·log10(1) = 128.1
    assert wl.path_loss_db(0.1) == pytest.approx(90.5)  # 128.1 − 37.6 = 90.5
    assert wl.path_loss_db(10.0) == pytest.approx(165.7)  # 128.1 + 37.6 = 165.7
    assert wl.path_loss_db(2.0) == pytest.approx(139.4187, rel=1e-6)  # 128.1 + 37.6·0.30103 = 139.4187


def test_path_loss_db_broadcast() -> None:
    out = wl.path_loss_db(np.array([0.1, 1.0, 10.0]))
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, [90.5, 128.1, 165.7])


def test_log_distance_path_loss_db() -> None:
    # 40 + 10·3·log10(10 / 1) = 40 + 30 = 70 dB
    assert wl.log_distance_path_loss_db(10.0, 3.0, ref_loss_db=40.0) == pytest.approx(70.0)
    # 0 + 10·2·log10(100 / 10) = 20 dB
    pl = wl.log_distance_path_loss_db(100.0, 2.0, ref_loss_db=0.0, ref_distance_m=10.0)
    assert pl == pytest.approx(20.0)
    # default reference: free space at 1 m, 2.4 GHz = 20·log10(4π·2.4e9 / 3e8) = 20·log10(100.5) ≈ 40.05 dB
    assert wl.log_distance_path_loss_db(1.0, 2.0) == pytest.approx(40.05, abs=0.01)
    # 40.05 + 10·2·log10(10) = 60.05 dB
    assert wl.log_distance_path_loss_db(10.0, 2.0) == pytest.approx(60.05, abs=0.01)


def test_log_distance_path_loss_db_broadcast() -> None:
    # distances (3,1) against exponents (2,) -> (3,2); 10·n·log10(d) with ref 0 dB
    d = np.array([[1.0], [10.0], [100.0]])
    out = wl.log_distance_path_loss_db(d, np.array([2.0, 4.0]), ref_loss_db=0.0)
    np.testing.assert_allclose(out, [[0.0, 0.0], [20.0, 40.0], [40.0, 80.0]])


# ----------------------------------------------------------------------------- fading and channel gain


def test_channel_gain_without_fading() -> None:
    # 10^(−128.1/10) = 10^(−12.81) = 10^0.19 · 1e-13 ≈ 1.5488e-13
    assert wl.channel_gain(1.0, fading="none") == pytest.approx(1.5488e-13, rel=1e-4)
    # 10^(−90.5/10) = 10^(−9.05) ≈ 8.9125e-10
    assert wl.channel_gain(0.1, fading="none") == pytest.approx(8.9125e-10, rel=1e-4)
    out = wl.channel_gain(np.array([0.1, 1.0]), fading="none")
    np.testing.assert_allclose(out, [8.9125e-10, 1.5488e-13], rtol=1e-4)


def test_channel_gain_rayleigh_is_large_scale_times_exponential_draw() -> None:
    d = np.array([0.1, 0.5, 1.0])
    gain = wl.channel_gain(d, rng=np.random.default_rng(7))
    h2 = np.random.default_rng(7).exponential(1.0, size=3)
    np.testing.assert_allclose(gain, wl.channel_gain(d, fading="none") * h2)


def test_channel_gain_scalar_and_shape() -> None:
    rng = np.random.default_rng(0)
    assert isinstance(wl.channel_gain(0.2, rng=rng), float)
    assert wl.channel_gain(np.full((4, 5), 0.2), rng=rng).shape == (4, 5)


def test_rayleigh_power_gain_mean_is_one() -> None:
    draws = wl.rayleigh_power_gain(np.random.default_rng(1234), 100_000)
    assert draws.shape == (100_000,)
    assert np.all(draws >= 0.0)
    assert draws.mean() == pytest.approx(1.0, abs=0.02)  # E|h|² = 1 for Exp(1)


def test_channel_gain_fading_mean_matches_path_loss() -> None:
    gain = wl.channel_gain(np.full(100_000, 1.0), rng=np.random.default_rng(99))
    assert gain.mean() / wl.channel_gain(1.0, fading="none") == pytest.approx(1.0, abs=0.02)


def test_seeded_determinism() -> None:
    a = wl.rayleigh_power_gain(np.random.default_rng(42), (3, 4))
    b = wl.rayleigh_power_gain(np.random.default_rng(42), (3, 4))
    np.testing.assert_array_equal(a, b)
    d = np.linspace(0.05, 1.0, 10)
    np.testing.assert_array_equal(
        wl.channel_gain(d, rng=np.random.default_rng(5)), wl.channel_gain(d, rng=np.random.default_rng(5))
    )
    assert not np.array_equal(a, wl.rayleigh_power_gain(np.random.default_rng(43), (3, 4)))


def test_rayleigh_power_gain_scalar() -> None:
    assert isinstance(wl.rayleigh_power_gain(np.random.default_rng(0)), float)


# ----------------------------------------------------------------------------- noise, SNR, rates


def test_noise_power_w() -> None:
    # −174 dBm/Hz + 10·log10(1e6) = −114 dBm = 10^(−11.4) mW ≈ 3.981e-15 W
    assert wl.noise_power_w(1e6) == pytest.approx(3.981e-15, rel=1e-3)
    # with a 9 dB noise figure: −105 dBm = 10^(−10.5) mW ≈ 3.162e-14 W
    assert wl.noise_power_w(1e6, noise_figure_db=9.0) == pytest.approx(3.162e-14, rel=1e-3)
    # −170 dBm/Hz = 1e-20 W/Hz; × 2e6 Hz = 2e-14 W
    assert wl.noise_power_w(2e6, noise_psd_dbm_per_hz=-170.0) == pytest.approx(2e-14)
    assert wl.noise_power_w(0.0) == 0.0  # no band, no noise
    np.testing.assert_allclose(wl.noise_power_w(np.array([1e6, 1e7])), [3.981e-15, 3.981e-14], rtol=1e-3)


def test_snr() -> None:
    # P·g = 0.1 W · 1e-10 = 1e-11 W (−80 dBm); N = −114 dBm → SNR = 34 dB = 10^3.4 ≈ 2511.9
    assert wl.snr(0.1, 1e-10, 1e6) == pytest.approx(2511.9, rel=1e-4)
    # N0 = −170 dBm/Hz = 1e-20 W/Hz, B = 1e6 → N = 1e-14 W; P·g = 1 · 3e-14 → SNR = 3
    assert wl.snr(1.0, 3e-14, 1e6, noise_psd_dbm_per_hz=-170.0) == pytest.approx(3.0)
    out = wl.snr(np.array([1.0, 2.0]), 3e-14, 1e6, noise_psd_dbm_per_hz=-170.0)  # SNR ∝ P
    np.testing.assert_allclose(out, [3.0, 6.0])


def test_shannon_rate_bps() -> None:
    assert wl.shannon_rate_bps(1e6, 3.0) == pytest.approx(2e6)  # B·log2(1+3) = 2·B
    assert wl.shannon_rate_bps(1e6, 1.0) == pytest.approx(1e6)  # B·log2(2) = B
    assert wl.shannon_rate_bps(1e6, 15.0) == pytest.approx(4e6)  # B·log2(16) = 4·B
    assert wl.shannon_rate_bps(1e6, 0.0) == 0.0  # log2(1) = 0
    out = wl.shannon_rate_bps(np.array([[1e6], [2e6]]), np.array([1.0, 3.0]))  # (2,1)×(2,) → (2,2)
    np.testing.assert_allclose(out, [[1e6, 2e6], [2e6, 4e6]])


def test_ofdma_rate_bps() -> None:
    # N0 = −170 dBm/Hz = 1e-20 W/Hz, B = 1 MHz, P·g = 1.5 · 1e-14 = 1.5e-14 W
    kw = {"total_bandwidth_hz": 1e6, "tx_power_w": 1.5, "gain": 1e-14, "noise_psd_dbm_per_hz": -170.0}
    # b = 0.5: band 5e5 Hz, noise 5e-15 W, SNR 3 → 5e5·log2(4) = 1e6 bit/s
    assert wl.ofdma_rate_bps(0.5, **kw) == pytest.approx(1e6)
    # b = 0.25: band 2.5e5 Hz, noise 2.5e-15 W, SNR 6 → 2.5e5·log2(7) = 2.5e5·2.807355 ≈ 701838.8 bit/s
    assert wl.ofdma_rate_bps(0.25, **kw) == pytest.approx(701838.8, rel=1e-6)
    # b = 1: band 1e6 Hz, SNR 1.5 → 1e6·log2(2.5) ≈ 1.321928e6 bit/s
    assert wl.ofdma_rate_bps(1.0, **kw) == pytest.approx(1.321928e6, rel=1e-6)
    assert wl.ofdma_rate_bps(0.0, **kw) == 0.0


def test_ofdma_rate_matches_shannon_at_full_share() -> None:
    p, g, b = 0.2, 3e-12, 2e7
    expected = wl.shannon_rate_bps(b, wl.snr(p, g, b))
    assert wl.ofdma_rate_bps(1.0, b, p, g) == pytest.approx(expected)


def test_ofdma_zero_share_gives_zero_without_warning() -> None:
    shares = np.array([0.0, 0.25, 0.5])
    with np.errstate(all="raise"):  # any divide-by-zero would raise FloatingPointError
        out = wl.ofdma_rate_bps(shares, 1e6, 1.5, 1e-14, noise_psd_dbm_per_hz=-170.0)
    np.testing.assert_allclose(out, [0.0, 701838.8, 1e6], rtol=1e-6)  # values from test_ofdma_rate_bps
    with np.errstate(all="raise"):
        assert wl.ofdma_rate_bps(0.5, 0.0, 1.0, 1e-10) == 0.0  # zero total band


# ----------------------------------------------------------------------------- latency and energy


def test_transmit_time_s() -> None:
    assert wl.transmit_time_s(1e6, 2e6) == pytest.approx(0.5)  # 1e6 bit / 2e6 bit/s = 0.5 s
    assert wl.transmit_time_s(8e6, 1e6) == pytest.approx(8.0)  # 1 MB = 8e6 bit at 1 Mbit/s
    assert wl.transmit_time_s(1e6, 0.0) == math.inf  # positive payload, no rate
    assert wl.transmit_time_s(0.0, 0.0) == 0.0  # nothing to send
    assert wl.transmit_time_s(0.0, 1e6) == 0.0
    with np.errstate(all="raise"):
        out = wl.transmit_time_s(np.array([0.0, 1e6, 1e6]), np.array([0.0, 0.0, 4e6]))
    np.testing.assert_array_equal(out, [0.0, math.inf, 0.25])


def test_compute_time_s() -> None:
    assert wl.compute_time_s(1e9, 2e9) == pytest.approx(0.5)  # 1e9 cycles / 2e9 Hz = 0.5 s
    assert wl.compute_time_s(0.0, 1e9) == 0.0
    np.testing.assert_allclose(wl.compute_time_s(1e9, np.array([1e9, 4e9])), [1.0, 0.25])


def test_compute_energy_j() -> None:
    assert wl.compute_energy_j(1e9, 1e9) == pytest.approx(0.1)  # 1e-28 · (1e9)² · 1e9 = 0.1 J
    assert wl.compute_energy_j(1e9, 2e9) == pytest.approx(0.4)  # 1e-28 · 4e18 · 1e9 = 0.4 J
    assert wl.compute_energy_j(1e9, 1e9, kappa=1e-27) == pytest.approx(1.0)  # 1e-27 · 1e18 · 1e9 = 1 J
    np.testing.assert_allclose(wl.compute_energy_j(np.array([1e9, 2e9]), 1e9), [0.1, 0.2])  # linear in C


def test_transmit_energy_j() -> None:
    assert wl.transmit_energy_j(0.2, 0.5) == pytest.approx(0.1)  # 0.2 W · 0.5 s = 0.1 J
    assert wl.transmit_energy_j(0.0, math.inf) == 0.0  # idle radio, unreachable link: 0 J, not NaN
    assert wl.transmit_energy_j(0.1, math.inf) == math.inf
    np.testing.assert_allclose(wl.transmit_energy_j(np.array([0.1, 0.2]), 2.0), [0.2, 0.4])


def test_scalar_in_float_out() -> None:
    rng = np.random.default_rng(0)
    results = [
        wl.db_to_linear(1.0),
        wl.linear_to_db(2.0),
        wl.dbm_to_watt(1.0),
        wl.watt_to_dbm(1.0),
        wl.path_loss_db(1.0),
        wl.log_distance_path_loss_db(5.0, 3.0),
        wl.channel_gain(1.0, rng=rng),
        wl.noise_power_w(1e6),
        wl.snr(0.1, 1e-10, 1e6),
        wl.shannon_rate_bps(1e6, 3.0),
        wl.ofdma_rate_bps(0.5, 1e6, 0.1, 1e-10),
        wl.transmit_time_s(1e6, 1e6),
        wl.compute_time_s(1e9, 1e9),
        wl.compute_energy_j(1e9, 1e9),
        wl.transmit_energy_j(0.1, 1.0),
    ]
    assert all(type(r) is float for r in results)


# ----------------------------------------------------------------------------- validation

_BAD_INPUTS = [
    # (function, args, kwargs, argument named in the message)
    (wl.db_to_linear, (math.nan,), {}, "db"),
    (wl.linear_to_db, (-1.0,), {}, "x"),
    (wl.dbm_to_watt, (math.nan,), {}, "dbm"),
    (wl.watt_to_dbm, (-0.1,), {}, "w"),
    (wl.path_loss_db, (0.0,), {}, "distance_km"),
    (wl.path_loss_db, (np.array([1.0, -2.0]),), {}, "distance_km"),
    (wl.log_distance_path_loss_db, (0.0, 2.0), {}, "distance_m"),
    (wl.log_distance_path_loss_db, (10.0, 0.0), {}, "exponent"),
    (wl.log_distance_path_loss_db, (10.0, 2.0), {"ref_loss_db": math.inf}, "ref_loss_db"),
    (wl.log_distance_path_loss_db, (10.0, 2.0), {"ref_distance_m": 0.0}, "ref_distance_m"),
    (wl.channel_gain, (-1.0,), {"fading": "none"}, "distance_km"),
    (wl.channel_gain, (1.0,), {"rng": None}, "rng"),
    (wl.channel_gain, (1.0,), {"fading": "rician"}, "fading"),
    (wl.rayleigh_power_gain, (None, 3), {}, "rng"),
    (wl.noise_power_w, (-1.0,), {}, "bandwidth_hz"),
    (wl.noise_power_w, (1e6,), {"noise_psd_dbm_per_hz": math.nan}, "noise_psd_dbm_per_hz"),
    (wl.noise_power_w, (1e6,), {"noise_figure_db": -1.0}, "noise_figure_db"),
    (wl.snr, (-0.1, 1e-10, 1e6), {}, "tx_power_w"),
    (wl.snr, (0.1, -1e-10, 1e6), {}, "gain"),
    (wl.snr, (0.1, 1e-10, 0.0), {}, "bandwidth_hz"),
    (wl.snr, (0.1, 1e-10, 1e6), {"noise_psd_dbm_per_hz": math.inf}, "noise_psd_dbm_per_hz"),
    (wl.shannon_rate_bps, (-1e6, 3.0), {}, "bandwidth_hz"),
    (wl.shannon_rate_bps, (1e6, -0.5), {}, "snr_linear"),
    (wl.ofdma_rate_bps, (-0.1, 1e6, 0.1, 1e-10), {}, "bandwidth_share"),
    (wl.ofdma_rate_bps, (1.5, 1e6, 0.1, 1e-10), {}, "bandwidth_share"),
    (wl.ofdma_rate_bps, (0.5, -1e6, 0.1, 1e-10), {}, "total_bandwidth_hz"),
    (wl.ofdma_rate_bps, (0.5, 1e6, -0.1, 1e-10), {}, "tx_power_w"),
    (wl.ofdma_rate_bps, (0.5, 1e6, 0.1, -1e-10), {}, "gain"),
    (wl.ofdma_rate_bps, (0.5, 1e6, 0.1, 1e-10), {"noise_psd_dbm_per_hz": math.nan}, "noise_psd_dbm_per_hz"),
    (wl.transmit_time_s, (-1.0, 1e6), {}, "payload_bits"),
    (wl.transmit_time_s, (1.0, -1e6), {}, "rate_bps"),
    (wl.compute_time_s, (-1.0, 1e9), {}, "cycles"),
    (wl.compute_time_s, (1e9, 0.0), {}, "freq_hz"),
    (wl.compute_energy_j, (-1.0, 1e9), {}, "cycles"),
    (wl.compute_energy_j, (1e9, -1e9), {}, "freq_hz"),
    (wl.compute_energy_j, (1e9, 1e9), {"kappa": -1e-28}, "kappa"),
    (wl.transmit_energy_j, (-0.1, 1.0), {}, "tx_power_w"),
    (wl.transmit_energy_j, (0.1, -1.0), {}, "time_s"),
]


@pytest.mark.parametrize(
    ("func", "args", "kwargs", "name"),
    _BAD_INPUTS,
    ids=[f"{f.__name__}-{n}-{i}" for i, (f, _, _, n) in enumerate(_BAD_INPUTS)],
)
def test_invalid_inputs_raise_value_error(func, args, kwargs, name) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        func(*args, **kwargs)


def test_error_message_states_allowed_range() -> None:
    with pytest.raises(ValueError, match=r"distance_km must be in \(0, inf\); got -2\.0"):
        wl.path_loss_db(np.array([1.0, -2.0]))
    with pytest.raises(ValueError, match=r"bandwidth_share must be in \[0, 1\]; got 1\.5"):
        wl.ofdma_rate_bps(1.5, 1e6, 0.1, 1e-10)
    with pytest.raises(ValueError, match=r"bandwidth_hz must be finite and in \[0, inf\); got -1\.0"):
        wl.noise_power_w(-1.0)


def test_rng_of_wrong_type_raises_type_error() -> None:
    with pytest.raises(TypeError, match="np.random.Generator"):
        wl.rayleigh_power_gain(42, 3)  # a seed is not a Generator
    with pytest.raises(TypeError, match="np.random.Generator"):
        wl.channel_gain(1.0, rng=np.random.RandomState(0))
