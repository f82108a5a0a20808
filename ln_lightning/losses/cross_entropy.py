"""Cross-entropy, the baseline every method is compared against."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ln_lightning.losses import functional as LF
from ln_lightning.losses.base import NoisyLabelLoss


class CrossEntropy(NoisyLabelLoss):
    """Plain softmax cross-entropy on a single ``logits`` head of width ``K``.

    Args:
        reduction: ``mean``, ``sum`` or ``none``.
    """

    prediction_heads = ("logits",)

    def head_shapes(self, num_classes: int) -> dict[str, int]:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2; got {num_classes}.")
        return {"logits": num_classes}

    def per_example(self, outputs: Mapping[str, Tensor], labels: Tensor) -> Tensor:
        return LF.cross_entropy(self._require(outputs, "logits"), labels)

    def predict_proba(self, outputs: Mapping[str, Tensor]) -> Tensor:
        return torch.softmax(LF.upcast(self._require(outputs, "logits")), dim=-1)
