"""A small convolutional network for tiny grey-scale images (scikit-learn digits, 8x8)."""

from __future__ import annotations

from typing import Any

import torch
from timm.models import register_model
from torch import nn

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """Three 3x3 conv blocks with batch norm, one 2x2 max-pool and global average pooling.

    Follows timm's conventions: ``num_features``, ``forward_features``, ``forward_head``,
    ``get_classifier`` and ``reset_classifier``; ``num_classes=0`` returns pooled features.

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
        self.num_features = self.head_hidden_size = 4 * width
        self.drop_rate = drop_rate
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))
        x = nn.functional.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _create(pretrained: bool, **kwargs: Any) -> SmallCNN:
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    if pretrained:
        raise ValueError("small_cnn has no pretrained weights; use pretrained=False.")
    return SmallCNN(**kwargs)


@register_model
def small_cnn(pretrained: bool = False, **kwargs: Any) -> SmallCNN:
    """SmallCNN, width 32 (about 94k parameters)."""
    return _create(pretrained, **kwargs)
