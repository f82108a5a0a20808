"""What every loss family shares: float32 computation and the label check."""

from __future__ import annotations

import torch
from torch import Tensor

from ln_lightning.labels import check_labels

__all__ = ["check_labels", "upcast", "upcast_mean_and_factor"]


def upcast(tensor: Tensor) -> Tensor:
    """``tensor`` in float32, or float64 if it already is (half precision is never kept)."""
    return tensor if tensor.dtype == torch.float64 else tensor.float()


def upcast_mean_and_factor(mean: Tensor, factor: Tensor, what: str) -> tuple[Tensor, Tensor]:
    """``mean`` and a covariance head ``factor`` as wide as it, both upcast to one dtype.

    Args:
        mean: The mean head, ``(B, D)``.
        factor: The head that builds the covariance, ``(B, D)``.
        what: How the error names the loss and its head, e.g. ``"SGN needs a factor head"``.
    """
    mean = upcast(mean)
    factor = upcast(factor).to(mean.dtype)
    if factor.shape != mean.shape:
        raise ValueError(
            f"{what} as wide as the mean: got {tuple(factor.shape)} for a mean of shape "
            f"{tuple(mean.shape)}."
        )
    return mean, factor
