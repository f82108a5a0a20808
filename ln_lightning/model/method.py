"""The bridge between the model and what trains it: the training method.

:class:`NoisyLabelClassifier <ln_lightning.NoisyLabelClassifier>` asks its method, through the
members of :class:`TrainingMethod`, how to set up, what the network outputs, what a training
step's loss is, which parameters to optimise (and which optimisers of its own it brings), how
to take a step when it optimises by hand, whether an epoch's weights may be selected (not
during a warm-up), and what to do at the start of a fit, an epoch and a batch, after an
optimiser step, after a validation epoch and when a checkpoint is loaded. It never asks what kind of
method it has.

The simple case is a loss (:class:`LossMethod`): the network's outputs go to the loss, whose
hooks get a :class:`~ln_lightning.losses.base.TrainingContext` and whose
:class:`~ln_lightning.losses.base.LossReport` is printed, logged and saved here (a loss does no
I/O). A training strategy (:class:`ln_lightning.strategies.TrainingStrategy`: networks of its
own, per-sample state, optimisers of its own) implements the same members.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from ln_lightning import outputs
from ln_lightning.data.dataset import NoisySample
from ln_lightning.lightning_internals import attached_trainer
from ln_lightning.losses.base import LossReport, NoisyLabelLoss, TrainingContext

__all__ = ["LossMethod", "TrainingMethod", "manual_step", "report", "step_schedulers"]


class TrainingMethod(Protocol):
    """What the model asks of the method that trains it (``model`` is the
    :class:`~ln_lightning.NoisyLabelClassifier`).

    Example:
        >>> from ln_lightning import NoisyLabelClassifier
        >>> model = NoisyLabelClassifier(input_shape=(1, 8, 8))
        >>> method: TrainingMethod = model.method  # a loss: the simple case
        >>> type(method).__name__, len(method.parameters_to_optimise(model)) > 0
        ('LossMethod', True)
    """

    loss: NoisyLabelLoss
    #: ``True``: the model optimises by hand (Lightning's manual optimisation) and calls
    #: :meth:`optimise` after every training step; ``False``: Lightning's automatic step.
    manual_optimization: bool

    def setup(self, model: Any) -> None:
        """Before training: build networks and state of its own."""

    def outputs(self, model: Any, inputs: Tensor) -> dict[str, Tensor]:
        """The head outputs that prediction reads (``loss.predict_proba``)."""
        ...

    def training_step(
        self, model: Any, sample: NoisySample, batch_idx: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The step's loss, and the network's outputs on the batch (for the metrics)."""
        ...

    def parameters_to_optimise(self, model: Any) -> list[Any]:
        """Parameters, or parameter groups (dicts with their own settings), for the optimiser."""
        ...

    def extra_optimizers(self, model: Any) -> list[Any]:
        """Optimisers of its own, after the model's (only with :attr:`manual_optimization`)."""
        ...

    def optimise(self, model: Any, loss: Tensor) -> None:
        """One step by hand on the step's loss (only with :attr:`manual_optimization`)."""
        ...

    def on_load_checkpoint(self, model: Any, checkpoint: dict[str, Any]) -> None:
        """Before a checkpoint's weights are loaded: fit state of its own to them."""
        ...

    def selectable(self, model: Any) -> bool:
        """Whether the weights of the epoch just trained are the method's own, so a checkpoint
        selection may pick them; ``False`` during a warm-up with another loss."""
        ...

    def on_fit_start(self, model: Any) -> None: ...

    def on_train_epoch_start(self, model: Any) -> None: ...

    def on_train_batch_start(self, model: Any, batch_idx: int) -> None: ...

    def on_validation_epoch_end(self, model: Any, noisy_accuracy: float) -> None:
        """After a fit's validation epoch, with its accuracy on the noisy validation split."""
        ...

    def after_optimizer_step(self, model: Any) -> None: ...


def manual_step(model: Any, loss: Tensor) -> None:
    """One optimisation step by hand, for a method with :attr:`~TrainingMethod.manual_optimization`:
    every optimiser's gradients cleared, ``model.manual_backward(loss)`` (so ``16-mixed``'s
    loss scaling and DDP's gradient averaging apply, as in the automatic step), every optimiser
    stepped, then the method's :meth:`~TrainingMethod.after_optimizer_step`.

    Lightning counts each optimiser's step in ``trainer.global_step`` (two optimisers: two steps
    a batch); the batches of an epoch, and resuming, do not depend on it.
    """
    optimizers = model.optimizers()
    optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
    for optimizer in optimizers:
        optimizer.zero_grad()
    model.manual_backward(loss)
    for optimizer in optimizers:
        optimizer.step()
    model.method.after_optimizer_step(model)


def step_schedulers(model: Any, metrics: dict[str, Any], monitor: str) -> None:
    """At an epoch's end under manual optimisation (Lightning steps no scheduler then): every
    scheduler one step, ``ReduceLROnPlateau`` on ``metrics[monitor]`` (when it was logged)."""
    for config in model.trainer.lr_scheduler_configs:
        if isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            if monitor in metrics:
                config.scheduler.step(metrics[monitor])
        else:
            config.scheduler.step()


