"""``ln-fit``: the LightningCLI of the library (subcommands fit, validate, test, predict)."""

from __future__ import annotations

import inspect
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import yaml
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

import zoo  # noqa: F401  (registers the zoo's backbones in timm)
from ln_lightning.callbacks import CheckpointOnInterrupt
from ln_lightning.data.base import NoisyLabelDataModule
from ln_lightning.metrics import SELECTED_TEST
from ln_lightning.module import NoisyLabelClassifier
from ln_lightning.resume import LastCheckpoint, last_checkpoint_callback, selected_checkpoint


class LoggerSaveConfigCallback(SaveConfigCallback):
    """Save ``config.yaml`` in the log directory and send the full config to every logger.

    W&B shows it as the run's config (nested, as in the YAML), TensorBoard and CSV store it as
    hyper-parameters, so every run records exactly what produced it.
    """

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            logger.log_hyperparams(config)


class LNLightningCLI(LightningCLI):
    """LightningCLI with the data module's shape linked into the model and test-after-fit.

    Without a config the model is a :class:`NoisyLabelClassifier` with its defaults (LN loss,
    ``small_cnn``) on :class:`DigitsDataModule`.

    ``data.num_classes`` and ``data.input_shape`` are linked into the model, so they are set
    once, by the data module. ``--test_after_fit true`` evaluates the final weights on the clean
    test split when ``fit`` ends (``test/*``), and the checkpoint a monitored ``ModelCheckpoint``
    selected (the best ``val/acc_noisy`` in the shipped configs) as ``test_selected/*``.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.set_defaults(
            {
                "model": {"class_path": "ln_lightning.NoisyLabelClassifier"},
                "data": {"class_path": "ln_lightning.DigitsDataModule"},
            }
        )
        parser.link_arguments(
            "data.num_classes", "model.init_args.num_classes", apply_on="instantiate"
        )
        parser.link_arguments(
            "data.input_shape", "model.init_args.input_shape", apply_on="instantiate"
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="After `fit`, evaluate the final weights (test/*) and the checkpoint selected by "
            "the monitored ModelCheckpoint (test_selected/*) on the clean test split.",
        )

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        config = self.config.get(str(self.subcommand), self.config)
        model_args = config.get("model", {}).get("init_args", {}) if config.get("model") else {}
        defaults = inspect.signature(type(self.model)).parameters
        for key in ("num_classes", "input_shape"):  # linked from the data module
            given, linked = model_args.get(key), getattr(self.datamodule, key, None)
            default = defaults[key].default if key in defaults else None
            if given is None or linked is None or given == default:
                continue
            if (tuple(given) if isinstance(given, list | tuple) else given) != linked:
                raise ValueError(
                    f"model.init_args.{key}={given} disagrees with the data module "
                    f"({type(self.datamodule).__name__}: {key}={linked}). ln-fit sets it from the "
                    "data module: leave it out, or choose another --data."
                )

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        """The trainer, with a :class:`LastCheckpoint` when checkpointing is on and none is set."""
        trainer = super().instantiate_trainer(**kwargs)
        if trainer.checkpoint_callbacks and last_checkpoint_callback(trainer) is None:
            trainer.callbacks.append(LastCheckpoint())  # checkpoint callbacks stay last
        return trainer

    def before_fit(self) -> None:
        if self.config_init["fit"].get("ckpt_path") != "last":
            return
        found = find_last_checkpoint(self.trainer)
        if found is not None:
            rank_zero_info(f"Resuming from {found} (--ckpt_path last)")
            self.config_init["fit"]["ckpt_path"] = str(found)

    def after_fit(self) -> None:
        if not self.config.fit.get("test_after_fit") or self.trainer.interrupted:
            return
        self.trainer.test(self.model, datamodule=self.datamodule)
        selected = selected_checkpoint(self.trainer)
        if selected is not None:
            rank_zero_info(
                f"Checkpoint selected by {selected.monitor} ({selected.mode}): "
                f"{selected.best_model_path}; its clean test metrics are {SELECTED_TEST}/*"
            )
            with self.model.test_metrics_prefix(SELECTED_TEST):
                self.trainer.test(
                    self.model, datamodule=self.datamodule, ckpt_path=selected.best_model_path
                )


def find_last_checkpoint(trainer: pl.Trainer) -> Path | None:
    """The newest ``last*.ckpt`` of earlier runs logged where ``trainer``'s logger logs.

    A new ``ln-fit`` run gets a new logger version, hence a new checkpoint directory, so
    Lightning's own ``ckpt_path="last"`` finds nothing there. This looks in every version of the
    same experiment (``<save_dir>/<name>/*/checkpoints/``). ``None`` (Lightning resolves ``last``
    itself) when a checkpoint callback has its own ``dirpath`` or there is no logger.
    """
    callbacks = trainer.checkpoint_callbacks
    if trainer.logger is None or any(getattr(c, "dirpath", None) for c in callbacks):
        return None
    save_dir = trainer.logger.save_dir or trainer.default_root_dir
    experiment = Path(save_dir) / str(trainer.logger.name or "")
    candidates = list(experiment.glob("*/checkpoints/last*.ckpt"))
    return max(candidates, key=lambda path: path.stat().st_mtime) if candidates else None


def run_cli(args: list[str] | None = None, run: bool = True) -> LNLightningCLI:
    """Build (and by default run) the CLI; ``args`` as on the command line, ``sys.argv`` if None."""
    return LNLightningCLI(
        NoisyLabelClassifier,
        NoisyLabelDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_callback=LoggerSaveConfigCallback,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"callbacks": [CheckpointOnInterrupt()]},
        parser_kwargs={"description": "ln-fit: train classifiers on noisy labels (LN likelihood)."},
        args=args,
        run=run,
    )


def main() -> None:
    """Entry point of the ``ln-fit`` console script."""
    try:
        run_cli()
    except SIGTERMException:  # Lightning stops quietly; a terminated run must not look finished
        sys.exit(128 + signal.SIGTERM)
    except (ValueError, FileNotFoundError, KeyError, FloatingPointError) as error:
        if os.environ.get("LN_TRACEBACK"):
            raise
        sys.exit(f"ln-fit: error: {explain(error)}\n(LN_TRACEBACK=1 shows the traceback.)")


def explain(error: BaseException) -> str:
    """The sentence of an error, unwrapped from jsonargparse's reports of ``__init__`` errors.

    jsonargparse wraps an error raised while building the model, its loss or the data module
    in "Does not validate against any of the Union subtypes ..."; the original is its cause.
    """
    path = []
    while str(error).startswith("Does not validate against any of the Union subtypes"):
        subtypes = re.search(r"Subtypes: \[<class '([\w.]+)'", str(error))  # this level's
        if subtypes and subtypes.group(1) in UNION_NAMES:
            path.append(UNION_NAMES[subtypes.group(1)])
        if error.__cause__ is None:
            break
        error = error.__cause__
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return f"{'.'.join(path)}: {text}" if path else text


UNION_NAMES = {
    "ln_lightning.module.NoisyLabelClassifier": "model",
    "ln_lightning.losses.base.NoisyLabelLoss": "loss",
    "ln_lightning.data.base.NoisyLabelDataModule": "data",
}


if __name__ == "__main__":
    main()
