"""The callbacks ``ln-fit`` gives every run: the config saved and logged, and no empty run
folder left by a run that fails during set-up."""

from __future__ import annotations

import lightning.pytorch as pl
import yaml
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.cli import SaveConfigCallback
from typing_extensions import override

from ln_lightning.files import atomic_write
from ln_lightning.outputs import remove_empty_run_dir, run_dir

__all__ = ["EmptyRunCleanup", "LoggerSaveConfigCallback"]


class LoggerSaveConfigCallback(SaveConfigCallback):
    """Save ``config.yaml`` in the log directory and send the full config to every logger.

    W&B shows it as the run's config (nested, as in the YAML), TensorBoard and CSV store it as
    hyper-parameters, so every run records exactly what produced it.

    Example:
        >>> from ln_lightning.cli import run_cli
        >>> cli = run_cli(["--trainer.logger=false"], run=False)
        >>> cli.save_config_callback is LoggerSaveConfigCallback
        True
    """

    @override
    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams(config)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Send the config to the loggers, then write ``config.yaml`` into the run's own folder
        (:func:`~ln_lightning.outputs.run_dir`): Lightning's ``trainer.log_dir`` is the shared
        ``save_dir`` under a ``WandbLogger``, where every run would overwrite one file."""
        if self.already_saved:
            return
        if trainer.is_global_zero:
            self.save_config(trainer, pl_module, stage)  # starts the W&B run: its id names the
            if self.save_to_log_dir:  # folder
                path = run_dir(trainer) / self.config_filename
                if self.multifile:
                    self.parser.save(
                        self.config, str(path), skip_none=False, overwrite=self.overwrite,
                        multifile=True,
                    )  # fmt: skip
                else:  # whole or not at all: it is what a later run is given (--config)
                    with atomic_write(path) as handle:
                        handle.write(self.parser.dump(self.config, skip_none=False))
            self.already_saved = True


class EmptyRunCleanup(Callback):
    """Remove the run folder of a run that fails before writing anything to it (a data error
    found during set-up), so failed attempts do not leave empty ``version_N`` folders.

    Example:
        >>> from ln_lightning.cli import run_cli
        >>> cli = run_cli(["--trainer.logger=false"], run=False)
        >>> any(isinstance(callback, EmptyRunCleanup) for callback in cli.trainer.callbacks)
        True
    """

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if trainer.is_global_zero:
            remove_empty_run_dir(trainer)
