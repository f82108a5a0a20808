"""Continuing a run: which checkpoint is "last", and what it holds.

Checked against Lightning 2.6 (``lightning.pytorch``); every read of Lightning internals in the
package lives in this module and names that version.
"""

from __future__ import annotations

from datetime import timedelta

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["LastCheckpoint", "last_checkpoint_callback", "selected_checkpoint"]


class LastCheckpoint(ModelCheckpoint):
    """Keep ``last.ckpt`` the newest state of the run, beside any best-by-metric checkpoint.

    Since Lightning 2.6, ``ModelCheckpoint(monitor=..., save_last=True)`` writes ``last.ckpt`` only
    when it also saves a new best checkpoint, so ``last.ckpt`` holds the last *best* epoch and a
    run continued from it silently repeats every epoch since. This callback writes
    ``last.ckpt`` at the end of every training epoch (after its validation), every
    ``every_n_train_steps`` optimiser steps when set (mid-epoch checkpoints, see
    docs/performance.md), and leaves the best-by-metric checkpoint to the monitored
    ``ModelCheckpoint``. ``ln-fit`` adds one to every run that has none; another
    ``ModelCheckpoint`` writing ``last.ckpt`` into the same directory has its ``save_last``
    turned off (with a message), since two writers of one file would leave ``last-v1.ckpt``
    files behind.

    Args:
        dirpath: Directory of ``last.ckpt``; the run's ``checkpoints/`` folder by default (as for
            every ``ModelCheckpoint``).
        every_n_train_steps: Also write it every this many optimiser steps (0 or ``None``: only
            at epoch ends).
        train_time_interval: Also write it at this wall-time interval.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        every_n_train_steps: int | None = None,
        train_time_interval: timedelta | None = None,
    ) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=self.CHECKPOINT_NAME_LAST,
            monitor=None,
            save_top_k=1,
            every_n_epochs=1,
            every_n_train_steps=every_n_train_steps,
            train_time_interval=train_time_interval,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        )

    @property
    def state_key(self) -> str:
        # Distinct from a plain ModelCheckpoint with the same triggers (Lightning 2.6 keys the
        # callback states of a checkpoint by class name and these arguments).
        return self._generate_state_key(
            every_n_train_steps=self._every_n_train_steps,
            train_time_interval=self._train_time_interval,
        )

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        for other in trainer.checkpoint_callbacks:
            if other is self or not getattr(other, "save_last", False):
                continue
            if other.dirpath == self.dirpath:
                other.save_last = False
                rank_zero_info(
                    f"{type(self).__name__} writes {self.dirpath}/last.ckpt after every epoch; "
                    f"save_last of ModelCheckpoint(monitor={other.monitor!r}) is turned off "
                    "(under Lightning >= 2.6 it would write last.ckpt only at a new best)."
                )

    @property
    def path(self) -> str:
        """Where ``last.ckpt`` is written (known once ``setup`` ran)."""
        return self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST)


def last_checkpoint_callback(trainer: pl.Trainer) -> LastCheckpoint | None:
    """The trainer's :class:`LastCheckpoint`, if it has one."""
    for callback in trainer.callbacks:
        if isinstance(callback, LastCheckpoint):
            return callback
    return None


def selected_checkpoint(trainer: pl.Trainer) -> ModelCheckpoint | None:
    """The first monitored ``ModelCheckpoint`` that has saved a best checkpoint, if any."""
    for callback in trainer.checkpoint_callbacks:
        if callback.monitor is not None and callback.best_model_path:
            return callback
    return None
