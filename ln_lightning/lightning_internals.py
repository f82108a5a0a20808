"""Every read of Lightning internals in the package, each checked against Lightning 2.6.6.

Lightning's public API does not say how far into its epoch a fit is, whether hyper-parameters
came from LightningCLI, or which trainer a module is attached to without raising; a few more
places need its module paths and warning texts. They are read here, and only here, so an
upgrade of Lightning is checked in one file (``tests/test_resume.py`` and ``tests/test_cli.py``
exercise each of them). One more is overridden rather than read: ``LightningCLI._parse_ckpt_path``
(``ln_lightning.cli``), which reads ``--ckpt_path``'s hyper-parameters with a ``torch.load`` of
its own; ``tests/test_checkpoint_io.py`` fails if a Lightning release renames it.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import IO, Any

import lightning.pytorch as pl
from lightning.fabric.utilities.cloud_io import _load as pl_load
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from lightning.pytorch.core.saving import (
    _default_map_location,
    _load_state,
    load_hparams_from_tags_csv,
    load_hparams_from_yaml,
)
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.migration.utils import _pl_migrate_checkpoint, pl_legacy_patch

__all__ = [
    "LOCAL_LOGGERS",
    "NOT_RESUMABLE_WARNING",
    "QUIET_WARNINGS",
    "RANK_ZERO_LOGGERS",
    "attached_trainer",
    "batches_processed",
    "checkpoint_state_key",
    "config_with_checkpoint_hyperparameters",
    "hyperparameters_from_cli",
    "hyperparameters_from_file",
    "is_fitting",
    "load_checkpoint",
    "migrate_checkpoint",
    "module_from_checkpoint",
    "save_at_epoch_end",
    "step_or_time_triggered",
]

#: Loggers that write into a local folder, by the class paths a config may name them with.
LOCAL_LOGGERS = (
    "lightning.pytorch.loggers.CSVLogger",
    "lightning.pytorch.loggers.csv_logs.CSVLogger",
    "lightning.pytorch.loggers.TensorBoardLogger",
    "lightning.pytorch.loggers.tensorboard.TensorBoardLogger",
)
#: Where Lightning logs its rank-zero messages.
RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
)
#: Lightning's warning for a mid-epoch resume with a loader it cannot see is resumable.
NOT_RESUMABLE_WARNING = "You're resuming from a checkpoint that ended before the epoch ended"
#: Warnings ``ln-fit`` hides (regular expressions of their text): a deprecation that Lightning's
#: own pytree helper triggers in torch 2.14, and ModelCheckpoint's "The dirpath has changed ...
#: won't be reloaded" on a checkpoint from another run directory, wrong for ``ln-fit`` (whose
#: LastCheckpoint carries the best-k record over) and moot in test/predict.
QUIET_WARNINGS = (r".*isinstance\(treespec, LeafSpec\)", r"The dirpath has changed from")


def attached_trainer(module: pl.LightningModule) -> pl.Trainer | None:
    """The trainer ``module`` is attached to, or ``None`` (``module.trainer`` raises then)."""
    return module._trainer


def is_fitting(trainer: pl.Trainer | None) -> bool:
    """Whether ``trainer`` is running ``fit`` (not validate, test or predict)."""
    return trainer is not None and trainer.state.fn == TrainerFn.FITTING


def batches_processed(trainer: pl.Trainer) -> int:
    """Training batches of the current epoch already processed (optimiser stepped)."""
    return trainer.fit_loop.epoch_loop.batch_progress.current.processed


def hyperparameters_from_cli() -> bool:
    """Whether a module being built now gets its hyper-parameters from LightningCLI (the parsed
    config, plain data) rather than from its own arguments."""
    return _given_hyperparameters.get() is not None


def checkpoint_state_key(callback: ModelCheckpoint, **triggers: Any) -> str:
    """The key of a checkpoint callback's state in a checkpoint, from its class and ``triggers``."""
    return callback._generate_state_key(**triggers)


def save_at_epoch_end(callback: ModelCheckpoint, trainer: pl.Trainer) -> None:
    """Let ``callback`` save now as at an epoch end, unless it already saved this step."""
    if not callback._should_skip_saving_checkpoint(trainer):
        callback._save_topk_checkpoint(trainer, callback._monitor_candidates(trainer))


def step_or_time_triggered(callback: ModelCheckpoint) -> bool:
    """Whether ``callback`` saves on a step or time trigger instead of epoch ends."""
    return not callback._every_n_epochs


def load_checkpoint(
    path: str | Path | IO,
    map_location: Any = None,
    weights_only: bool | None = None,
    legacy: bool = True,
) -> Any:
    """A checkpoint file read as Lightning reads it (local or remote path), inside Lightning's
    ``pl_legacy_patch`` unless ``legacy=False`` (the trainer's checkpoint IO: its caller holds
    that non-reentrant lock already). Not migrated: see :func:`migrate_checkpoint`."""
    with pl_legacy_patch() if legacy else contextlib.nullcontext():
        return pl_load(
            path, map_location=map_location or _default_map_location, weights_only=weights_only
        )


def migrate_checkpoint(checkpoint: dict[str, Any], path: str | Path | IO) -> dict[str, Any]:
    """A Lightning checkpoint of an older Lightning brought to the current layout."""
    return _pl_migrate_checkpoint(
        checkpoint, checkpoint_path=path if isinstance(path, str | Path) else None
    )


def config_with_checkpoint_hyperparameters(
    parser: Any, config: Any, subcommand: str, checkpoint: dict[str, Any]
) -> Any:
    """``config`` with the model's hyper-parameters saved in ``checkpoint`` merged in, as
    ``LightningCLI._parse_ckpt_path`` merges them after reading the file with a ``torch.load``
    of its own (``ln-fit`` reads the file safely and hands the result here)."""
    hyperparameters = dict(checkpoint.get("hyper_parameters") or {})
    hyperparameters.pop("_instantiator", None)
    if not hyperparameters:
        return config
    if "_class_path" in hyperparameters:
        hyperparameters = {
            "class_path": hyperparameters.pop("_class_path"),
            "dict_kwargs": hyperparameters,
        }
    try:
        return parser.parse_object({subcommand: {"model": hyperparameters}}, config)
    except SystemExit:
        sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
        raise


def hyperparameters_from_file(path: str | Path) -> dict[str, Any]:
    """Hyper-parameters from a ``.yaml`` or ``.csv`` file, as ``load_from_checkpoint``'s
    ``hparams_file`` reads them."""
    if str(path).lower().endswith(".csv"):
        return dict(load_hparams_from_tags_csv(str(path)))
    if str(path).lower().endswith((".yml", ".yaml")):
        return dict(load_hparams_from_yaml(str(path)))
    raise ValueError(f"hparams_file {path}: give a .yaml, .yml or .csv file.")


def module_from_checkpoint(
    cls: type[pl.LightningModule], checkpoint: dict[str, Any], strict: bool | None, **kwargs: Any
) -> pl.LightningModule:
    """``cls.load_from_checkpoint`` on a checkpoint already read (:func:`load_checkpoint`), so a
    model that needs something from it first (its loss) reads the file once."""
    checkpoint.setdefault(cls.CHECKPOINT_HYPER_PARAMS_KEY, {}).update(kwargs)
    model = _load_state(cls, checkpoint, strict=strict, **kwargs)
    tensors = [t for t in checkpoint["state_dict"].values() if hasattr(t, "device")]
    return model.to(tensors[0].device) if tensors else model
