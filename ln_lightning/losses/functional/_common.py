"""What every loss family shares: float32 computation and the label check."""

from __future__ import annotations

import torch
from torch import Tensor

from ln_lightning.labels import check_labels

__all__ = ["check_labels", "upcast"]


def upcast(tensor: Tensor) -> Tensor:
    """``tensor`` in float32, or float64 if it already is (half precision is never kept)."""
    return tensor if tensor.dtype == torch.float64 else tensor.float()
