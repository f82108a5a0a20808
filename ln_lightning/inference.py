"""Inference passes: over the training split, and over new image files.

Forward correction's estimate of ``T`` (through the model's loss hooks) and every analysis
callback read the same pass over the training split
(:meth:`NoisyLabelClassifier.split_predictions` caches it per training step), taken in
evaluation mode with the evaluation transform, in a fixed order. :func:`predict_images` labels
image files or PIL images with the transform the model was trained with.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from ln_lightning.data.dataset import unpack_batch
from ln_lightning.labels import UNKNOWN, corrupted_mask
from ln_lightning.losses.base import NoisyLabelLoss

__all__ = [
    "ImagePredictions",
    "Predictor",
    "SplitPredictions",
    "backbone_features",
    "evaluating",
    "predict_batches",
    "predict_images",
    "predict_split",
]


@dataclass
class SplitPredictions:
    """The model's view of every example of a split (in the order of the pass).

    Attributes:
        indices: Pool index of each example (``NoisySample.index``; the position in the pass for
            plain ``(inputs, labels)`` batches).
        given: The label the example was trained with (noisy).
        clean: Its true label, ``-1`` where unknown.
        probs: Predicted class probabilities, ``(N, K)``.
        residual: ``r^T r`` for losses with residuals (LN), else ``None``.
        whitened_residual: ``r^T Sigma_theta^{-1} r`` likewise, else ``None``.
        uncertainty: The loss's per-example uncertainty, if it has one.

    Example:
        >>> import torch
        >>> from ln_lightning import CrossEntropy, NoisyLabelClassifier
        >>> batches = [(torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]))]
        >>> ln = predict_split(NoisyLabelClassifier(input_shape=(1, 8, 8)), batches)
        >>> ln.probs.shape, ln.residual.shape, ln.uncertainty.shape  # LN has residuals
        (torch.Size([4, 10]), torch.Size([4]), torch.Size([4]))
        >>> ce_model = NoisyLabelClassifier(loss=CrossEntropy(), input_shape=(1, 8, 8))
        >>> ce = predict_split(ce_model, batches)
        >>> ce.residual is None and ce.uncertainty is None
        True
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


class Predictor(Protocol):
    """What an inference pass needs of a model: its network's head outputs, the loss that reads
    them (:class:`~ln_lightning.losses.base.NoisyLabelLoss`), the backbone (for the image
    transform), its device and train/eval mode. :class:`~ln_lightning.NoisyLabelClassifier` is
    one.

    Example:
        >>> import torch
        >>> from ln_lightning import NoisyLabelClassifier
        >>> model: Predictor = NoisyLabelClassifier(input_shape=(1, 8, 8))  # one kind of Predictor
        >>> batches = [(torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 3, 4]))]
        >>> predictions = predict_split(model, batches)
        >>> predictions.indices.tolist(), predictions.clean.tolist()  # plain batches: no truth
        ([0, 1, 2, 3, 4], [-1, -1, -1, -1, -1])
    """

    loss: NoisyLabelLoss
    backbone: nn.Module
    training: bool

    @property
    def device(self) -> torch.device: ...

    def __call__(self, inputs: Tensor) -> dict[str, Tensor]: ...

    def predict_proba(self, inputs: Tensor) -> Tensor: ...

    def train(self, mode: bool = True) -> Any: ...


@contextlib.contextmanager
def evaluating(model: Predictor) -> Iterator[None]:
    """``model`` in evaluation mode without gradients meanwhile; its mode is restored after."""
    was_training = model.training
    model.train(False)
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def predict_batches(model: Predictor, batches: Iterable[Any]) -> Iterator[SplitPredictions]:
    """:func:`predict_split` one batch at a time (each a :class:`SplitPredictions` of its
    examples): for passes that keep only part of each batch's ``(B, K)`` probabilities (the
    label-issue pass at large K). The model is in eval mode while the iterator runs."""
    seen = 0
    with evaluating(model):
        for batch in batches:
            inputs, given, clean, index = unpack_batch(batch)
            if index is None:
                index = torch.arange(seen, seen + len(given))
            if clean is None:
                clean = torch.full_like(given, UNKNOWN)
            seen += len(given)
            outputs = model(inputs.to(model.device))
            residuals = model.loss.residuals(outputs, given.to(model.device))
            uncertainty = model.loss.uncertainty(outputs)
            yield SplitPredictions(
                indices=index.cpu(),
                given=given.cpu(),
                clean=clean.cpu(),
                probs=model.loss.predict_proba(outputs).float().cpu(),
                residual=residuals[0].cpu() if residuals is not None else None,
                whitened_residual=residuals[1].cpu() if residuals is not None else None,
                uncertainty=uncertainty.float().cpu() if uncertainty is not None else None,
            )


