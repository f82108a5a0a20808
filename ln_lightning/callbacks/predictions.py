"""Write predictions to a file: what ``ln-fit predict`` leaves behind."""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from typing_extensions import override

from ln_lightning.files import atomic_write

__all__ = ["PredictionWriter"]

FORMATS = ("csv", "jsonl")


class PredictionWriter(BasePredictionWriter):
    """Write one row per predicted example to a CSV (or JSON Lines) file.

    Columns: ``index`` (position in its data set; for the training and validation splits, in the
    training pool), ``path`` (when the examples are files), ``predicted`` (class name where the
    data set has names, else its index), ``predicted_index``, ``confidence`` (its probability),
    ``given_label`` and ``clean_label`` (when the split has labels, not for unlabelled images;
    the clean one is empty where unknown), ``uncertainty`` (LN: the largest standard deviation
    of the predicted Gaussian; ``lambda`` means certain), and ``p_<class>`` for each of the K
    classes.

    ``ln-fit`` adds one to every run; it acts on ``predict`` only. The split comes from the data
    module: its unlabelled inputs if it has some (``--data.predict_root`` for images), else its
    ``predict_split`` (``test`` by default). The file goes to ``output``, or to
    ``<log dir>/predictions_<split>.csv``: for ``ln-fit predict --ckpt_path RUN/checkpoints/X.ckpt``
    that is ``RUN/predict/X/``. Under DDP each rank writes its own file (``.rank<N>`` before the
    suffix). The path is printed at the end.

    Args:
        output: File to write (``.csv`` or ``.jsonl``); the default above when ``None``.
        file_format: ``csv`` or ``jsonl``, when ``output`` does not say (default ``csv``).

    Example:
        >>> import csv, tempfile, lightning.pytorch as pl
        >>> from pathlib import Path
        >>> from ln_lightning import DigitsDataModule, NoisyLabelClassifier
        >>> folder = Path(tempfile.mkdtemp())
        >>> writer = PredictionWriter(output=str(folder / "predictions.csv"))
        >>> trainer = pl.Trainer(logger=False, enable_progress_bar=False, callbacks=[writer])
        >>> model = NoisyLabelClassifier(input_shape=(1, 8, 8))
        >>> _ = trainer.predict(model, datamodule=DigitsDataModule())
        >>> with (folder / "predictions.csv").open() as handle:
        ...     rows = list(csv.DictReader(handle))
        >>> len(rows), list(rows[0])[:4]  # the 360 test digits
        (360, ['index', 'predicted', 'predicted_index', 'confidence'])
    """

    def __init__(self, output: str | None = None, file_format: str = "csv") -> None:
        super().__init__(write_interval="batch")
        if file_format not in FORMATS:
            raise ValueError(f"file_format must be one of {FORMATS}; got {file_format!r}.")
        self.output = output
        self.file_format = file_format
        self.path: Path | None = None
        self.rows = 0
        self._writing: contextlib.AbstractContextManager[Any] | None = None
        self._handle: TextIO | None = None
        self._writer: Any = None
        self._names: Sequence[str] | None = None
        self._ids: Sequence[str] | None = None
        self._labelled = True

    def _target(self, trainer: pl.Trainer, split: str) -> Path:
        if self.output is not None:
            path = Path(self.output)
        else:
            folder = Path(trainer.log_dir or trainer.default_root_dir)
            path = folder / f"predictions_{split}.{self.file_format}"
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        return path

    @override
    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule  # (None: plain loaders, no names or ids)
        split = datamodule.prediction_split() if datamodule is not None else "predict"
        self._labelled = datamodule.has_labels(split) if datamodule is not None else True
        self._names = datamodule.class_names if datamodule is not None else None
        self._ids = datamodule.example_ids(split) if datamodule is not None else None
        self.path = self._target(trainer, split)
        # Whole or not at all: rows go to a temporary file, renamed over the path at the end.
        self._writing = atomic_write(self.path, newline="")
        self._handle = self._writing.__enter__()
        self._writer, self.rows = None, 0

    def _label(self, value: int) -> str:
        if value < 0:
            return ""
        if self._names is not None and value < len(self._names):
            return str(self._names[value])
        return str(value)

    def _header(self, prediction: dict[str, Tensor]) -> list[str]:
        num_classes = prediction["probs"].shape[1]
        names = (
            list(self._names)
            if self._names is not None and len(self._names) == num_classes
            else [str(k) for k in range(num_classes)]
        )
        columns = ["index"]
        if self._ids is not None:
            columns.append("path")
        columns += ["predicted", "predicted_index", "confidence"]
        if "given" in prediction and self._labelled:
            columns += ["given_label", "clean_label"]
        if "uncertainty" in prediction:
            columns.append("uncertainty")
        return columns + [f"p_{name}" for name in names]

    @override
    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if not isinstance(prediction, dict):  # a model of another kind: probabilities only
            prediction = {"probs": prediction}
        prediction = {k: v.detach().cpu() for k, v in prediction.items()}
        probs = prediction["probs"].float()
        if "index" not in prediction:
            start = self.rows
            prediction["index"] = torch.arange(start, start + len(probs))
        columns = self._header(prediction)
        if self._writer is None:
            if self.path.suffix == ".jsonl":
                self._writer = "jsonl"
            else:
                self._writer = csv.writer(self._handle)
                self._writer.writerow(columns)
        confidence, predicted = probs.max(1)
        for row in range(len(probs)):
            index = int(prediction["index"][row])
            values: list[Any] = [index]
            if self._ids is not None:
                values.append(str(self._ids[index]))
            values += [self._label(int(predicted[row])), int(predicted[row])]
            values.append(round(float(confidence[row]), 6))
            if "given" in prediction and self._labelled:
                values.append(self._label(int(prediction["given"][row])))
                values.append(self._label(int(prediction["clean"][row])))
            if "uncertainty" in prediction:
                values.append(round(float(prediction["uncertainty"][row]), 6))
            values += [round(p, 6) for p in probs[row].tolist()]
            if self._writer == "jsonl":
                self._handle.write(json.dumps(dict(zip(columns, values, strict=True))) + "\n")
            else:
                self._writer.writerow(values)
        self.rows += len(probs)

    @override
    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._writing is not None:
            writing, self._writing, self._handle = self._writing, None, None
            writing.__exit__(None, None, None)
            rank_zero_info(f"Predictions: {self.path} ({self.rows} rows)")

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """A failed prediction leaves no file (and an earlier one as it was)."""
        if self._writing is not None:
            writing, self._writing, self._handle = self._writing, None, None
            with contextlib.suppress(BaseException):
                writing.__exit__(type(exception), exception, exception.__traceback__)
