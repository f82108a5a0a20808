"""The metrics of each stage, one object per stage that owns their update and their logging.

Training: the loss, accuracy against the given and the true labels, the memorisation curves
(their states are saved in checkpoints, so a resumed epoch reports what an uninterrupted one
would). Validation: the same accuracies on the noisy validation split (the paper's
model-selection metric) and the loss. Test: accuracy, NLL, ECE, Brier score and the loss on the
clean test split. With an EMA teacher, its accuracies beside the network's.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

from ln_lightning.metrics import (
    SELECTION_MONITOR,
    TEST,
    TRAIN,
    VAL,
    VAL_LOSS,
    BrierScore,
    NegativeLogLikelihood,
    NoiseSplitAccuracy,
    metric_name,
)

__all__ = ["Accuracies", "TestMetrics", "TrainMetrics", "ValMetrics"]

TEACHER = "_teacher"


def accuracy(num_classes: int) -> MulticlassAccuracy:
    # ignore_index: clean labels are -1 where unknown (e.g. most of Clothing1M).
    return MulticlassAccuracy(num_classes=num_classes, average="micro", ignore_index=-1)


class Accuracies(nn.Module):
    """Accuracy of one stage against the given (noisy) and the true labels, the network's and,
    with ``teacher``, the EMA teacher's (``<stage>/acc_noisy``, ``<stage>/acc_clean``,
    ``..._teacher``).

    Example:
        >>> import torch
        >>> accuracies = Accuracies("val", num_classes=3)
        >>> round(accuracies.noisy(torch.eye(3), torch.tensor([0, 1, 1])).item(), 4)
        0.6667
    """

    def __init__(self, stage: str, num_classes: int, teacher: bool = False) -> None:
        super().__init__()
        self.stage = stage
        self.noisy, self.clean = accuracy(num_classes), accuracy(num_classes)
        if teacher:
            self.noisy_teacher, self.clean_teacher = accuracy(num_classes), accuracy(num_classes)

    def log(
        self,
        module: pl.LightningModule,
        probs: Tensor,
        targets: Tensor,
        clean_targets: Tensor | None,
        teacher: bool = False,
    ) -> None:
        """Update and log the accuracies of ``probs`` (``teacher``: the teacher's);
        ``clean_targets`` ``None`` where no true label is known (no clean metric: it would read
        0.0)."""
        suffix = TEACHER if teacher else ""
        log = {"on_step": False, "on_epoch": True, "batch_size": len(targets)}
        noisy = getattr(self, f"noisy{suffix}")
        noisy(probs, targets)
        prog_bar = self.stage == VAL and not teacher
        module.log(metric_name(self.stage, f"acc_noisy{suffix}"), noisy, prog_bar=prog_bar, **log)
        if clean_targets is not None:
            clean = getattr(self, f"clean{suffix}")
            clean(probs, clean_targets)
            module.log(metric_name(self.stage, f"acc_clean{suffix}"), clean, **log)


class TrainMetrics(nn.Module):
    """What a training epoch logs: ``train/loss`` (a metric summed over DDP ranks, so it
    survives a mid-epoch resume), the accuracies and the memorisation curves of Fig. 4
    (``train/acc_uncorrupted``, ``train/acc_corrupted_vs_noisy``, ...; computed and synced at
    the epoch's end). Their states are saved in checkpoints (:meth:`epoch_metrics`).

    Example:
        >>> sorted(TrainMetrics(num_classes=10).epoch_metrics())
        ['accuracies.clean', 'accuracies.noisy', 'loss_mean', 'noise_split']
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.loss_mean = MeanMetric()
        self.accuracies = Accuracies(TRAIN, num_classes)
        self.noise_split = NoiseSplitAccuracy()
        for metric in self.epoch_metrics().values():
            metric.persistent(True)

    def epoch_metrics(self, prefix: str = "") -> dict[str, Metric]:
        """The metrics accumulated over an epoch, by their state-dict path under ``prefix``."""
        return {
            f"{prefix}{name}": metric
            for name, metric in self.named_modules()
            if isinstance(metric, Metric)
        }

    def update(
        self, loss: Tensor, probs: Tensor, targets: Tensor, clean_targets: Tensor | None
    ) -> None:
        """Add a training step. Nothing is logged per step: a call of ``self.log`` costs about
        as much as the metric's update (measured on the digits), so the epoch's values are
        logged once, by :meth:`log_epoch_end`."""
        self.loss_mean.update(loss.detach(), weight=len(targets))
        self.accuracies.noisy.update(probs, targets)
        if clean_targets is not None:
            self.accuracies.clean.update(probs, clean_targets)
            self.noise_split.update(probs, targets, clean_targets)

    def log_epoch_end(self, module: pl.LightningModule) -> None:
        """Log the epoch's values (each ``compute`` sums the states of every DDP rank, so
        ``sync_dist`` only averages equal values) and start the next epoch afresh."""
        values = {"loss": self.loss_mean, "acc_noisy": self.accuracies.noisy,
                  "acc_clean": self.accuracies.clean}  # fmt: skip
        logged = {metric_name(TRAIN, k): m.compute() for k, m in values.items() if m.update_called}
        if self.noise_split.update_called:
            split = self.noise_split.compute()
            logged |= {metric_name(TRAIN, k): v for k, v in split.items() if not v.isnan()}
        loss = logged.pop(metric_name(TRAIN, "loss"), None)
        if loss is not None:
            module.log(metric_name(TRAIN, "loss"), loss, prog_bar=True, sync_dist=True)
        if logged:
            module.log_dict(logged, sync_dist=True)
        for metric in self.epoch_metrics().values():
            metric.reset()


class ValMetrics(nn.Module):
    """What validation logs: ``val/loss`` and the accuracies on the noisy validation split
    (the teacher's too, with ``teacher``).

    Example:
        >>> hasattr(ValMetrics(10, teacher=True).accuracies, "noisy_teacher")
        True
    """

    def __init__(self, num_classes: int, teacher: bool = False) -> None:
        super().__init__()
        self.accuracies = Accuracies(VAL, num_classes, teacher)

    def log_step(self, module: pl.LightningModule, loss: Tensor, targets: Tensor) -> None:
        module.log(
            VAL_LOSS, loss, on_step=False, on_epoch=True, batch_size=len(targets), sync_dist=True
        )

    def log_epoch_end(self, module: pl.LightningModule, selectable: bool) -> None:
        """Log :data:`~ln_lightning.metrics.SELECTION_MONITOR`: the epoch's noisy validation
        accuracy when a selection may pick these weights, NaN while the method warms up
        (``compute`` sums every DDP rank's counts, so ``sync_dist`` only averages equal
        values)."""
        accuracy = self.noisy_accuracy()
        if accuracy is None:
            return
        value = accuracy if selectable else float("nan")
        module.log(SELECTION_MONITOR, value, sync_dist=True)

    def noisy_accuracy(self) -> float | None:
        """The epoch's accuracy on the noisy validation split (every DDP rank's counts);
        ``None`` when no validation batch ran."""
        noisy = self.accuracies.noisy
        return float(noisy.compute()) if noisy.update_called else None


class TestMetrics(nn.Module):
    """What a test logs on the clean test split, under ``prefix`` (``test``, or
    ``test_selected`` for the checkpoint chosen by noisy validation accuracy): ``acc``,
    ``nll``, ``ece`` (15 bins), ``brier``, ``loss`` and the teacher's ``acc_teacher``.

    Example:
        >>> import torch
        >>> metrics = TestMetrics(num_classes=2)
        >>> metrics.brier(torch.tensor([[1.0, 0.0]]), torch.tensor([0])).item()
        0.0
    """

    __test__ = False  # (not a pytest test class)

    def __init__(self, num_classes: int, teacher: bool = False) -> None:
        super().__init__()
        self.prefix = TEST
        self.acc = accuracy(num_classes)
        self.nll = NegativeLogLikelihood()
        self.ece = MulticlassCalibrationError(num_classes, n_bins=15, ignore_index=-1)
        self.brier = BrierScore()
        if teacher:
            self.acc_teacher = accuracy(num_classes)

    def log_step(
        self,
        module: pl.LightningModule,
        probs: Tensor,
        labels: Tensor,
        loss: Tensor,
        teacher_probs: Tensor | None = None,
    ) -> None:
        metrics = {"acc": self.acc, "nll": self.nll, "ece": self.ece, "brier": self.brier}
        for metric in metrics.values():
            metric.update(probs, labels)
        log: dict[str, Any] = {"on_epoch": True, "batch_size": len(labels)}
        module.log_dict({metric_name(self.prefix, k): m for k, m in metrics.items()}, **log)
        module.log(metric_name(self.prefix, "loss"), loss, sync_dist=True, **log)
        if teacher_probs is not None:
            self.acc_teacher(teacher_probs, labels)
            module.log(metric_name(self.prefix, "acc_teacher"), self.acc_teacher, **log)
