"""The training position: how far into its epoch training was when a checkpoint was written,
saved by the data module so the resumable sampler skips what was trained."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.warnings import PossibleUserWarning

from ln_lightning.lightning_internals import NOT_RESUMABLE_WARNING, batches_processed, is_fitting

__all__ = [
    "TrainingPosition",
    "resume_sampler",
    "training_position",
    "training_position_from_state",
    "training_position_state",
]

#: The data module's checkpoint state key (its name in checkpoints since the first release).
STATE_KEY = "train_position"


@dataclass(frozen=True)
class TrainingPosition:
    """Where training stood when a checkpoint was written.

    Attributes:
        epoch: The epoch in progress.
        batches: Training batches of that epoch already taken (optimiser stepped).
        epoch_done: Whether every batch of the epoch was taken (the next run starts ``epoch + 1``).
        world_size: Processes that each took ``batches`` batches (``None``: unknown, taken to be
            the resuming run's), so a run continued on another number of nodes or devices
            skips every example already trained on, no more, no fewer.

    Example:
        >>> position = TrainingPosition(epoch=3, batches=40)
        >>> position.state_dict()
        {'epoch': 3, 'batches': 40, 'epoch_done': False, 'world_size': None}
        >>> TrainingPosition.from_state_dict(position.state_dict()) == position
        True
    """

    epoch: int
    batches: int
    epoch_done: bool = False
    world_size: int | None = None

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> TrainingPosition:
        ranks = state.get("world_size")  # absent from checkpoints before 2026-12
        return cls(
            int(state["epoch"]), int(state["batches"]), bool(state["epoch_done"]),
            int(ranks) if ranks is not None else None,
        )  # fmt: skip


def training_position(trainer: pl.Trainer) -> TrainingPosition:
    """The position of a fitting ``trainer`` in its current epoch (for a checkpoint)."""
    batches = batches_processed(trainer)
    return TrainingPosition(
        epoch=trainer.current_epoch,
        batches=batches,
        epoch_done=batches >= trainer.num_training_batches,
        world_size=trainer.world_size,
    )


def training_position_state(trainer: pl.Trainer | None) -> dict[str, Any]:
    """The data module's checkpoint state: the training position while fitting, else empty."""
    if not is_fitting(trainer):
        return {}
    return {STATE_KEY: training_position(trainer).state_dict()}


def training_position_from_state(state: Mapping[str, Any]) -> TrainingPosition | None:
    """The training position a data module's checkpoint state holds, if any."""
    position = state.get(STATE_KEY)
    return TrainingPosition.from_state_dict(position) if position is not None else None


def resume_sampler(
    sampler: Any, position: TrainingPosition, batch_size: int
) -> contextlib.AbstractContextManager:
    """Make the next training epoch continue from ``position``.

    A :class:`~ln_lightning.data.sampling.ResumableSampler` skips what was trained. Lightning
    2.6 then warns that the loader "is not resumable" (it only knows loaders with their own
    ``state_dict``; making ours one hits Lightning issue #20550): the returned context silences
    that one warning, and the caller keeps it open until the fit ends (the data module's
    ``teardown``). Another sampler cannot skip: a mid-epoch position gets a warning that the
    epoch restarts with a new order.
    """
    if callable(getattr(sampler, "resume", None)):
        sampler.resume(position, batch_size)
        return _quiet_not_resumable()
    if position.batches and not position.epoch_done:
        rank_zero_warn(
            f"Resuming mid-epoch ({position.batches} batches into epoch {position.epoch}) "
            f"with a {type(sampler).__name__ if sampler else 'shuffling'} sampler that cannot "
            "skip what was trained: the epoch restarts with a new order. Return a "
            "ln_lightning.data.sampling.ResumableSampler from train_sampler() to continue "
            "exactly."
        )
    return contextlib.nullcontext()


@contextlib.contextmanager
def _quiet_not_resumable() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=NOT_RESUMABLE_WARNING, category=PossibleUserWarning
        )
        yield
