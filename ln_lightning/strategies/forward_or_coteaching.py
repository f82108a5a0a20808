"""Forward correction or Co-teaching, chosen by the run: a peer network trains beside the model
for the first epochs, then the transition matrix estimated from the model says how the wrong
labels spread. Concentrated (a class mistaken for another): forward correction goes on alone.
Spread over the classes (symmetric-like): Co-teaching, leaving out the estimated share."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ln_lightning.data.dataset import NoisySample
from ln_lightning.label_issues.cautions import chance_level, near_chance
from ln_lightning.lightning_internals import attached_trainer
from ln_lightning.losses import functional as LF
from ln_lightning.losses.base import LossReport
from ln_lightning.losses.transition import (
    EVEN_NOISE_HINT,
    EVEN_SPREAD,
    TransitionPhase,
    epochs_of_run,
    epochs_phrase,
)
from ln_lightning.model.method import epoch_budget, report
from ln_lightning.registry import register_strategy
from ln_lightning.strategies.coteaching import CoTeaching, coteaching_losses, forget_rate_at

__all__ = ["ForwardOrCoTeaching", "coteaching_share"]

#: The values of :attr:`ForwardOrCoTeaching.choice`.
UNDECIDED, FORWARD, COTEACHING = -1, 0, 1
#: The decision's outlier filter. On the own-images benchmark after 2 CE epochs (the decision of
#: a 20-epoch run; 3 seeds, ``benchmarks/transition_estimate.py --epochs 2``): 35.8% of the
#: labels wrong, evenly, read as 41.9% at percentile 97, 35.4% at 99, 22.8% at 100; 15.8%,
#: in confused pairs, as 24.4%, 19.4%, 9.8%.
DECISION_PERCENTILE = 99.0
#: The most Co-teaching leaves out of a batch when the share comes from an estimate.
MAX_FORGET_RATE = 0.9


def coteaching_share(
    transition_matrix: Tensor, min_spread: float = EVEN_SPREAD, min_share: float = EVEN_NOISE_HINT
) -> float | None:
    """The share of each batch Co-teaching should leave out for labels with this ``T``, or
    ``None`` where forward correction is the better choice: the wrong labels'
    ``wrong_label_share`` when they spread over the classes (``wrong_label_spread`` at least
    ``min_spread``) and are at least ``min_share`` of all; ``None`` for concentrated noise
    (a class mistaken for one other, which ``T`` models and small-loss selection does not) and
    for a few wrong labels. With 2 classes the spread is undefined: ``None``.

    Example:
        >>> import torch
        >>> symmetric = torch.full((4, 4), 0.1) + 0.6 * torch.eye(4)  # 30% wrong, evenly
        >>> round(coteaching_share(symmetric), 2)
        0.3
        >>> pairs = torch.tensor([[0.7, 0.3, 0, 0], [0.3, 0.7, 0, 0],
        ...                       [0, 0, 0.7, 0.3], [0, 0, 0.3, 0.7]])
        >>> coteaching_share(pairs) is None  # each class to one other: forward correction
        True
    """
    if transition_matrix.shape[0] < 3:
        return None
    share = float(LF.wrong_label_share(transition_matrix))
    spread = float(LF.wrong_label_spread(transition_matrix))
    return share if spread >= min_spread and share >= min_share else None


@register_strategy("forward_or_coteaching", example={"decision_epochs": 1, "gradual_epochs": 2})
class ForwardOrCoTeaching(CoTeaching):
    """Forward correction or Co-teaching, whichever the labels' noise calls for, in one run.

    The model's loss is a forward-corrected one (:class:`~ln_lightning.ForwardCorrection`,
    the own-data configs' loss). Measured on the own-images benchmark (docs/results.md),
    forward correction is the better method when wrong labels are concentrated (4 points
    above Co-teaching under a map of confusable pairs) and Co-teaching leaving out the share of
    wrong labels when they spread over every class (1.6 above forward correction under
    symmetric noise). This strategy runs both until it can tell which noise it has:

    1. **Before the decision** (``decision_epochs``, or ``decision_fraction`` of the run): the
       model's network and a peer (another initialisation of the same architecture) train side
       by side with the loss's warm-up loss (cross-entropy) on every example: twice the
       compute.
    2. **The decision**, at the start of the decision epoch: ``T`` estimated from the model's
       predictions on the training split (the loss's estimator, with ``percentile``), read by
       :func:`coteaching_share`. Logged as ``strategy/wrong_label_share``,
       ``strategy/wrong_label_spread`` and ``strategy/coteaching`` (1 or 0; -1 while it
       waits). While the model agrees with its training labels hardly more than chance
       (:meth:`too_weak`: too little data or too few epochs yet), the decision waits an epoch,
       at the latest until the loss's warm-up ends; a model still that weak then gets forward
       correction, which keeps every example.
    3. **Concentrated noise:** the peer is set aside (no more compute) and the loss goes on as
       it would alone: its warm-up to its end, then ``T`` estimated again and the corrected
       loss.
       **Spread noise:** Co-teaching (:class:`CoTeaching`) for the rest of the run, leaving out
       the estimated share (or ``forget_rate``) on the paper's schedule (growing over the
       first ``gradual_epochs`` of the run, counted from its start); the loss stays its
       warm-up loss (:meth:`~ln_lightning.losses.transition.TransitionPhase.keep_warmup_loss`).

    With ``T`` given to the loss (a matrix, or ``"data"``), the decision is made from it when
    the first epoch starts. The decision is kept in the checkpoint (:attr:`choice`,
    :attr:`chosen_forget_rate`), so a resumed run goes on with it. Predictions, metrics and
    label issues are the model's own network's, as in :class:`CoTeaching`.

    Args:
        decision_epochs: Epochs before the decision, >= 1; ``None``: ``decision_fraction`` of
            the run's ``max_epochs`` (at least 1). Where the loss's warm-up ends first (a short
            run), the decision is made then, from the ``T`` the loss estimates.
        decision_fraction: The share of the run before the decision when ``decision_epochs``
            is ``None``, in (0, 1).
        forget_rate: Co-teaching's share left out, in [0, 1); ``None``: the share of wrong
            labels the decision's ``T`` estimates.
        gradual_epochs: As :class:`CoTeaching`'s.
        min_spread: :func:`coteaching_share`'s, in [0, 1].
        min_share: :func:`coteaching_share`'s, in [0, 1).
        percentile: The outlier filter of the decision's estimate of ``T``
            (:func:`~ln_lightning.losses.functional.estimate_transition_matrix`), in (0, 100].
            99, not the loss's 97: after 2-3 epochs the model is not yet confident, and its
            97th-percentile anchors over-estimate the share of wrong labels (docs/results.md).

    Example:
        >>> from ln_lightning import ForwardCorrection, NoisyLabelClassifier
        >>> model = NoisyLabelClassifier(
        ...     loss=ForwardCorrection(), strategy=ForwardOrCoTeaching(), input_shape=(1, 8, 8)
        ... )
        >>> model.strategy.decision_length(20), int(model.strategy.choice)  # -1: undecided
        (2, -1)
    """

    choice: Tensor
    chosen_forget_rate: Tensor

    def __init__(
        self,
        decision_epochs: int | None = None,
        decision_fraction: float = 0.1,
        forget_rate: float | None = None,
        gradual_epochs: int = 5,
        min_spread: float = EVEN_SPREAD,
        min_share: float = EVEN_NOISE_HINT,
        percentile: float = DECISION_PERCENTILE,
    ) -> None:
        super().__init__(0.0 if forget_rate is None else forget_rate, gradual_epochs)
        if decision_epochs is not None and decision_epochs < 1:
            raise ValueError(
                "decision_epochs must be >= 1, or None for decision_fraction of max_epochs; got "
                f"{decision_epochs!r}."
            )
        if not 0.0 < decision_fraction < 1.0:
            raise ValueError(f"decision_fraction must lie in (0, 1); got {decision_fraction!r}.")
        if not 0.0 <= min_spread <= 1.0:
            raise ValueError(f"min_spread must lie in [0, 1]; got {min_spread!r}.")
        if not 0.0 <= min_share < 1.0:
            raise ValueError(f"min_share must lie in [0, 1); got {min_share!r}.")
        if not 0.0 < percentile <= 100.0:
            raise ValueError(f"percentile must lie in (0, 100]; got {percentile!r}.")
        self.percentile = float(percentile)
        self.decision_epochs = None if decision_epochs is None else int(decision_epochs)
        self.decision_fraction = float(decision_fraction)
        self.given_forget_rate = forget_rate
        self.min_spread, self.min_share = float(min_spread), float(min_share)
        #: :data:`UNDECIDED`, :data:`FORWARD` or :data:`COTEACHING`.
        self.register_buffer("choice", torch.tensor(UNDECIDED))
        #: Co-teaching's share left out once chosen (its schedule's end).
        self.register_buffer("chosen_forget_rate", torch.tensor(0.0))
        # The buffers read once an epoch, not in every step (a device sync on a GPU).
        self._step_choice, self._step_forget_rate = UNDECIDED, 0.0

    def init_args(self) -> dict[str, Any]:
        return {
            "decision_epochs": self.decision_epochs,
            "decision_fraction": self.decision_fraction,
            "forget_rate": self.given_forget_rate,
            "gradual_epochs": self.gradual_epochs,
            "min_spread": self.min_spread,
            "min_share": self.min_share,
            "percentile": self.percentile,
        }

    def build(self, model: Any) -> None:
        if not isinstance(model.loss, TransitionPhase):
            raise ValueError(
                "ForwardOrCoTeaching chooses between forward correction and Co-teaching, so the "
                "model's loss must be a forward-corrected one (ln_lightning.ForwardCorrection, "
                f"as in zoo/configs/losses/forward.yaml); got {type(model.loss).__name__}. To "
                "train another loss alone drop the strategy, --model.strategy null (the zoo's "
                "loss configs do: --config zoo/configs/losses/<name>.yaml after the own-data "
                "config); for Co-teaching with it, --model.strategy ln_lightning.CoTeaching."
            )
        super().build(model)

    def decision_length(self, max_epochs: int | None) -> int:
        """Epochs before the decision in a run of ``max_epochs``.

        Raises:
            ValueError: No ``decision_epochs`` and no epoch budget to take a share of.
        """
        return epochs_of_run(
            self.decision_epochs,
            self.decision_fraction,
            max_epochs,
            "ForwardOrCoTeaching: decision_fraction needs the run's max_epochs, and this run has "
            "no epoch limit; give --model.strategy.init_args.decision_epochs N.",
        )

    # ------------------------------------------------------------------ the loss's hooks
    def on_fit_start(self, model: Any) -> None:
        self._read_choice()
        super().on_fit_start(model)

    def _read_choice(self) -> None:
        self._step_choice = int(self.choice)
        self._step_forget_rate = float(self.chosen_forget_rate)

    def plan(self, max_epochs: int | None) -> LossReport:
        """What the run will do before and after the decision.

        Example:
            >>> ForwardOrCoTeaching().plan(30).message[:66]
            'ForwardOrCoTeaching: the model and a peer network train with cross'
        """
        if int(self.choice) != UNDECIDED:
            return LossReport(message=f"ForwardOrCoTeaching: resumed as {self._chosen()}.")
        leave_out = (
            "the share of wrong labels T estimates"
            if self.given_forget_rate is None
            else f"{self.given_forget_rate:.0%}"
        )
        decision = self.decision_length(max_epochs)
        when = f"for the first {epochs_phrase(decision)} (twice the compute); then T is "
        when += "estimated from the model"
        loss = self.loss if self._loss_method is not None else None
        if loss is not None and loss.source is not None:
            when = "for no epoch: T is given to the loss, and decides as the first epoch starts"
        elif loss is not None and decision >= loss.warmup_length(max_epochs):
            warmup = loss.warmup_length(max_epochs)
            if max_epochs is not None and warmup >= max_epochs:
                return LossReport(
                    message=(
                        f"ForwardOrCoTeaching: the run ({epochs_phrase(max_epochs)}) ends "
                        f"before the decision ({epochs_phrase(decision)}) and the loss's warm-up "
                        f"({epochs_phrase(warmup)}), so nothing is decided: the model trains "
                        "with cross-entropy beside a peer network for the whole run (twice the "
                        "compute). Give the run more epochs."
                    )
                )
            when = (
                f"for the first {epochs_phrase(warmup)} (twice the compute), the loss's warm-up, "
                "which ends first; then the T it estimates decides"
            )
        return LossReport(
            message=(
                f"ForwardOrCoTeaching: the model and a peer network train with cross-entropy "
                f"{when}. Wrong labels concentrated on a few classes: the peer is set aside "
                "and forward correction goes on. Spread over the classes (spread >= "
                f"{self.min_spread:g}, >= {self.min_share:.0%} of the labels): Co-teaching "
                f"leaving out {leave_out}."
            )
        )

    def _chosen(self) -> str:
        if int(self.choice) == COTEACHING:
            return f"Co-teaching leaving out {float(self.chosen_forget_rate):.0%} of each batch"
        return "forward correction (the peer set aside)"

    def on_train_epoch_start(self, model: Any) -> None:
        if int(self.choice) == UNDECIDED:
            max_epochs = epoch_budget(attached_trainer(model))
            if model.current_epoch >= self.decision_length(max_epochs):
                predictions = model.split_predictions()
                report(model, self.decide(predictions.probs, predictions.given))
        super().on_train_epoch_start(model)  # the loss's hooks: Forward may estimate T now
        if int(self.choice) == UNDECIDED and bool(self.loss.transition_ready):
            # a given T, or the loss's warm-up ended first: decide from the loss's T
            if self.loss.source is not None:
                report(model, self.choose(self.loss.transition_matrix))
            else:
                predictions = model.split_predictions()  # the pass the loss's estimate made
                probabilities, given = predictions.probs, predictions.given
                weak = self.too_weak(probabilities, given)
                disagreement = self.disagreement(probabilities, given)
                report(model, self.choose(self.loss.transition_matrix, weak, disagreement))
        self._read_choice()

    @staticmethod
    def disagreement(probabilities: Tensor, given: Tensor) -> float:
        """The share of training labels the model's most probable class differs from. Before a
        model memorises, it includes every wrong label it has learnt to see through, so it caps
        the share Co-teaching leaves out: a model still unsure of itself spreads its
        probabilities, and its ``T`` over-states the noise."""
        predicted = probabilities.argmax(-1)
        return float((predicted != given.to(predicted.device)).float().mean())

    @classmethod
    def too_weak(cls, probabilities: Tensor, given: Tensor) -> str | None:
        """Why the model cannot be read yet, or ``None``: it agrees with its training labels
        not much more than chance does (:func:`~ln_lightning.label_issues.cautions.near_chance`,
        the rule of the label issues' "Do not trust these flags yet"). An untrained model's
        ``T`` has near-uniform rows, which read as heavy, evenly spread noise."""
        agreement = 1.0 - cls.disagreement(probabilities, given)
        chance = chance_level(given, probabilities.shape[-1])
        if not near_chance(agreement, chance):
            return None
        return (
            f"the model agrees with {agreement:.0%} of its training labels (chance {chance:.0%}):"
            " too close to chance to read the noise from"
        )

    def decide(self, probabilities: Tensor, given: Tensor) -> LossReport:
        """Forward correction or Co-teaching, from the model's class probabilities on the
        training split and the labels given there (``T`` estimated with :attr:`percentile`):
        :meth:`choose`; while :meth:`too_weak`, the decision waits an epoch (at the latest
        for the loss's warm-up to end)."""
        weak = self.too_weak(probabilities, given)
        if weak is not None:
            return LossReport(
                message=f"ForwardOrCoTeaching: {weak}; the decision waits an epoch.",
                metrics={"strategy/coteaching": -1.0},
            )
        matrix = LF.estimate_transition_matrix(probabilities, self.percentile)
        return self.choose(matrix, disagreement=self.disagreement(probabilities, given))

    def choose(
        self, matrix: Tensor, weak: str | None = None, disagreement: float = 1.0
    ) -> LossReport:
        """Forward correction or Co-teaching for labels with transition matrix ``matrix``
        (:func:`coteaching_share`); sets :attr:`choice` (and, for Co-teaching, the loss's
        phase: its warm-up loss for the rest of the run). ``weak``: why the model that
        estimated ``matrix`` cannot be read (:meth:`too_weak`): forward correction, the
        choice that keeps every example. ``disagreement``: the cap on the estimated share
        (:meth:`disagreement`)."""
        share = None if weak else coteaching_share(matrix, self.min_spread, self.min_share)
        estimated = float(LF.wrong_label_share(matrix))
        spread = float(LF.wrong_label_spread(matrix)) if matrix.shape[0] >= 3 else 0.0
        capped = ""
        if share is None:
            self.choice.fill_(FORWARD)
            why = "concentrated on a few classes" if spread < self.min_spread else "few"
            why = f"but {weak}" if weak else why
        else:
            self.choice.fill_(COTEACHING)
            rate = share if self.given_forget_rate is None else self.given_forget_rate
            if self.given_forget_rate is None and disagreement < rate:
                rate = disagreement
                capped = (
                    f" (at most the {rate:.0%} of its training labels the model disagrees with)"
                )
            self.chosen_forget_rate.fill_(min(rate, MAX_FORGET_RATE))
            self.loss.keep_warmup_loss()
            why = "spread over the classes"
        return LossReport(
            message=(
                f"ForwardOrCoTeaching: about {estimated:.0%} of the labels are wrong by the T "
                f"estimated now (spread {spread:.2f}), {why}: {self._chosen()}{capped} from "
                "here."
            ),
            metrics={
                "strategy/wrong_label_share": estimated,
                "strategy/wrong_label_spread": spread,
                "strategy/coteaching": float(int(self.choice) == COTEACHING),
            },
        )

    def selectable(self, model: Any) -> bool:
        """Co-teaching's epochs are selectable; before the decision and under forward
        correction, the loss's answer (its warm-up is not)."""
        return int(self.choice) == COTEACHING or super().selectable(model)

    # ------------------------------------------------------------------ the step
    def training_step(
        self, model: Any, sample: NoisySample, batch_idx: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        outputs = model.network.training_outputs(sample.input)
        choice = self._step_choice
        if choice == FORWARD:
            return self.loss(outputs, sample.target) + self._set_aside(model), outputs
        peer = self.peer.training_outputs(sample.input)
        first = self.loss.per_example(outputs, sample.target)
        second = self.loss.per_example(peer, sample.target)
        if choice == UNDECIDED:
            return first.mean() + second.mean(), outputs
        forget = forget_rate_at(model.current_epoch, self._step_forget_rate, self.gradual_epochs)
        one, two = coteaching_losses(first, second, forget)
        return one + two, outputs

    def _set_aside(self, model: Any) -> Tensor | float:
        """0; under DDP a zero that reaches every peer parameter: Lightning's ``ddp`` expects
        a gradient for every parameter in every step (``find_unused_parameters=False``), and
        the peer no longer runs."""
        trainer = attached_trainer(model)
        if trainer is None or trainer.world_size == 1:
            return 0.0
        return 0.0 * sum(p.sum() for p in self.peer.trained_parameters())

    def after_optimizer_step(self, model: Any) -> None:
        if self._step_choice == FORWARD:  # the peer is no longer trained
            super(CoTeaching, self).after_optimizer_step(model)
        else:
            super().after_optimizer_step(model)
