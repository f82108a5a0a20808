"""The baselines of the paper: limits that reduce them to cross-entropy, MC convergence, T."""

from __future__ import annotations

import pytest
import torch

from ln_lightning import (
    ForwardCorrection,
    ForwardLogisticNormalLoss,
    GeneralizedCrossEntropy,
    Heteroscedastic,
    HeteroscedasticLowRank,
    HeteroscedasticTemperature,
    LabelSmoothing,
    LogisticNormalLoss,
    NoiseAgainstNoise,
)
from ln_lightning.losses import functional as LF
from ln_lightning.losses.base import TrainingContext
from ln_lightning.noise import MNIST_ASYMMETRIC_MAP, expected_transition_matrix
from tests.helpers import LOSSES, with_teacher


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(64, 10, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 10, (64,), generator=gen)
    return logits, labels, LF.cross_entropy(logits, labels)


def test_gce_limits(batch):
    logits, labels, ce = batch
    torch.testing.assert_close(
        LF.generalized_cross_entropy(logits, labels, 1e-6), ce, rtol=1e-4, atol=1e-5
    )
    errors = [
        (LF.generalized_cross_entropy(logits, labels, q) - ce).abs().max() for q in (0.5, 0.1, 0.01)
    ]
    assert errors[0] > errors[1] > errors[2]  # tends to CE as q -> 0
    p_y = torch.softmax(logits, -1).gather(1, labels[:, None]).squeeze(1)
    torch.testing.assert_close(LF.generalized_cross_entropy(logits, labels, 1.0), 1 - p_y)


def test_label_smoothing_zero_is_ce_and_one_is_uniform(batch):
    logits, labels, ce = batch
    torch.testing.assert_close(LF.label_smoothing_cross_entropy(logits, labels, 0.0), ce)
    uniform = -torch.log_softmax(logits, -1).mean(-1)
    torch.testing.assert_close(LF.label_smoothing_cross_entropy(logits, labels, 1.0), uniform)


def test_nan_sigma_zero_is_ce_and_noise_is_zero_mean(batch):
    logits, labels, ce = batch
    torch.testing.assert_close(LF.noisy_target_cross_entropy(logits, labels, 0.0), ce)
    gen = torch.Generator().manual_seed(1)
    draws = torch.stack(
        [LF.noisy_target_cross_entropy(logits, labels, 0.5, generator=gen) for _ in range(2000)]
    )
    assert not torch.allclose(draws[0], draws[1])
    # E[eps] = 0: the mean over draws is CE within 5 standard errors sigma |log p| / sqrt(n).
    standard_error = 0.5 * torch.log_softmax(logits, -1).norm(dim=-1) / len(draws) ** 0.5
    assert ((draws.mean(0) - ce).abs() < 5 * standard_error).all()
    loss = NoiseAgainstNoise(sigma=0.5)
    outputs = {"logits": logits}
    torch.testing.assert_close(loss.eval()(outputs, labels), ce.mean())  # no noise in eval


def test_forward_with_identity_is_ce_and_matches_the_definition(batch):
    logits, labels, ce = batch
    eye = torch.eye(10, dtype=torch.float64)
    torch.testing.assert_close(LF.forward_corrected_cross_entropy(logits, labels, eye), ce)
    t = expected_transition_matrix(10, "asymmetric", 0.4, MNIST_ASYMMETRIC_MAP).double()
    p = torch.softmax(logits, -1)
    want = -torch.log((p @ t).gather(1, labels[:, None]).squeeze(1))
    torch.testing.assert_close(LF.forward_corrected_cross_entropy(logits, labels, t), want)


def test_forward_module_phases_and_validation(batch):
    logits, labels, ce = batch
    loss = ForwardCorrection(warmup_epochs=2)
    loss.setup(10)
    torch.testing.assert_close(loss({"logits": logits}, labels), ce.mean())  # warm-up: CE
    given = ForwardCorrection(transition_matrix=torch.eye(10).tolist())
    given.setup(10)
    torch.testing.assert_close(given({"logits": logits}, labels), ce.mean())
    with pytest.raises(ValueError, match="10 x 10"):
        ForwardCorrection(transition_matrix=torch.eye(3).tolist()).setup(10)
    with pytest.raises(ValueError, match="row-stochastic"):
        ForwardCorrection(transition_matrix=(2 * torch.eye(3)).tolist())
    with pytest.raises(ValueError, match="'data' or None"):
        ForwardCorrection(transition_matrix="estimated")


