"""The transition matrix's phase of a forward-corrected loss (``TransitionPhase``): given, the
data's, or estimated after a warm-up that ends at a share of the run or once noisy validation
accuracy stops improving; its state in buffers, so a resumed run is in the same phase."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ln_lightning.labels import check_transition_matrix
from ln_lightning.losses import functional as LF
from ln_lightning.losses.base import LossReport, TrainingContext, merge_reports

#: The share of the run trained with CE before ``T`` is estimated, by default: 8 of 20 epochs
#: (the warm-up that measured best in a 20-epoch own-images run; docs/losses.md).
WARMUP_FRACTION = 0.4


class TransitionPhase:
    """The transition matrix ``T`` of a forward-corrected loss: given, the data's, or estimated
    after a cross-entropy-like warm-up, as buffers kept in the checkpoint.

    A mixin placed before a :class:`NoisyLabelLoss` in the bases (``ForwardCorrection``,
    ``ForwardLogisticNormalLoss``): its hooks run the loss's own first and add what ``T``
    reports. The loss trains as itself while ``transition_ready`` is false (the warm-up) and
    corrects with ``transition_matrix`` after. Arguments as :class:`ForwardCorrection`'s.

    With ``warmup_patience``, the best noisy validation accuracy of the warm-up and its epoch
    are buffers too (``warmup_best_accuracy``, ``warmup_best_epoch``), so a resumed run ends
    its warm-up where the uninterrupted one would.

    Example:
        >>> from ln_lightning import CrossEntropy
        >>> class MyForward(TransitionPhase, CrossEntropy):  # T's phase on a loss of yours
        ...     pass
        >>> loss = MyForward(warmup_fraction=0.25)
        >>> loss.setup(3)
        >>> loss.warmup_length(20), bool(loss.transition_ready), loss.init_args()["percentile"]
        (5, False, 97.0)
    """

    transition_matrix: Tensor
    transition_ready: Tensor
    warmup_best_accuracy: Tensor
    warmup_best_epoch: Tensor

    def __init__(
        self,
        transition_matrix: list[list[float]] | str | None = None,
        warmup_epochs: int | None = None,
        warmup_fraction: float = WARMUP_FRACTION,
        percentile: float = 97.0,
        warmup_patience: int | None = None,
        **loss_args: Any,
    ) -> None:
        super().__init__(**loss_args)
        if isinstance(transition_matrix, str) and transition_matrix != "data":
            raise ValueError(
                "transition_matrix must be a K x K list, 'data' or None; "
                f"got {transition_matrix!r}."
            )
        if warmup_epochs is not None and warmup_epochs < 1:
            raise ValueError(
                f"warmup_epochs must be >= 1, or None for warmup_fraction of max_epochs; "
                f"got {warmup_epochs!r}."
            )
        if not 0.0 < warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must lie in (0, 1); got {warmup_fraction!r}.")
        if not 0.0 < percentile <= 100.0:
            raise ValueError(f"percentile must lie in (0, 100]; got {percentile!r}.")
        if warmup_patience is not None and warmup_patience < 1:
            raise ValueError(
                "warmup_patience must be >= 1 (epochs without a better noisy validation "
                f"accuracy before the warm-up ends), or None to keep the whole warm-up; got "
                f"{warmup_patience!r}."
            )
        self.warmup_patience = None if warmup_patience is None else int(warmup_patience)
        self.source = transition_matrix
        self.warmup_epochs = None if warmup_epochs is None else int(warmup_epochs)
        self.warmup_fraction = float(warmup_fraction)
        #: Warm-up epochs of this run before ``T`` is estimated, set when fit starts.
        self.warmup: int | None = self.warmup_epochs
        self.percentile = float(percentile)
        if isinstance(transition_matrix, list):
            self.setup(len(transition_matrix))

    def extra_repr(self) -> str:
        source = "given" if isinstance(self.source, list) else self.source or "estimated"
        warmup = self.warmup_epochs or f"{self.warmup_fraction:g} of max_epochs"
        if self.warmup_patience is not None:
            warmup = f"{warmup} or patience {self.warmup_patience}"
        own = super().extra_repr()
        return f"transition_matrix={source}, warmup={warmup}" + (f", {own}" if own else "")

    def init_args(self) -> dict:
        return {
            **super().init_args(),
            "transition_matrix": self.source,
            "warmup_epochs": self.warmup_epochs,
            "warmup_fraction": self.warmup_fraction,
            "percentile": self.percentile,
            "warmup_patience": self.warmup_patience,
        }

    def setup(self, num_classes: int) -> None:
        super().setup(num_classes)
        if isinstance(self.source, list):
            matrix = torch.as_tensor(self.source, dtype=torch.float32)
            check_transition_matrix(matrix, num_classes)
            ready = True
        else:
            matrix, ready = torch.eye(num_classes), False
        self.register_buffer("transition_matrix", matrix)
        self.register_buffer("transition_ready", torch.tensor(ready))
        if self.warmup_patience is not None:  # only then: older checkpoints have none
            self.register_buffer("warmup_best_accuracy", torch.tensor(-1.0, dtype=torch.float64))
            self.register_buffer("warmup_best_epoch", torch.tensor(-1))

    def _require_setup(self) -> None:
        if not hasattr(self, "transition_ready"):
            raise RuntimeError(f"{type(self).__name__}.setup(num_classes) must run first.")

    def warmup_length(self, max_epochs: int | None) -> int:
        """Warm-up epochs before ``T`` is estimated in a run of ``max_epochs``:
        ``warmup_epochs``, else ``warmup_fraction`` of ``max_epochs`` rounded, at least 1.

        Example:
            >>> from ln_lightning import ForwardCorrection
            >>> ForwardCorrection().warmup_length(20), ForwardCorrection().warmup_length(200)
            (8, 80)
            >>> ForwardCorrection(warmup_epochs=5).warmup_length(20)
            5

        Raises:
            ValueError: No ``warmup_epochs`` and no epoch budget to take a share of.
        """
        return epochs_of_run(
            self.warmup_epochs,
            self.warmup_fraction,
            max_epochs,
            f"{type(self).__name__}: warmup_fraction needs the run's max_epochs, and this run has "
            "no epoch limit (max_steps only?); give the warm-up epochs before T is estimated "
            "with --model.loss.init_args.warmup_epochs N.",
        )

    def on_fit_start(self, context: TrainingContext) -> LossReport | None:
        own = super().on_fit_start(context)
        if self.source is None:  # estimated: plan the warm-up (none left once T is estimated)
            mine = None if bool(self.transition_ready) else self._plan_warmup(context.max_epochs)
            return merge_reports(own, mine)
        if self.source != "data":  # a given matrix
            return own
        matrix = context.true_transition_matrix()
        if matrix is None:
            raise ValueError(
                "transition_matrix='data' needs a data module that knows its true noise matrix "
                "(true_transition_matrix()); this run's has none. Give the matrix, or None to "
                "estimate it."
            )
        return merge_reports(
            own, self._set(torch.as_tensor(matrix, dtype=torch.float32), "the data's true T")
        )

    def _plan_warmup(self, max_epochs: int | None) -> LossReport:
        name, warmup = type(self).__name__, self.warmup_name
        self.warmup = self.warmup_length(max_epochs)
        if max_epochs is not None and self.warmup >= max_epochs:
            outcome = (
                f"so T is never estimated and the whole run is {warmup}"
                if self.warmup_patience is None
                else "so T is estimated only if the noisy validation accuracy stops improving "
                f"for {epochs_phrase(self.warmup_patience)} first; else the whole run is {warmup}"
            )
            return LossReport(
                message=(
                    f"{name}: the {self.warmup_short} warm-up ({epochs_phrase(self.warmup)}) is "
                    f"not shorter than the run ({epochs_phrase(max_epochs)}), {outcome}. Lower "
                    "--model.loss.init_args.warmup_epochs, or leave it out (then "
                    f"{self.warmup_fraction:g} of max_epochs)."
                )
            )
        share = "" if self.warmup_epochs is not None else f", {self.warmup_fraction:g} of the run"
        budget = f" of {max_epochs}" if max_epochs is not None else ""
        sooner = (
            ""
            if self.warmup_patience is None
            else f" (sooner once the noisy validation accuracy has not improved for "
            f"{epochs_phrase(self.warmup_patience)})"
        )
        return LossReport(
            message=(
                f"{name}: {warmup} for the first {self.warmup}{budget} epochs"
                f"{share}{sooner}; then T is estimated from the model's predictions on the "
                "training data and the rest of the run trains with the corrected loss."
            )
        )

    #: What the loss trains as during the warm-up, for the messages: in words, and short.
    warmup_name, warmup_short = "cross-entropy", "CE"

    def on_train_epoch_start(self, context: TrainingContext) -> LossReport | None:
        own = super().on_train_epoch_start(context)
        if bool(self.transition_ready):
            return own
        if self.warmup is None:  # hooks called without fit's start (a loop of your own)
            self.warmup = self.warmup_length(context.max_epochs)
        stalled = self._stalled(context.epoch)
        if context.epoch < self.warmup and not stalled:
            return own
        unit = "epoch" if context.epoch == 1 else "epochs"
        how = f"estimated after {context.epoch} {self.warmup_short} {unit}"
        if stalled and context.epoch < self.warmup:
            best = int(self.warmup_best_epoch) + 1
            how += (
                f", {epochs_phrase(context.epoch - best)} after its best noisy validation accuracy "
                f"({100 * float(self.warmup_best_accuracy):.2f}% after epoch {best})"
            )
        probabilities = context.training_probabilities()
        estimate = LF.estimate_transition_matrix(probabilities, self.percentile)
        return merge_reports(own, self._set(estimate, how), self._filter_caution(probabilities))

    def _filter_caution(self, probabilities: Tensor) -> LossReport | None:
        """A warning when a row of ``T`` is read off an example the model predicts as another
        class (the outlier filter set aside every example of the class: many classes, or a
        percentile too low for them; or the model never predicts the class). A filter that
        only takes much of a class it under-predicts (a class the noise flips away from) is
        not one: its row still comes from its own examples."""
        anchors = LF.transition_anchors(probabilities, self.percentile)
        classes = torch.arange(len(anchors), device=anchors.device)
        foreign = probabilities[anchors].argmax(-1) != classes
        if not bool(foreign.any()):
            return None
        share = LF.filtered_share(probabilities, self.percentile)
        worst = int(torch.where(foreign, share, torch.zeros_like(share)).argmax())
        if torch.isinf(share[worst]):
            what = f"the model predicts no example as class index {worst}"
        else:
            amount = "all" if share[worst] >= 1 else f"{float(share[worst]):.0%}"
            what = f"it sets aside {amount} of the examples predicted as class index {worst}"
        return LossReport(
            message=(
                f"Caution: {int(foreign.sum())} of {len(anchors)} rows of T come from examples "
                f"the model predicts as another class: percentile {self.percentile:g} sets "
                f"aside the top {100 - self.percentile:g}% of all {len(probabilities)} "
                f"examples by each class's probability, and {what}. With many classes raise it "
                "(--model.loss.init_args.percentile 100, no filter: the reference's choice for "
                "CIFAR-100); a class the model never predicts needs a longer warm-up or more "
                "of its examples."
            )
        )

    def on_validation_epoch_end(self, context: TrainingContext) -> LossReport | None:
        own = super().on_validation_epoch_end(context)
        accuracy = context.noisy_validation_accuracy
        if self.warmup_patience is None or bool(self.transition_ready) or accuracy is None:
            return own
        if accuracy > float(self.warmup_best_accuracy):
            self.warmup_best_accuracy.fill_(accuracy)
            self.warmup_best_epoch.fill_(context.epoch)
        return own

    def _stalled(self, epoch: int) -> bool:
        """Whether the warm-up's noisy validation accuracy has not improved for
        ``warmup_patience`` epochs before ``epoch`` (an epoch whose validation did not run
        counts as no improvement)."""
        if self.warmup_patience is None or int(self.warmup_best_epoch) < 0:
            return False
        return epoch - 1 - int(self.warmup_best_epoch) >= self.warmup_patience

    def selectable(self, context: TrainingContext) -> bool:
        """``False`` while the run is still in its warm-up (``T`` to be estimated later in
        this run): those epochs are the warm-up loss's, not the corrected loss's.

        Example:
            >>> from ln_lightning import ForwardCorrection
            >>> loss = ForwardCorrection(warmup_epochs=8)
            >>> loss.setup(3)
            >>> context = TrainingContext(epoch=2, training_probabilities=lambda: None,
            ...                           true_transition_matrix=lambda: None, max_epochs=20)
            >>> loss.selectable(context)  # epoch 2 of 8 CE epochs
            False
            >>> loss.selectable(TrainingContext(2, lambda: None, lambda: None, max_epochs=8))
            True
        """
        if not super().selectable(context):
            return False
        if bool(self.transition_ready) or self.source is not None:
            return True
        if context.max_epochs is None:  # a count of warm-up epochs, then T: a warm-up
            return self.warmup_epochs is None
        return self.warmup_length(context.max_epochs) >= context.max_epochs  # T never comes

    def keep_warmup_loss(self) -> None:
        """Train with the warm-up loss for the rest of the run: ``T`` becomes the identity (the
        corrected loss of the identity is the warm-up loss exactly) and is never estimated. For
        a training strategy that handles the wrong labels by other means
        (:class:`~ln_lightning.strategies.ForwardOrCoTeaching`); in the checkpoint, as ``T`` is.

        Example:
            >>> import torch
            >>> from ln_lightning import ForwardCorrection
            >>> loss = ForwardCorrection()
            >>> loss.setup(3)
            >>> loss.keep_warmup_loss()
            >>> logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
            >>> bool(loss.transition_ready), torch.allclose(
            ...     loss({"logits": logits}, labels),
            ...     torch.nn.functional.cross_entropy(logits, labels))
            (True, True)
        """
        self._require_setup()
        self.transition_matrix.copy_(torch.eye(self.transition_matrix.shape[0]))
        self.transition_ready.fill_(True)

    def _set(self, matrix: Tensor, how: str) -> LossReport:
        check_transition_matrix(matrix, self.transition_matrix.shape[0])
        self.transition_matrix.copy_(matrix)
        self.transition_ready.fill_(True)
        rows = "\n".join("  " + " ".join(f"{v:.3f}" for v in row) for row in matrix.tolist())
        summary, metrics = noise_summary(matrix)
        return LossReport(
            message=f"{type(self).__name__}: transition matrix ({how}):\n{rows}\n{summary}",
            metrics={"forward/transition_diag_mean": float(matrix.diagonal().mean()), **metrics},
            tables={"transition_matrix": matrix.detach().cpu()},
        )


#: ``wrong_label_spread`` at or above which the noise reads as spread over the classes. The
#: own-images benchmark's estimates: 0.85-0.92 under symmetric noise, 0.11-0.13 under its
#: class-dependent map (docs/results.md).
EVEN_SPREAD = 0.5
#: The share of wrong labels from which evenly spread noise gets the Co-teaching hint (the
#: benchmark's estimate on its true labels: 0.03).
EVEN_NOISE_HINT = 0.1


def noise_summary(matrix: Tensor) -> tuple[str, dict[str, float]]:
    """What ``T`` says of the labels, in words and as metrics: the share it calls wrong
    (classes weighted alike) and, with 3 classes or more, how evenly it spreads them."""
    share = float(LF.wrong_label_share(matrix))
    metrics = {"forward/wrong_label_share": share}
    words = f"  About {share:.0%} of the labels are wrong by this T (1 - its mean diagonal)"
    if matrix.shape[0] < 3:
        return words + ".", metrics
    spread = float(LF.wrong_label_spread(matrix))
    metrics["forward/wrong_label_spread"] = spread
    even = spread >= EVEN_SPREAD
    shape = "spread over the other classes" if even else "concentrated"
    words = (
        f"{words}, {shape} (spread {spread:.2f}: 1 when they go to every other class alike, "
        f"{1 / (matrix.shape[0] - 1):.2f} when each class's go to one)."
    )
    if even and share >= EVEN_NOISE_HINT:
        words += (
            "\n  Wrong labels spread this evenly are where Co-teaching, leaving out about that "
            "share of each batch, measured above forward correction (docs/results.md, symmetric "
            "noise; about 2x the compute): --config zoo/configs/strategies/coteaching.yaml "
            f"--model.strategy.init_args.forget_rate {share:.2f}"
        )
    return words, metrics


def epochs_of_run(
    count: int | None, fraction: float, max_epochs: int | None, no_budget: str
) -> int:
    """A phase's epochs: ``count`` when given, else ``fraction`` of ``max_epochs`` rounded, at
    least 1 (a warm-up, a strategy's decision).

    Example:
        >>> epochs_of_run(None, 0.4, 20, ""), epochs_of_run(5, 0.4, 20, "")
        (8, 5)
        >>> epochs_of_run(None, 0.1, 3, "")  # at least one
        1

    Raises:
        ValueError: ``no_budget``, when there is no count and no ``max_epochs``.
    """
    if count is not None:
        return count
    if max_epochs is None:
        raise ValueError(no_budget)
    return max(1, round(fraction * max_epochs))


def epochs_phrase(count: int) -> str:
    """``1 epoch``, ``3 epochs``."""
    return f"{count} epoch" if count == 1 else f"{count} epochs"
