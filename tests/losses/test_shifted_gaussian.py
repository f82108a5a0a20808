"""SGN (Englesson & Azizpour, ICLR 2024): the ILR transform, the density, the shift schedule."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy.linalg import helmert
from torch.distributions import LowRankMultivariateNormal

from ln_lightning import ShiftedGaussianNoise
from ln_lightning.losses import functional as LF
from ln_lightning.losses.base import TrainingContext, teacher_key


def helmert_matrix(num_classes: int) -> torch.Tensor:
    """The (K - 1) x K Helmert sub-matrix, from scipy (the reference code's ``helmert_tf``)."""
    return torch.tensor(helmert(num_classes), dtype=torch.float64)


@pytest.mark.parametrize("num_classes", [2, 3, 10, 101])
def test_the_helmert_maps_equal_the_matrix_products(num_classes):
    generator = torch.Generator().manual_seed(num_classes)
    H = helmert_matrix(num_classes)
    values = torch.randn(5, num_classes, generator=generator, dtype=torch.float64)
    coords = torch.randn(5, num_classes - 1, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(LF.helmert_coordinates(values), values @ H.T)
    torch.testing.assert_close(LF.helmert_lift(coords), coords @ H)
    assert LF.helmert_lift(coords).sum(-1).abs().max() < 1e-12  # in the sum-zero plane


@pytest.mark.parametrize("num_classes", [2, 10, 100])
def test_the_ilr_round_trip(num_classes):
    generator = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(7, num_classes, generator=generator, dtype=torch.float64), -1)
    coords = LF.isometric_log_ratio(probs)
    assert coords.shape == (7, num_classes - 1)
    torch.testing.assert_close(LF.ilr_probabilities(coords), probs)
    z = torch.randn(7, num_classes - 1, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(LF.isometric_log_ratio(LF.ilr_probabilities(z)), z)
    # the reference code's ilr_inv: clr(p) @ H^T
    log_p = probs.log()
    torch.testing.assert_close(
        coords, (log_p - log_p.mean(-1, keepdim=True)) @ helmert_matrix(num_classes).T
    )


@pytest.mark.parametrize("smoothing", [0.001, 0.1])
def test_the_target_is_the_ilr_of_the_smoothed_label(smoothing):
    labels = torch.tensor([0, 1, 5, 9])
    smoothed = (1 - smoothing) * torch.nn.functional.one_hot(labels, 10).double() + smoothing / 10
    target = LF.sgn_target(labels, 10, smoothing, torch.float64)
    torch.testing.assert_close(target, LF.isometric_log_ratio(smoothed))
    # |t| = C |h_y| = C sqrt((K - 1) / K): every label is equally far from the origin
    scale = LF.target_logit_scale(10, smoothing)
    torch.testing.assert_close(
        target.norm(dim=-1), torch.full((4,), scale * math.sqrt(0.9)).double()
    )
    assert LF.ilr_probabilities(target).argmax(-1).tolist() == labels.tolist()


def reference_density(mean, factor, labels, teacher_mean, shift_weight, smoothing):
    """-log N(t; mu + w (t - mu_ema), (I + r r^T)^2) with torch.distributions (K x K inside)."""
    target = LF.sgn_target(labels, mean.shape[-1] + 1, smoothing, mean.dtype)
    loc = mean + shift_weight * (target - teacher_mean.detach())
    # (I + r r^T)^2 = I + (2 + |r|^2) r r^T: a rank-one factor sqrt(2 + |r|^2) r
    cov_factor = (factor * torch.sqrt(2 + factor.square().sum(-1, keepdim=True)))[..., None]
    normal = LowRankMultivariateNormal(loc, cov_factor, torch.ones_like(mean))
    return -normal.log_prob(target)


@pytest.mark.parametrize("shift_weight", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("num_classes", [2, 10])
def test_the_density_and_its_gradients_match_torch_distributions(shift_weight, num_classes):
    generator = torch.Generator().manual_seed(2)
    dim = num_classes - 1

    def leaf(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64).requires_grad_()

    mean, factor, teacher = leaf(8, dim), leaf(8, dim), leaf(8, dim)
    labels = torch.randint(0, num_classes, (8,), generator=generator)
    params = LF.ShiftedGaussianParams(smoothing=0.01)
    ours = LF.shifted_gaussian_noise_loss(mean, factor, labels, teacher, shift_weight, params)
    theirs = reference_density(mean, factor, labels, teacher, shift_weight, 0.01)
    torch.testing.assert_close(ours, theirs)
    grads = torch.autograd.grad(ours.sum(), (mean, factor))
    expected = torch.autograd.grad(theirs.sum(), (mean, factor))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)
    # no gradient reaches the teacher
    teacher_grad = torch.autograd.grad(ours.sum(), teacher, allow_unused=True)[0]
    assert teacher_grad is None or not teacher_grad.abs().any()


def test_the_loss_is_float32_under_half_inputs():
    mean = torch.randn(4, 9).bfloat16()
    loss = LF.shifted_gaussian_noise_loss(mean, mean.clone(), torch.tensor([0, 1, 2, 9]))
    assert loss.dtype == torch.float32 and torch.isfinite(loss).all()


def test_the_shift_pulls_the_mean_to_the_label_where_the_teacher_agrees():
    """With the teacher at the label (mu_ema = t) the shifted mean is mu + w (t - t) = mu; with
    the teacher at 0 it moves w of the way to the label, so the residual shrinks by 1 - w."""
    labels = torch.tensor([3])
    target = LF.sgn_target(labels, 10, 0.001)
    mean, factor = torch.zeros(1, 9), torch.zeros(1, 9)
    unshifted = LF.shifted_gaussian_noise_loss(mean, factor, labels)
    agreeing = LF.shifted_gaussian_noise_loss(mean, factor, labels, target, 0.5)
    torch.testing.assert_close(agreeing, unshifted)
    at_zero = LF.shifted_gaussian_noise_loss(mean, factor, labels, torch.zeros(1, 9), 0.5)
    constant = 4.5 * math.log(2 * math.pi)
    torch.testing.assert_close(at_zero - constant, 0.25 * (unshifted - constant))


def test_the_shift_schedule():
    params = LF.ShiftedGaussianParams()
    assert params.shift_weight(0.0) == 0.0
    assert params.shift_weight(-1.0) == 0.0
    assert params.shift_weight(100.0) == pytest.approx(1 - 0.995**100)  # 0.394
    assert params.shift_weight(20.0) == pytest.approx(0.0954, abs=1e-4)
    weights = [params.shift_weight(e / 4) for e in range(1200)]
    assert all(b > a for a, b in itertools.pairwise(weights))
    assert LF.ShiftedGaussianParams(alpha=1.0).shift_weight(300.0) == 0.0  # no correction


def test_the_module_follows_the_training_time_step_by_step():
    loss = ShiftedGaussianNoise(alpha=0.9)
    report = loss.on_train_epoch_start(TrainingContext(3, lambda: None, lambda: None, 3.0))
    assert report.metrics == {"sgn/shift_weight": pytest.approx(1 - 0.9**3)}
    loss.on_train_batch_start(TrainingContext(3, lambda: None, lambda: None, 3.5))
    assert loss.shift_weight == pytest.approx(1 - 0.9**3.5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 0.0}, r"alpha must lie in \(0, 1\]"),
        ({"alpha": 1.5}, r"alpha must lie in \(0, 1\]"),
        ({"alpha": math.nan}, r"alpha must lie in \(0, 1\]"),
        ({"ema_decay": 1.0}, r"ema_decay must lie in \[0, 1\)"),
        ({"ema_decay": -0.1}, r"ema_decay must lie in \[0, 1\)"),
        ({"smoothing": 0.0}, r"smoothing must lie in \(0, 1\)"),
        ({"smoothing": True}, r"smoothing must lie in \(0, 1\)"),
    ],
)
def test_invalid_hyper_parameters_are_refused_once_when_made(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShiftedGaussianNoise(**kwargs)


def test_the_module_declares_its_heads_and_its_teacher():
    loss = ShiftedGaussianNoise(ema_decay=0.99)
    assert loss.head_shapes(10) == {"mean": 9, "factor": 9}
    assert loss.teacher_decay == 0.99
    assert loss.prediction_heads == ("mean",)
    assert type(loss)(**loss.init_args()).params == loss.params


def test_in_training_the_module_needs_the_teacher_and_in_eval_it_does_not():
    loss = ShiftedGaussianNoise(reduction="none")
    outputs = {"mean": torch.randn(4, 9), "factor": torch.randn(4, 9)}
    labels = torch.tensor([0, 1, 2, 3])
    with pytest.raises(
        KeyError, match=r"needs the EMA teacher's mean as outputs\['teacher.mean'\]"
    ):
        loss(outputs, labels)
    loss.shift_weight = 0.4
    teacher = torch.randn(4, 9)
    trained = loss({**outputs, teacher_key("mean"): teacher}, labels)
    torch.testing.assert_close(
        trained,
        LF.shifted_gaussian_noise_loss(outputs["mean"], outputs["factor"], labels, teacher, 0.4),
    )
    loss.eval()  # validation and test: the label's unshifted density
    torch.testing.assert_close(
        loss(outputs, labels),
        LF.shifted_gaussian_noise_loss(outputs["mean"], outputs["factor"], labels),
    )


def test_predictions_residuals_and_uncertainty():
    loss = ShiftedGaussianNoise()
    factor = torch.randn(3, 9)
    labels = torch.tensor([2, 4, 8])
    target = LF.sgn_target(labels, 10, 0.001)
    outputs = {"mean": target, "factor": factor}
    probs = loss.predict_proba(outputs)
    assert probs.shape == (3, 10) and probs.argmax(-1).tolist() == [2, 4, 8]
    plain, whitened = loss.residuals(outputs, labels)
    assert plain.abs().max() < 1e-8 and whitened.abs().max() < 1e-8  # the mean is at the label
    torch.testing.assert_close(loss.uncertainty(outputs), 1 + factor.square().sum(-1))
