"""Continuing a run: which checkpoint is "last", and what it holds.

Checked against Lightning 2.6 (``lightning.pytorch``); every read of Lightning internals in the
package lives in this module and names that version.
"""

from __future__ import annotations

import importlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

__all__ = [
    "RECORD_KEY",
    "LastCheckpoint",
    "check_loaded_record",
    "find_last_checkpoint",
    "last_checkpoint_callback",
    "loss_from_record",
    "newest_checkpoint_path",
    "read_record",
    "record_mismatch",
    "run_record",
    "selected_checkpoint",
]


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
            # Lightning 2.6 refuses epoch and step triggers together; epoch ends are saved in
            # on_train_epoch_end below whatever the trigger.
            every_n_epochs=None if every_n_train_steps or train_time_interval else 1,
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

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        # With a step or time trigger Lightning saves no epoch ends; this callback always does
        # (skipped when the step trigger saved this very step).
        if not self._every_n_epochs and not self._should_skip_saving_checkpoint(trainer):
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))

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
