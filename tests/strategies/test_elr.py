"""ELR against hand-computed values (Eqs. 5-6 of Liu et al. 2020)."""

from __future__ import annotations

import math

import pytest
import torch

from ln_lightning import ELR, CrossEntropy, NoisyLabelClassifier
from ln_lightning.data.dataset import NoisySample
from ln_lightning.strategies.elr import elr_regularizer, updated_targets


def test_the_targets_are_a_moving_average_of_normalised_predictions():
    targets = torch.tensor([[0.2, 0.8]])
    probs = torch.tensor([[0.6, 0.4]])
    # 0.7 * (0.2, 0.8) + 0.3 * (0.6, 0.4) = (0.32, 0.68)
    assert torch.allclose(updated_targets(targets, probs, 0.7), torch.tensor([[0.32, 0.68]]))
    clipped = updated_targets(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), 0.0)
    assert clipped[0, 1] > 0  # predictions are clipped to [1e-4, 1 - 1e-4] first


def test_the_regulariser_is_log_one_minus_the_inner_product():
    probs, targets = torch.tensor([[0.6, 0.4]]), torch.tensor([[0.5, 0.5]])
    assert float(elr_regularizer(probs, targets)) == pytest.approx(math.log(0.5))
    probs.requires_grad_(True)
    elr_regularizer(probs, targets).sum().backward()
    # d/dp log(1 - <t, p>) = -t / (1 - <t, p>) = -(0.5, 0.5) / 0.5
    assert torch.allclose(probs.grad, torch.tensor([[-1.0, -1.0]]))


def test_one_training_step_by_hand():
    """Zero logits: p uniform (0.1), the targets after one step 0.3 * 0.1 = 0.03 each,
    <t, p> = 0.03, so the loss is log 10 (CE) + 3 log(0.97)."""
    model = NoisyLabelClassifier(loss=CrossEntropy(), strategy=ELR(), input_shape=(1, 8, 8))
    for parameter in model.network.heads.parameters():
        torch.nn.init.zeros_(parameter)
    model.strategy._resize("targets", 6)
    sample = NoisySample(torch.randn(2, 1, 8, 8), torch.tensor([3, 7]), None, torch.tensor([1, 4]))
    loss, outputs = model.strategy.training_step(model, sample, 0)
    assert float(loss) == pytest.approx(math.log(10) + 3 * math.log(0.97), abs=1e-5)
    assert sorted(outputs) == ["logits"]
    targets = model.strategy.targets
    assert torch.allclose(targets[[1, 4]], torch.full((2, 10), 0.03))
    assert targets[[0, 2, 3, 5]].abs().sum() == 0  # the other examples' rows untouched


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="momentum must lie in"):
        ELR(momentum=1.0)
    with pytest.raises(ValueError, match="regularization must be >= 0"):
        ELR(regularization=-1)
