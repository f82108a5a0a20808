"""Multi-layer perceptrons for vector inputs (the paper's toy sets use 2 x 2000 hidden units)."""

from __future__ import annotations

from typing import Any

import torch
from timm.models import register_model
from torch import nn

__all__ = ["MLP"]


class MLP(nn.Module):
    """Fully connected ReLU network on flattened inputs.

    Args:
        num_classes: Classifier width; 0 returns the last hidden layer (the features).
        in_chans: Input width (for a vector input of shape ``(D,)``, ``D``; the model linked from a
            data module passes ``input_shape[0]``).
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
        self.num_features = self.head_hidden_size = width
        self.num_classes = num_classes
        self.fc = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def mlp_2x2000(pretrained: bool = False, **kwargs: Any) -> MLP:
    """MLP with two hidden layers of 2000 units (the paper's toy-set model, App. C)."""
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    if pretrained:
        raise ValueError("mlp_2x2000 has no pretrained weights; use pretrained=False.")
    return MLP(**kwargs)