def backbone_features(
    model: Predictor,
    batches: Iterable[Any],
    dtype: torch.dtype = torch.float16,
    thumbnail: int | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(indices, features, thumbnails)``: the backbone's output of every example of
    ``batches`` (flattened, kept as ``dtype`` on the CPU: half the memory in ``float16``) and,
    with ``thumbnail``, its input averaged down to ``thumbnail x thumbnail`` per channel, for
    searches by similarity (near-duplicates). The model is in eval mode meanwhile."""
    indices, features, thumbnails, seen = [], [], [], 0
    with evaluating(model):
        for batch in batches:
            inputs, given, _, index = unpack_batch(batch)
            if index is None:
                index = torch.arange(seen, seen + len(given))
            seen += len(given)
            output = model.backbone(inputs.to(model.device))
            features.append(output.flatten(1).to("cpu", dtype))
            indices.append(index.cpu())
            if thumbnail and inputs.ndim == 4:
                small = torch.nn.functional.adaptive_avg_pool2d(inputs.float(), thumbnail)
                thumbnails.append(small.flatten(1).to("cpu", dtype))
    pictures = torch.cat(thumbnails) if thumbnails else None
    return torch.cat(indices), torch.cat(features), pictures


def predict_split(model: Predictor, batches: Iterable[Any]) -> SplitPredictions:
    """Run ``model`` (in eval mode) over ``batches`` and collect what the analyses need.

    Args:
        model: A trained classifier (its loss says what residuals and uncertainty there are).
        batches: A split, e.g. a ``DataLoader`` over
            ``datamodule.split("train", eval_transform=True)``; plain ``(inputs, labels)``
            batches are indexed by their position in the pass.
    """
    parts = list(predict_batches(model, batches))

    def joined(name: str) -> Tensor | None:
        values = [getattr(part, name) for part in parts]
        return torch.cat(values) if values and values[0] is not None else None

    return SplitPredictions(**{f.name: joined(f.name) for f in fields(SplitPredictions)})


@dataclass
class ImagePredictions:
    """What :func:`predict_images` returns, one row per image.

    Attributes:
        classes: The class names, in the order of the probability columns.
        probs: Class probabilities, ``(N, K)``.
        predicted: The most probable class name of each image.
        confidence: Its probability, ``(N,)``.

    Example:
        >>> from PIL import Image
        >>> from ln_lightning import CrossEntropy, NoisyLabelClassifier
        >>> model = NoisyLabelClassifier(
        ...     loss=CrossEntropy(), num_classes=2, input_shape=(1, 16, 16)
        ... )
        >>> settings = {"classes": ["cat", "dog"], "image_size": 16, "grayscale": True}
        >>> images = [Image.new("L", (40, 30)), Image.new("L", (20, 20))]  # any size: resized
        >>> result = predict_images(model, images, settings)
        >>> result.classes, result.probs.shape, len(result.predicted), result.confidence.shape
        (['cat', 'dog'], torch.Size([2, 2]), 2, torch.Size([2]))
    """

    classes: list[str]
    probs: Tensor
    predicted: list[str]
    confidence: Tensor


def predict_images(
    model: Predictor,
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
    chunks = []
    with evaluating(model):
        for start in range(0, len(items), batch_size):
            batch = torch.stack([load(item) for item in items[start : start + batch_size]])
            chunks.append(model.predict_proba(batch.to(model.device)).float().cpu())
    classes = [str(c) for c in settings["classes"]]
    probs = torch.cat(chunks) if chunks else torch.zeros(0, len(classes))
    confidence, index = probs.max(1) if len(probs) else (torch.zeros(0), torch.zeros(0, dtype=int))
    return ImagePredictions(classes, probs, [classes[i] for i in index.tolist()], confidence)
