"""LeNet-5, the paper's MNIST backbone (two 5x5 conv layers, three fully connected)."""

from __future__ import annotations

from typing import Any

import torch
from timm.models import register_model
from torch import nn

from zoo._base import ZooClassifier, build_without_weights

__all__ = ["LeNet5"]


class LeNet5(ZooClassifier):
    """LeNet-5 for 28x28 (or 32x32) grey-scale images.

    conv 5x5 (6) - ReLU - max-pool - conv 5x5 (16) - ReLU - max-pool - fc 120 - ReLU - fc 84 -
    ReLU - classifier. ``num_classes=0`` returns the 84 features.

    Args:
        num_classes: Classifier width; 0 for a feature extractor.
        in_chans: Input channels.
        img_size: Input height and width (28 for MNIST, 32 for the original LeNet).
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 6, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )  # fmt: skip
        side = ((img_size - 4) // 2 - 4) // 2
        self.hidden = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * side * side, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True),
        )  # fmt: skip
        self._init_classifier(84, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def _pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden(x)


@register_model
def lenet5(pretrained: bool = False, **kwargs: Any) -> LeNet5:
    """LeNet-5 (about 44k parameters on 28x28 inputs)."""
    return build_without_weights(LeNet5, "lenet5", pretrained, **kwargs)
