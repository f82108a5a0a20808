"""Rank the training examples by how likely their label is wrong, after training."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info

from ln_lightning import analysis
from ln_lightning.callbacks._common import require_datamodule
from ln_lightning.outputs import log_metrics, run_dir

__all__ = ["MislabelReport"]


class MislabelReport(Callback):
    """Score every training example by how likely its label is wrong, after training.

    Writes ``<run dir>/mislabel_scores.csv`` (index, given_label, predicted_label, score,
    clean_label; most suspicious first). Where clean labels are known (synthetic noise,
    CIFAR-N) it logs how well the score finds the corrupted labels: ``mislabel/auroc``,
    ``mislabel/average_precision`` and ``mislabel/precision_at_n``. With a ``WandbLogger`` the
    ``top_k`` most suspicious examples are logged as a table with their images.

    A network that has memorised the noise is confident about the wrong labels too, so a score
    taken only at the end of training finds fewer of them (CE on digits: AUROC 0.64-0.70 at the
    end vs 0.85-0.88 averaged over training; docs/analysis.md). ``every_n_epochs`` averages the
    score over the epochs (one extra inference pass over the training set each time).

    Args:
        score: See :func:`ln_lightning.analysis.mislabel_scores` (``auto``: ``1 - p(given
            label)``, the best measured for LN and CE alike).
        every_n_epochs: Also score every n-th epoch and report the mean; ``0``: the end only.
        top_k: Rows of the W&B table.
        file_name: CSV name inside the run directory.
    """

    def __init__(
        self,
        score: str = "auto",
        every_n_epochs: int = 0,
        top_k: int = 50,
        file_name: str = "mislabel_scores.csv",
    ) -> None:
        if score not in analysis.SCORES:
            raise ValueError(f"score must be one of {analysis.SCORES}; got {score!r}.")
        if top_k < 0 or every_n_epochs < 0:
            raise ValueError(
                f"top_k and every_n_epochs must be >= 0; got {top_k} and {every_n_epochs}."
            )
        self.score, self.every_n_epochs, self.top_k = score, every_n_epochs, top_k
        self.file_name = file_name
        self.metrics: dict[str, float] = {}
        self._history: list[torch.Tensor] = []

    def _scores(self, pl_module: pl.LightningModule) -> tuple:
        predictions = pl_module.training_predictions()
        return predictions, analysis.mislabel_scores(predictions, self.score)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if self.every_n_epochs and epoch % self.every_n_epochs == 0 and trainer.is_global_zero:
            self._history.append(self._scores(pl_module)[1])

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        predictions, scores = self._scores(pl_module)
        if self._history:
            scores = torch.stack([*self._history, scores]).mean(0)
        path = analysis.write_mislabel_csv(predictions, scores, run_dir(trainer) / self.file_name)
        rank_zero_info(f"Mislabelled-example scores: {path}")
        corrupted, known = predictions.corrupted, predictions.known
        if 0 < int(corrupted.sum()) < int(known.sum()):
            found = analysis.detection_metrics(scores, corrupted, known)
            self.metrics = {
                f"mislabel/{k}": float(v) for k, v in found.items() if not k.startswith("num_")
            }
            log_metrics(trainer, self.metrics)
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if wandb_loggers and self.top_k:
            columns, rows = self._table(trainer, predictions, scores)
            for logger in wandb_loggers:
                logger.log_table(key="mislabel/top", columns=columns, data=rows)

    def _table(self, trainer: pl.Trainer, predictions: Any, scores: torch.Tensor) -> tuple:
        import wandb

        train = require_datamodule(trainer, self).split("train")
        order = scores.argsort(descending=True)[: self.top_k]
        predicted = predictions.probs.argmax(1)
        columns = ["index", "input", "given_label", "predicted_label", "score", "clean_label"]
        rows = []
        for i in order.tolist():
            index = int(predictions.indices[i])
            item = torch.as_tensor(train.inputs[index]).float()
            shown: Any = round(float(item.flatten()[0]), 4) if item.ndim < 2 else None
            if item.ndim >= 2:
                image = item if item.ndim == 2 else item.movedim(0, -1).squeeze(-1)
                image = (image - image.min()) / (image.max() - image.min() + 1e-12)
                shown = wandb.Image(image.numpy())
            rows.append(
                [
                    index, shown, int(predictions.given[i]), int(predicted[i]),
                    float(scores[i]), int(predictions.clean[i]),
                ]
            )  # fmt: skip
        return columns, rows
