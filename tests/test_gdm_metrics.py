"""gdm/metrics.py: Fréchet distance against closed forms, k-NN precision/recall on hand-made sets, the digits
classifier and the floor."""

import numpy as np
import pytest
import torch

from edgegen.gdm import metrics
from edgegen.gdm.metrics import fid_from_features, frechet_distance, precision_recall_from_features


def test_frechet_distance_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    cov = a @ a.T + 0.1 * np.eye(6)
    assert frechet_distance(np.ones(6), cov, np.ones(6), cov) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_closed_forms():
    # shifted, same covariance: ‖Δμ‖²
    cov = np.diag([1.0, 4.0, 0.25])
    assert frechet_distance(np.zeros(3), cov, np.array([1.0, 2.0, -2.0]), cov) == pytest.approx(9.0)
    # diagonal covariances: Σ_i (σ1_i - σ2_i)²  (+ ‖Δμ‖²)
    c1, c2 = np.diag([1.0, 4.0]), np.diag([9.0, 1.0])
    assert frechet_distance(np.zeros(2), c1, np.array([0.0, 3.0]), c2) == pytest.approx((1 - 3) ** 2 + (2 - 1) ** 2 + 9)
    # 1-D: (μ1-μ2)² + (σ1-σ2)²
    assert frechet_distance(np.array([0.5]), np.array([[0.04]]), np.array([-0.5]), np.array([[0.25]])) == \
        pytest.approx(1.0 + (0.2 - 0.5) ** 2)
    # singular covariance (rank 1) stays finite and real
    v = np.array([[1.0, 1.0], [1.0, 1.0]])
    assert frechet_distance(np.zeros(2), v, np.zeros(2), v) == pytest.approx(0.0, abs=1e-7)


def test_frechet_distance_matches_scipy_sqrtm_on_a_random_pair():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    c1, c2 = a @ a.T + np.eye(5), b @ b.T + np.eye(5)
    m1, m2 = rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * np.real(sqrtm(c1 @ c2)))
    assert frechet_distance(m1, c1, m2, c2) == pytest.approx(expected, rel=1e-8)


def test_fid_from_features_of_shifted_samples():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(500, 4))
    assert fid_from_features(f, f) == pytest.approx(0.0, abs=1e-8)
    assert fid_from_features(f, f + np.array([1.0, 0.0, 2.0, 0.0])) == pytest.approx(5.0)


def test_precision_recall_identical_sets_and_disjoint_sets():
    rng = np.random.default_rng(3)
    f = rng.normal(size=(50, 3))
    assert precision_recall_from_features(f, f, k=3) == (1.0, 1.0)
    assert precision_recall_from_features(f, f + 100.0, k=3) == (0.0, 0.0)


def test_precision_recall_hand_example():
    """Reference: 0, 1, 2, 3 on a line, k = 1 → every radius 1, manifold [-1, 4]. Samples 0.5 (in) and 10 (out):
    precision 1/2. Sample radii (k = 1): both 9.5 → balls [-9, 10] ∪ [0.5, 19.5] hold all 4 references: recall 1."""
    ref = np.array([[0.0], [1.0], [2.0], [3.0]])
    samples = np.array([[0.5], [10.0]])
    assert precision_recall_from_features(samples, ref, k=1) == (0.5, 1.0)
    with pytest.raises(ValueError, match="k must be"):
        precision_recall_from_features(samples, ref, k=2)


def test_digits_data_scaled_to_unit_range():
    x, y = metrics.digits_data()
    assert x.shape == (1797, 64) and x.dtype == np.float32 and y.shape == (1797,)
    assert x.min() == -1.0 and x.max() == 1.0
    a, b = metrics.real_halves()
    assert len(a) == len(b) == 898
    perm = np.random.default_rng(0).permutation(1797)
    assert np.array_equal(a, x[perm[:898]]) and np.array_equal(b, x[perm[898:1796]])


def test_classifier_accuracy_probs_and_floor():
    x, y = metrics.digits_data()
    p = metrics.digit_probs(x)
    assert p.shape == (1797, 10) and torch.allclose(p.sum(1), torch.ones(1797), atol=1e-5)
    assert (p.argmax(1).numpy() == y).mean() > 0.97
    assert metrics.digit_features(x[:5]).shape == (5, metrics.FEATURE_DIM)
    floor = metrics.real_floor()
    assert 0 < floor < 50
    noise = np.random.default_rng(4).uniform(-1, 1, size=(898, 64)).astype(np.float32)
    assert metrics.feature_fid(noise, metrics.real_halves()[1]) > 10 * floor


def test_class_entropy_of_real_digits_and_of_one_class():
    x, y = metrics.digits_data()
    h, conf = metrics.class_entropy(x)
    assert h == pytest.approx(np.log(10), abs=0.01) and conf > 0.9
    h1, _ = metrics.class_entropy(x[y == 3])
    assert h1 < 0.2


def test_evaluate_samples_keys_and_real_half():
    a, _ = metrics.real_halves()
    m = metrics.evaluate_samples(a)
    assert set(m) == {"feature_fid", "class_entropy", "class_confidence", "precision", "recall"}
    assert m["feature_fid"] == pytest.approx(metrics.real_floor())
    assert 0.5 < m["precision"] <= 1 and 0.5 < m["recall"] <= 1


def test_floor_at_smaller_sample_size_is_larger():
    """FID is biased upwards at small n: the floor must be computed at the model's sample size."""
    assert metrics.real_floor(n=898) == pytest.approx(metrics.real_floor())
    assert metrics.real_floor(n=200) > metrics.real_floor()
