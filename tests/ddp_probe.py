"""A callback the DDP test adds to ``ln-fit``: each rank writes what it saw (importable by path)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback


def _digest(tensors) -> str:
    """A hash of the values of some tensors."""
    sha = hashlib.sha256()
    for tensor in tensors:
        sha.update(tensor.detach().cpu().numpy().tobytes())
    return sha.hexdigest()


def _rows_updated(strategy) -> int | None:
    """Rows of ELR's targets or DivideMix's division that an update reached."""
    state = getattr(strategy, "targets", getattr(strategy, "clean", None))
    return int((state.abs().sum(1) > 0).sum()) if state is not None else None


class RankProbe(Callback):
    """Write ``rank<R>.json``: a hash of the noisy labels, the metrics, the batches seen, and
    hashes of the EMA teacher's weights (SGN), the network's and a training strategy's state."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.seen: dict[int, list[int]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.setdefault(trainer.current_epoch, []).extend(batch.index.tolist())

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        data = trainer.datamodule
        strategy = pl_module.strategy
        labels = data.noise.noisy_labels.numpy().tobytes()
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "noisy_labels": hashlib.sha256(labels).hexdigest(),
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
            "seen": self.seen,
            "teacher": _digest(pl_module.teacher.parameters()) if pl_module.teacher else None,
            # the weights (batch-norm statistics are each rank's own under DDP)
            "network": _digest(pl_module.network.parameters()),
            "strategy": _digest(strategy.state_dict().values()) if strategy else None,
            # examples whose per-sample state (ELR's targets) an update reached
            "rows_updated": _rows_updated(strategy),
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
