"""Callbacks: the paper's analyses as run outputs (figures, reports, metrics), and a checkpoint
when a run is interrupted (:class:`CheckpointOnInterrupt`, which ``ln-fit`` always adds).

Add them in a config (``trainer.callbacks``) or on the command line, e.g.
``--trainer.callbacks+=ln_lightning.callbacks.MislabelReport``. Each runs at the end of
training on global rank 0, writes its files into the run's log directory and logs figures and
tables to every logger that takes them (W&B images and tables, TensorBoard figures; CSV runs
keep the PNG/CSV files). The logic lives in :mod:`ln_lightning.analysis`.
"""

from __future__ import annotations

import signal
import threading
import weakref
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ln_lightning import analysis
from ln_lightning.callbacks.predictions import PredictionWriter
from ln_lightning.resume import last_checkpoint_callback

__all__ = [
    "AnnotatorNLL",
    "CheckpointOnInterrupt",
    "DecisionBoundaryPlot",
    "MislabelReport",
    "PredictionWriter",
    "ResidualHistogram",
    "log_figure",
    "run_dir",
]


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


def log_figure(trainer: pl.Trainer, name: str, figure: Any) -> Path:
    """Save ``figure`` as ``<run dir>/figures/<name>.png`` and log it to image-capable loggers."""
    import matplotlib.pyplot as plt

    path = run_dir(trainer) / "figures" / f"{name.replace('/', '_')}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=name, images=[str(path)], step=trainer.global_step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(name, figure, global_step=trainer.global_step)
    plt.close(figure)
    return path


def _datamodule(trainer: pl.Trainer, callback: Callback) -> Any:
    datamodule = trainer.datamodule
    if datamodule is None or getattr(datamodule, "train_set", None) is None:
        raise ValueError(
            f"{type(callback).__name__} needs a NoisyLabelDataModule (trainer.fit(model, "
            "datamodule=...)): it reads the training split with its noisy and clean labels."
        )
    return datamodule


# One inference pass over the training set per trainer and training step, shared by every
# analysis callback that asks at that step (they would otherwise each repeat it).
_PREDICTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _training_predictions(
    trainer: pl.Trainer, pl_module: pl.LightningModule, callback: Callback
) -> analysis.TrainingPredictions:
    cached = _PREDICTIONS.get(trainer)
    if cached is not None and cached[0] == trainer.global_step:
        return cached[1]
    predictions = analysis.predict_training_set(pl_module, _datamodule(trainer, callback))
    _PREDICTIONS[trainer] = (trainer.global_step, predictions)
    return predictions


def _log_metrics(trainer: pl.Trainer, metrics: dict[str, float]) -> None:
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)
        logger.save()


class ResidualHistogram(Callback):
    """Fig. 6: histograms of LN's squared residuals for clean vs corrupted training labels.

    Two panels: Sigma = I (``r^T r``) and the learned Sigma (``r^T Sigma^{-1} r``). Needs a
    :class:`~ln_lightning.LogisticNormalLoss` model and known clean labels.

    Args:
        bins: Histogram bins (over log10 of the residual).
    """

    def __init__(self, bins: int = 50) -> None:
        if bins < 2:
            raise ValueError(f"bins must be >= 2; got {bins}.")
        self.bins = bins

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        predictions = _training_predictions(trainer, pl_module, self)
        if predictions.residual is None:
            rank_zero_warn("ResidualHistogram needs LogisticNormalLoss; no figure written.")
            return
        figure = analysis.plot_residual_histograms(predictions, self.bins)
        path = log_figure(trainer, "analysis/residual_histograms", figure)
        rank_zero_info(f"Residual histograms: {path}")


