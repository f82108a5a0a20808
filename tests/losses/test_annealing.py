"""LN's annealed min_scale (graduated non-convexity): the schedule, the hooks, Eq. 5 when off."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from ln_lightning import LogisticNormalLoss
from ln_lightning.losses import functional as LF
from ln_lightning.losses.base import TrainingContext


def at(epochs: float) -> TrainingContext:
    return TrainingContext(int(epochs), lambda: None, lambda: None, epochs)


def heads(batch: int = 6, dim: int = 10) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "mean": torch.randn(batch, dim, generator=generator),
        "scale": torch.randn(batch, dim, generator=generator),
    }


def test_the_schedule_falls_from_the_initial_residual_to_min_scale():
    params = LF.LogisticNormalParams(temperature=0.5, min_scale=0.5, anneal_epochs=10)
    start = params.target_scale(10)  # tau C: |r| of every example when mu = 0
    assert start == pytest.approx(0.5 * math.log((0.99 * 11 + 0.01) / 0.01))
    assert params.min_scale_at(0.0, 10) == pytest.approx(start)
    assert params.min_scale_at(5.0, 10) == pytest.approx((start + 0.5) / 2)  # half cosine
    times = torch.linspace(0, 12, 49).tolist()
    values = [params.min_scale_at(t, 10) for t in times]
    assert all(a > b for a, b in itertools.pairwise(values[:41]))  # falls
    assert all(v == 0.5 for v in values[40:])  # then exactly min_scale
    assert params.min_scale_at(-1.0, 10) == pytest.approx(start)


def test_without_annealing_min_scale_is_constant():
    params = LF.LogisticNormalParams(min_scale=0.3)
    assert {params.min_scale_at(t, 10) for t in (0.0, 0.5, 7.0)} == {0.3}


def test_the_start_is_never_below_min_scale():
    params = LF.LogisticNormalParams(temperature=0.1, min_scale=5.0, anneal_epochs=4)
    assert params.target_scale(10) < 5.0
    assert {params.min_scale_at(t, 10) for t in (0.0, 2.0, 9.0)} == {5.0}


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf, True])
def test_invalid_anneal_epochs_is_refused_once_when_made(value):
    with pytest.raises(ValueError, match="anneal_epochs must be a finite number of epochs >= 0"):
        LogisticNormalLoss(anneal_epochs=value)


def test_the_loss_follows_the_schedule_and_is_eq5_after_it():
    loss = LogisticNormalLoss(temperature=0.5, min_scale=0.5, anneal_epochs=2, reduction="none")
    loss.setup(10)
    outputs, labels = heads(), torch.tensor([0, 1, 2, 3, 4, 9])

    def eq5(min_scale: float) -> torch.Tensor:
        params = LF.LogisticNormalParams(temperature=0.5, min_scale=min_scale)
        return LF.logistic_normal_loss(outputs["mean"], outputs["scale"], labels, params)

    # Outside training (a loaded model, or before the first step): the paper's loss exactly.
    assert torch.equal(loss(outputs, labels), eq5(0.5))
    for elapsed in (0.0, 0.7, 1.5):
        loss.on_train_batch_start(at(elapsed))
        want = loss.params.min_scale_at(elapsed, 10)
        assert want > 0.5 and loss.current_params.min_scale == want
        assert torch.equal(loss(outputs, labels), eq5(want))
        uncertainty = loss.uncertainty(outputs)
        torch.testing.assert_close(uncertainty, want + outputs["scale"].square().sum(-1))
    loss.on_train_batch_start(at(2.0))
    assert torch.equal(loss(outputs, labels), eq5(0.5))


def test_at_the_start_no_example_is_attenuated_and_at_the_end_all_are():
    """Sec. 3, Fig. 2: a residual above lambda is attenuated (a covariance along it lowers the
    loss). At initialisation (mu = 0) every residual is tau C: beyond the paper's lambda, but
    not beyond the annealed start, where the covariance is better left at zero."""
    loss = LogisticNormalLoss(temperature=1.0, min_scale=1.0, anneal_epochs=5, reduction="none")
    loss.setup(10)
    labels = torch.arange(10)
    mean = torch.zeros(10, 10)
    along_residual = 0.3 * torch.eye(10)  # c parallel to r = tau C e_y

    def attenuation_helps() -> torch.Tensor:
        with_c = loss({"mean": mean, "scale": along_residual}, labels)
        return with_c < loss({"mean": mean, "scale": torch.zeros(10, 10)}, labels)

    loss.on_train_batch_start(at(0.0))
    assert not attenuation_helps().any()
    loss.on_train_batch_start(at(5.0))
    assert attenuation_helps().all()


def test_the_epoch_hook_reports_lambda_and_fit_start_says_what_happens():
    loss = LogisticNormalLoss(anneal_epochs=3)
    loss.setup(10)
    message = loss.on_fit_start(at(0.0)).message
    assert "anneals from 6.99" in message and "to 1 over the first 3 epochs" in message
    reports = [loss.on_train_epoch_start(at(e)).metrics["ln/min_scale"] for e in range(5)]
    assert reports[0] == pytest.approx(loss.params.target_scale(10)) and reports[3:] == [1.0, 1.0]
    assert LogisticNormalLoss().on_train_epoch_start(at(0.0)) is None  # off: nothing to say


def test_hooks_need_setup_first():
    with pytest.raises(RuntimeError, match=r"call loss.setup\(num_classes\)"):
        LogisticNormalLoss(anneal_epochs=1).on_train_batch_start(at(0.0))
    LogisticNormalLoss().on_train_batch_start(at(0.0))  # off: nothing needed


def test_anneal_epochs_travels_in_the_config():
    loss = LogisticNormalLoss(min_scale=0.5, anneal_epochs=10)
    assert loss.config()["init_args"]["anneal_epochs"] == 10
    assert LogisticNormalLoss(**loss.init_args()).params == loss.params