def test_forward_epochs_are_selectable_unless_a_warm_up_precedes_an_estimate():
    def context(epoch: int, max_epochs: int | None) -> TrainingContext:
        return TrainingContext(epoch, lambda: None, lambda: None, max_epochs=max_epochs)

    given = ForwardCorrection(transition_matrix=torch.eye(3).tolist())
    assert given.selectable(context(0, 10))  # a given T: no warm-up
    counted = ForwardCorrection(warmup_epochs=3)
    counted.setup(3)
    assert not counted.selectable(context(0, None))  # T comes after 3 epochs, budget or not
    assert counted.selectable(context(0, 3))  # the whole run is CE: nothing else to pick
    counted.transition_ready.fill_(True)
    assert counted.selectable(context(5, None))


def test_forward_warmup_is_a_share_of_the_run_or_a_count():
    assert [ForwardCorrection().warmup_length(n) for n in (1, 2, 5, 20, 200)] == [1, 1, 2, 8, 80]
    assert ForwardCorrection(warmup_fraction=0.1).warmup_length(200) == 20
    assert ForwardCorrection(warmup_epochs=3).warmup_length(None) == 3  # a count needs no budget
    with pytest.raises(
        ValueError, match=r"no epoch limit .*--model.loss.init_args.warmup_epochs N"
    ):
        ForwardCorrection().warmup_length(None)


def test_forward_phase_is_a_function_of_the_epoch(batch):
    logits, labels, ce = batch
    probs = torch.softmax(logits, -1)
    calls = []

    def context(epoch: int, max_epochs: int | None = 10) -> TrainingContext:
        def predictions():
            calls.append(epoch)
            return probs

        return TrainingContext(
            epoch=epoch, training_probabilities=predictions,
            true_transition_matrix=lambda: None, max_epochs=max_epochs,
        )  # fmt: skip

    loss = ForwardCorrection()  # 0.4 of 10 epochs: CE for epochs 0-3, T estimated at epoch 4
    loss.setup(10)
    plan = loss.on_fit_start(context(0))
    assert "cross-entropy for the first 4 of 10 epochs, 0.4 of the run" in plan.message
    for epoch in range(4):
        assert loss.on_train_epoch_start(context(epoch)) is None
        torch.testing.assert_close(loss({"logits": logits}, labels), ce.mean())
        assert not loss.selectable(context(epoch))  # CE's epochs: not for model selection
    estimated = loss.on_train_epoch_start(context(4))
    assert loss.selectable(context(4))
    assert calls == [4] and "estimated after 4 CE epochs" in estimated.message
    torch.testing.assert_close(
        loss.transition_matrix, LF.estimate_transition_matrix(probs, percentile=97.0)
    )
    assert loss.on_train_epoch_start(context(5)) is None and calls == [4]  # estimated once
    resumed = ForwardCorrection()  # a run resumed mid-warm-up is in the same phase
    resumed.setup(10)
    resumed.on_fit_start(context(2))
    assert resumed.on_train_epoch_start(context(3)) is None and resumed.warmup == 4
    too_long = ForwardCorrection(warmup_epochs=10)
    too_long.setup(10)
    assert "T is never estimated" in too_long.on_fit_start(context(0)).message


