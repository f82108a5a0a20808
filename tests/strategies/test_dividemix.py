"""DivideMix against hand-computed pieces (Li et al. 2020: co-refinement, co-guessing's
sharpening, MixMatch's loss), its Gaussian-mixture division, and the division kept on resume."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch

from ln_lightning import (
    CrossEntropy,
    DigitsDataModule,
    DivideMix,
    LogisticNormalLoss,
    NoisyLabelClassifier,
)
from ln_lightning.data.dataset import NoisySample
from ln_lightning.strategies.dividemix import (
    clean_probability,
    mixmatch_loss,
    negative_entropy,
    refined_targets,
    sharpen,
)
from tests.helpers import quick_trainer

SHAPE = (1, 8, 8)


def test_sharpening_and_co_refinement_by_hand():
    assert torch.allclose(
        sharpen(torch.tensor([[0.6, 0.4]]), 0.5), torch.tensor([[9 / 13, 4 / 13]])
    )
    assert torch.equal(sharpen(torch.tensor([[0.6, 0.4]]), 1.0), torch.tensor([[0.6, 0.4]]))
    # w = 0.8: 0.8 (0, 1) + 0.2 (0.5, 0.5) = (0.1, 0.9); sharpened (T = 0.5): (0.01, 0.81) / 0.82
    refined = refined_targets(
        torch.tensor([[0.5, 0.5]]), torch.tensor([1]), torch.tensor([0.8]), 0.5
    )
    assert torch.allclose(refined, torch.tensor([[0.01 / 0.82, 0.81 / 0.82]]))


def test_the_mixmatch_loss_by_hand():
    logits = torch.zeros(2, 2)  # uniform predictions
    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    loss, parts = mixmatch_loss(logits, targets, labelled=1, unlabelled_weight=2.0)
    # labelled: -log 0.5; unlabelled: mean((0.5 - 1)^2, (0.5 - 0)^2) = 0.25; prior penalty 0
    assert parts["labelled"] == pytest.approx(math.log(2))
    assert parts["unlabelled"] == pytest.approx(0.25)
    assert float(loss) == pytest.approx(math.log(2) + 2 * 0.25)
    skewed = torch.tensor([[math.log(3.0), 0.0]])  # p = (0.75, 0.25): the prior penalty
    _, _ = mixmatch_loss(skewed, torch.tensor([[1.0, 0.0]]), labelled=1, unlabelled_weight=0)
    penalty = float(mixmatch_loss(skewed, torch.tensor([[0.75, 0.25]]), 0, 0.0)[0])
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert penalty == pytest.approx((0.75 - 0.75) ** 2 + expected, abs=1e-6)


def test_the_warm_up_confidence_penalty_by_hand():
    # p = (0.75, 0.25): 0.75 log 0.75 + 0.25 log 0.25; uniform: -log K, the lowest
    skewed = torch.tensor([[math.log(3.0), 0.0]])
    expected = 0.75 * math.log(0.75) + 0.25 * math.log(0.25)
    assert float(negative_entropy(skewed)) == pytest.approx(expected)
    assert float(negative_entropy(torch.zeros(5, 4))) == pytest.approx(-math.log(4))
    with pytest.raises(ValueError, match="warmup_confidence_penalty must be >= 0"):
        DivideMix(warmup_confidence_penalty=-1.0)
    # a warm-up step adds the weighted penalty of both networks to their cross-entropies
    sample = NoisySample(torch.randn(6, *SHAPE), torch.arange(6) % 10, None, torch.arange(6))
    steps = {}
    for weight in (0.0, 2.0):
        torch.manual_seed(0)
        model = NoisyLabelClassifier(
            loss=CrossEntropy(),
            strategy=DivideMix(warmup_confidence_penalty=weight),
            input_shape=SHAPE,
        ).eval()
        steps[weight] = model.strategy.training_step(model, sample, 0)[0].item()
    penalty = negative_entropy(model.network(sample.input)["logits"]) + negative_entropy(
        model.strategy.peer(sample.input)["logits"]
    )
    assert float(penalty) < 0
    assert steps[2.0] == pytest.approx(steps[0.0] + 2.0 * float(penalty), abs=1e-5)


def test_the_mixture_divides_low_from_high_losses_the_same_way_every_time():
    generator = torch.Generator().manual_seed(0)
    losses = torch.cat([0.2 * torch.rand(80, generator=generator),
                        1.5 + torch.rand(20, generator=generator)])  # fmt: skip
    first, again = clean_probability(losses, seed=3), clean_probability(losses, seed=3)
    assert torch.equal(first, again)
    assert first[:80].min() > 0.9 and first[80:].max() < 0.1


def test_a_warm_up_as_long_as_the_run_is_said_when_fit_starts(tmp_path, caplog):
    assert "never divided" in DivideMix(warmup_epochs=5).plan(5).message
    model = NoisyLabelClassifier(
        loss=CrossEntropy(), strategy=DivideMix(warmup_epochs=2), input_shape=SHAPE
    )
    with caplog.at_level("INFO"):
        quick_trainer(tmp_path, max_epochs=1, limit_train_batches=1).fit(
            model, datamodule=DigitsDataModule()
        )
    assert "the training set is never divided" in caplog.text


def test_dividemix_needs_cross_entropy_and_predicts_with_both_networks():
    with pytest.raises(ValueError, match="its loss must be CrossEntropy; got LogisticNormalLoss"):
        NoisyLabelClassifier(loss=LogisticNormalLoss(), strategy=DivideMix(), input_shape=SHAPE)
    with pytest.raises(ValueError, match="warmup_epochs must be >= 1"):
        DivideMix(warmup_epochs=0)
    model = NoisyLabelClassifier(loss=CrossEntropy(), strategy=DivideMix(), input_shape=SHAPE)
    model.eval()
    inputs = torch.randn(3, *SHAPE)
    mean = (
        torch.softmax(model.network(inputs)["logits"], 1)
        + torch.softmax(model.strategy.peer(inputs)["logits"], 1)
    ) / 2
    assert torch.allclose(model.predict_proba(inputs), mean, atol=1e-6)


def test_a_fit_divides_after_the_warm_up_and_keeps_the_division_for_a_resumed_epoch(
    tmp_path, monkeypatch
):
    model = NoisyLabelClassifier(
        loss=CrossEntropy(), strategy=DivideMix(warmup_epochs=1), input_shape=SHAPE
    )
    batches: dict[int, int] = {}
    monitored: dict[int, float] = {}

    class CountBatches(pl.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            batches[trainer.current_epoch] = batches.get(trainer.current_epoch, 0) + 1

        def on_validation_end(self, trainer, module) -> None:
            if not trainer.sanity_checking:
                metric = trainer.callback_metrics["val/acc_noisy_after_warmup"]
                monitored[trainer.current_epoch] = float(metric)

    trainer = quick_trainer(tmp_path, max_epochs=2, callbacks=[CountBatches()])
    trainer.fit(model, datamodule=DigitsDataModule())
    # the division splits each batch: the loader (and its length) is the same in every phase
    assert batches == {0: 3, 1: 3}
    # the warm-up epoch is not for selection; the first DivideMix epoch is
    assert math.isnan(monitored[0])
    assert monitored[1] == float(trainer.callback_metrics["val/acc_noisy"])
    strategy = model.strategy
    assert int(strategy.divided_epoch) == 1
    train = trainer.datamodule.split("train").indices
    outside = torch.ones(len(strategy.clean), dtype=torch.bool)
    outside[train] = False
    assert strategy.clean[outside].abs().sum() == 0  # the validation rows: not divided
    clean = strategy.clean[train]
    assert ((clean >= 0) & (clean <= 1)).all() and 0.2 < float((clean > 0.5).float().mean()) < 1
    assert strategy.in_warmup(0) and not strategy.in_warmup(1)
    # resumed mid-epoch (a checkpoint of this epoch restores divided_epoch, and
    # on_train_epoch_start runs again): the saved division is kept
    strategy.divided_epoch.fill_(model.current_epoch)
    monkeypatch.setattr(strategy, "divide", lambda model: pytest.fail("divided again"))
    strategy.on_train_epoch_start(model)
    assert torch.equal(strategy.clean[train], clean)
