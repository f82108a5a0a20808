"""``ln-fit predict --ckpt_path FILE`` alone: the data settings from the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from ln_lightning.resume import read_record

__all__ = ["settings_from_checkpoint"]


def _option(args: list[str], name: str) -> str | None:
    """The value of ``--name X`` or ``--name=X`` in ``args`` (the last one given)."""
    value = None
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def settings_from_checkpoint(args: list[str]) -> list[str]:
    """``ln-fit predict --ckpt_path FILE`` without a config or a ``--data`` class: the data
    module of the checkpoint's run, with the settings it recorded (classes, image size,
    channels, crop; :meth:`~ln_lightning.data.NoisyLabelDataModule.inference_settings`), and a
    CSV logger beside the run. Flags given still apply on top, so ``ln-fit predict --ckpt_path
    RUN/checkpoints/last.ckpt --data.predict_root new_photos`` alone labels new images without
    the training images. (Lightning takes the model's hyper-parameters from the checkpoint.)
    The checkpoint is read as the trainer will read it: plain data only unless
    ``--weights_only false`` is given.
    """
    if not args or args[0] != "predict":
        return args
    checkpoint = _option(args, "--ckpt_path")
    given = ("--config", "-c", "--data", "--data.class_path")
    if checkpoint is None or not Path(checkpoint).is_file():
        return args
    if any(a in given or a.startswith(tuple(f"{g}=" for g in given)) for a in args):
        return args
    trusted = _option(args, "--weights_only")
    data = read_record(checkpoint, weights_only=trusted not in ("false", "False")).get("data")
    if not data:
        return args
    logger = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "."}}
    injected = ["--data", json.dumps(data)]
    if not any(a.startswith("--trainer.logger") for a in args):
        injected += ["--trainer.logger", json.dumps(logger)]
    return [args[0], *injected, *args[1:]]
