"""Table 4 of the paper as a callback: NLL against several human annotators per example."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from ln_lightning import analysis
from ln_lightning.callbacks._common import require_datamodule
from ln_lightning.outputs import log_metrics

__all__ = ["AnnotatorNLL"]


class AnnotatorNLL(Callback):
    """Table 4: NLL of the predictions on the training images against several human annotators.

    Needs a data module with ``annotator_labels`` (pool-indexed ``(N, A)``), e.g.
    :class:`~ln_lightning.data.CIFAR10NDataModule` (its three ``random_label`` columns). Logged as
    ``train/annotator_nll`` at the end of every ``every_n_epochs``-th epoch and at the end of
    training.

    Args:
        every_n_epochs: How often during training; ``0`` only at the end.

    Example:
        >>> AnnotatorNLL(every_n_epochs=5).every_n_epochs  # with CIFAR-10N's three annotators
        5
    """

    def __init__(self, every_n_epochs: int = 0) -> None:
        if every_n_epochs < 0:
            raise ValueError(f"every_n_epochs must be >= 0; got {every_n_epochs}.")
        self.every_n_epochs = every_n_epochs
        self.value: float | None = None

    def _measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = require_datamodule(trainer, self)
        labels = getattr(datamodule, "annotator_labels", None)
        if labels is None:
            raise ValueError(
                f"AnnotatorNLL needs several labels per training example; "
                f"{type(datamodule).__name__} has no annotator_labels (use CIFAR10NDataModule)."
            )
        predictions = pl_module.split_predictions()
        self.value = float(analysis.annotator_nll(predictions.probs, labels[predictions.indices]))
        log_metrics(trainer, {"train/annotator_nll": self.value})

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if self.every_n_epochs and epoch % self.every_n_epochs == 0 and trainer.is_global_zero:
            self._measure(trainer, pl_module)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self._measure(trainer, pl_module)
