"""Fig. 3 of the paper as a callback: decision regions of a model of 2-D inputs."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from ln_lightning import analysis
from ln_lightning.callbacks._common import require_datamodule
from ln_lightning.labels import corrupted_mask
from ln_lightning.outputs import log_figure

__all__ = ["DecisionBoundaryPlot"]


class DecisionBoundaryPlot(Callback):
    """Fig. 3: the decision regions of a model of two-dimensional inputs, with its training data.

    Args:
        resolution: Grid points per axis.

    Example:
        >>> DecisionBoundaryPlot(resolution=100).resolution  # for 2-D inputs (two moons, circles)
        100
    """

    def __init__(self, resolution: int = 200) -> None:
        if resolution < 10:
            raise ValueError(f"resolution must be >= 10; got {resolution}.")
        self.resolution = resolution

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        train = require_datamodule(trainer, self).split("train")
        inputs = torch.as_tensor(train.inputs)[train.indices].float()
        if inputs.ndim != 2 or inputs.shape[1] != 2:
            rank_zero_warn("DecisionBoundaryPlot needs 2-D inputs; no figure written.")
            return
        given = train.noisy_labels[train.indices]
        corrupted = corrupted_mask(given, train.clean_labels[train.indices])
        figure = analysis.plot_decision_boundary(
            pl_module, inputs, given, corrupted, self.resolution
        )
        path = log_figure(trainer, "analysis/decision_boundary", figure)
        rank_zero_info(f"Decision boundary: {path}")
