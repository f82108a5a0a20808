"""The model's side of a checkpoint: what it adds when saved (the run record, the epoch's
training metrics), what it checks and migrates when loaded, and ``load_from_checkpoint``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from torch import Tensor, nn
from torchmetrics import Metric

from ln_lightning import resume
from ln_lightning.lightning_internals import (
    attached_trainer,
    hyperparameters_from_cli,
    hyperparameters_from_file,
    module_from_checkpoint,
)

__all__ = [
    "FORMAT_1_PREFIXES",
    "check_checkpoint_heads",
    "check_checkpoint_shapes",
    "load_model",
    "migrate_state_dict",
    "on_load",
    "on_save",
    "unpicklable_hyperparameters",
]

#: How the weights were named in checkpoints of format 1 (before the network and the stage
#: metrics were parts of their own) -> their names now.
FORMAT_1_PREFIXES = {
    "backbone.": "network.backbone.",
    "heads.": "network.heads.",
    "teacher.": "network.teacher.",
    "train_loss_mean.": "train_metrics.loss_mean.",
    "train_acc_noisy.": "train_metrics.accuracies.noisy.",
    "train_acc_clean.": "train_metrics.accuracies.clean.",
    "train_noise_split.": "train_metrics.noise_split.",
}


def unpicklable_hyperparameters(init_args: dict[str, Any]) -> list[str]:
    """Arguments to leave out of ``hparams`` when the model is built in Python: under
    LightningCLI the hyper-parameters saved are the parsed config (plain data); built in Python,
    modules and callables would be pickled into the checkpoint, which ``weights_only`` loading
    refuses; they are passed again to ``load_from_checkpoint`` instead (the loss is rebuilt from
    the record).

    Example:
        >>> import torch
        >>> unpicklable_hyperparameters({"backbone": "small_cnn", "loss": torch.nn.MSELoss()})
        ['loss']
    """
    if hyperparameters_from_cli():
        return []
    plain = (str, int, float, bool, type(None), tuple, list, dict)
    return [name for name, value in init_args.items() if not isinstance(value, plain)]


def migrate_state_dict(checkpoint: dict[str, Any]) -> None:
    """Rename the weights of a checkpoint of format 1 (or without a record) to this layout, in
    place, so checkpoints written by earlier versions load unchanged.

    Example:
        >>> checkpoint = {"state_dict": {"backbone.conv.weight": 1, "loss.t": 2}}
        >>> migrate_state_dict(checkpoint)
        >>> sorted(checkpoint["state_dict"])
        ['loss.t', 'network.backbone.conv.weight']
    """
    record = checkpoint.get(resume.RECORD_KEY) or {}
    if record.get("format", 1) >= 2:
        return
    renamed = {}
    for key, value in checkpoint["state_dict"].items():
        old = next((p for p in FORMAT_1_PREFIXES if key.startswith(p)), None)
        renamed[FORMAT_1_PREFIXES[old] + key[len(old) :] if old else key] = value
    checkpoint["state_dict"] = renamed


def check_checkpoint_heads(state_dict: Mapping[str, Tensor], model: Any) -> None:
    """Raise ``ValueError`` when a checkpoint's heads are not those of ``model``'s loss."""
    prefix = "network.heads.heads."
    saved = {key[len(prefix) :].split(".")[0] for key in state_dict if key.startswith(prefix)}
    built = set(model.network.heads.heads)
    if saved and not saved <= built:  # (a subset: auxiliary heads dropped for export)
        raise ValueError(
            resume.wrong_loss_message(
                "the checkpoint",
                f"another loss (it has the heads {sorted(saved)})",
                f"{type(model.loss).__name__}, which builds {sorted(built)}",
            )
        )


def check_checkpoint_shapes(state_dict: Mapping[str, Tensor], model: nn.Module) -> None:
    """Raise ``ValueError`` naming the first weight whose shape differs between a checkpoint
    and ``model`` (another backbone, number of classes or input size), instead of the
    state-dict report of every mismatch."""
    own = model.state_dict()
    for key, value in state_dict.items():
        if key in own and hasattr(value, "shape") and value.shape != own[key].shape:
            raise ValueError(
                f"the checkpoint's weights do not fit this model: {key} is "
                f"{tuple(value.shape)} there and {tuple(own[key].shape)} here (another backbone, "
                "number of classes or input size). Use the run's config.yaml (ln-fit ... "
                "--config <run>/config.yaml), or NoisyLabelClassifier.load_from_checkpoint(path)."
            )


def on_save(model: Any, checkpoint: dict[str, Any], epoch_metrics: Mapping[str, Metric]) -> None:
    """What ``on_save_checkpoint`` adds: the epoch's training metrics (summed over DDP ranks)
    and the run record (backbone, loss, classes, data, format)."""
    trainer = attached_trainer(model)
    resume.save_epoch_metrics(checkpoint, epoch_metrics, trainer)
    datamodule = trainer.datamodule if trainer is not None else None
    checkpoint[resume.RECORD_KEY] = resume.run_record(model, datamodule)


def on_load(model: Any, checkpoint: dict[str, Any], epoch_metrics: list[str]) -> dict | None:
    """What ``on_load_checkpoint`` does: migrate older layouts, refuse another loss's or
    another shape's weights, warn about other loss arguments, keep the summed epoch metrics on
    rank 0 only; returns the data module's inference settings it recorded."""
    migrate_state_dict(checkpoint)
    record = checkpoint.get(resume.RECORD_KEY) or {}
    source = getattr(attached_trainer(model), "ckpt_path", None)
    resume.check_loaded_record(checkpoint, model, str(source) if source else "the checkpoint")
    model.method.on_load_checkpoint(model, checkpoint)  # per-sample state sized to its rows
    check_checkpoint_heads(checkpoint["state_dict"], model)
    check_checkpoint_shapes(checkpoint["state_dict"], model)
    resume.restore_epoch_metrics(checkpoint, epoch_metrics, model.global_rank)
    return (record.get("data") or {}).get("init_args") or None


def load_model(
    cls: type[pl.LightningModule],
    checkpoint_path: str | Path,
    map_location: Any = None,
    hparams_file: str | Path | None = None,
    strict: bool | None = None,
    weights_only: bool | None = None,
    **kwargs: Any,
) -> pl.LightningModule:
    """``cls.load_from_checkpoint``: the file read once and safely
    (:func:`~ln_lightning.resume.read_checkpoint`), the loss and the strategy rebuilt from the
    record unless ``loss=`` / ``strategy=`` is given (a model built in Python cannot pickle them
    into its hyper-parameters)."""
    checkpoint = resume.read_checkpoint(checkpoint_path, map_location, weights_only)
    if hparams_file is not None:  # replaces the saved ones, as in Lightning
        checkpoint[cls.CHECKPOINT_HYPER_PARAMS_KEY] = hyperparameters_from_file(hparams_file)
    for key in ("loss", "strategy"):  # what a model built in Python could not save
        if key not in kwargs:
            built = resume.built_from_record(checkpoint, key)
            if built is not None:
                kwargs[key] = built
    return module_from_checkpoint(cls, checkpoint, strict, **kwargs)
