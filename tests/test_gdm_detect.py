"""Detectors on {d_i}, calibration, gap test, noise baseline, scoring and mitigation on hand-made arrays."""

import numpy as np
import pytest

from edgegen.gdm import detect as dt


def test_thresholds_by_hand():
    d = [1.0, 2.0, 3.0, 10.0]
    assert dt.threshold_average(d) == pytest.approx(4.0)
    assert dt.threshold_max_min(d) == pytest.approx(5.5)
    assert dt.threshold_maxsplit(d) == pytest.approx(6.5)  # gaps 1, 1, 7 → middle of (3, 10)
    # 2-means: splits {1}|{2,3,10} SSE 38, {1,2}|{3,10} SSE 25, {1,2,3}|{10} SSE 2 → centroids 2 and 10
    assert dt.threshold_kmeans(d) == pytest.approx(6.0)
    assert dt.threshold_kmeans([4.0, 0.0, 1.0, 5.0]) == pytest.approx(2.5)  # {0,1}|{4,5}, order-free
    assert dt.threshold_maxsplit([3.0]) == 3.0 and dt.threshold_kmeans([2.0, 2.0]) == 2.0
    assert dt.max_gap(d) == pytest.approx(7.0)
    with pytest.raises(ValueError):
        dt.threshold_average([])


def test_kmeans_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        d = rng.normal(size=9)
        s = np.sort(d)
        sse = [((s[:k] - s[:k].mean()) ** 2).sum() + ((s[k:] - s[k:].mean()) ** 2).sum() for k in range(1, 9)]
        k = int(np.argmin(sse)) + 1
        assert dt.threshold_kmeans(d) == pytest.approx((s[:k].mean() + s[k:].mean()) / 2)


def test_calibration_robust_center_and_scale():
    c = dt.calibrate([1.0, 2.0, 3.0, 4.0, 100.0])
    assert c.center == 3.0
    assert c.scale == pytest.approx(1.4826 * 1.0)  # MAD of |d - 3| = [2, 1, 0, 1, 97] is 1


def test_split_separation_and_gap_test_by_hand():
    calib = dt.Calibration(center=2.0, scale=1.0, clean=np.array([1.0, 2.0, 3.0]))
    d = [1.0, 2.0, 3.0, 10.0]
    # average: θ = 4; high side {10} (median 8 from the clean median), low side {1, 2, 3} (median 0 away)
    assert dt.separation(d, "average", calib) == pytest.approx(8.0)
    s = dt.split_batch(d, "average", calib, min_separation=7.0)
    assert s.threshold == pytest.approx(4.0) and s.margin == pytest.approx(7.0) and s.high_is_triggered
    assert s.separation == pytest.approx(8.0)
    assert s.accepted and s.flags.tolist() == [False, False, False, True]
    assert np.allclose(s.scores, [-3.0, -2.0, -1.0, 6.0])
    rejected = dt.split_batch(d, "average", calib, min_separation=9.0)
    assert not rejected.accepted and not rejected.flags.any()
    # one value: the rule leaves a side empty, nothing is split
    assert dt.separation([5.0], "kmeans", calib) == 0.0 and not dt.split_batch([5.0], "kmeans", calib, 0.0).accepted


@pytest.mark.parametrize("detector", dt.DETECTORS)
def test_calibration_picks_the_triggered_side(detector):
    rng = np.random.default_rng(1)
    calib = dt.calibrate(rng.normal(5.0, 0.2, 500))
    gap = dt.gap_threshold(calib, 30, detector, 0.01, seed=0)
    clean = rng.normal(5.0, 0.2, 24)
    for trig_value, high in ((2.0, False), (9.0, True)):
        d = np.r_[clean, rng.normal(trig_value, 0.1, 6)]
        truth = np.r_[np.zeros(24, bool), np.ones(6, bool)]
        s = dt.split_batch(d, detector, calib, gap)
        assert s.high_is_triggered == high
        assert s.accepted and np.array_equal(s.flags, truth)
        assert dt.auroc(s.scores, truth) == 1.0


