"""Continuing a run: what a checkpoint holds, which checkpoint is "last", and interrupts.

One home for exact resume:

* **the training position** (:class:`TrainPosition`): how far into its epoch training was,
  saved by the data module so the resumable sampler skips what was trained;
* **the epoch's training metrics**, saved with the model, summed over DDP ranks;
* **``last.ckpt``** (:class:`LastCheckpoint`): the newest state of the run, after every epoch,
  every n steps if asked, and at Ctrl-C or SIGTERM;
* **which run a checkpoint belongs to** (the run record every checkpoint carries) and
  ``--ckpt_path last`` (:func:`find_last_checkpoint`).

Checked against Lightning 2.6 (``lightning.pytorch`` 2.6.6). Every read of Lightning internals in
the package is in this module and says so where it happens.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import shutil
import signal
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torchmetrics import Metric

from ln_lightning.outputs import run_dir

__all__ = [
    "RECORD_KEY",
    "LastCheckpoint",
    "TrainPosition",
    "check_loaded_record",
    "find_last_checkpoint",
    "last_checkpoint_callback",
    "last_checkpoint_of_run",
    "loss_from_record",
    "newest_checkpoint_path",
    "position_from_state",
    "read_record",
    "record_mismatch",
    "restore_epoch_metrics",
    "resume_sampler",
    "run_record",
    "save_epoch_metrics",
    "selected_checkpoint",
    "train_position",
    "training_position_state",
]


# ------------------------------------------------------------------------- the training position
@dataclass(frozen=True)
class TrainPosition:
    """Where training stood when a checkpoint was written.

    Attributes:
        epoch: The epoch in progress.
        batches: Training batches of that epoch already taken (optimiser stepped).
        epoch_done: Whether every batch of the epoch was taken (the next run starts ``epoch + 1``).
    """

    epoch: int
    batches: int
    epoch_done: bool = False

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> TrainPosition:
        return cls(int(state["epoch"]), int(state["batches"]), bool(state["epoch_done"]))


def train_position(trainer: pl.Trainer) -> TrainPosition:
    """The position of a fitting ``trainer`` in its current epoch (for a checkpoint)."""
    # Lightning internal (2.6): the epoch loop's batch progress counts the batches processed.
    batches = trainer.fit_loop.epoch_loop.batch_progress.current.processed
    return TrainPosition(
        epoch=trainer.current_epoch,
        batches=batches,
        epoch_done=batches >= trainer.num_training_batches,
    )


def _fitting(trainer: pl.Trainer | None) -> bool:
    return trainer is not None and trainer.state.fn == TrainerFn.FITTING


def training_position_state(trainer: pl.Trainer | None) -> dict[str, Any]:
    """The data module's checkpoint state: the training position while fitting, else empty."""
    if not _fitting(trainer):
        return {}
    return {"train_position": train_position(trainer).state_dict()}


def position_from_state(state: Mapping[str, Any]) -> TrainPosition | None:
    """The training position a data module's checkpoint state holds, if any."""
    position = state.get("train_position")
    return TrainPosition.from_state_dict(position) if position is not None else None


#: Lightning's warning for a mid-epoch resume with a loader it cannot see is resumable.
NOT_RESUMABLE_WARNING = "You're resuming from a checkpoint that ended before the epoch ended"


def resume_sampler(
    sampler: Any, position: TrainPosition, batch_size: int
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


# ------------------------------------------------------------------------- epoch metrics
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
    epoch_done = _fitting(trainer) and train_position(trainer).epoch_done
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


# ------------------------------------------------------------------------- last.ckpt
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
        return self._generate_state_key(
            every_n_train_steps=self._every_n_train_steps,
            train_time_interval=self._train_time_interval,
        )

    @property
    def path(self) -> str:
        """Where ``last.ckpt`` is written (known once ``setup`` ran)."""
        return self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST)

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

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # With a step or time trigger Lightning saves no epoch ends; this callback always does
        # (skipped when the step trigger saved this very step).
        if not self._every_n_epochs and not self._should_skip_saving_checkpoint(trainer):
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))

    # ---------------------------------------------------------------- resuming
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        super().on_load_checkpoint(trainer, pl_module, checkpoint)
        self._resumed_states = dict(checkpoint.get("callbacks", {}))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if self._resumed_states:  # the callbacks' own load_state_dict has run by now
            carry_best_checkpoints(trainer, self._resumed_states)
            self._resumed_states = {}

    # ---------------------------------------------------------------- interrupts
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.interrupt_requested = False
        self._announce = trainer.global_rank == 0
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_handler()

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
                    Path(callback.dirpath).mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, copies[path])
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