@pytest.mark.parametrize("make", [ForwardCorrection, ForwardLogisticNormalLoss])
def test_forward_warmup_ends_once_noisy_validation_accuracy_stops_improving(batch, make):
    logits = batch[0]
    probs = torch.softmax(logits, -1)
    calls = []

    def context(epoch: int, accuracy: float | None = None) -> TrainingContext:
        def predictions():
            calls.append(epoch)
            return probs

        return TrainingContext(
            epoch=epoch, training_probabilities=predictions, true_transition_matrix=lambda: None,
            max_epochs=20, noisy_validation_accuracy=accuracy,
        )  # fmt: skip

    loss = make(warmup_patience=3)  # cap: 0.4 of 20 = 8 epochs
    loss.setup(10)
    assert "sooner once the noisy validation accuracy has not improved for 3 epochs" in (
        loss.on_fit_start(context(0)).message
    )
    # validation after epochs 0..4: best after epoch 1, then three epochs without a better one
    for epoch, accuracy in enumerate([0.50, 0.60, 0.59, 0.60, 0.55]):
        assert loss.on_train_epoch_start(context(epoch)) is None, epoch
        assert not loss.selectable(context(epoch))
        assert loss.on_validation_epoch_end(context(epoch, accuracy)) is None
    assert (float(loss.warmup_best_accuracy), int(loss.warmup_best_epoch)) == (0.60, 1)
    estimated = loss.on_train_epoch_start(context(5))
    assert calls == [5] and bool(loss.transition_ready) and loss.selectable(context(5))
    assert "estimated after 5 " in estimated.message
    assert "3 epochs after its best noisy validation accuracy (60.00% after epoch 2)" in (
        estimated.message
    )
    loss.on_validation_epoch_end(context(5, 0.99))  # after the warm-up: not its business
    assert float(loss.warmup_best_accuracy) == 0.60

    # state in buffers: a loss rebuilt from the config and the state dict is in the same phase
    resumed = type(loss)(**loss.init_args())
    resumed.setup(10)
    partial = {k: v for k, v in loss.state_dict().items() if k != "transition_ready"}
    resumed.load_state_dict({**partial, "transition_ready": torch.tensor(False)})
    resumed.on_fit_start(context(5))
    assert resumed.on_train_epoch_start(context(5)) is not None  # stalled: estimates at once

    capped = make(warmup_patience=50)  # never stalls: the warm-up's own length still ends it
    capped.setup(10)
    capped.on_fit_start(context(0))
    for epoch in range(8):
        assert capped.on_train_epoch_start(context(epoch)) is None
        capped.on_validation_epoch_end(context(epoch, 0.1 + epoch / 100))
    assert "estimated after 8 " in capped.on_train_epoch_start(context(8)).message

    whole_run = make(warmup_epochs=20, warmup_patience=2)  # a stall is the only way to T
    whole_run.setup(10)
    said = whole_run.on_fit_start(context(0)).message
    assert "T is estimated only if the noisy validation accuracy stops improving" in said

    unvalidated = make(warmup_patience=1)  # no validation split: the whole warm-up
    unvalidated.setup(10)
    unvalidated.on_fit_start(context(0))
    assert all(unvalidated.on_train_epoch_start(context(e)) is None for e in range(8))


def test_forward_without_patience_keeps_the_buffers_of_older_checkpoints():
    plain = ForwardCorrection()
    plain.setup(3)
    assert set(plain.state_dict()) == {"transition_matrix", "transition_ready"}
    patient = ForwardCorrection(warmup_patience=2)
    patient.setup(3)
    assert set(patient.state_dict()) == {
        "transition_matrix", "transition_ready", "warmup_best_accuracy", "warmup_best_epoch",
    }  # fmt: skip
    assert patient.init_args()["warmup_patience"] == 2 and "patience 2" in repr(patient)


@pytest.mark.parametrize("dummy_class", [True, False])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_forward_corrected_mean_maps_the_clean_probabilities_through_t(dummy_class, temperature):
    gen = torch.Generator().manual_seed(3)
    width = 10 if dummy_class else 9
    mean = 4 * torch.randn(32, width, generator=gen, dtype=torch.float64)
    t = expected_transition_matrix(10, "asymmetric", 0.4, MNIST_ASYMMETRIC_MAP).double()

    def simplex(logit_mean):  # S_C(mu / tau) over the M categories (the dummy's last)
        return LF.softmax_centered(logit_mean / temperature)

    same = LF.forward_corrected_mean(
        mean, torch.eye(10, dtype=torch.float64), temperature=temperature, dummy_class=dummy_class
    )
    torch.testing.assert_close(same, mean)  # T = I: the clean mean
    noisy = LF.forward_corrected_mean(mean, t, temperature=temperature, dummy_class=dummy_class)
    assert noisy.dtype == torch.float64 and noisy.shape == mean.shape
    clean = simplex(mean)
    # With the dummy class the real classes go through T and the dummy keeps its probability.
    want = torch.cat([clean[:, :-1] @ t, clean[:, -1:]], 1) if dummy_class else clean @ t
    torch.testing.assert_close(simplex(noisy), want)
    # The brute-force reference: mu~_k = tau logsumexp_i(mu_i / tau + log T_ik) (with the dummy).
    if dummy_class:
        brute = temperature * torch.logsumexp((mean / temperature)[:, :, None] + t.log(), dim=1)
        torch.testing.assert_close(noisy, brute)