@pytest.mark.parametrize("detector", dt.DETECTORS)
def test_gap_test_keeps_all_clean_batches_whole(detector):
    rng = np.random.default_rng(2)
    calib = dt.calibrate(rng.normal(5.0, 0.3, 2000))
    gap = dt.gap_threshold(calib, 64, detector, alpha=0.01, seed=3)
    # every rule splits a clean batch somewhere, but its flagged side stays within the calibrated separation
    raw = [dt.split_batch(rng.normal(5.0, 0.3, 64), detector, calib, 0.0).flags.any() for _ in range(300)]
    split = [dt.split_batch(rng.normal(5.0, 0.3, 64), detector, calib, gap).flags.any() for _ in range(300)]
    # nominal level 1%; the bootstrap under-represents the extreme tail of one-point sides (maxsplit), hence 5%
    assert np.mean(raw) > 0.9 and np.mean(split) <= 0.05


def test_gap_threshold_is_a_quantile_of_clean_separations():
    calib = dt.Calibration(center=0.0, scale=1.0, clean=np.arange(-500, 501) / 100.0)  # uniform on [-5, 5]
    # smoothed bootstrap batches of 2 ≈ two independent draws u, v; "average" flags the one farther from 0, so the
    # separation is max(|u|, |v|) on [0, 5] with P(≤ s) = (s/5)² → 0.5 quantile 5/√2 ≈ 3.54 (kernel noise: ±0.1)
    assert dt.gap_threshold(calib, 2, "average", alpha=0.5, draws=4000, seed=0) == pytest.approx(5 / 2**0.5, abs=0.1)
    with pytest.raises(ValueError):
        dt.gap_threshold(calib, 2, "average", alpha=0.0)
    with pytest.raises(ValueError, match="detector"):
        dt.gap_threshold(calib, 2, "median")


def test_binary_metrics_and_auroc_by_hand():
    m = dt.binary_metrics([True, True, False, False, True], [True, False, True, False, True])
    assert m["tpr"] == pytest.approx(2 / 3) and m["fpr"] == pytest.approx(0.5) and m["f1"] == pytest.approx(4 / 6)
    # positives {0.9, 0.4}, negatives {0.5, 0.1}: pairs won 3 of 4
    assert dt.auroc([0.9, 0.4, 0.5, 0.1], [1, 1, 0, 0]) == pytest.approx(0.75)
    assert dt.auroc([1.0, 1.0], [1, 0]) == pytest.approx(0.5)  # a tie counts one half
    fpr, tpr = dt.roc_curve([0.9, 0.4, 0.5, 0.1], [1, 1, 0, 0])
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0] and tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.75)


def test_noise_stats_baseline():
    rng = np.random.default_rng(4)
    clean = rng.standard_normal((400, 64))
    p_clean = dt.noise_stats_pvalue(clean)
    assert p_clean.shape == (400,) and np.mean(p_clean < 0.01) <= 0.03
    shifted = clean + 1.0  # mean shift: caught
    assert np.mean(dt.noise_stats_pvalue(shifted) < 0.01) > 0.99
    signs = np.where(np.arange(64) % 2 == 0, 1.0, -1.0)
    sign_matched = signs * np.abs(clean)  # same norm, zero-mean signs, N(0,1) values pooled: not caught
    assert np.mean(dt.noise_stats_pvalue(sign_matched) < 0.01) <= 0.05


def test_mitigation():
    rng = np.random.default_rng(5)
    x = np.arange(12.0).reshape(3, 4)
    flags = np.array([False, True, False])
    new, served = dt.mitigate(x, flags, "renoise", rng)
    assert served.all() and np.array_equal(new[[0, 2]], x[[0, 2]]) and not np.array_equal(new[1], x[1])
    kept, served = dt.mitigate(x, flags, "drop", rng)
    assert served.tolist() == [True, False, True] and np.array_equal(kept, x)
    with pytest.raises(ValueError, match="mitigation"):
        dt.mitigate(x, flags, "ignore", rng)
