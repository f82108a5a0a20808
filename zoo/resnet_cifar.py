"""ResNet-18 for 32x32 images (He et al. 2016, CIFAR variant: 3x3 stem, no max-pool).

timm's ``resnet18`` is the ImageNet network (7x7 stride-2 stem and max-pool), which shrinks a
32x32 image to 1x1 before the last group; this is the variant noisy-label papers use on CIFAR.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.models import register_model
from torch import nn

from zoo._base import ZooClassifier, build_without_weights

__all__ = ["BasicBlock", "CifarResNet"]


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a (projected) shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(ZooClassifier):
    """A ResNet of basic blocks with a 3x3 stride-1 stem (no max-pool).

    Args:
        num_classes: Classifier width; 0 for a feature extractor.
        in_chans: Input channels.
        layers: Blocks per group ((2, 2, 2, 2) is ResNet-18).
        base_width: Channels of the first group (doubled per group).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        layers: tuple[int, ...] = (2, 2, 2, 2),
        base_width: int = 64,
    ) -> None:
        super().__init__()
        if not layers or min(layers) < 1:
            raise ValueError(f"layers must be a non-empty tuple of positive ints; got {layers}.")
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, base_width, 3, padding=1, bias=False),
            nn.BatchNorm2d(base_width),
            nn.ReLU(inplace=True),
        )
        groups, width = [], base_width
        for index, blocks in enumerate(layers):
            cout = base_width * 2**index
            stride = 1 if index == 0 else 2
            group = [BasicBlock(width, cout, stride)]
            group += [BasicBlock(cout, cout, 1) for _ in range(blocks - 1)]
            groups.append(nn.Sequential(*group))
            width = cout
        self.groups = nn.Sequential(*groups)
        self._init_classifier(width, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.groups(self.stem(x))

    def _pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


@register_model
def resnet18_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-18, CIFAR variant (about 11.2M parameters)."""
    return build_without_weights(CifarResNet, "resnet18_cifar", pretrained, **kwargs)
