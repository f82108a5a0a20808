"""The epoch's training metrics in a checkpoint, so a resumed epoch reports what an
uninterrupted one would (summed over DDP ranks)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torchmetrics import Metric

from ln_lightning.lightning_internals import is_fitting
from ln_lightning.resume.position import training_position

__all__ = ["restore_epoch_metrics", "save_epoch_metrics"]


def save_epoch_metrics(
    checkpoint: dict[str, Any], metrics: Mapping[str, Metric], trainer: pl.Trainer | None
) -> None:
    """Store the states of the epoch's training metrics in ``checkpoint["state_dict"]``.

    The rule: a checkpoint written once the epoch's batches are all done resumes at the next
    epoch, so it carries empty states (Lightning resets them only after saving); under DDP every
    rank runs this and rank 0 writes, so it stores the sum over ranks (every training metric
    state is a sum), which :func:`restore_epoch_metrics` gives back to rank 0 only.

    Args:
        checkpoint: The checkpoint being written (``on_save_checkpoint``).
        metrics: The model's epoch training metrics by attribute name (persistent states).
        trainer: The trainer, if attached.
    """
    epoch_done = is_fitting(trainer) and training_position(trainer).epoch_done
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    for name, metric in metrics.items():
        if epoch_done:
            metric = copy.deepcopy(metric)
            metric.reset()
        elif distributed:
            metric = copy.deepcopy(metric)
            metric.sync()
        else:
            continue
        for key, value in metric.metric_state.items():
            checkpoint["state_dict"][f"{name}.{key}"] = value.detach().clone()


def restore_epoch_metrics(
    checkpoint: dict[str, Any], names: list[str] | tuple[str, ...], global_rank: int
) -> None:
    """Drop the saved metric states on every rank but 0 (they hold the sum over all ranks)."""
    if global_rank == 0:
        return
    prefixes = tuple(f"{name}." for name in names)
    for key in [k for k in checkpoint["state_dict"] if k.startswith(prefixes)]:
        del checkpoint["state_dict"][key]