def test_forward_corrected_mean_is_float32_finite_and_checked():
    t = expected_transition_matrix(10, "asymmetric", 0.4, MNIST_ASYMMETRIC_MAP)
    extreme = torch.tensor([[1e4] + [-1e4] * 9, [-1e4] * 10], dtype=torch.bfloat16)
    extreme.requires_grad_(True)
    out = LF.forward_corrected_mean(extreme, t)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(extreme.grad).all()
    with pytest.raises(ValueError, match=r"shape \(10, 10\).*dummy_class=True"):
        LF.forward_corrected_mean(torch.zeros(2, 10), torch.eye(9))
    with pytest.raises(ValueError, match=r"shape \(10, 10\) for a mean of width 9"):
        LF.forward_corrected_mean(torch.zeros(2, 9), torch.eye(9), dummy_class=False)


def test_transition_aware_ln_is_ln_until_t_and_ln_around_the_corrected_mean_after(batch):
    logits, labels, _ = batch
    outputs = {"mean": logits.float(), "scale": torch.randn(64, 1, generator=torch.Generator())}
    settings = {"temperature": 0.5, "min_scale": 0.5, "covariance": "isotropic"}
    plain = LogisticNormalLoss(**settings)
    plain.setup(10)
    loss = ForwardLogisticNormalLoss(**settings)  # 0.4 of 10 epochs: plain LN for epochs 0-3
    loss.setup(10)
    t = expected_transition_matrix(10, "asymmetric", 0.4, MNIST_ASYMMETRIC_MAP)

    def context(epoch: int) -> TrainingContext:
        return TrainingContext(epoch, lambda: t[labels], lambda: None, max_epochs=10)

    assert "plain LN for the first 4 of 10 epochs" in loss.on_fit_start(context(0)).message
    for epoch in range(4):
        assert loss.on_train_epoch_start(context(epoch)) is None
        assert not loss.selectable(context(epoch))  # LN's epochs, not the corrected loss's
        torch.testing.assert_close(loss(outputs, labels), plain(outputs, labels))
    estimated = loss.on_train_epoch_start(context(4))
    assert "estimated after 4 LN epochs" in estimated.message and loss.selectable(context(4))
    corrected = LF.forward_corrected_mean(outputs["mean"], loss.transition_matrix, temperature=0.5)
    torch.testing.assert_close(loss(outputs, labels), plain({**outputs, "mean": corrected}, labels))
    assert not torch.allclose(loss(outputs, labels), plain(outputs, labels))
    # Predictions and residuals are the clean mean's, as LN's.
    torch.testing.assert_close(loss.predict_proba(outputs), plain.predict_proba(outputs))
    torch.testing.assert_close(loss.residuals(outputs, labels), plain.residuals(outputs, labels))
    # A given identity T is LN; a flip T expects costs less than under LN.
    identity = ForwardLogisticNormalLoss(transition_matrix=torch.eye(10).tolist(), **settings)
    torch.testing.assert_close(identity(outputs, labels), plain(outputs, labels))
    given = ForwardLogisticNormalLoss(transition_matrix=t.tolist(), **settings)
    sure_of_7 = {"mean": torch.full((1, 10), -3.0).index_fill(1, torch.tensor([7]), 3.0),
                 "scale": torch.zeros(1, 1)}  # fmt: skip
    flipped = torch.tensor([1])  # the map sends 7 -> 1 with probability 0.4
    assert float(given(sure_of_7, flipped)) < float(plain(sure_of_7, flipped))


