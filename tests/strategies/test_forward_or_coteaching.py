"""ForwardOrCoTeaching: the decision read off an estimated T (hand-made matrices), each phase's
step against its definition, the decision kept in the checkpoint, clear errors, and both
branches through ``ln-fit`` on digits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ln_lightning import (
    CrossEntropy,
    DigitsDataModule,
    ForwardCorrection,
    ForwardOrCoTeaching,
    NoisyLabelClassifier,
)
from ln_lightning.data.dataset import NoisySample
from ln_lightning.losses import functional as LF
from ln_lightning.noise import expected_transition_matrix
from ln_lightning.strategies.coteaching import coteaching_losses, forget_rate_at
from ln_lightning.strategies.forward_or_coteaching import (
    COTEACHING,
    FORWARD,
    UNDECIDED,
    coteaching_share,
)
from tests.helpers import quick_trainer

SHAPE = (1, 8, 8)
ROOT = Path(__file__).resolve().parents[2]
PAIRS = {0: 6, 2: 4, 5: 7, 9: 7}  # the Fashion-MNIST-like map of confusable classes


def model_with(strategy: ForwardOrCoTeaching | None = None, **loss) -> NoisyLabelClassifier:
    strategy = strategy or ForwardOrCoTeaching(percentile=100.0)  # T read off the anchors
    return NoisyLabelClassifier(
        loss=ForwardCorrection(**loss), strategy=strategy, input_shape=SHAPE
    )


def anchored(matrix: torch.Tensor) -> torch.Tensor:
    """Class probabilities whose most confident example of each class is ``matrix``'s row."""
    blur = torch.linspace(0.0, 0.5, 20)
    size = len(matrix)
    return torch.stack([(1 - b) * matrix[i] + b / size for i in range(size) for b in blur])


