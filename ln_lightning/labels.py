"""Integer class labels: the one check every layer uses, and which labels are wrong.

Depends on torch alone, so losses, noise, data and metrics can all use it. A clean label of
``-1`` means *unknown* (most of Clothing1M, your own data without a verified subset).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["UNKNOWN", "check_labels", "check_transition_matrix", "corrupted_mask"]

#: The clean label of an example whose true class is not known.
UNKNOWN = -1


def check_labels(
    labels: Tensor,
    num_classes: int,
    *,
    what: str = "labels",
    allow_unknown: bool = False,
    values: bool | None = None,
) -> Tensor:
    """``labels`` as a 1-D int64 tensor on its device, after checking they name classes.

    Args:
        labels: Class indices in ``[0, num_classes)`` (any integer dtype).
        num_classes: Number of classes ``K``.
        what: How the message names them (``"training labels"``, ``"labels"``, ...).
        allow_unknown: Accept ``-1`` (:data:`UNKNOWN`) too, e.g. for clean labels.
        values: Check the values too. ``None`` (the losses' default): only for labels on the
            CPU, since reading the range of labels on a GPU back to the host would stall the
            device at every step; the library's data modules check every batch's labels on the
            CPU before they are moved (``NoisyLabelDataModule.on_before_batch_transfer``).

    Raises:
        ValueError: For a float, bool or complex tensor, a tensor that is not 1-D, or a value
            outside the range, with the range found and the likely cause.
    """
    labels = torch.as_tensor(labels)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise ValueError(
            f"{what} must be integer class indices in [0, {num_classes}); got dtype "
            f"{labels.dtype}. Convert one-hot or float labels with .argmax(-1) or .long()."
        )
    if labels.ndim != 1:
        raise ValueError(f"{what} must be 1-D (one per example); got shape {tuple(labels.shape)}.")
    labels = labels.long()
    if values is None:
        values = labels.device.type == "cpu"
    if values and labels.numel():
        low, high = int(labels.min()), int(labels.max())
        if low < (UNKNOWN if allow_unknown else 0) or high >= num_classes:
            raise ValueError(
                f"{what} must lie in [0, {num_classes}); got values in [{low}, {high}]. Check "
                "num_classes and that labels are 0-based."
            )
    return labels


def corrupted_mask(given: Tensor, clean: Tensor) -> Tensor:
    """True where the given label is known to be wrong (the clean label is known and differs)."""
    return (clean != UNKNOWN) & (given != clean)


def check_transition_matrix(matrix: Tensor, num_classes: int) -> None:
    """Raise ``ValueError`` unless ``matrix`` is a row-stochastic ``K x K`` matrix
    (``T[i, j] = P(noisy label j | true class i)``), as the noise models and Forward use it."""
    if tuple(matrix.shape) != (num_classes, num_classes):
        raise ValueError(
            f"transition_matrix must be {num_classes} x {num_classes} for {num_classes} classes; "
            f"got shape {tuple(matrix.shape)}."
        )
    rows = matrix.sum(-1)
    if (matrix < 0).any() or not torch.allclose(rows, torch.ones_like(rows), atol=1e-4):
        raise ValueError(
            "transition_matrix must be row-stochastic: entries >= 0 and each row summing to 1 "
            "(row i is P(noisy label | true class i))."
        )
