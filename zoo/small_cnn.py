"""A small convolutional network for tiny grey-scale images (scikit-learn digits, 8x8)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.models import register_model
from torch import nn

from zoo._base import ZooClassifier, build_without_weights

__all__ = ["SmallCNN"]


class SmallCNN(ZooClassifier):
    """Three 3x3 conv blocks with batch norm, one 2x2 max-pool and global average pooling.

    Args:
        num_classes: Classifier width; 0 for a feature extractor.
        in_chans: Input channels.
        width: Channels of the first block (doubled per block).
        drop_rate: Dropout before the classifier.
    """

    def __init__(
        self, num_classes: int = 10, in_chans: int = 1, width: int = 32, drop_rate: float = 0.0
    ) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

        self.features = nn.Sequential(
            *block(in_chans, width),
            *block(width, 2 * width),
            nn.MaxPool2d(2),
            *block(2 * width, 4 * width),
        )
        self.drop_rate = drop_rate
        self._init_classifier(4 * width, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def _pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x.mean(dim=(2, 3)), self.drop_rate, self.training)


@register_model
def small_cnn(pretrained: bool = False, **kwargs: Any) -> SmallCNN:
    """SmallCNN, width 32 (about 94k parameters)."""
    return build_without_weights(SmallCNN, "small_cnn", pretrained, **kwargs)