class DecisionBoundaryPlot(Callback):
    """Fig. 3: the decision regions of a model of two-dimensional inputs, with its training data.

    Args:
        resolution: Grid points per axis.
    """

    def __init__(self, resolution: int = 200) -> None:
        if resolution < 10:
            raise ValueError(f"resolution must be >= 10; got {resolution}.")
        self.resolution = resolution

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        train = _datamodule(trainer, self).train_set
        inputs = torch.as_tensor(train.inputs)[train.indices].float()
        if inputs.ndim != 2 or inputs.shape[1] != 2:
            rank_zero_warn("DecisionBoundaryPlot needs 2-D inputs; no figure written.")
            return
        given = train.noisy_labels[train.indices]
        corrupted = given != train.clean_labels[train.indices]
        figure = analysis.plot_decision_boundary(
            pl_module, inputs, given, corrupted, self.resolution
        )
        path = log_figure(trainer, "analysis/decision_boundary", figure)
        rank_zero_info(f"Decision boundary: {path}")


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

    def _scores(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple:
        predictions = _training_predictions(trainer, pl_module, self)
        return predictions, analysis.mislabel_scores(predictions, self.score)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if self.every_n_epochs and epoch % self.every_n_epochs == 0 and trainer.is_global_zero:
            self._history.append(self._scores(trainer, pl_module)[1])

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        predictions, scores = self._scores(trainer, pl_module)
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
            _log_metrics(trainer, self.metrics)
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if wandb_loggers and self.top_k:
            columns, rows = self._table(trainer, predictions, scores)
            for logger in wandb_loggers:
                logger.log_table(key="mislabel/top", columns=columns, data=rows)

    def _table(self, trainer: pl.Trainer, predictions: Any, scores: torch.Tensor) -> tuple:
        import wandb

        train = trainer.datamodule.train_set
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


class AnnotatorNLL(Callback):
    """Table 4: NLL of the predictions on the training images against several human annotators.

    Needs a data module with ``annotator_labels`` (pool-indexed ``(N, A)``), e.g.
    :class:`~ln_lightning.data.CIFAR10NDataModule` (its three ``random_label`` columns). Logged as
    ``train/annotator_nll`` at the end of every ``every_n_epochs``-th epoch and at the end of
    training.

    Args:
        every_n_epochs: How often during training; ``0`` only at the end.
    """

    def __init__(self, every_n_epochs: int = 0) -> None:
        if every_n_epochs < 0:
            raise ValueError(f"every_n_epochs must be >= 0; got {every_n_epochs}.")
        self.every_n_epochs = every_n_epochs
        self.value: float | None = None

    def _measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = _datamodule(trainer, self)
        labels = getattr(datamodule, "annotator_labels", None)
        if labels is None:
            raise ValueError(
                f"AnnotatorNLL needs several labels per training example; "
                f"{type(datamodule).__name__} has no annotator_labels (use CIFAR10NDataModule)."
            )
        predictions = _training_predictions(trainer, pl_module, self)
        self.value = float(analysis.annotator_nll(predictions.probs, labels[predictions.indices]))
        _log_metrics(trainer, {"train/annotator_nll": self.value})

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if self.every_n_epochs and epoch % self.every_n_epochs == 0 and trainer.is_global_zero:
            self._measure(trainer, pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self._measure(trainer, pl_module)


class CheckpointOnInterrupt(Callback):
    """Ctrl-C or SIGTERM during ``fit``: finish the batch, write ``last.ckpt``, stop.

    The first Ctrl-C (SIGINT) lets the running training batch finish, then saves the checkpoint
    and shuts down as Lightning does on ``KeyboardInterrupt``; a second Ctrl-C aborts at once.
    SIGTERM (a scheduler's pre-emption) is turned by Lightning into a stop at the end of the
    batch, where this saves the same checkpoint. It goes where the run's ``ModelCheckpoint``
    writes ``last.ckpt``, so ``ln-fit fit ... --ckpt_path last`` continues the run exactly,
    mid-epoch included (see docs/performance.md). Under DDP every rank stops at the same batch.
    ``ln-fit`` adds this callback to every run.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous_handler: Any = None
        self._announce = True

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.requested = False
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
        if self.requested:  # the second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True
        if self._announce:
            print("\nCtrl-C: stopping after this batch with a checkpoint (Ctrl-C again to abort).")

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        requested = self.requested
        if trainer.world_size > 1:
            requested = trainer.strategy.reduce_boolean_decision(requested, all=False)
        if requested:
            self.save(trainer)
            self._restore_handler()
            raise KeyboardInterrupt

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SIGTERMException):
            self.save(trainer)

    @staticmethod
    def save(trainer: pl.Trainer) -> Path:
        """Write the checkpoint that ``--ckpt_path last`` finds; returns its path."""
        last = last_checkpoint_callback(trainer)
        if last is not None and last.dirpath:
            path = Path(last.path)
        else:
            checkpoint = trainer.checkpoint_callback
            directory = getattr(checkpoint, "dirpath", None)
            directory = Path(directory) if directory else run_dir(trainer) / "checkpoints"
            path = directory / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}.ckpt"
        trainer.save_checkpoint(path)
        rank_zero_info(f"Interrupted: saved {path}; continue with --ckpt_path last (or this path).")
        return path
