"""What the analysis callbacks share."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from ln_lightning.data.contract import check_data_contract


def require_datamodule(trainer: pl.Trainer, callback: Callback) -> Any:
    """The trainer's data module, which must keep the data contract (it splits its data,
    knows its classes; :class:`~ln_lightning.data.contract.NoisyLabelData`)."""
    datamodule = trainer.datamodule
    if datamodule is None:
        raise ValueError(
            f"{type(callback).__name__} needs a NoisyLabelDataModule (trainer.fit(model, "
            "datamodule=...)): it reads the training split with its noisy and clean labels."
        )
    check_data_contract(datamodule)
    return datamodule
