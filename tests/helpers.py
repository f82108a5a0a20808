"""What several test files share: the quick-run flags and one list of every loss."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import Tensor

from ln_lightning import losses as L
from ln_lightning.losses import NoisyLabelLoss, TrainingContext, teacher_key
from ln_lightning.registry import registered

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "cli.yaml")


def quick(
    epochs: int = 1,
    train_batches: int = 2,
    val_batches: int | None = 1,
    test_batches: int | None = None,
) -> list[str]:
    """``ln-fit`` flags for a short run (``epochs`` of ``train_batches``) without a progress bar;
    the CLI's counterpart of :func:`quick_trainer`. ``None``: the whole split."""
    flags = [
        f"--trainer.max_epochs={epochs}",
        f"--trainer.limit_train_batches={train_batches}",
        "--trainer.enable_progress_bar=false",
    ]
    limits = {"val": val_batches, "test": test_batches}
    return flags + [f"--trainer.limit_{k}_batches={n}" for k, n in limits.items() if n is not None]


#: One short epoch.
QUICK = quick()

#: ``ln-fit`` flags that train the own-images configs fast on the 16-pixel stand-in images
#: (``ln_lightning.data.synthetic.write_image_files``).
SMALL_IMAGES = [
    "--data.image_size=16", "--data.augment=false", "--data.batch_size=16",
    "--model.backbone=small_cnn", "--model.optimizer.lr=0.01", "--trainer.max_epochs=25",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
]  # fmt: skip
#: SMALL_IMAGES with the own-data configs' learning rate (0.001) for the documented commands: at
#: 0.01 the small CNN's ranking of the planted wrong labels varied from 4 to 12 of the top 12
#: with the seed (tests/test_own_data.py).
SMALL_IMAGES_CONFIG_LR = [a for a in SMALL_IMAGES if not a.startswith("--model.optimizer.lr")]

#: Every loss of the library by its registered name, as its registered quick example, plus LN's
#: variants and SGN late in training; factories, so each test gets a fresh module.
LOSSES = {
    **{entry.name: entry.build for entry in registered("method")},
    "ln_no_dummy": lambda: L.LogisticNormalLoss(min_scale=0.1, dummy_class=False),
    "ln_diagonal": lambda: L.LogisticNormalLoss(min_scale=0.1, covariance="diagonal"),
    "sgn": lambda: sgn_late_in_training(),
}


def sgn_late_in_training() -> L.ShiftedGaussianNoise:
    """SGN after 100 epochs, so its shift (0.39) takes part in what a test computes."""
    loss = L.ShiftedGaussianNoise()
    loss.on_train_batch_start(TrainingContext(100, lambda: None, lambda: None, 100.0))
    return loss


def with_teacher(loss: NoisyLabelLoss, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """``outputs`` plus a teacher's (a perturbed detached copy) when the loss asks for one, as
    ``NoisyLabelClassifier.training_outputs`` adds them."""
    if loss.teacher_decay is None:
        return outputs
    generator = torch.Generator().manual_seed(0)
    teacher = {
        teacher_key(name): value.detach() + torch.randn(value.shape, generator=generator).to(value)
        for name, value in outputs.items()
    }
    return {**outputs, **teacher}


def ln_fit(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the ``ln-fit`` command as a user would (its console script when installed)."""
    executable = shutil.which("ln-fit") or f"{sys.executable} -m ln_lightning.cli"
    return subprocess.run(
        [*executable.split(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def quick_trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    """A CPU ``Trainer`` for one short epoch without logger, checkpoints or progress bar."""
    defaults = dict(
        max_epochs=1, limit_train_batches=3, limit_val_batches=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path, accelerator="cpu",
    )  # fmt: skip
    return pl.Trainer(**{**defaults, **kwargs})