def test_transition_aware_ln_reports_both_schedules_and_rebuilds_from_its_config():
    loss = ForwardLogisticNormalLoss(anneal_epochs=10, warmup_epochs=3, percentile=90.0)
    loss.setup(10)
    plan = loss.on_fit_start(TrainingContext(0, lambda: None, lambda: None, max_epochs=20))
    lines = plan.message.splitlines()
    assert lines[0].startswith("LogisticNormalLoss: min_scale (lambda) anneals")
    assert lines[1].startswith("ForwardLogisticNormalLoss: plain LN for the first 3 of 20")
    started = loss.on_train_epoch_start(TrainingContext(0, lambda: None, lambda: None))
    assert set(started.metrics) == {"ln/min_scale"}  # LN's schedule goes on in the warm-up
    rebuilt = ForwardLogisticNormalLoss(**loss.init_args())
    assert rebuilt.config() == loss.config()
    assert loss.init_args()["transition_matrix"] is None and loss.covariance == "isotropic"
    assert {"transition_matrix", "transition_ready"} <= set(loss.state_dict())
    with pytest.raises(ValueError, match="warmup_fraction must lie in"):
        ForwardLogisticNormalLoss(warmup_fraction=1.0)
    with pytest.raises(ValueError, match="min_scale must be"):
        ForwardLogisticNormalLoss(min_scale=0.0)
    with pytest.raises(RuntimeError, match=r"ForwardLogisticNormalLoss.setup\(num_classes\)"):
        ForwardLogisticNormalLoss()({"mean": torch.zeros(1, 3), "scale": torch.zeros(1, 1)},
                                    torch.tensor([0]))  # fmt: skip


def test_transition_estimate_recovers_the_rows_of_confident_examples():
    true_t = expected_transition_matrix(4, "asymmetric", 0.3, {0: 1, 2: 3})
    # A perfect noisy-posterior model: each example's prediction is the row of its class, blurred
    # towards uniform; the anchor of class i (the highest p(i|x)) is then an unblurred example.
    blur = torch.linspace(0.0, 0.5, 50)
    probs = torch.cat([(1 - b) * true_t[i] + b / 4 for i in range(4) for b in blur])
    probs = probs.view(-1, 4)
    torch.testing.assert_close(LF.estimate_transition_matrix(probs, percentile=100.0), true_t)
    robust = LF.estimate_transition_matrix(probs, percentile=97.0)
    torch.testing.assert_close(robust.sum(-1), torch.ones(4))
    assert (robust.diagonal() > 0.5).all()


def _confident(num_examples: int, num_classes: int) -> torch.Tensor:
    """Balanced classes, each example's own class 4 logits up: mostly confident and right."""
    logits = torch.randn(num_examples, num_classes, generator=torch.Generator().manual_seed(0))
    logits[torch.arange(num_examples), torch.arange(num_examples) % num_classes] += 4
    return logits.softmax(-1)


def test_the_outlier_filter_sets_aside_a_share_of_each_class_that_grows_with_the_classes():
    probs = _confident(6000, 10)
    share = LF.filtered_share(probs, 97.0)
    # by hand: examples at or above the 97th percentile of p(i|x) over those predicted as i
    threshold = torch.quantile(probs[:, 3], 0.97, interpolation="higher")
    by_hand = (probs[:, 3] >= threshold).sum() / (probs.argmax(-1) == 3).sum()
    torch.testing.assert_close(share[3], by_hand.float())
    assert 0.25 < float(share.max()) < 0.35  # 3% of all = 30% of one class in ten
    assert (LF.filtered_share(probs, 100.0) == 0).all()
    many = LF.filtered_share(_confident(6000, 60), 97.0)
    assert (many > 1).all()  # 3% of all is more than a class of 60: into other classes
    with pytest.raises(ValueError, match="percentile must lie in"):
        LF.filtered_share(probs, 0.0)


@pytest.mark.parametrize(
    ("num_classes", "percentile", "cautioned"),
    [(10, 97.0, False), (10, 99.0, False), (60, 97.0, True), (60, 100.0, False)],
)
def test_forward_estimate_cautions_when_the_filter_reaches_into_other_classes(
    num_classes, percentile, cautioned
):
    probs = _confident(6000, num_classes)
    loss = ForwardCorrection(warmup_epochs=1, percentile=percentile)
    loss.setup(num_classes)
    context = TrainingContext(1, lambda: probs, lambda: None, max_epochs=3)
    loss.on_fit_start(context)
    message = loss.on_train_epoch_start(context).message
    assert "estimated after 1 CE epoch" in message and bool(loss.transition_ready)
    assert ("Caution:" in message) is cautioned
    if cautioned:
        assert "percentile 97 sets aside the top 3% of all 6000" in message
        assert "it sets aside all of the examples predicted as class index" in message
        assert "--model.loss.init_args.percentile 100" in message
        # by hand: the rows whose anchor the model predicts as another class
        anchors = LF.estimate_transition_matrix(probs, percentile).argmax(-1)
        foreign = int((anchors != torch.arange(num_classes)).sum())
        assert foreign > 0 and f"{foreign} of {num_classes} rows of T come from" in message


