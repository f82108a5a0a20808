"""timm's transforms for the data modules of images, from the backbone's data config, on files
or (``--data.cache``) on decoded images in memory; what prediction needs from training."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm.data
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image
from torch import nn

from ln_lightning.data.base import Transform
from ln_lightning.data.image_cache import CACHE_MODES, TensorTransform, cache_images
from ln_lightning.data.splits import DataSplits

__all__ = [
    "GREY_MODES",
    "TimmImageTransforms",
    "first_image_mode",
    "image_data_config",
    "image_eval_transform",
]

#: PIL modes read as one channel.
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def first_image_mode(paths: Sequence[Path]) -> str:
    """The PIL mode of the first image that opens (``"RGB"`` when none does: the unreadable
    ones are named when the data is set up)."""
    for path in paths:
        try:
            with Image.open(path) as image:
                return image.mode
        except (OSError, ValueError):
            continue
    return "RGB"


def image_data_config(
    backbone: nn.Module | None, input_shape: Sequence[int], crop_pct: float | None = None
) -> dict[str, Any]:
    """timm's data config of ``backbone`` (mean, standard deviation, interpolation, crop
    fraction; ``timm.data.resolve_model_data_config``) for images of ``input_shape`` ``(C, H,
    W)``, with ``crop_pct`` when given; one channel keeps the mean of the three means and
    standard deviations. timm's defaults (ImageNet statistics) without a backbone."""
    if isinstance(backbone, nn.Module):
        config = timm.data.resolve_model_data_config(backbone)
    else:
        config = timm.data.resolve_data_config({"input_size": tuple(input_shape)})
    config = dict(config, input_size=tuple(input_shape))
    if crop_pct is not None:
        config["crop_pct"] = crop_pct
    if input_shape[0] == 1 and len(config["mean"]) == 3:
        config["mean"] = (sum(config["mean"]) / 3,)
        config["std"] = (sum(config["std"]) / 3,)
    return config


def image_eval_transform(
    backbone: nn.Module | None, input_shape: Sequence[int], crop_pct: float | None = None
) -> Transform:
    """timm's evaluation transform (resize, centre crop, normalise) of
    :func:`image_data_config`: what ``ImageFolderDataModule`` applies to validation, test and
    new images."""
    return timm.data.create_transform(
        **image_data_config(backbone, input_shape, crop_pct), is_training=False
    )


class TimmImageTransforms:
    """timm's transforms and the inference settings of a data module of images.

    Needs the attributes ``image_size``, ``grayscale``, ``augment``, ``crop_pct``,
    ``input_shape``, ``class_names`` and ``batch_size`` (and ``trainer`` once attached);
    :class:`ImageFolderDataModule` and :class:`~ln_lightning.data.HFImageDataModule` share it.

    Example:
        >>> from ln_lightning.data import ImageFolderDataModule
        >>> issubclass(ImageFolderDataModule, TimmImageTransforms)
        True
    """

    image_size: int
    grayscale: bool
    augment: bool
    cache: str
    cached: bool
    crop_pct: float | None
    input_shape: tuple[int, ...]
    class_names: Sequence[str] | None
    batch_size: int

    def _image_options(
        self, image_size: int, augment: bool, crop_pct: float | None, cache: str = "auto"
    ) -> None:
        """Check and keep the options every image data module takes."""
        if image_size < 8:
            raise ValueError(f"image_size must be at least 8 pixels; got {image_size}.")
        if crop_pct is not None and not 0.0 < crop_pct <= 1.0:
            raise ValueError(f"crop_pct must lie in (0, 1]; got {crop_pct}.")
        if cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {CACHE_MODES}; got {cache!r}.")
        self.image_size, self.augment, self.crop_pct = image_size, augment, crop_pct
        self.cache, self.cached = cache, False

    def cache_splits(self, splits: DataSplits) -> DataSplits:
        """The training pool (and the test set) decoded once into memory as ``--data.cache``
        says (:func:`~ln_lightning.data.image_cache.cache_images`), said in the log with its
        size; the transforms then run on tensors. Under DDP every process holds its own copy
        (each reads the whole pool: the resumable sampler gives it other examples every epoch),
        so ``auto``'s budget is shared by the processes on this machine.
        """
        name = type(self).__name__
        trainer = getattr(self, "trainer", None)
        processes = trainer.num_devices if trainer is not None and trainer.world_size > 1 else 1
        pool, why = cache_images(
            splits.train_inputs, self.cache, self.file_workers(), processes=processes
        )
        rank_zero_info(f"{name}: the {len(splits.train_inputs):,} training images: {why}.")
        if pool is None:
            return splits
        self.cached = True
        test = splits.test_inputs
        if test is not None:
            cached_test, _ = cache_images(
                test, self.cache, self.file_workers(), processes=processes
            )
            test = cached_test if cached_test is not None else test
        return dataclasses.replace(splits, train_inputs=pool, test_inputs=test)

    def data_config(self, backbone: nn.Module | None = None) -> dict[str, Any]:
        """timm's data config for the backbone (the trainer's model's by default) at
        ``image_size`` (timm's defaults without one); see :func:`image_data_config`."""
        if backbone is None:
            trainer = getattr(self, "trainer", None)
            backbone = getattr(getattr(trainer, "lightning_module", None), "backbone", None)
        return image_data_config(backbone, self.input_shape, self.crop_pct)

    def train_transform(self) -> Transform | None:
        if self.cached:  # decoded images in memory: the same transform, on tensors
            return TensorTransform(self.data_config(), training=self.augment)
        return timm.data.create_transform(**self.data_config(), is_training=self.augment)

    def eval_transform(self, backbone: nn.Module | None = None) -> Transform | None:
        if self.cached:
            return TensorTransform(self.data_config(backbone), training=False)
        return timm.data.create_transform(**self.data_config(backbone), is_training=False)

    def inference_settings(self) -> dict[str, Any]:
        """Classes, image size, channels and crop: what prediction needs from training."""
        return {
            "classes": list(self.class_names or []),
            "image_size": self.image_size,
            "grayscale": self.grayscale,
            "crop_pct": self.crop_pct,
            "batch_size": self.batch_size,
        }
