"""DDPO rewards on hand-made digit images and hand-computed class distributions."""

import math

import pytest
import torch

from edgegen.config import ConfigError
from edgegen.gdm import rewards as rw


def test_brightness_and_shape_check():
    x = torch.cat([-torch.ones(1, 64), torch.ones(1, 64), torch.zeros(1, 64)])
    assert rw.brightness(x).tolist() == pytest.approx([0.0, 1.0, 0.5])
    with pytest.raises(ConfigError, match="shape"):
        rw.brightness(torch.zeros(3, 10))


def test_jpeg_compressibility_prefers_flat_images():
    flat = torch.zeros(1, 64)
    noisy = torch.rand(1, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    kb = rw.jpeg_kb(torch.cat([flat, noisy]))
    assert kb[0] < kb[1] and kb[0] > 0
    assert rw.jpeg_compressibility(flat).item() == pytest.approx(-kb[0].item())


def test_class_prob_with_given_probabilities():
    probs = torch.tensor([[0.5, 0.2, 0.3] + [0.0] * 7, [0.0, 0.1, 0.0, 0.9] + [0.0] * 6])
    x = torch.zeros(2, 64)
    assert rw.class_prob(x, [0], probs).tolist() == pytest.approx([0.5, 0.0])
    assert rw.class_prob(x, [1, 3], probs).tolist() == pytest.approx([0.2, 1.0])
    with pytest.raises(ConfigError):
        rw.class_prob(x, [10], probs)


def _onehot(labels):
    return torch.nn.functional.one_hot(torch.tensor(labels), 10).float()


def test_diversity_gain_by_hand():
    # groups of 2 over classes (0, 1): a mixed group has entropy ln 2 and each member removes all of it
    # (gain ln 2 · 2 / ln 2 = 2); a uniform group has entropy 0 and no member adds anything.
    gain = rw.diversity_gain(_onehot([0, 1, 0, 0]), (0, 1), group_size=2)
    assert gain.tolist() == pytest.approx([2.0, 2.0, 0.0, 0.0])
    # group of 3 with classes (0, 0, 1) over (0, 1): H(2/3, 1/3); without the class-1 member H = 0, without a
    # class-0 member H(1/2, 1/2) = ln 2
    h = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    gain = rw.diversity_gain(_onehot([0, 0, 1]), (0, 1), group_size=3)
    assert gain.tolist() == pytest.approx([(h - math.log(2)) * 3 / math.log(2)] * 2 + [h * 3 / math.log(2)])
    with pytest.raises(ConfigError, match="group_size"):
        rw.diversity_gain(_onehot([0, 1, 0]), (0, 1), group_size=2)


def test_normalised_class_entropy():
    assert rw.normalised_class_entropy(_onehot(list(range(10)))) == pytest.approx(1.0)
    assert rw.normalised_class_entropy(_onehot([3, 3, 3])) == pytest.approx(0.0)
    assert rw.normalised_class_entropy(_onehot([0, 1])) == pytest.approx(math.log(2) / math.log(10))