def anchored_with_labels(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`anchored` and labels of which the model agrees with half (a model that has
    learnt, and sees through more wrong labels than the matrices here have)."""
    probabilities = anchored(matrix)
    predicted = probabilities.argmax(-1)
    return probabilities, (predicted + torch.arange(len(predicted)) % 2) % len(matrix)


def test_a_model_near_chance_is_not_read_the_decision_waits_then_keeps_every_example():
    model = model_with()
    strategy = model.strategy
    probabilities = torch.full((40, 10), 0.1)  # untrained: T's rows uniform, "90% wrong, evenly"
    given = torch.arange(40) % 10
    report = strategy.decide(probabilities, given)
    assert int(strategy.choice) == UNDECIDED and "the decision waits an epoch" in report.message
    assert "agrees with 10% of its training labels (chance 10%)" in report.message
    uniform = LF.estimate_transition_matrix(probabilities, 99.0)
    assert coteaching_share(uniform) is not None  # what reading it would have chosen
    report = strategy.choose(uniform, weak=strategy.too_weak(probabilities, given))
    assert int(strategy.choice) == FORWARD and "but the model agrees with 10%" in report.message
    assert not bool(model.loss.transition_ready)  # forward correction goes on as alone
    learnt = anchored_with_labels(expected_transition_matrix(10, "symmetric", 0.4))
    assert strategy.too_weak(*learnt) is None


def test_coteaching_share_is_the_wrong_labels_share_only_where_they_spread():
    symmetric = expected_transition_matrix(10, "symmetric", 0.4)
    assert coteaching_share(symmetric) == pytest.approx(1 - float(symmetric.diagonal().mean()))
    assert coteaching_share(expected_transition_matrix(10, "asymmetric", 0.4, PAIRS)) is None
    assert coteaching_share(expected_transition_matrix(10, "symmetric", 0.05)) is None  # few
    assert coteaching_share(expected_transition_matrix(10, "symmetric", 0.05), min_share=0.0)
    assert coteaching_share(torch.tensor([[0.6, 0.4], [0.4, 0.6]])) is None  # no spread: K = 2
    pairs = expected_transition_matrix(10, "asymmetric", 0.4, PAIRS)
    assert coteaching_share(pairs, min_spread=0.0) == pytest.approx(
        float(LF.wrong_label_share(pairs))
    )


def test_spread_noise_chooses_coteaching_at_the_estimated_share_and_keeps_ce():
    model = model_with()
    strategy, symmetric = model.strategy, expected_transition_matrix(10, "symmetric", 0.4)
    report = strategy.decide(*anchored_with_labels(symmetric))
    share = 1 - float(symmetric.diagonal().mean())
    assert int(strategy.choice) == COTEACHING
    assert float(strategy.chosen_forget_rate) == pytest.approx(share)
    assert f"about {share:.0%} of the labels are wrong" in report.message
    assert f"Co-teaching leaving out {share:.0%} of each batch from here" in report.message
    assert report.metrics["strategy/coteaching"] == 1.0
    assert report.metrics["strategy/wrong_label_spread"] == pytest.approx(1.0)
    # the loss trains as cross-entropy from here: T is the identity, never estimated
    assert bool(model.loss.transition_ready)
    assert torch.equal(model.loss.transition_matrix, torch.eye(10))
    logits, labels = torch.randn(6, 10), torch.arange(6)
    torch.testing.assert_close(
        model.loss.per_example({"logits": logits}, labels), LF.cross_entropy(logits, labels)
    )
    # a model unsure of itself over-states the noise: at most what it disagrees with is left out
    unsure = model_with()
    report = unsure.strategy.choose(symmetric, disagreement=0.2)
    assert float(unsure.strategy.chosen_forget_rate) == pytest.approx(0.2)
    assert "(at most the 20% of its training labels the model disagrees with)" in report.message
    told = model_with(ForwardOrCoTeaching(forget_rate=0.3, percentile=100.0))
    told.strategy.choose(symmetric, disagreement=0.2)
    assert float(told.strategy.chosen_forget_rate) == pytest.approx(0.3)  # the user's rate


def test_concentrated_noise_chooses_forward_and_leaves_the_loss_to_its_warm_up():
    model = model_with(ForwardOrCoTeaching(forget_rate=0.3, percentile=100.0))
    report = model.strategy.decide(
        *anchored_with_labels(expected_transition_matrix(10, "asymmetric", 0.4, PAIRS))
    )
    assert int(model.strategy.choice) == FORWARD
    assert "concentrated on a few classes: forward correction (the peer set aside)" in (
        report.message
    )
    assert report.metrics["strategy/coteaching"] == 0.0
    assert not bool(model.loss.transition_ready)  # Forward estimates T after its own warm-up
    given = model_with(ForwardOrCoTeaching(forget_rate=0.3, percentile=100.0))
    given.strategy.decide(*anchored_with_labels(expected_transition_matrix(10, "symmetric", 0.4)))
    assert float(given.strategy.chosen_forget_rate) == pytest.approx(0.3)  # the user's rate


def _step(model: NoisyLabelClassifier, choice: int, epoch: int = 0):
    """The strategy's loss on a batch with ``choice`` in force, and the per-example losses."""
    strategy = model.strategy
    strategy.choice.fill_(choice)
    strategy.chosen_forget_rate.fill_(0.5)
    strategy._read_choice()
    sample = NoisySample(torch.randn(8, *SHAPE), torch.arange(8) % 10, None, torch.arange(8))
    torch.manual_seed(0)
    value, _ = strategy.training_step(model, sample, 0)
    first = model.loss.per_example(model.network(sample.input), sample.target)
    second = model.loss.per_example(strategy.peer(sample.input), sample.target)
    return value, first, second


def test_each_phase_trains_what_it_says():
    model = model_with()
    model.eval()  # no batch-norm updates between the step and the check
    value, first, second = _step(model, UNDECIDED)
    torch.testing.assert_close(value, first.mean() + second.mean())  # both, every example
    value.backward()
    assert all(p.grad is not None for p in model.strategy.peer.parameters())
    model.zero_grad(set_to_none=True)
    value, first, second = _step(model, FORWARD)
    torch.testing.assert_close(value, first.mean())  # the model's network alone
    value.backward()
    assert all(p.grad is None for p in model.strategy.peer.parameters())
    value, first, second = _step(model, COTEACHING)
    at_epoch_0 = forget_rate_at(0, 0.5, model.strategy.gradual_epochs)  # 0: the schedule's start
    expected = sum(coteaching_losses(first, second, at_epoch_0))
    torch.testing.assert_close(value, expected)


def test_the_decision_is_kept_in_the_checkpoint(tmp_path):
    model = model_with(ForwardOrCoTeaching(decision_epochs=1), warmup_epochs=2)
    run = quick_trainer(tmp_path, max_epochs=2)
    run.fit(model, datamodule=DigitsDataModule())
    assert int(model.strategy.choice) in (FORWARD, COTEACHING)  # decided at epoch 1's start
    path = tmp_path / "decided.ckpt"
    run.save_checkpoint(path)
    loaded = NoisyLabelClassifier.load_from_checkpoint(path)
    assert int(loaded.strategy.choice) == int(model.strategy.choice)
    assert float(loaded.strategy.chosen_forget_rate) == float(model.strategy.chosen_forget_rate)
    assert loaded.strategy.init_args() == model.strategy.init_args()


def test_a_given_t_or_a_warm_up_that_ends_first_decides_and_a_short_run_says_so(tmp_path):
    late = model_with(ForwardOrCoTeaching(decision_epochs=3), warmup_epochs=2)
    assert "for the first 2 epochs (twice the compute), the loss's warm-up, which ends first" in (
        late.strategy.plan(10).message
    )
    quick_trainer(tmp_path, max_epochs=3).fit(late, datamodule=DigitsDataModule())
    assert int(late.strategy.choice) != UNDECIDED  # decided at epoch 2 from the loss's T
    if int(late.strategy.choice) == FORWARD:
        assert not torch.equal(late.loss.transition_matrix, torch.eye(10))  # the loss's own
    given = model_with(transition_matrix="data")  # digits' MNIST map: each class to one other
    assert "T is given to the loss, and decides as the first epoch starts" in (
        given.strategy.plan(1).message
    )
    quick_trainer(tmp_path, max_epochs=1).fit(given, datamodule=DigitsDataModule())
    assert int(given.strategy.choice) == FORWARD  # decided at the first epoch from the data's T
    assert torch.equal(given.loss.transition_matrix, DigitsDataModule().true_transition_matrix())
    short = model_with()
    assert (
        "the run (1 epoch) ends before the decision (1 epoch) and the loss's warm-up (1 epoch)"
        in (short.strategy.plan(1).message)
    )
    assert "so nothing is decided" in short.strategy.plan(1).message
    quick_trainer(tmp_path, max_epochs=1).fit(short, datamodule=DigitsDataModule())
    assert int(short.strategy.choice) == UNDECIDED


def test_bad_settings_and_a_loss_without_t_are_refused():
    with pytest.raises(ValueError, match="decision_epochs must be >= 1"):
        ForwardOrCoTeaching(decision_epochs=0)
    with pytest.raises(ValueError, match="decision_fraction must lie in"):
        ForwardOrCoTeaching(decision_fraction=1.0)
    with pytest.raises(ValueError, match="percentile must lie in"):
        ForwardOrCoTeaching(percentile=0.0)
    assert ForwardOrCoTeaching().percentile == 99.0  # not the loss's 97: see its docstring
    with pytest.raises(ValueError, match="min_spread must lie in"):
        ForwardOrCoTeaching(min_spread=1.5)
    with pytest.raises(ValueError, match="forget_rate must lie in"):
        ForwardOrCoTeaching(forget_rate=1.0)
    with pytest.raises(ValueError, match="the model's loss must be a forward-corrected one"):
        NoisyLabelClassifier(loss=CrossEntropy(), strategy=ForwardOrCoTeaching(), input_shape=SHAPE)


@pytest.mark.parametrize(
    ("noise", "chosen"),
    [("symmetric", "spread over the classes: Co-teaching leaving out"),
     ("asymmetric", "concentrated on a few classes: forward correction")],
)  # fmt: skip
def test_ln_fit_chooses_by_the_noise_and_says_so(noise, chosen, tmp_path):
    command = [
        sys.executable, "-m", "ln_lightning.cli", "fit", "--config", "cli.yaml",
        "--config", "zoo/configs/strategies/forward_or_coteaching.yaml",
        f"--data.noise_type={noise}", "--trainer.max_epochs=40",
        "--model.strategy.init_args.decision_epochs=12", "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "ForwardOrCoTeaching: the model and a peer network train" in log
    assert chosen in log, log[-3000:]
    estimated = "ForwardCorrection: transition matrix (estimated after" in log
    assert estimated is (noise == "asymmetric")  # Co-teaching keeps the CE, no T
    (metrics,) = tmp_path.glob("*/version_0/metrics.csv")
    assert "strategy/coteaching" in metrics.read_text().splitlines()[0]
