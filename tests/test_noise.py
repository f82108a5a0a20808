"""Noise injection: exact maps, rates within binomial error, determinism."""

from __future__ import annotations

import math

import pytest
import torch

from ln_lightning.noise import MNIST_ASYMMETRIC_MAP, asymmetric_noise, inject_noise, symmetric_noise


def balanced_labels(n: int = 50_000, num_classes: int = 10) -> torch.Tensor:
    return torch.arange(n) % num_classes


def test_asymmetric_map_is_applied_exactly():
    labels = balanced_labels()
    result = asymmetric_noise(labels, 10, 0.4, MNIST_ASYMMETRIC_MAP, seed=1)
    changed = result.is_corrupted
    assert torch.equal(changed, result.noisy_labels != labels)
    for source in range(10):
        mask = (labels == source) & changed
        if source in MNIST_ASYMMETRIC_MAP:
            assert torch.all(result.noisy_labels[mask] == MNIST_ASYMMETRIC_MAP[source])
            rate = float(changed[labels == source].float().mean())
            n = int((labels == source).sum())
            assert abs(rate - 0.4) < 4 * math.sqrt(0.4 * 0.6 / n)
        else:
            assert not mask.any()
    # 5 of the 10 classes are mapped: the overall realised rate is about 0.4 * 5 / 10.
    assert abs(result.realised_rate - 0.2) < 4 * math.sqrt(0.2 * 0.8 / len(labels))
    t = result.transition_matrix
    torch.testing.assert_close(t.sum(1), torch.ones(10))
    assert t[7, 1] == pytest.approx(float(changed[labels == 7].float().mean()), abs=1e-6)
    assert t[0, 0] == 1.0


@pytest.mark.parametrize("rate", [0.2, 0.6])
def test_symmetric_rate_includes_the_true_class(rate):
    labels = balanced_labels()
    result = symmetric_noise(labels, 10, rate, seed=0)
    expected = rate * 9 / 10
    assert abs(result.realised_rate - expected) < 4 * math.sqrt(
        expected * (1 - expected) / len(labels)
    )


def test_same_seed_same_labels_and_different_seed_differs():
    labels = balanced_labels(5_000)
    a = inject_noise(labels, 10, "asymmetric", 0.4, MNIST_ASYMMETRIC_MAP, seed=3)
    b = inject_noise(labels, 10, "asymmetric", 0.4, MNIST_ASYMMETRIC_MAP, seed=3)
    c = inject_noise(labels, 10, "asymmetric", 0.4, MNIST_ASYMMETRIC_MAP, seed=4)
    assert torch.equal(a.noisy_labels, b.noisy_labels)
    assert not torch.equal(a.noisy_labels, c.noisy_labels)


def test_no_noise_is_identity():
    labels = balanced_labels(100)
    result = inject_noise(labels, 10, "none", 0.0)
    assert torch.equal(result.noisy_labels, labels) and result.realised_rate == 0.0


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_invalid_rate(rate):
    with pytest.raises(ValueError, match=r"noise_rate must lie in \[0, 1\)"):
        symmetric_noise(balanced_labels(10), 10, rate)


def test_invalid_inputs():
    with pytest.raises(ValueError, match="noise_type must be one of"):
        inject_noise(balanced_labels(10), 10, "pairflip-typo", 0.2)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
        symmetric_noise(balanced_labels(10), 5, 0.2)
    with pytest.raises(ValueError, match="outside"):
        asymmetric_noise(balanced_labels(10), 10, 0.2, {3: 12})
    with pytest.raises(ValueError, match="class_map"):
        inject_noise(balanced_labels(10), 10, "asymmetric", 0.2)
