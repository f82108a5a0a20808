"""What the analysis callbacks share."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback


def require_datamodule(trainer: pl.Trainer, callback: Callback) -> Any:
    """The trainer's data module, which must split its data (a ``NoisyLabelDataModule``)."""
    datamodule = trainer.datamodule
    if datamodule is None or not callable(getattr(datamodule, "split", None)):
        raise ValueError(
            f"{type(callback).__name__} needs a NoisyLabelDataModule (trainer.fit(model, "
            "datamodule=...)): it reads the training split with its noisy and clean labels."
        )
    return datamodule
