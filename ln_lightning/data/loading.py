"""How a data module loads: its loaders, their worker processes, and work done once per run on
global rank 0 with the result sent to every rank."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any, TypeVar

from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ln_lightning import resume
from ln_lightning.data.dataset import collate_samples

__all__ = ["default_workers", "file_workers", "make_loader", "run_on_rank_zero"]

T = TypeVar("T")


def file_workers(num_workers: int | None) -> int:
    """Worker processes for data read from files: ``num_workers``, or one per CPU core but one
    (at most 8)."""
    if num_workers is not None:
        return num_workers
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def default_workers(num_workers: int | None, inputs: Any) -> int:
    """A loader's worker processes: ``num_workers``, else none for inputs held in memory (a
    tensor, decoded images: workers only add copying) and :func:`file_workers` for inputs read
    from files.

    Example:
        >>> import torch
        >>> default_workers(None, torch.zeros(3)), default_workers(2, torch.zeros(3))
        (0, 2)
    """
    if num_workers is None and (isinstance(inputs, Tensor) or getattr(inputs, "in_memory", False)):
        return 0
    return file_workers(num_workers)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    sampler: Sampler | None,
    workers: int,
    train: bool,
    pin_memory: bool,
    resuming: tuple[contextlib.ExitStack, resume.TrainingPosition] | None = None,
) -> DataLoader:
    """A loader; a training one continues a resumed epoch where its checkpoint stopped
    (``resuming``: the stack that keeps the resumed sampler until teardown, and the position)."""
    if resuming is not None:
        stack, position = resuming
        stack.enter_context(resume.resume_sampler(sampler, position, batch_size))
    return DataLoader(
        dataset,
        collate_fn=collate_samples,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,  # then Lightning copies batches with non_blocking=True
    )


def run_on_rank_zero(trainer: Any, compute: Callable[[], T]) -> T:
    """``compute()`` run by global rank 0 only, its result (or its error) sent to every rank;
    without a trainer, or with one process, it simply runs here.

    Example:
        >>> run_on_rank_zero(None, lambda: "checked once")
        'checked once'
    """
    if trainer is None or trainer.world_size == 1:
        return compute()
    result: Any = None
    if trainer.is_global_zero:
        try:
            result = (compute(), None)
        except Exception as error:  # every rank raises it, none waits forever
            result = (None, error)
    value, error = trainer.strategy.broadcast(result, src=0)
    if error is not None:
        raise error
    return value
