"""``last.ckpt``: the newest state of a run, after every epoch, every n steps if asked, and at
Ctrl-C or SIGTERM; and which checkpoint a run wrote last or selected."""

from __future__ import annotations

import signal
import threading
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException
from typing_extensions import override

from ln_lightning.files import atomic_copy
from ln_lightning.lightning_internals import (
    checkpoint_state_key,
    save_at_epoch_end,
    step_or_time_triggered,
)
from ln_lightning.outputs import run_dir

__all__ = [
    "LastCheckpoint",
    "carry_best_checkpoints",
    "last_checkpoint_callback",
    "newest_checkpoint_path",
    "selected_checkpoint",
]


class LastCheckpoint(ModelCheckpoint):
    """Keep ``last.ckpt`` the newest state of the run, beside any best-by-metric checkpoint.

    Written at the end of every training epoch (after its validation), every
    ``every_n_train_steps`` optimiser steps when set (mid-epoch checkpoints, see
    docs/performance.md), and when the run is interrupted: the first Ctrl-C (SIGINT) lets the
    running training batch finish, writes it and stops as Lightning does on
    ``KeyboardInterrupt`` (a second Ctrl-C aborts at once); SIGTERM (a scheduler's pre-emption),
    which Lightning turns into a stop at the end of the batch, writes it too. Under DDP every
    rank stops at the same batch. ``ln-fit fit ... --ckpt_path last`` continues from it exactly.

    Since Lightning 2.6, ``ModelCheckpoint(monitor=..., save_last=True)`` writes ``last.ckpt``
    only when it also saves a new best, so it holds the last *best* epoch and a run continued from
    it silently repeats every epoch since. ``ln-fit`` adds this callback to every run that has
    none (with checkpointing on); another ``ModelCheckpoint`` writing ``last.ckpt`` into the same
    directory has its ``save_last`` turned off, with a message (two writers of one file leave
    ``last-v1.ckpt`` files behind).

    Args:
        dirpath: Directory of ``last.ckpt``; the run's ``checkpoints/`` folder by default.
        every_n_train_steps: Also write it every this many optimiser steps (``None``: epoch
            ends only).
        train_time_interval: Also write it at this wall-time interval.

    Example:
        >>> import lightning.pytorch as pl
        >>> callback = LastCheckpoint(every_n_train_steps=500)  # also mid-epoch, every 500 steps
        >>> trainer = pl.Trainer(logger=False, callbacks=[callback], enable_progress_bar=False)
        >>> last_checkpoint_callback(trainer) is callback, callback.CHECKPOINT_NAME_LAST
        (True, 'last')
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
            # Lightning 2.6 refuses epoch and step triggers together; epoch ends are saved in
            # on_train_epoch_end below whatever the trigger.
            every_n_epochs=None if every_n_train_steps or train_time_interval else 1,
            every_n_train_steps=every_n_train_steps,
            train_time_interval=train_time_interval,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        )
        self.interrupt_requested = False
        self._previous_handler: Any = None
        self._announce = True
        self._resumed_states: dict[str, Any] = {}

    @property
    def state_key(self) -> str:
        # Distinct from a plain ModelCheckpoint with the same triggers (Lightning 2.6 keys the
        # callback states of a checkpoint by class name and these arguments).
        return checkpoint_state_key(
            self,
            every_n_train_steps=self._every_n_train_steps,
            train_time_interval=self._train_time_interval,
        )

    @property
    def path(self) -> str:
        """Where ``last.ckpt`` is written (known once ``setup`` ran)."""
        return self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        for other in trainer.checkpoint_callbacks:
            if other is self or not getattr(other, "save_last", False):
                continue
            if other.dirpath == self.dirpath:
                other.save_last = False
                rank_zero_info(
                    f"{type(self).__name__} writes {self.path} after every epoch; save_last of "
                    f"ModelCheckpoint(monitor={other.monitor!r}) is turned off (under Lightning "
                    ">= 2.6 it would write last.ckpt only at a new best)."
                )

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # With a step or time trigger Lightning saves no epoch ends; this callback always does
        # (skipped when the step trigger saved this very step).
        if step_or_time_triggered(self):
            save_at_epoch_end(self, trainer)

    # ---------------------------------------------------------------- resuming
    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        super().on_load_checkpoint(trainer, pl_module, checkpoint)
        self._resumed_states = dict(checkpoint.get("callbacks", {}))

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if self._resumed_states:  # the callbacks' own load_state_dict has run by now
            carry_best_checkpoints(trainer, self._resumed_states)
            self._resumed_states = {}

    # ---------------------------------------------------------------- interrupts
    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.interrupt_requested = False
        self._announce = trainer.global_rank == 0
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_handler()

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._restore_handler()

    def _restore_handler(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.interrupt_requested:  # the second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.interrupt_requested = True
        if self._announce:
            print("\nCtrl-C: stopping after this batch with a checkpoint (Ctrl-C again to abort).")

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        requested = self.interrupt_requested
        if trainer.world_size > 1:
            requested = trainer.strategy.reduce_boolean_decision(requested, all=False)
        if requested:
            self.save_now(trainer)
            self._restore_handler()
            raise KeyboardInterrupt

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        super().on_exception(trainer, pl_module, exception)
        if isinstance(exception, SIGTERMException):
            self.save_now(trainer)

    def save_now(self, trainer: pl.Trainer) -> Path:
        """Write ``last.ckpt`` at once (an interrupt); returns its path."""
        path = Path(self.path) if self.dirpath else run_dir(trainer) / "checkpoints" / "last.ckpt"
        trainer.save_checkpoint(path)
        rank_zero_info(f"Interrupted: saved {path}; continue with --ckpt_path last (or this path).")
        return path


def carry_best_checkpoints(trainer: pl.Trainer, states: Mapping[str, Any]) -> None:
    """Continue each monitored ``ModelCheckpoint``'s best-k record across run directories.

    A run continued with ``--ckpt_path last`` logs into a new version directory, and Lightning
    (2.6) then restores a ``ModelCheckpoint``'s best score and best-k files only when its
    directory is unchanged: the continued run would take its first epoch for the best one and
    ``test_selected`` would miss a better epoch from before the interruption. Here the earlier
    best files are copied into the new directory (the earlier run keeps its own; a newer best
    replaces only the copy) and the record points at the copies.

    Args:
        trainer: The continued run's trainer, after its checkpoint callbacks were set up.
        states: ``checkpoint["callbacks"]`` of the checkpoint it continues.
    """
    for callback in trainer.checkpoint_callbacks:
        state = states.get(callback.state_key)
        if callback.monitor is None or not state or callback.dirpath is None:
            continue
        old_dir = state.get("dirpath")
        if old_dir is None or Path(old_dir).resolve() == Path(callback.dirpath).resolve():
            continue  # the same directory: Lightning restored everything itself
        copies: dict[str, str] = {}
        for path in state.get("best_k_models", {}):
            if Path(path).is_file():
                copies[path] = str(Path(callback.dirpath) / Path(path).name)
                if trainer.is_global_zero:
                    atomic_copy(path, copies[path])
        trainer.strategy.barrier("carry_best_checkpoints")
        if not copies:
            continue
        callback.best_k_models = {
            copies[path]: score for path, score in state["best_k_models"].items() if path in copies
        }
        callback.best_model_score = state.get("best_model_score")
        callback.best_model_path = copies.get(state.get("best_model_path", ""), "")
        callback.kth_best_model_path = copies.get(state.get("kth_best_model_path", ""), "")
        callback.kth_value = state.get("kth_value", callback.kth_value)


def last_checkpoint_callback(trainer: pl.Trainer) -> LastCheckpoint | None:
    """The trainer's :class:`LastCheckpoint`, if it has one."""
    for callback in trainer.callbacks:
        if isinstance(callback, LastCheckpoint):
            return callback
    return None


def newest_checkpoint_path(trainer: pl.Trainer) -> str:
    """The path of the newest checkpoint this run wrote ("" if none yet)."""
    last = last_checkpoint_callback(trainer)
    if last is not None and last.best_model_path:
        return last.best_model_path  # its one file, last.ckpt
    checkpoint = trainer.checkpoint_callback
    return getattr(checkpoint, "last_model_path", "") or getattr(checkpoint, "best_model_path", "")


def selected_checkpoint(trainer: pl.Trainer) -> ModelCheckpoint | None:
    """The first monitored ``ModelCheckpoint`` that has saved a best checkpoint, if any."""
    for callback in trainer.checkpoint_callbacks:
        if callback.monitor is not None and callback.best_model_path:
            return callback
    return None
