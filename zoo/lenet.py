"""LeNet-5, the paper's MNIST backbone (two 5x5 conv layers, three fully connected)."""

from __future__ import annotations

from typing import Any

import torch
from timm.models import register_model
from torch import nn

__all__ = ["LeNet5"]


class LeNet5(nn.Module):
    """LeNet-5 for 28x28 (or 32x32) grey-scale images.

    conv 5x5 (6) - ReLU - max-pool - conv 5x5 (16) - ReLU - max-pool - fc 120 - ReLU - fc 84 -
    ReLU - classifier. ``num_classes=0`` returns the 84 features. Follows timm's conventions
    (``num_features``, ``forward_features``, ``forward_head``, ``reset_classifier``).

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
        self.pre_logits = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * side * side, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.num_features = self.head_hidden_size = 84
        self.num_classes = num_classes
        self.fc = nn.Linear(84, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(84, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def lenet5(pretrained: bool = False, **kwargs: Any) -> LeNet5:
    """LeNet-5 (about 44k parameters on 28x28 inputs)."""
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    if pretrained:
        raise ValueError("lenet5 has no pretrained weights; use pretrained=False.")
    return LeNet5(**kwargs)
