"""What a training step checks before it may change the weights: a finite loss."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from ln_lightning import resume
from ln_lightning.data.dataset import unpack_batch
from ln_lightning.lightning_internals import attached_trainer

__all__ = ["check_finite_loss", "non_finite_loss_message"]


def check_finite_loss(module: pl.LightningModule, loss: Tensor, batch: Any, batch_idx: int) -> None:
    """Raise ``FloatingPointError`` on a NaN or infinite training loss, before the step touches
    the weights; under DDP every rank stops at the same step."""
    finite = bool(torch.isfinite(loss))
    trainer = attached_trainer(module)
    if trainer is not None and trainer.world_size > 1:
        finite = trainer.strategy.reduce_boolean_decision(finite, all=True)
    if not finite:
        raise FloatingPointError(non_finite_loss_message(module, loss, batch, batch_idx))


def non_finite_loss_message(
    module: pl.LightningModule, loss: Tensor, batch: Any, batch_idx: int
) -> str:
    """Why training stops on a NaN/inf loss: where, on which examples, and what to try.

    Example:
        >>> import torch
        >>> from ln_lightning import NoisyLabelClassifier
        >>> batch = (torch.randn(2, 1, 8, 8), torch.tensor([0, 1]))
        >>> message = non_finite_loss_message(NoisyLabelClassifier(), torch.tensor(float("nan")),
        ...                                   batch, batch_idx=3)
        >>> message.split(";")[0]
        'the training loss is nan at batch 3'
    """
    trainer = attached_trainer(module)
    where = (
        f"epoch {trainer.current_epoch}, global step {trainer.global_step}, batch {batch_idx}"
        if trainer is not None
        else f"batch {batch_idx}"
    )
    inputs, _, _, index = unpack_batch(batch)
    indices = index.tolist() if index is not None else None
    bad_inputs = (
        int((~torch.isfinite(inputs)).flatten(1).any(1).sum()) if inputs.is_floating_point() else 0
    )
    last = resume.newest_checkpoint_path(trainer) if trainer is not None else ""
    return (
        f"the training loss is {loss.item()} at {where}; training stops before this step "
        "updates the weights"
        + (f", and the last checkpoint written is {last}" if last else "")
        + f". Examples of the batch (data-set indices): {indices}. "
        + (
            f"{bad_inputs} of them have NaN/inf inputs: clean the data. "
            if bad_inputs
            else "Their inputs are finite: lower the learning rate, add gradient clipping "
            "(--trainer.gradient_clip_val 1.0) or raise the loss's min_scale. "
        )
        + "Resume from the checkpoint with --ckpt_path last."
    )
