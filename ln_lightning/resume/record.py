"""The run record every checkpoint carries: what identifies a run (backbone, loss, classes,
data), whether a checkpoint belongs to this run, and the loss it was trained with."""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

from lightning.pytorch.utilities import rank_zero_warn

__all__ = [
    "CHECKPOINT_FORMAT",
    "RECORD_KEY",
    "RUN_KEYS",
    "built_from_record",
    "check_loaded_record",
    "class_path",
    "library_version",
    "record_mismatch",
    "run_record",
    "wrong_loss_message",
]


#: Key of the run record in every checkpoint the model writes.
RECORD_KEY = "ln_lightning"
#: What must agree for ``--ckpt_path last`` to continue a checkpoint (the loss's arguments may
#: change between runs; its class may not).
RUN_KEYS = ("backbone", "loss", "strategy", "num_classes", "datamodule")
#: The layout of the checkpoints this version writes, in their record. A version that changes
#: what a checkpoint holds raises it, so an older version refuses the file with one line
#: instead of failing inside (records without it are format 1). Format 2: the network's
#: weights under ``network.`` and the training metrics under ``train_metrics.`` (format 1 is
#: migrated when loaded, :func:`ln_lightning.model.checkpoints.migrate_state_dict`).
CHECKPOINT_FORMAT = 2


def library_version() -> str:
    """The installed version of ln-lightning (``"unknown"`` when run from an uninstalled copy)."""
    try:
        return importlib.metadata.version("ln-lightning")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def class_path(obj: Any) -> str:
    """``module.QualName`` of an object's class (or of a class)."""
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def run_record(model: Any, datamodule: Any = None) -> dict[str, Any]:
    """What identifies a run, as plain data: backbone, loss (class and arguments), classes, data.

    Args:
        model: A :class:`~ln_lightning.module.NoisyLabelClassifier`.
        datamodule: The data module it trains on, if any.
    """
    return {
        "format": CHECKPOINT_FORMAT,
        "version": library_version(),
        "backbone": model.backbone_name,
        "loss": model.loss.config(),
        "strategy": model.strategy.config() if getattr(model, "strategy", None) else None,
        "num_classes": int(model.num_classes),
        "input_shape": list(model.input_shape) if model.input_shape is not None else None,
        "datamodule": class_path(datamodule) if datamodule is not None else None,
        # What rebuilds the evaluation transform and the classes for prediction.
        "data": (
            {
                # The data module that reads new inputs with these settings (a Hugging Face
                # data set's model labels new image files with ImageFolderDataModule).
                "class_path": class_path(datamodule.inference_data_module or datamodule),
                "init_args": datamodule.inference_settings(),
            }
            if datamodule is not None
            else None
        ),
    }


#: Stands for "no strategy" in a comparison (``None`` there means "not recorded").
NO_STRATEGY = "no strategy (the loss alone)"


def _comparable(record: dict[str, Any], key: str) -> Any:
    value = record.get(key)
    if key == "strategy" and key in record and value is None:
        return NO_STRATEGY  # recorded: trained without one (older records lack the key)
    return value.get("class_path") if isinstance(value, dict) else value


def record_mismatch(saved: dict[str, Any], expected: dict[str, Any]) -> str | None:
    """The first of :data:`RUN_KEYS` on which two run records disagree, as ``key: a != b``.

    Keys missing from either record (older checkpoints, a model fitted without a data module)
    are not compared.
    """
    for key in RUN_KEYS:
        a, b = _comparable(saved, key), _comparable(expected, key)
        if a is not None and b is not None and a != b:
            return f"{key} {a} (checkpoint) != {b} (this run)"
    return None


def built_from_record(checkpoint: dict[str, Any], key: str) -> Any:
    """The loss or the strategy (``key``) a checkpoint recorded, built again, or ``None`` when
    its hyper-parameters hold its config already (``ln-fit`` checkpoints; Lightning rebuilds it
    from those) or it recorded none."""
    if (checkpoint.get("hyper_parameters") or {}).get(key) is not None:
        return None
    config = (checkpoint.get(RECORD_KEY) or {}).get(key)
    if config is None:
        return None
    module, _, name = config["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return cls(**config["init_args"])


def wrong_loss_message(source: str, trained: str, current: str) -> str:
    """Why a checkpoint does not fit a model: it was trained with another loss."""
    return (
        f"{source} was trained with {trained} but this model's loss is {current}. Use the loss "
        "it was trained with: the run's config.yaml (ln-fit ... --config <run>/config.yaml), or "
        "NoisyLabelClassifier.load_from_checkpoint(path), which rebuilds it."
    )


def _strategy_name(comparable: str) -> str:
    return comparable if comparable == NO_STRATEGY else f"the strategy {comparable}"


def check_loaded_record(
    checkpoint: dict[str, Any], model: Any, source: str = "the checkpoint"
) -> None:
    """Refuse a checkpoint of another loss or training strategy; warn when the loss's
    arguments differ.

    Raises:
        ValueError: When the checkpoint records a loss class or a strategy other than
            ``model``'s.
    """
    record = checkpoint.get(RECORD_KEY)
    if record is None:
        return  # written before checkpoints carried the record: the heads are checked instead
    if "strategy" in record:  # recorded since training strategies exist
        trained = _comparable(record, "strategy")
        strategy = getattr(model, "strategy", None)
        current_strategy = class_path(strategy) if strategy is not None else NO_STRATEGY
        if trained != current_strategy:
            raise ValueError(
                f"{source} was trained with {_strategy_name(trained)} but this model has "
                f"{_strategy_name(current_strategy)}. Use the run's config.yaml (ln-fit ... "
                "--config <run>/config.yaml), or NoisyLabelClassifier.load_from_checkpoint(path), "
                "which rebuilds it."
            )
    saved, current = record["loss"], model.loss.config()
    if saved["class_path"] != current["class_path"]:
        raise ValueError(
            wrong_loss_message(source, f"the loss {saved['class_path']}", current["class_path"])
        )
    changed = {
        key: (value, current["init_args"].get(key))
        for key, value in saved["init_args"].items()
        if current["init_args"].get(key, value) != value
    }
    if changed:
        listed = ", ".join(f"{k}={a!r} -> {b!r}" for k, (a, b) in changed.items())
        rank_zero_warn(
            f"{source} was trained with other loss arguments ({listed}); this model's apply "
            "from now on (predicted probabilities included)."
        )