# ------------------------------------------------------------------------- what a run is
#: Key of the run record in every checkpoint the model writes.
RECORD_KEY = "ln_lightning"
#: What must agree for ``--ckpt_path last`` to continue a checkpoint (the loss's arguments may
#: change between runs; its class may not).
RUN_KEYS = ("backbone", "loss", "num_classes", "datamodule")


def class_path(obj: Any) -> str:
    """``module.QualName`` of an object's class (or of a class)."""
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def run_record(model: Any, datamodule: Any = None) -> dict[str, Any]:
    """What identifies a run, as plain data: backbone, loss (class and arguments), classes, data.

    Args:
        model: A :class:`~ln_lightning.module.NoisyLabelClassifier`.
        datamodule: The data module it trains on, if any.
    """
    return {
        "backbone": model.backbone_name,
        "loss": model.loss.config(),
        "num_classes": int(model.num_classes),
        "input_shape": list(model.input_shape) if model.input_shape is not None else None,
        "datamodule": class_path(datamodule) if datamodule is not None else None,
        # What rebuilds the evaluation transform and the classes for prediction.
        "data": (
            {"class_path": class_path(datamodule), "init_args": datamodule.inference_settings()}
            if callable(getattr(datamodule, "inference_settings", None))
            else None
        ),
    }


def _comparable(record: dict[str, Any], key: str) -> Any:
    value = record.get(key)
    return value.get("class_path") if key == "loss" and isinstance(value, dict) else value


def record_mismatch(saved: dict[str, Any], expected: dict[str, Any]) -> str | None:
    """The first of :data:`RUN_KEYS` on which two run records disagree, as ``key: a != b``.

    Keys missing from either record (older checkpoints, a model fitted without a data module)
    are not compared.
    """
    for key in RUN_KEYS:
        a, b = _comparable(saved, key), _comparable(expected, key)
        if a is not None and b is not None and a != b:
            return f"{key} {a} (checkpoint) != {b} (this run)"
    return None


def read_record(path: str | Path) -> dict[str, Any]:
    """The run record of a checkpoint file; for older checkpoints, what its hyper-parameters say.

    Loads the file memory-mapped on the CPU, so reading a large checkpoint costs little.
    """
    checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    record = checkpoint.get(RECORD_KEY)
    if record is not None:
        return record
    hparams = checkpoint.get("hyper_parameters") or {}
    loss = hparams.get("loss")
    return {
        "backbone": hparams.get("backbone") if isinstance(hparams.get("backbone"), str) else None,
        "loss": loss if isinstance(loss, dict) else None,
        "num_classes": hparams.get("num_classes"),
        "datamodule": None,
    }


