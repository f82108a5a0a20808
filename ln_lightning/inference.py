"""Inference passes: over the training split, and over new image files.

Forward correction's estimate of ``T`` (through the model's loss hooks) and every analysis
callback read the same pass over the training split
(:meth:`NoisyLabelClassifier.training_predictions` caches it per training step), taken in
evaluation mode with the evaluation transform, in a fixed order. :func:`predict_images` labels
image files or PIL images with the transform the model was trained with.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ln_lightning.data.dataset import NoisySample, unpack_batch
from ln_lightning.labels import UNKNOWN, corrupted_mask

if TYPE_CHECKING:
    from ln_lightning.module import NoisyLabelClassifier

__all__ = ["ImagePredictions", "TrainingPredictions", "predict_images", "predict_training_set"]


@dataclass
class TrainingPredictions:
    """The model's view of every training example (in the order of the pass).

    Attributes:
        indices: Pool index of each example (``NoisySample.index``; the position in the pass for
            plain ``(inputs, labels)`` batches).
        given: The label the example was trained with (noisy).
        clean: Its true label, ``-1`` where unknown.
        probs: Predicted class probabilities, ``(N, K)``.
        residual: ``r^T r`` for losses with residuals (LN), else ``None``.
        whitened_residual: ``r^T Sigma_theta^{-1} r`` likewise, else ``None``.
        uncertainty: The loss's per-example uncertainty, if it has one.
    """

    indices: Tensor
    given: Tensor
    clean: Tensor
    probs: Tensor
    residual: Tensor | None = None
    whitened_residual: Tensor | None = None
    uncertainty: Tensor | None = None

    @property
    def corrupted(self) -> Tensor:
        """True where the given label is known to be wrong."""
        return corrupted_mask(self.given, self.clean)

    @property
    def known(self) -> Tensor:
        """True where the clean label is known."""
        return self.clean != UNKNOWN


def _cat(parts: list[Tensor]) -> Tensor | None:
    return torch.cat(parts) if parts else None


@torch.no_grad()
def predict_training_set(
    model: NoisyLabelClassifier, batches: Iterable[Any]
) -> TrainingPredictions:
    """Run ``model`` (in eval mode) over ``batches`` and collect what the analyses need.

    Args:
        model: A trained :class:`~ln_lightning.module.NoisyLabelClassifier` (its loss says what
            residuals and uncertainty there are).
        batches: The training split, e.g. a ``DataLoader`` over
            ``datamodule.split("train", eval_transform=True)``.
    """
    was_training = model.training
    model.eval()
    parts: dict[str, list[Tensor]] = {
        key: [] for key in ("idx", "given", "clean", "probs", "r", "w", "u")
    }
    seen = 0
    try:
        for batch in batches:
            inputs, given, clean = unpack_batch(batch)
            if isinstance(batch, NoisySample):
                index = batch.index
            else:
                index = torch.arange(seen, seen + len(given))
            seen += len(given)
            outputs = model(inputs.to(model.device))
            parts["idx"].append(index.cpu())
            parts["given"].append(given.cpu())
            parts["clean"].append(
                clean.cpu() if clean is not None else torch.full_like(given, UNKNOWN).cpu()
            )
            parts["probs"].append(model.loss.predict_proba(outputs).float().cpu())
            residuals = model.loss.residuals(outputs, given.to(model.device))
            if residuals is not None:
                parts["r"].append(residuals[0].cpu())
                parts["w"].append(residuals[1].cpu())
            uncertainty = model.loss.uncertainty(outputs)
            if uncertainty is not None:
                parts["u"].append(uncertainty.float().cpu())
    finally:
        model.train(was_training)
    return TrainingPredictions(
        indices=torch.cat(parts["idx"]),
        given=torch.cat(parts["given"]),
        clean=torch.cat(parts["clean"]),
        probs=torch.cat(parts["probs"]),
        residual=_cat(parts["r"]),
        whitened_residual=_cat(parts["w"]),
        uncertainty=_cat(parts["u"]),
    )


@dataclass
class ImagePredictions:
    """What :func:`predict_images` returns, one row per image.

    Attributes:
        classes: The class names, in the order of the probability columns.
        probs: Class probabilities, ``(N, K)``.
        predicted: The most probable class name of each image.
        confidence: Its probability, ``(N,)``.
    """

    classes: list[str]
    probs: Tensor
    predicted: list[str]
    confidence: Tensor


def predict_images(
    model: NoisyLabelClassifier,
    images: Iterable[Any],
    settings: dict[str, Any],
    batch_size: int = 64,
) -> ImagePredictions:
    """Class names and probabilities of images, with the evaluation transform of training.

    Args:
        model: A trained classifier (set to evaluation mode here).
        images: File paths or PIL images.
        settings: The data module's :meth:`inference_settings` (``classes``, ``image_size``,
            ``grayscale``, ``crop_pct``), as the checkpoint recorded them.
        batch_size: Images per forward pass.
    """
    from PIL import Image

    from ln_lightning.data.image_folder import image_eval_transform

    if "image_size" not in settings or not settings.get("classes"):
        raise ValueError(
            "predict_images needs a model trained on images (ImageFolderDataModule): its "
            f"checkpoint records the classes and the transform; this one records {settings}."
        )
    size, grey = int(settings["image_size"]), bool(settings.get("grayscale"))
    shape = (1 if grey else 3, size, size)
    transform = image_eval_transform(model.backbone, shape, settings.get("crop_pct"))

    def load(item: Any) -> Tensor:
        if isinstance(item, Image.Image):
            picture = item
        else:
            with Image.open(item) as opened:
                picture = opened.copy()
        return transform(picture.convert("L" if grey else "RGB"))

    items = list(images)
    was_training = model.training
    model.eval()
    chunks = []
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            batch = torch.stack([load(item) for item in items[start : start + batch_size]])
            chunks.append(model.predict_proba(batch.to(model.device)).float().cpu())
    model.train(was_training)
    classes = [str(c) for c in settings["classes"]]
    probs = torch.cat(chunks) if chunks else torch.zeros(0, len(classes))
    confidence, index = probs.max(1) if len(probs) else (torch.zeros(0), torch.zeros(0, dtype=int))
    return ImagePredictions(classes, probs, [classes[i] for i in index.tolist()], confidence)
