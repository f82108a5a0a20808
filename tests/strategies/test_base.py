"""The strategy contract: per-sample state sized, checkpointed and reloaded; a loss stays the
simple case; a strategy's checkpoint refused by a model without it; clear errors."""

from __future__ import annotations

import pytest
import torch

from ln_lightning import (
    ELR,
    SOP,
    CoTeaching,
    CrossEntropy,
    DigitsDataModule,
    ForwardCorrection,
    LogisticNormalLoss,
    NoisyLabelClassifier,
)
from ln_lightning.data.dataset import NoisySample
from ln_lightning.losses.functional import logit_dim
from tests.helpers import quick_trainer

SHAPE = (1, 8, 8)


def fitted(tmp_path, strategy, loss=None, **trainer):
    model = NoisyLabelClassifier(loss=loss or CrossEntropy(), strategy=strategy, input_shape=SHAPE)
    run = quick_trainer(tmp_path, **trainer)
    run.fit(model, datamodule=DigitsDataModule())
    return model, run


def test_without_a_strategy_the_loss_trains_the_network_as_before():
    model = NoisyLabelClassifier(input_shape=SHAPE)
    assert model.strategy is None and type(model.method).__name__ == "LossMethod"
    assert model.automatic_optimization
    assert not any(key.startswith("strategy.") for key in model.state_dict())


def test_per_sample_state_is_sized_to_the_training_pool_and_checkpointed(tmp_path):
    model, run = fitted(tmp_path, ELR())
    pool = len(run.datamodule.split("train").noisy_labels)
    assert model.strategy.targets.shape == (pool, 10)
    touched = model.strategy.targets.abs().sum(1) > 0  # the rows of 3 batches of 128
    assert int(touched.sum()) == 3 * 128
    training = set(run.datamodule.split("train").indices.tolist())
    assert set(touched.nonzero().flatten().tolist()) <= training
    # one update from zero: (1 - momentum) times a distribution
    sums = model.strategy.targets[touched].sum(1)
    assert torch.allclose(sums, torch.full_like(sums, 0.3), atol=1e-5)
    path = tmp_path / "elr.ckpt"
    run.save_checkpoint(path)
    loaded = NoisyLabelClassifier.load_from_checkpoint(path)  # built without data
    assert isinstance(loaded.strategy, ELR) and loaded.strategy.momentum == 0.7
    assert torch.equal(loaded.strategy.targets, model.strategy.targets)


def test_a_checkpoint_of_a_strategy_is_refused_by_a_model_without_it_and_vice_versa(tmp_path):
    _, run = fitted(tmp_path, ELR())
    path = tmp_path / "elr.ckpt"
    run.save_checkpoint(path)
    plain = NoisyLabelClassifier(loss=CrossEntropy(), input_shape=SHAPE)
    with pytest.raises(ValueError, match=r"trained with the strategy .*ELR but this model has no"):
        quick_trainer(tmp_path).validate(plain, datamodule=DigitsDataModule(), ckpt_path=path)
    other = NoisyLabelClassifier(loss=CrossEntropy(), strategy=CoTeaching(), input_shape=SHAPE)
    with pytest.raises(ValueError, match=r"ELR but this model has the strategy .*CoTeaching"):
        quick_trainer(tmp_path).validate(other, datamodule=DigitsDataModule(), ckpt_path=path)


def test_state_for_another_number_of_examples_is_refused_in_one_line(tmp_path):
    model, _ = fitted(tmp_path, ELR())
    checkpoint = {"state_dict": {"strategy.targets": torch.zeros(5, 10)}}
    with pytest.raises(ValueError, match=r"state is for 5 training examples and this run's .* has"):
        model.strategy.on_load_checkpoint(model, checkpoint)


def test_plain_batches_and_a_missing_data_module_get_clear_errors(tmp_path):
    model = NoisyLabelClassifier(loss=CrossEntropy(), strategy=ELR(), input_shape=SHAPE)
    plain = NoisySample(torch.randn(2, *SHAPE), torch.tensor([0, 1]), None, None)
    with pytest.raises(ValueError, match="needs each batch's sample index"):
        model.strategy.training_step(model, plain, 0)
    data = DigitsDataModule()
    data.setup("fit")
    with pytest.raises(ValueError, match="keeps state per training example, so it needs a data"):
        quick_trainer(tmp_path).fit(model, train_dataloaders=data.train_dataloader())


def test_the_losss_own_hooks_still_run_under_a_strategy(tmp_path):
    """LN's annealed min_scale follows the training time with ELR as without it."""
    model, _ = fitted(tmp_path, ELR(), LogisticNormalLoss(anneal_epochs=2, covariance="isotropic"))
    params = model.loss.params
    at_start = params.min_scale_at(0.0, logit_dim(10, params.dummy_class))
    assert params.min_scale < model.loss.current_params.min_scale < at_start  # it moved


def test_the_losss_validation_hook_runs_under_a_strategy(tmp_path):
    """Forward's warm-up reads the noisy validation accuracy with ELR as without it."""
    model, run = fitted(tmp_path, ELR(), ForwardCorrection(warmup_epochs=50, warmup_patience=50))
    assert int(model.loss.warmup_best_epoch) >= 0  # the validation hook reached the loss
    assert float(model.loss.warmup_best_accuracy) == pytest.approx(
        max(float(run.callback_metrics["val/acc_noisy"]), float(model.loss.warmup_best_accuracy))
    )


@pytest.mark.parametrize(
    "strategy", [ELR(0.5, 1.0), SOP(2.0, 5.0), CoTeaching(0.3, 1)], ids=lambda s: type(s).__name__
)
def test_the_strategy_is_recorded_and_rebuilt_with_its_arguments(tmp_path, strategy):
    model, run = fitted(tmp_path, strategy, limit_train_batches=1)
    path = tmp_path / "s.ckpt"
    run.save_checkpoint(path)
    loaded = NoisyLabelClassifier.load_from_checkpoint(path)  # built in Python: from the record
    assert type(loaded.strategy) is type(strategy)
    assert loaded.strategy.init_args() == strategy.init_args()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
