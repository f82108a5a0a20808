"""A callback the resume test adds to ``ln-fit``: log every training step, die at a given one."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback


class StepRecorder(Callback):
    """Append ``{step, epoch, batch_idx, index, target}`` per training step to ``path`` (JSONL).

    With ``kill_at_step`` the process sends itself ``signal_name`` right after that optimiser
    step: SIGKILL (no clean-up, no checkpoint of that step), or SIGINT / SIGTERM as Ctrl-C and
    a scheduler would.
    """

    def __init__(
        self, path: str, kill_at_step: int | None = None, signal_name: str = "SIGKILL"
    ) -> None:
        self.path = Path(path)
        self.kill_at_step = kill_at_step
        self.signal = getattr(signal, signal_name)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        record = {
            "step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "batch_idx": batch_idx,
            "index": batch.index.tolist(),
            "target": batch.target.tolist(),
        }
        with self.path.open("a") as file:
            file.write(json.dumps(record) + "\n")
        if trainer.global_step == self.kill_at_step:
            os.kill(os.getpid(), self.signal)
