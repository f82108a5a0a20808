"""Noise-aware metrics: values against hand computations, unknown labels, DDP-style merging."""

from __future__ import annotations

import math

import pytest
import torch

from ln_lightning.metrics import BrierScore, NegativeLogLikelihood, NoiseSplitAccuracy


def test_nll_and_brier_match_their_definitions():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.5, 0.25, 0.25]])
    labels = torch.tensor([0, 1, -1])  # the third label is unknown: left out
    nll = NegativeLogLikelihood()(probs, labels)
    assert nll.item() == pytest.approx((-math.log(0.7) - math.log(0.1)) / 2)
    brier = BrierScore()(probs, labels)
    first = 0.3**2 + 0.2**2 + 0.1**2
    second = 0.1**2 + 0.9**2 + 0.8**2
    assert brier.item() == pytest.approx((first + second) / 2)
    perfect = torch.eye(3)
    assert BrierScore()(perfect, torch.arange(3)).item() == 0.0
    assert BrierScore()(perfect, torch.tensor([1, 2, 0])).item() == pytest.approx(2.0)
    # A certain mistake costs -log(eps), not infinity.
    assert NegativeLogLikelihood(eps=1e-6)(perfect, torch.tensor([1, 2, 0])).item() == (
        pytest.approx(-math.log(1e-6))
    )
    assert NegativeLogLikelihood()(probs, torch.full((3,), -1)).isnan()


def test_metrics_accumulate_like_one_big_batch():
    """Two updates (or two DDP ranks' states summed) equal one update on everything."""
    torch.manual_seed(0)
    probs = torch.randn(50, 4).softmax(1)
    labels = torch.randint(0, 4, (50,))
    for cls in (NegativeLogLikelihood, BrierScore):
        split, whole = cls(), cls()
        split.update(probs[:20], labels[:20])
        split.update(probs[20:], labels[20:])
        whole.update(probs, labels)
        torch.testing.assert_close(split.compute(), whole.compute())
        rank0, rank1 = cls(), cls()
        rank0.update(probs[:20], labels[:20])
        rank1.update(probs[20:], labels[20:])
        rank0.merge_state(rank1)  # the sum reduction DDP sync applies
        torch.testing.assert_close(rank0.compute(), whole.compute())


def test_noise_split_accuracy_counts_memorised_and_corrected_examples():
    clean = torch.tensor([0, 1, 2, 0, 1, 2, 0, -1])
    noisy = torch.tensor([0, 1, 2, 1, 2, 0, 2, 1])  # examples 3-6 are corrupted; 7 unknown
    predicted = torch.tensor([0, 1, 0, 1, 1, 0, 1, 1])
    probs = torch.nn.functional.one_hot(predicted, 3).float()
    metric = NoiseSplitAccuracy()
    metric.update(probs, noisy, clean)
    values = metric.compute()
    assert values["acc_uncorrupted"].item() == pytest.approx(2 / 3)  # 0, 1 right; 2 wrong
    assert values["acc_corrupted_vs_noisy"].item() == pytest.approx(2 / 4)  # 3 and 5 memorised
    assert values["acc_corrupted_vs_true"].item() == pytest.approx(1 / 4)  # 4 corrected
    no_noise = NoiseSplitAccuracy()
    no_noise.update(probs[:3], noisy[:3], clean[:3])
    assert no_noise.compute()["acc_corrupted_vs_noisy"].isnan()


def test_bad_shapes_are_reported():
    with pytest.raises(ValueError, match="expected probabilities"):
        BrierScore()(torch.rand(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="same shape"):
        NoiseSplitAccuracy().update(torch.rand(3, 2), torch.zeros(3).long(), torch.zeros(2).long())
    with pytest.raises(ValueError, match="eps"):
        NegativeLogLikelihood(eps=0.0)
