"""LeNet-5: the classic (``lenet5``) and the LN paper's reference code's variant (``lenet5_ref``).

The paper's MNIST experiments (App. D) use "LeNet-5"; its reference code builds a variant with
SAME padding, a third 5x5 convolution of 120 channels and one hidden dense layer (5880 -> 84).
``lenet5`` is the textbook network (the shipped MNIST and Fashion-MNIST configs use it);
``lenet5_ref`` is the reference code's, for reproducing the paper's numbers.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models import register_model
from torch import nn

from zoo._base import ZooClassifier, build_without_weights

__all__ = ["LeNet5", "LeNet5Reference"]


class _LeNet(ZooClassifier):
    """What both variants share: ``features`` (convolutions) then ``hidden`` (dense layers)."""

    features: nn.Sequential
    hidden: nn.Sequential

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def _pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden(x)


class LeNet5(_LeNet):
    """LeNet-5 for 28x28 (or 32x32) grey-scale images, as in the textbook (no padding).

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


@register_model
def lenet5(pretrained: bool = False, **kwargs: Any) -> LeNet5:
    """LeNet-5 (about 44k parameters on 28x28 inputs)."""
    return build_without_weights(LeNet5, "lenet5", pretrained, **kwargs)


class LeNet5Reference(_LeNet):
    """The LeNet-5 of the LN paper's reference code (SAME padding, three convolutions).

    conv 5x5 (6) - ReLU - max-pool - conv 5x5 (16) - ReLU - max-pool - conv 5x5 (120) - ReLU -
    fc 84 - ReLU - classifier, every convolution zero-padded to keep its input size, so a 28x28
    image ends as 7x7x120 = 5880 values before the dense layer. ``num_classes=0`` returns the 84
    features.

    Args:
        num_classes: Classifier width; 0 for a feature extractor.
        in_chans: Input channels.
        img_size: Input height and width (a multiple of 4; 28 for MNIST).
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28) -> None:
        super().__init__()
        if img_size % 4:
            raise ValueError(
                f"lenet5_ref needs an image side that is a multiple of 4; got {img_size}."
            )
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 6, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(16, 120, 5, padding=2), nn.ReLU(inplace=True),
        )  # fmt: skip
        side = img_size // 4
        self.hidden = nn.Sequential(
            nn.Flatten(), nn.Linear(120 * side * side, 84), nn.ReLU(inplace=True)
        )
        self._init_classifier(84, num_classes)


@register_model
def lenet5_ref(pretrained: bool = False, **kwargs: Any) -> LeNet5Reference:
    """The LN paper's reference LeNet-5 (about 545k parameters on 28x28 inputs)."""
    return build_without_weights(LeNet5Reference, "lenet5_ref", pretrained, **kwargs)
