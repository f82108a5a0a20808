"""A callback that says where an ``ln-fit`` run's wall time goes, for the benchmarks.

``ln-fit fit ... --trainer.callbacks+=phases.PhaseTimer --trainer.callbacks.path=t.json`` (with
``benchmarks/`` on ``PYTHONPATH``) writes, at the end of the run, the seconds of each phase:
``start-up`` (process start to the first training batch, imports and data set-up included),
``training`` (the training epochs less their validation: batches read and stepped),
``validation``, ``epoch ends`` (checkpoints, logging and the other work between epochs),
``label issues`` (the pass over the training pool and its files),
``test`` (the final weights and the selected checkpoint), and ``total`` so far.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from timing import process_age


class PhaseTimer(Callback):
    """Wall seconds per phase of a run, written as JSON to ``path`` after each test."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.seconds: dict[str, float] = defaultdict(float)
        self.origin = time.perf_counter() - process_age()
        self.mark: dict[str, float] = {}
        self.first_batch = True

    def _now(self) -> float:
        return time.perf_counter() - self.origin

    def on_train_batch_start(self, trainer: pl.Trainer, *args) -> None:
        if self.first_batch:  # the first epoch counts from its first batch, not before it
            self.seconds["start-up"] = self.mark["epoch"] = self._now()
            self.first_batch = False

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.mark["epoch"] = self._now()
        self.mark["validation so far"] = self.seconds["validation"]

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning validates inside the training epoch (before this hook): leave it out
        validated = self.seconds["validation"] - self.mark["validation so far"]
        self.seconds["training"] += self._now() - self.mark["epoch"] - validated

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.mark["validation"] = self._now()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.seconds["validation"] += self._now() - self.mark["validation"]

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.mark["train end"] = self._now()
        fit = self.mark["train end"] - self.seconds["start-up"]
        self.seconds["epoch ends"] = fit - self.seconds["training"] - self.seconds["validation"]

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        now = self._now()
        if "label issues" not in self.seconds and "train end" in self.mark:
            self.seconds["label issues"] = now - self.mark["train end"]
        self.mark["test"] = now

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds["test"] += self._now() - self.mark["test"]
        self.seconds["total"] = self._now()
        self.path.write_text(json.dumps(self.seconds))