def loss_from_record(path: str | Path) -> Any:
    """The loss a checkpoint recorded, built again, or ``None`` when its hyper-parameters hold
    the loss's config already (``ln-fit`` checkpoints; Lightning rebuilds it from those)."""
    checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    if (checkpoint.get("hyper_parameters") or {}).get("loss") is not None:
        return None
    record = checkpoint.get(RECORD_KEY)
    if record is None:
        return None
    module, _, name = record["loss"]["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return cls(**record["loss"]["init_args"])


def check_loaded_record(
    checkpoint: dict[str, Any], model: Any, source: str = "the checkpoint"
) -> None:
    """Refuse a checkpoint of another loss; warn when the loss's arguments differ.

    Raises:
        ValueError: When the checkpoint records a loss class other than ``model``'s.
    """
    record = checkpoint.get(RECORD_KEY)
    if record is None:
        return  # written before checkpoints carried the record: the heads are checked instead
    saved, current = record["loss"], model.loss.config()
    if saved["class_path"] != current["class_path"]:
        raise ValueError(
            f"{source} was trained with the loss {saved['class_path']} but this model's loss is "
            f"{current['class_path']}. Use the loss it was trained with: the run's config.yaml "
            "(ln-fit ... --config <run>/config.yaml), or NoisyLabelClassifier.load_from_checkpoint"
            "(path), which rebuilds it."
        )
    changed = {
        key: (value, current["init_args"].get(key))
        for key, value in saved["init_args"].items()
        if current["init_args"].get(key, value) != value
    }
    if changed:
        listed = ", ".join(f"{k}={a!r} -> {b!r}" for k, (a, b) in changed.items())
        rank_zero_warn(
            f"{source} was trained with other loss arguments ({listed}); this model's apply "
            "from now on (predicted probabilities included)."
        )


def last_checkpoint_of_run(run: str | Path) -> Path | None:
    """The ``last.ckpt`` a run directory holds (``<run>/checkpoints/last.ckpt``), if any.

    ``ln-fit-sweep`` continues a run cut off before its end from here.
    """
    path = Path(run) / "checkpoints" / f"{LastCheckpoint.CHECKPOINT_NAME_LAST}.ckpt"
    return path if path.is_file() else None


def last_checkpoint_candidates(trainer: pl.Trainer) -> list[Path]:
    """Every ``last*.ckpt`` an earlier run of this experiment wrote, newest first.

    A new ``ln-fit`` run gets a new logger version, hence a new checkpoint directory, so
    Lightning's own ``ckpt_path="last"`` finds nothing there. This looks in every version of the
    same experiment (``<save_dir>/<name>/*/checkpoints/``), or in the ``dirpath`` given to the
    trainer's :class:`LastCheckpoint` or ``ModelCheckpoint``.
    """
    given = [Path(c.dirpath) for c in trainer.checkpoint_callbacks if c.dirpath]
    if given:
        candidates = [path for folder in given for path in folder.glob("last*.ckpt")]
    elif trainer.logger is not None:
        save_dir = trainer.logger.save_dir or trainer.default_root_dir
        experiment = Path(save_dir) / str(trainer.logger.name or "")
        candidates = list(experiment.glob("*/checkpoints/last*.ckpt"))
    else:
        candidates = list(Path(trainer.default_root_dir).glob("**/checkpoints/last*.ckpt"))
    return sorted(set(candidates), key=lambda path: path.stat().st_mtime, reverse=True)


def find_last_checkpoint(trainer: pl.Trainer, expected: dict[str, Any]) -> Path | None:
    """The newest ``last.ckpt`` of an earlier run of *this* run (``--ckpt_path last``).

    Checkpoints of the same experiment whose run record differs from ``expected`` in backbone,
    loss class, data module or number of classes (:func:`record_mismatch`) are passed over.

    Args:
        trainer: The trainer about to fit (its logger and checkpoint callbacks say where to look).
        expected: :func:`run_record` of the model and data module about to be fitted.

    Returns:
        The checkpoint, or ``None`` when the experiment has none (a fresh start).

    Raises:
        ValueError: When there are checkpoints but none of this run, naming the newest and the
            first key that differs.
    """
    candidates = last_checkpoint_candidates(trainer)
    skipped = []
    for path in candidates:
        mismatch = record_mismatch(read_record(path), expected)
        if mismatch is None:
            for other, why in skipped:
                rank_zero_info(f"--ckpt_path last: passed over {other} ({why}).")
            return path
        skipped.append((path, mismatch))
    if skipped:
        path, why = skipped[0]
        raise ValueError(
            f"--ckpt_path last: no checkpoint of this experiment belongs to this run; the newest, "
            f"{path}, differs in {why}. Continue a particular run with --ckpt_path <file>, or "
            "leave --ckpt_path out to start afresh."
        )
    return None
