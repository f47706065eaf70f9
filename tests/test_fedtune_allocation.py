"""Unit tests for edgegen.fedtune.allocation: round latency, min-max bandwidth, device selection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgegen import wireless as wl
from edgegen.fedtune import allocation as al

BAND_HZ = 1e6
N0B_W = 10 ** (-174 / 10) * 1e-3 * BAND_HZ  # noise power over the whole band


# ----------------------------------------------------------------------------- latency


def test_round_latency_by_hand() -> None:
    # P = 1 W and g = N0·B / P: uplink SNR over the whole band is 1 → 1 Mbit/s;
    # downlink with P_BS = 10 W has SNR 10 → log2(11) Mbit/s.
    gain = N0B_W / 1.0
    up, down, comp = 2e6, 1e6 * math.log2(11), 0.5
    latency = al.round_latency_s(up, down, comp, [1.0], BAND_HZ, 1.0, gain, downlink_power_w=10.0)
    assert latency == pytest.approx(2.0 + 0.5 + 1.0)
    # half the band: uplink SNR 2 → 0.5·log2(3) Mbit/s; downlink keeps SNR 10 → half the rate
    half = al.device_latency_s(up, down, comp, [0.5], BAND_HZ, 1.0, gain, downlink_power_w=10.0)
    assert half[0] == pytest.approx(2e6 / (0.5e6 * math.log2(3)) + 0.5 + 2.0)
    # the round lasts as long as its slowest device
    lat = al.device_latency_s([up, 0.0], [down, 0.0], [comp, 7.0], [0.5, 0.5], BAND_HZ, 1.0, gain, 10.0)
    assert lat[1] == pytest.approx(7.0)
    assert al.round_latency_s([up, 0.0], [down, 0.0], [comp, 7.0], [0.5, 0.5], BAND_HZ, 1.0, gain, 10.0) == 7.0
    # a zero share with bits to send never finishes
    assert al.round_latency_s([up, up], down, comp, [1.0, 0.0], BAND_HZ, 1.0, gain) == math.inf


def test_latency_input_errors() -> None:
    with pytest.raises(ValueError, match="shares must sum to at most 1"):
        al.round_latency_s(1e6, 1e6, 0.1, [0.6, 0.6], BAND_HZ, 0.2, 1e-12)
    with pytest.raises(ValueError, match="per-device arguments must have a common length"):
        al.round_latency_s([1e6, 1e6, 1e6], 1e6, 0.1, [0.5, 0.5], BAND_HZ, 0.2, 1e-12)
    with pytest.raises(ValueError, match="shares must be a 1-D array"):
        al.round_latency_s(1e6, 1e6, 0.1, 1.0, BAND_HZ, 0.2, 1e-12)
    with pytest.raises(ValueError, match=r"shares must be in \[0, 1\]"):
        al.round_latency_s(1e6, 1e6, 0.1, [1.5], BAND_HZ, 0.2, 1e-12)
    with pytest.raises(ValueError, match="upload_bits must be finite and >= 0"):
        al.round_latency_s(-1.0, 1e6, 0.1, [1.0], BAND_HZ, 0.2, 1e-12)
    with pytest.raises(ValueError, match="total_bandwidth_hz must be finite and > 0"):
        al.round_latency_s(1e6, 1e6, 0.1, [1.0], 0.0, 0.2, 1e-12)
    with pytest.raises(ValueError, match="per-device arguments must have a common length"):
        al.round_latency_s([1e6, 1e6], [1e6, 1e6, 1e6], 0.1, [0.5, 0.5], BAND_HZ, 0.2, 1e-12)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        al.equal_bandwidth(0)


# ----------------------------------------------------------------------------- min-max bandwidth


def test_equal_bandwidth() -> None:
    assert np.allclose(al.equal_bandwidth(4), [0.25, 0.25, 0.25, 0.25])
    assert al.equal_bandwidth(3).sum() == pytest.approx(1.0)


def test_min_max_homogeneous_gives_equal_shares() -> None:
    gain = wl.channel_gain(0.3, fading="none")
    shares, latency = al.min_max_bandwidth(np.full(4, 1e6), 1e6, 0.5, BAND_HZ, 0.2, gain)
    assert np.allclose(shares, 0.25)
    equal = al.round_latency_s(np.full(4, 1e6), 1e6, 0.5, al.equal_bandwidth(4), BAND_HZ, 0.2, gain)
    assert latency == pytest.approx(equal, rel=1e-12)


def test_min_max_heterogeneous_equalises_finish_times() -> None:
    gain = np.asarray(wl.channel_gain(np.array([0.1, 0.3, 0.5, 0.8]), fading="none"))
    up = np.array([8e5, 8e5, 1.6e6, 4e5])
    comp = np.array([0.5, 1.0, 0.2, 2.0])
    shares, latency = al.min_max_bandwidth(up, up, comp, BAND_HZ, 0.2, gain)
    assert shares.sum() == pytest.approx(1.0, abs=1e-12) and np.all(shares > 0)
    finish = al.device_latency_s(up, up, comp, shares, BAND_HZ, 0.2, gain)
    assert latency == pytest.approx(finish.max())
    assert np.ptp(finish) <= 1e-6 * latency  # equal finish times
    equal = al.round_latency_s(up, up, comp, al.equal_bandwidth(4), BAND_HZ, 0.2, gain)
    assert latency < 0.95 * equal  # strictly better than equal shares here
    assert shares[3] > shares[0]  # the far, slow device gets the most band


def test_min_max_never_worse_than_equal_and_handles_idle_devices() -> None:
    rng = np.random.default_rng(3)
    for _ in range(3):
        gain = np.asarray(wl.channel_gain(rng.uniform(0.05, 0.5, size=5), rng))
        up, comp = rng.uniform(1e5, 1e6, size=5), rng.uniform(0.1, 1.0, size=5)
        shares, latency = al.min_max_bandwidth(up, up, comp, BAND_HZ, 0.2, gain)
        assert shares.sum() == pytest.approx(1.0)
        assert latency <= al.round_latency_s(up, up, comp, al.equal_bandwidth(5), BAND_HZ, 0.2, gain) * (1 + 1e-12)
    # a device with nothing to send gets no band; a single device gets all of it
    shares, _ = al.min_max_bandwidth([1e6, 0.0], [1e6, 0.0], 0.1, BAND_HZ, 0.2, 1e-11)
    assert np.allclose(shares, [1.0, 0.0])
    shares, latency = al.min_max_bandwidth(1e6, 1e6, 0.1, BAND_HZ, 0.2, 1e-11)
    assert np.allclose(shares, [1.0])
    assert latency == pytest.approx(al.round_latency_s(1e6, 1e6, 0.1, [1.0], BAND_HZ, 0.2, 1e-11))


def test_min_max_errors() -> None:
    with pytest.raises(ValueError, match="device 1 has a zero rate"):
        al.min_max_bandwidth([1e6, 1e6], 1e6, 0.1, BAND_HZ, 0.2, [1e-11, 0.0])
    with pytest.raises(ValueError, match="gain must be finite and >= 0"):
        al.min_max_bandwidth(1e6, 1e6, 0.1, BAND_HZ, 0.2, -1.0)
    with pytest.raises(ValueError, match="rel_tol must be finite and > 0"):
        al.min_max_bandwidth(1e6, 1e6, 0.1, BAND_HZ, 0.2, 1e-11, rel_tol=0.0)


# ----------------------------------------------------------------------------- selection


def test_select_devices() -> None:
    lat = [1.0, 5.0, 2.0, 0.5]
    assert al.select_devices(lat, 2.0, 2).tolist() == [0, 2, 3]  # everyone within the deadline
    assert al.select_devices(lat, 0.7, 2).tolist() == [0, 3]  # only one fits → the two fastest
    assert al.select_devices(lat, 10.0, 0).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"min_devices must be an integer in \[0, 4\]"):
        al.select_devices(lat, 1.0, 5)
    with pytest.raises(ValueError, match="deadline_s must be > 0"):
        al.select_devices(lat, 0.0, 1)
    with pytest.raises(ValueError, match="latency_alone_s must be >= 0"):
        al.select_devices([1.0, -1.0], 1.0, 1)


def test_random_selection() -> None:
    pick = al.random_selection(np.random.default_rng(0), 10, 4)
    assert pick.size == 4 and len(set(pick.tolist())) == 4 and np.all(np.diff(pick) > 0)
    assert np.all((pick >= 0) & (pick < 10))
    assert np.array_equal(pick, al.random_selection(np.random.default_rng(0), 10, 4))  # reproducible
    with pytest.raises(ValueError, match=r"k must be an integer in \[0, 3\]"):
        al.random_selection(np.random.default_rng(0), 3, 4)
    with pytest.raises(ValueError, match="rng must be a np.random.Generator"):
        al.random_selection(None, 3, 1)  # type: ignore[arg-type]
