"""Multi-layer perceptrons for vector inputs (the paper's toy sets use 2 x 2000 hidden units)."""

from __future__ import annotations

from typing import Any

import torch
from timm.models import register_model
from torch import nn

from zoo._base import ZooClassifier, build_without_weights

__all__ = ["MLP"]


class MLP(ZooClassifier):
    """Fully connected ReLU network on flattened inputs.

    Args:
        num_classes: Classifier width; 0 returns the last hidden layer (the features).
        in_chans: Input width (for a vector input of shape ``(D,)``, ``D``; a model linked to a
            data module gets ``input_shape[0]``).
        hidden: Widths of the hidden layers.
    """

    def __init__(
        self, num_classes: int = 2, in_chans: int = 2, hidden: tuple[int, ...] = (2000, 2000)
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_chans
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(inplace=True)]
            width = size
        self.body = nn.Sequential(*layers)
        self._init_classifier(width, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@register_model
def mlp_2x2000(pretrained: bool = False, **kwargs: Any) -> MLP:
    """MLP with two hidden layers of 2000 units (the paper's toy-set model, App. C)."""
    return build_without_weights(MLP, "mlp_2x2000", pretrained, **kwargs)