def test_forward_estimate_does_not_caution_when_the_filter_takes_much_of_an_under_predicted_class():
    # class 0 loses half of its examples' arg-max to class 1 (the noise flips labels away from
    # it): the 97th percentile then sets aside most of what the model predicts as class 0, and
    # its anchor is still one of them, as on the own-images benchmark's T-shirts
    probs = _confident(6000, 10)
    index = torch.arange(6000)
    flipped = (probs.argmax(-1) == 0) & (index % 10 == 0) & (index // 10 % 2 == 0)
    probs[flipped] = probs[flipped][:, [1, 0, 2, 3, 4, 5, 6, 7, 8, 9]]
    share = LF.filtered_share(probs, 97.0)
    assert 0.5 < float(share[0]) < 1.0  # more than half, not all
    anchors = LF.transition_anchors(probs, 97.0)
    assert int(probs[anchors[0]].argmax()) == 0
    loss = ForwardCorrection(warmup_epochs=1)
    loss.setup(10)
    context = TrainingContext(1, lambda: probs, lambda: None, max_epochs=3)
    loss.on_fit_start(context)
    assert "Caution" not in loss.on_train_epoch_start(context).message


def test_forward_estimate_cautions_when_the_model_never_predicts_a_class():
    probs = torch.cat([_confident(600, 3), torch.full((600, 1), 1e-4)], dim=1)
    probs = probs / probs.sum(-1, keepdim=True)  # class 3: never the arg-max
    loss = ForwardCorrection(warmup_epochs=1, percentile=99.0)
    loss.setup(4)
    context = TrainingContext(1, lambda: probs, lambda: None, max_epochs=3)
    loss.on_fit_start(context)
    message = loss.on_train_epoch_start(context).message
    assert "Caution: 1 of 4 rows of T come from examples the model predicts as another" in message
    assert "the model predicts no example as class index 3." in message
    assert "a longer warm-up" in message


@pytest.mark.parametrize("num_samples", [1, 7, 100])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_het_with_zero_scale_is_ce(batch, num_samples, temperature):
    logits, labels, _ = batch
    het = LF.heteroscedastic_loss(
        logits, torch.zeros_like(logits), labels, num_samples=num_samples, temperature=temperature
    )
    torch.testing.assert_close(het, LF.cross_entropy(logits / temperature, labels))


def test_low_rank_with_zero_factor_is_het_tau(batch):
    logits, labels, _ = batch
    std = torch.rand_like(logits)
    kwargs = dict(num_samples=16, temperature=0.5)
    het = LF.heteroscedastic_loss(
        logits, std, labels, generator=torch.Generator().manual_seed(3), **kwargs
    )
    low_rank = LF.heteroscedastic_loss(
        logits, std, labels, factor=torch.zeros(64, 10, 3, dtype=logits.dtype),
        generator=torch.Generator().manual_seed(3), **kwargs,
    )  # fmt: skip
    torch.testing.assert_close(low_rank, het)


@pytest.mark.parametrize("factor_rank", [0, 2])
def test_het_mc_estimate_converges(batch, factor_rank):
    logits, labels, _ = batch
    logits, labels = logits[:8] / 3, labels[:8]
    std = torch.ones_like(logits)
    factor = 0.7 * torch.ones(8, 10, factor_rank, dtype=logits.dtype) if factor_rank else None
    gen = torch.Generator().manual_seed(0)

    def estimate(samples):
        return LF.heteroscedastic_loss(
            logits, std, labels, num_samples=samples, factor=factor, generator=gen
        )

    reference = estimate(200_000)
    errors = []
    for samples in (10, 100, 1000):
        draws = torch.stack([estimate(samples) for _ in range(20)])
        errors.append((draws - reference).abs().mean().item())
    # The error shrinks like 1 / sqrt(S): about 10x from 10 to 1000 samples.
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < errors[0] / 5 and errors[2] < 0.05
    shared = LF.heteroscedastic_loss(
        logits, std, labels, num_samples=20_000, factor=factor, share_samples=True, generator=gen
    )
    torch.testing.assert_close(shared, reference, rtol=0.02, atol=0.02)


def test_het_modules_heads_predictions_and_validation():
    outputs = {
        "mean": torch.randn(5, 10),
        "scale": torch.full((5, 10), -20.0),  # softplus ~ 0: the MC predictive is softmax(mu/tau)
        "factor": torch.zeros(5, 20),
    }
    for loss in (
        Heteroscedastic(),
        HeteroscedasticTemperature(temperature=0.5),
        HeteroscedasticLowRank(temperature=0.5, num_factors=2),
    ):
        probs = loss.predict_proba(outputs)
        want = torch.softmax(outputs["mean"] / loss.temperature, -1)
        torch.testing.assert_close(probs, want, rtol=0, atol=2e-3)
        torch.testing.assert_close(loss.predict_proba(outputs), probs)  # deterministic
        assert torch.isfinite(loss(outputs, torch.arange(5)))
    assert HeteroscedasticLowRank(num_factors=4).head_shapes(10) == {
        "mean": 10, "scale": 10, "factor": 40,
    }  # fmt: skip
    assert Heteroscedastic(predict_with="mean").prediction_heads == ("mean",)
    for kwargs, match in (
        ({"num_samples": 0}, "num_samples"),
        ({"temperature": 0}, "temperature"),
        ({"num_factors": 0}, "num_factors"),
        ({"predict_with": "median"}, "predict_with"),
    ):
        with pytest.raises(ValueError, match=match):
            HeteroscedasticLowRank(**kwargs)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: GeneralizedCrossEntropy(q=0), r"q must lie in \(0, 1\]"),
        (lambda: GeneralizedCrossEntropy(q=1.5), r"q must lie in \(0, 1\]"),
        (lambda: LabelSmoothing(smoothing=-0.1), r"smoothing must lie in \[0, 1\]"),
        (lambda: NoiseAgainstNoise(sigma=-1), "sigma must be"),
        (lambda: ForwardCorrection(warmup_epochs=0), "warmup_epochs must be >= 1, or None"),
        (lambda: ForwardCorrection(warmup_fraction=0.0), r"warmup_fraction must lie in \(0, 1\)"),
        (lambda: ForwardCorrection(warmup_fraction=1.0), r"warmup_fraction must lie in \(0, 1\)"),
        (lambda: ForwardCorrection(warmup_patience=0), "warmup_patience must be >= 1"),
        (lambda: ForwardLogisticNormalLoss(warmup_patience=-2), "warmup_patience must be >= 1"),
    ],
)
def test_invalid_hyper_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_is_float32_under_bf16_autocast(name):
    loss = LOSSES[name]()
    loss.setup(10)
    shapes = loss.head_shapes(10)
    layer = torch.nn.Linear(8, sum(shapes.values()))
    x, y = torch.randn(6, 8), torch.randint(0, 10, (6,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
        assert out.dtype == torch.bfloat16
        outputs = dict(zip(shapes, out.split(list(shapes.values()), dim=-1), strict=True))
        value = loss(with_teacher(loss, outputs), y)
    assert value.dtype == torch.float32 and torch.isfinite(value)


def test_het_sampling_is_reproducible_from_the_global_seed():
    outputs = {
        "mean": torch.randn(4, 10),
        "scale": torch.randn(4, 10),
        "factor": torch.randn(4, 20),
    }
    labels = torch.arange(4)
    loss = HeteroscedasticLowRank(num_factors=2, num_samples=8)
    torch.manual_seed(5)
    first = loss(outputs, labels)
    torch.manual_seed(5)
    torch.testing.assert_close(loss(outputs, labels), first)
    assert not torch.equal(loss(outputs, labels), first)  # fresh samples on the next step


def test_wrong_label_share_weighs_each_class_by_the_prior():
    flips = expected_transition_matrix(4, "asymmetric", 0.4, {0: 1, 2: 3})  # 2 of 4 rows flip
    torch.testing.assert_close(LF.wrong_label_share(flips), torch.tensor(0.2))  # (0.4 + 0.4) / 4
    prior = torch.tensor([0.7, 0.1, 0.1, 0.1])  # most examples in a flipped class
    torch.testing.assert_close(LF.wrong_label_share(flips, prior), torch.tensor(0.32))  # .28+.04
    symmetric = expected_transition_matrix(10, "symmetric", 0.4)
    by_hand = 1 - float(symmetric.diagonal().mean())
    assert abs(float(LF.wrong_label_share(symmetric)) - by_hand) < 1e-6
    assert float(LF.wrong_label_share(torch.eye(5))) == 0.0


def test_wrong_label_spread_tells_symmetric_noise_from_confused_pairs():
    symmetric = expected_transition_matrix(10, "symmetric", 0.4)
    torch.testing.assert_close(LF.wrong_label_spread(symmetric), torch.tensor(1.0))
    pairs = expected_transition_matrix(10, "asymmetric", 0.4, {0: 6, 2: 4, 5: 7, 9: 7})
    torch.testing.assert_close(LF.wrong_label_spread(pairs), torch.tensor(1 / 9))
    assert float(LF.wrong_label_spread(torch.eye(4))) == 1.0  # nothing wrong: nothing to spread
    # by hand: row 0 sends 0.3 to class 1 and 0.1 to class 2 (q = 3/4, 1/4: 1.6 classes of 3);
    # row 1 sends 0.2 evenly (3 of 3); rows 2 and 3 none; weights 0.4 and 0.2
    matrix = torch.tensor([[0.6, 0.3, 0.1, 0.0], [0.2 / 3, 0.8, 0.2 / 3, 0.2 / 3],
                           [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])  # fmt: skip
    by_hand = (0.4 * (1 / (0.75**2 + 0.25**2)) + 0.2 * 3.0) / 0.6 / 3
    torch.testing.assert_close(LF.wrong_label_spread(matrix), torch.tensor(by_hand))
    with pytest.raises(ValueError, match="3 classes or more"):
        LF.wrong_label_spread(torch.eye(2))


@pytest.mark.parametrize(
    ("kind", "class_map", "words"),
    [("symmetric", None, "spread over the other classes (spread 1.00"),
     ("asymmetric", {0: 6, 2: 4, 5: 7, 9: 7}, "concentrated (spread 0.11")],
)  # fmt: skip
def test_forward_says_how_many_labels_its_t_calls_wrong_and_how_they_spread(kind, class_map, words):
    matrix = expected_transition_matrix(10, kind, 0.4, class_map)
    report = _estimate_from_anchors(matrix)
    share = 1 - float(matrix.diagonal().mean())
    assert f"About {share:.0%} of the labels are wrong by this T" in report.message
    assert words in report.message and "0.11 when each class's go to one" in report.message
    assert report.metrics["forward/wrong_label_share"] == pytest.approx(share)
    assert "forward/wrong_label_spread" in report.metrics
    hint = f"coteaching.yaml --model.strategy.init_args.forget_rate {share:.2f}"
    assert (hint in report.message) is (kind == "symmetric")  # only where the noise is even
    little = _estimate_from_anchors(expected_transition_matrix(10, "symmetric", 0.05))
    assert "spread over the other classes" in little.message
    assert "Co-teaching" not in little.message  # 4.5% wrong: nothing to leave out
    said = _estimate_from_anchors(torch.tensor([[0.8, 0.2], [0.1, 0.9]]))
    assert "About 15% of the labels are wrong by this T (1 - its mean diagonal)." in said.message
    assert "forward/wrong_label_spread" not in said.metrics  # no spread with 2 classes


def _estimate_from_anchors(matrix: torch.Tensor):
    """Forward's report after its warm-up on predictions whose anchors are ``matrix``'s rows."""
    num_classes = len(matrix)
    blur = torch.linspace(0.0, 0.5, 20)
    probs = torch.stack([(1 - b) * matrix[i] + b / num_classes for i in range(num_classes)
                         for b in blur])  # fmt: skip
    loss = ForwardCorrection(warmup_epochs=1, percentile=100.0)
    loss.setup(num_classes)
    context = TrainingContext(1, lambda: probs, lambda: None, max_epochs=3)
    loss.on_fit_start(context)
    report = loss.on_train_epoch_start(context)
    torch.testing.assert_close(loss.transition_matrix, matrix)
    return report