def epoch_budget(trainer: Any) -> int | None:
    """The trainer's ``max_epochs``, or ``None`` without a trainer or an epoch limit."""
    max_epochs = getattr(trainer, "max_epochs", None)
    return max_epochs if max_epochs is not None and max_epochs > 0 else None


def report(model: Any, loss_report: LossReport | None) -> None:
    """Print, log and save what a method's hook has to tell (``None``: nothing)."""
    if loss_report is None:
        return
    if loss_report.message:
        rank_zero_info(loss_report.message)
    if loss_report.metrics:
        outputs.log_metrics(model.trainer, loss_report.metrics)
    for name, table in loss_report.tables.items():
        outputs.write_table(model.trainer, name, table)


class OptimisesTheNetwork:
    """The optimisation every training method starts from: the model's optimiser on the
    network's trained parameters, no optimiser of its own, and, under manual optimisation, one
    step by hand (:func:`manual_step`). A method that trains more (SOP's per-example
    parameters, a peer network) overrides these.

    Example:
        >>> from ln_lightning import NoisyLabelClassifier
        >>> model = NoisyLabelClassifier(input_shape=(1, 8, 8))
        >>> isinstance(model.method, OptimisesTheNetwork), model.method.extra_optimizers(model)
        (True, [])
    """

    def parameters_to_optimise(self, model: Any) -> list[Any]:
        """What the model's optimiser updates: the network's trained parameters."""
        return model.network.trained_parameters()

    def extra_optimizers(self, model: Any) -> list[Any]:
        """Optimisers of its own (with ``manual_optimization``); none by default."""
        return []

    def optimise(self, model: Any, loss: Tensor) -> None:
        """One step by hand (:func:`manual_step`)."""
        manual_step(model, loss)


class LossMethod(OptimisesTheNetwork):
    """A loss trains the network: the simple :class:`TrainingMethod`.

    Example:
        >>> import torch
        >>> from ln_lightning import CrossEntropy, NoisyLabelClassifier
        >>> model = NoisyLabelClassifier(loss=CrossEntropy(), input_shape=(1, 8, 8))
        >>> sample = NoisySample(torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]), None, None)
        >>> loss, outputs = model.method.training_step(model, sample, batch_idx=0)
        >>> loss.shape, sorted(outputs)
        (torch.Size([]), ['logits'])
    """

    manual_optimization = False

    def __init__(self, loss: NoisyLabelLoss) -> None:
        self.loss = loss

    def setup(self, model: Any) -> None:
        """Nothing: the network was built with the loss's heads."""

    def outputs(self, model: Any, inputs: Tensor) -> dict[str, Tensor]:
        return model.network(inputs)

    def training_step(
        self, model: Any, sample: NoisySample, batch_idx: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of the network's outputs (and the EMA teacher's, when the loss asks for
        one, as ``teacher.<head>``) against the given labels."""
        outputs = model.network.training_outputs(sample.input)
        return self.loss(outputs, sample.target), outputs

    def on_load_checkpoint(self, model: Any, checkpoint: dict[str, Any]) -> None:
        """Nothing: the loss's buffers have their shapes from ``K``."""

    def context(self, model: Any, batch_idx: int = 0) -> TrainingContext:
        """What the loss's hooks may ask of the run, as plain values and callables."""
        trainer = attached_trainer(model)
        datamodule = trainer.datamodule if trainer is not None else None
        batches = trainer.num_training_batches if trainer is not None else 0
        fraction = batch_idx / batches if 0 < batches < float("inf") else 0.0
        known = datamodule.true_transition_matrix if datamodule is not None else lambda: None
        return TrainingContext(
            epoch=model.current_epoch,
            training_probabilities=lambda: model.split_predictions().probs,
            true_transition_matrix=known,
            elapsed_epochs=model.current_epoch + fraction,
            max_epochs=epoch_budget(trainer),
        )

    def selectable(self, model: Any) -> bool:
        return self.loss.selectable(self.context(model))

    def on_fit_start(self, model: Any) -> None:
        report(model, self.loss.on_fit_start(self.context(model)))

    def on_train_epoch_start(self, model: Any) -> None:
        report(model, self.loss.on_train_epoch_start(self.context(model)))

    def on_train_batch_start(self, model: Any, batch_idx: int) -> None:
        self.loss.on_train_batch_start(self.context(model, batch_idx))

    def on_validation_epoch_end(self, model: Any, noisy_accuracy: float) -> None:
        context = replace(self.context(model), noisy_validation_accuracy=noisy_accuracy)
        report(model, self.loss.on_validation_epoch_end(context))

    def after_optimizer_step(self, model: Any) -> None:
        """The EMA teacher's and the evaluating average's step (before any callback sees the
        step, so a checkpoint written at this step holds them updated)."""
        model.network.update_averages()
