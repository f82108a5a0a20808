"""Fig. 6 of the paper as a callback: LN's residuals of clean vs corrupted labels."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from ln_lightning import analysis
from ln_lightning.outputs import log_figure

__all__ = ["ResidualHistogram"]


class ResidualHistogram(Callback):
    """Fig. 6: histograms of LN's squared residuals for clean vs corrupted training labels.

    Two panels: Sigma = I (``r^T r``) and the learned Sigma (``r^T Sigma^{-1} r``). Needs a
    :class:`~ln_lightning.LogisticNormalLoss` model and known clean labels.

    Args:
        bins: Histogram bins (over log10 of the residual).

    Example:
        >>> from ln_lightning.cli import run_cli
        >>> args = ["--trainer.logger=false", "--trainer.callbacks+=ResidualHistogram"]
        >>> cli = run_cli(args, run=False)  # LN on the digits, with the figure at the end
        >>> any(isinstance(callback, ResidualHistogram) for callback in cli.trainer.callbacks)
        True
    """

    def __init__(self, bins: int = 50) -> None:
        if bins < 2:
            raise ValueError(f"bins must be >= 2; got {bins}.")
        self.bins = bins

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        predictions = pl_module.split_predictions()
        if predictions.residual is None:
            rank_zero_warn(
                "ResidualHistogram needs a loss with residuals (LogisticNormalLoss); no figure "
                "written."
            )
            return
        figure = analysis.plot_residual_histograms(predictions, self.bins)
        path = log_figure(trainer, "analysis/residual_histograms", figure)
        rank_zero_info(f"Residual histograms: {path}")
