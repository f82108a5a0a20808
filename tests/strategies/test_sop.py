"""SOP against hand-computed values (Eqs. 6-7 of Liu et al. 2022, as the reference computes
them), its optimisers, and its manual step through ``manual_backward`` (mixed precision)."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch

from ln_lightning import (
    SOP,
    CrossEntropy,
    DigitsDataModule,
    LogisticNormalLoss,
    NoisyLabelClassifier,
)
from ln_lightning.strategies.sop import sop_loss
from tests.helpers import quick_trainer

SHAPE = (1, 8, 8)


def test_with_u_and_v_zero_it_is_cross_entropy_plus_the_squared_term():
    logits, labels = torch.tensor([[1.0, 0.0]]), torch.tensor([1])
    value = sop_loss(logits, labels, torch.zeros(1, 1), torch.zeros(1, 2))
    # CE: -log(1 / (1 + e)); squared: ||onehot(argmax) - y||^2 = ||(1, 0) - (0, 1)||^2 = 2
    assert float(value) == pytest.approx(math.log(1 + math.e) + 2.0, abs=1e-4)


def test_u_raises_the_given_labels_probability():
    logits, labels = torch.tensor([[1.0, 0.0]]), torch.tensor([1])
    u = torch.tensor([[0.5]])
    value = sop_loss(logits, labels, u, torch.zeros(1, 2))
    p = torch.softmax(logits, 1)[0]
    corrected = torch.tensor([p[0], p[1] + 0.25]) / (1 + 0.25)  # u^2 = 0.25 on the label, L1
    # squared: (1, 0) + (0, 0.25) - (0, 1) = (1, -0.75): 1 + 0.5625
    assert float(value) == pytest.approx(-math.log(float(corrected[1])) + 1.5625, abs=1e-4)


def test_v_learns_from_the_squared_term_alone():
    logits, labels = torch.tensor([[1.0, 0.0]]), torch.tensor([1])
    v = torch.tensor([[0.5, 0.5]], requires_grad=True)
    sop_loss(logits, labels, torch.zeros(1, 1), v).sum().backward()
    # squared term, class 0: (1 + 0 - v0^2 - 0)^2, d/dv0 = 2 (0.75) (-2 v0) = -1.5; class 1 is
    # the label, where v does not act; the cross-entropy sees v detached
    assert torch.allclose(v.grad, torch.tensor([[-1.5, 0.0]]))


def test_sop_needs_cross_entropy_and_has_its_own_sgd():
    with pytest.raises(ValueError, match="its loss must be CrossEntropy; got LogisticNormalLoss"):
        NoisyLabelClassifier(loss=LogisticNormalLoss(), strategy=SOP(), input_shape=SHAPE)
    with pytest.raises(ValueError, match="lr_v must be > 0"):
        SOP(lr_v=0)
    model = NoisyLabelClassifier(loss=CrossEntropy(), strategy=SOP(2.0, 20.0), input_shape=SHAPE)
    assert not model.automatic_optimization
    (sgd,) = model.strategy.extra_optimizers(model)
    assert [g["lr"] for g in sgd.param_groups] == [2.0, 20.0]
    assert sgd.param_groups[0]["params"][0] is model.strategy.u
    network = {id(p) for p in model.trained_parameters()}
    assert id(model.strategy.u) not in network and id(model.strategy.v) not in network


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_a_fit_steps_both_optimisers_through_manual_backward(tmp_path, precision, monkeypatch):
    """The pitfall: ``loss.backward()`` in a strategy bypasses mixed precision's handling."""
    model = NoisyLabelClassifier(loss=CrossEntropy(), strategy=SOP(), input_shape=SHAPE)
    calls = []
    original = model.manual_backward
    monkeypatch.setattr(model, "manual_backward", lambda loss: calls.append(1) or original(loss))
    start = {}

    class AtStart(pl.Callback):
        def on_train_start(self, trainer, module):
            start["v"] = module.strategy.v.detach().clone()

    trainer = quick_trainer(
        tmp_path, precision=precision, limit_train_batches=3, callbacks=[AtStart()]
    )
    weights = [p.detach().clone() for p in model.network.parameters()]
    trainer.fit(model, datamodule=DigitsDataModule())
    assert len(calls) == 3 and trainer.global_step == 6  # two optimisers, three batches
    assert model.strategy.v.dtype == torch.float32
    moved = (model.strategy.v.detach() != start["v"]).any(1)
    assert 0 < int(moved.sum()) <= 3 * 128  # only the rows of the examples seen
    assert any(
        not torch.equal(a, b) for a, b in zip(weights, model.network.parameters(), strict=True)
    )


def test_the_learning_rate_scheduler_steps_once_an_epoch(tmp_path):
    model = NoisyLabelClassifier(
        loss=CrossEntropy(), strategy=SOP(), input_shape=SHAPE,
        lr_scheduler=lambda optimizer: torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5),
    )  # fmt: skip
    trainer = quick_trainer(tmp_path, max_epochs=2, limit_train_batches=1)
    trainer.fit(model, datamodule=DigitsDataModule())
    network, sgd = trainer.optimizers
    assert network.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.25)
    assert [g["lr"] for g in sgd.param_groups] == [1.0, 10.0]  # SOP's own: constant
