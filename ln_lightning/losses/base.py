"""The contract every loss of the library follows (torch only: no Lightning here)."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

REDUCTIONS = ("mean", "sum", "none")

__all__ = [
    "REDUCTIONS",
    "TEACHER_PREFIX",
    "LossReport",
    "NoisyLabelLoss",
    "TrainingContext",
    "as_config",
    "constructor_arguments",
    "merge_reports",
    "teacher_key",
]

#: Prefix of the teacher's head outputs in the mapping a loss receives during training.
TEACHER_PREFIX = "teacher."


def teacher_key(head: str) -> str:
    """The key of the EMA teacher's output of ``head`` in a training step's outputs
    (``teacher.mean``); see :attr:`NoisyLabelLoss.teacher_decay`."""
    return TEACHER_PREFIX + head


@dataclass(frozen=True)
class TrainingContext:
    """What a loss's training hooks may ask of the run, as plain values and callables.

    The model builds it (so losses never import Lightning) and passes it to
    :meth:`NoisyLabelLoss.on_fit_start`, :meth:`NoisyLabelLoss.on_train_epoch_start` and
    :meth:`NoisyLabelLoss.on_train_batch_start`.

    Attributes:
        epoch: The current epoch (0-based).
        training_probabilities: The model's class probabilities on the whole training split,
            ``(N, K)``, from one inference pass (evaluation transform, fixed order) that the
            analysis callbacks share.
        true_transition_matrix: The data's true ``K x K`` noise matrix
            ``T[i, j] = P(noisy j | true i)`` where the data module knows it, else ``None``.
        elapsed_epochs: Training time in epochs, ``epoch + batch / batches per epoch`` (equal to
            ``epoch`` at the start of an epoch), for schedules finer than an epoch.
        max_epochs: The run's epoch budget (the trainer's ``max_epochs``), for phases set as a
            share of the run; ``None`` when the run has none (``max_epochs=-1``, or no trainer).
        noisy_validation_accuracy: The epoch's accuracy on the noisy validation split (the
            model-selection metric, summed over DDP ranks), given to
            :meth:`NoisyLabelLoss.on_validation_epoch_end`; ``None`` in the other hooks.

    Example:
        >>> import torch
        >>> from ln_lightning import ShiftedGaussianNoise
        >>> context = TrainingContext(
        ...     epoch=100, training_probabilities=lambda: None, true_transition_matrix=lambda: None,
        ...     elapsed_epochs=100.0,
        ... )
        >>> loss = ShiftedGaussianNoise()
        >>> loss.on_train_batch_start(context)  # SGN reads how far training is
        >>> round(loss.params.shift_weight(context.elapsed_epochs), 2)
        0.39
    """

    epoch: int
    training_probabilities: Callable[[], Tensor]
    true_transition_matrix: Callable[[], Tensor | None]
    elapsed_epochs: float = 0.0
    max_epochs: int | None = None
    noisy_validation_accuracy: float | None = None


@dataclass
class LossReport:
    """What a loss's hook has to tell the user; the model prints, logs and saves it.

    Attributes:
        message: Printed once (rank zero).
        metrics: Logged to every logger at the current step.
        tables: Name -> 2-D tensor, written as ``<run dir>/<name>.csv``.

    Example:
        >>> import torch
        >>> report = LossReport("T estimated", metrics={"forward/t_diagonal": 0.8},
        ...                     tables={"transition_matrix": torch.eye(2)})
        >>> report.message, sorted(report.metrics), list(report.tables)
        ('T estimated', ['forward/t_diagonal'], ['transition_matrix'])
    """

    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    tables: dict[str, Tensor] = field(default_factory=dict)


def merge_reports(*reports: LossReport | None) -> LossReport | None:
    """One :class:`LossReport` of several (messages on their own lines); ``None`` if none.

    Example:
        >>> merge_reports(None, LossReport("a", {"x": 1.0}), LossReport("b")).message.split()
        ['a', 'b']
        >>> merge_reports(None, None) is None
        True
    """
    given = [report for report in reports if report is not None]
    if not given:
        return None
    if len(given) == 1:
        return given[0]
    return LossReport(
        message="\n".join(report.message for report in given if report.message),
        metrics={key: value for report in given for key, value in report.metrics.items()},
        tables={key: value for report in given for key, value in report.tables.items()},
    )


def constructor_arguments(obj: Any) -> dict[str, Any]:
    """The attributes of ``obj`` named like the arguments of its class's ``__init__``: what
    rebuilds it, ``type(obj)(**constructor_arguments(obj))``, when it stores them by name."""
    parameters = inspect.signature(type(obj).__init__).parameters.values()
    skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return {
        p.name: getattr(obj, p.name)
        for p in parameters
        if p.name != "self" and p.kind not in skip and hasattr(obj, p.name)
    }


def as_config(obj: Any, init_args: dict[str, Any]) -> dict[str, Any]:
    """``{"class_path": ..., "init_args": ...}`` of an object, as in an ``ln-fit`` config."""
    cls = type(obj)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}


class NoisyLabelLoss(nn.Module, ABC):
    """Base class of the losses: declares its heads, scores them, and turns them into probabilities.

    A loss owns everything that is specific to a method, so :class:`NoisyLabelClassifier` and the
    analyses never need to know which method it is:

    * :meth:`head_shapes` says which linear heads the model must put on the backbone features and
      how wide each is (e.g. ``{"mean": K, "scale": K}`` for LN, ``{"logits": K}`` for CE).
    * :meth:`per_example` maps the head outputs and labels to one loss per example.
    * :meth:`predict_proba` maps the head outputs to class probabilities over the ``K`` classes.
    * :attr:`prediction_heads` names the heads :meth:`predict_proba` reads; the others can be
      dropped after training.

    With defaults, for losses that have more to say:

    * :meth:`uncertainty`: a per-example uncertainty from the auxiliary heads (``None``).
    * :meth:`residuals`: how far each label is from the prediction, plain and under the learned
      covariance (LN's Fig. 6; ``None``).
    * :meth:`setup`, :meth:`on_fit_start`, :meth:`on_train_epoch_start`,
      :meth:`on_validation_epoch_end`: state that depends on ``K``, or a change of phase during
      training (Forward correction's warm-up), with what the run offers in a
      :class:`TrainingContext`; they may return a :class:`LossReport` for the
      model to print, log and save (a loss does no I/O).
    * :meth:`on_train_batch_start`: a schedule by training time, before every training step
      (LN's annealed ``min_scale``).
    * :attr:`teacher_decay`: a loss that learns from an exponential moving average (EMA) of the
      network's weights (SGN's label correction) sets the decay; the model then keeps the
      averaged copy (``torch.optim.swa_utils.AveragedModel``, updated after every optimizer
      step, saved in checkpoints, left out of exports), and in training steps adds the copy's
      head outputs to ``outputs`` as ``teacher.<head>`` (:func:`teacher_key`; in training
      mode, no gradient). ``None`` (default): no teacher.
    * :meth:`init_args` and :meth:`config`: the loss as data (checkpoints record it, so a
      checkpoint of another loss is refused with a clear message).

    Args:
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``, applied by :meth:`forward`.

    Example:
        >>> import torch
        >>> from ln_lightning import CrossEntropy, NoisyLabelLoss
        >>> loss = CrossEntropy()  # every loss of the library keeps this contract
        >>> isinstance(loss, NoisyLabelLoss), loss.head_shapes(num_classes=3), loss.prediction_heads
        (True, {'logits': 3}, ('logits',))
        >>> outputs = {"logits": torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]])}
        >>> loss.predict_proba(outputs).argmax(1).tolist(), loss.config()["class_path"]
        ([0, 2], 'ln_lightning.losses.softmax.CrossEntropy')
    """

    prediction_heads: tuple[str, ...] = ()
    teacher_decay: float | None = None

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}.")
        self.reduction = reduction

    # ------------------------------------------------------------------ required
    @abstractmethod
    def head_shapes(self, num_classes: int) -> dict[str, int]:
        """Output width of each head for ``num_classes`` real classes (0 means no head)."""

    @abstractmethod
    def per_example(self, outputs: Mapping[str, Tensor], labels: Tensor) -> Tensor:
        """Float32 loss of shape ``(B,)`` from the head outputs and integer labels."""

    @abstractmethod
    def predict_proba(self, outputs: Mapping[str, Tensor]) -> Tensor:
        """Class probabilities of shape ``(B, K)`` from the head outputs."""

    # ------------------------------------------------------------------ optional, with defaults
    def uncertainty(self, outputs: Mapping[str, Tensor]) -> Tensor | None:
        """A per-example uncertainty of shape ``(B,)`` from the head outputs; ``None`` if none."""
        return None

    def residuals(
        self, outputs: Mapping[str, Tensor], labels: Tensor
    ) -> tuple[Tensor, Tensor] | None:
        """``(r^T r, r^T Sigma^{-1} r)`` per example for a loss with a regression residual
        (LN); ``None`` for the others."""
        return None

    def setup(self, num_classes: int) -> None:
        """Called once by the model, before :meth:`head_shapes`, with the number of classes.

        Losses with state that depends on ``K`` (e.g. a transition matrix buffer) create it here.
        """

    def on_fit_start(self, context: TrainingContext) -> LossReport | None:
        """Called when fitting starts."""
        return None

    def on_train_epoch_start(self, context: TrainingContext) -> LossReport | None:
        """Called at the start of every training epoch (e.g. to end a warm-up phase)."""
        return None

    def on_train_batch_start(self, context: TrainingContext) -> None:
        """Called before every training step, with ``context.elapsed_epochs`` (e.g. to follow a
        schedule). Keep it cheap: it runs once per step."""

    def on_validation_epoch_end(self, context: TrainingContext) -> LossReport | None:
        """Called after every validation epoch of a fit (not the sanity check) with the epoch's
        ``context.noisy_validation_accuracy`` (e.g. to end a warm-up once it stops improving).
        State it changes must live in buffers: the checkpoint of the epoch is written after it."""
        return None

    def selectable(self, context: TrainingContext) -> bool:
        """Whether the weights of the epoch just trained (``context.epoch``) are this loss's own,
        so model selection may pick them: ``False`` during a warm-up that trains with another
        loss (``ForwardCorrection``'s cross-entropy epochs). The model logs its noisy validation
        accuracy as NaN for such epochs under ``val/acc_noisy_after_warmup``."""
        return True

    def init_args(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this loss: ``type(loss)(**loss.init_args())``.

        Read from the attributes named like the ``__init__`` arguments; a loss that stores an
        argument under another name overrides this.
        """
        return constructor_arguments(self)

    def config(self) -> dict[str, Any]:
        """``{"class_path": ..., "init_args": ...}``, as in an ``ln-fit`` config."""
        return as_config(self, self.init_args())

    # ------------------------------------------------------------------ the reduced loss
    def forward(self, outputs: Mapping[str, Tensor], labels: Tensor) -> Tensor:
        """Reduced loss (see ``reduction``)."""
        loss = self.per_example(outputs, labels)
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss

    @staticmethod
    def _require(outputs: Mapping[str, Tensor], name: str) -> Tensor:
        try:
            return outputs[name]
        except KeyError:
            raise KeyError(
                f"the loss needs the head output {name!r} but the model produced "
                f"{sorted(outputs)}; build the model's heads from this loss's head_shapes()."
            ) from None
