"""Where a run's files go, and how figures, metrics and tables reach the user and the loggers.

Used by the model (a loss's :class:`~ln_lightning.losses.base.LossReport`), the callbacks and
the resume machinery, so that every output of a run lands in one folder.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from torch import Tensor

from ln_lightning.files import atomic_write, save_figure

__all__ = ["log_figure", "log_metrics", "remove_empty_run_dir", "run_dir", "write_table"]


def run_dir(trainer: pl.Trainer) -> Path:
    """Where a run's files go: the logger's run directory, else ``default_root_dir``.

    CSV and TensorBoard runs use their ``log_dir``; others (W&B) ``save_dir/name/version``,
    the folder that also holds the run's checkpoints.
    """
    logger = trainer.logger
    if logger is None:
        return Path(trainer.default_root_dir)
    if isinstance(logger, (CSVLogger, TensorBoardLogger)):
        return Path(logger.log_dir)
    save_dir = logger.save_dir or trainer.default_root_dir
    return Path(save_dir) / str(logger.name) / str(logger.version)


def remove_empty_run_dir(trainer: pl.Trainer) -> bool:
    """Remove the run's folder if a failed run left it without a single file (and the
    logger's folders of it); ``True`` if removed. A folder with any file stays."""
    folder = run_dir(trainer)
    if not folder.is_dir() or any(p.is_file() for p in folder.rglob("*")):
        return False
    for sub in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        sub.rmdir()
    folder.rmdir()
    return True


def log_figure(trainer: pl.Trainer, name: str, figure: Any) -> Path:
    """Save ``figure`` as ``<run dir>/figures/<name>.png`` and log it to image-capable loggers."""
    import matplotlib.pyplot as plt

    path = save_figure(figure, run_dir(trainer) / "figures" / f"{name.replace('/', '_')}.png")
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=name, images=[str(path)], step=trainer.global_step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(name, figure, global_step=trainer.global_step)
    plt.close(figure)
    return path


def log_metrics(trainer: pl.Trainer, metrics: dict[str, float]) -> None:
    """Send ``metrics`` to every logger at the current step (outside ``LightningModule.log``)."""
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)
        logger.save()


def write_table(trainer: pl.Trainer, name: str, table: Tensor) -> Path:
    """Write a 2-D tensor as ``<run dir>/<name>.csv`` (rank zero only); returns the path."""
    path = run_dir(trainer) / f"{name}.csv"
    if trainer.is_global_zero:
        with atomic_write(path, newline="") as handle:
            csv.writer(handle).writerows(
                [f"{value:.6g}" for value in row] for row in table.tolist()
            )
    return path
