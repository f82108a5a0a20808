"""What every zoo model shares: timm's classifier conventions and a weight-less builder."""

from __future__ import annotations

from typing import Any, TypeVar

import torch
from torch import nn

ModelT = TypeVar("ModelT", bound=nn.Module)


class ZooClassifier(nn.Module):
    """timm's classifier interface on top of ``forward_features`` and ``pre_logits``.

    Subclasses build their layers, call :meth:`_init_classifier` with the feature width, and
    implement ``forward_features`` and ``_pre_logits`` (features -> pooled vector).
    ``num_classes=0`` makes the model a feature extractor.
    """

    num_features: int
    head_hidden_size: int
    num_classes: int
    fc: nn.Module

    def _init_classifier(self, num_features: int, num_classes: int) -> None:
        self.num_features = self.head_hidden_size = num_features
        self.reset_classifier(num_classes)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self._pre_logits(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_without_weights(cls: type[ModelT], name: str, pretrained: bool, **kwargs: Any) -> ModelT:
    """Build a zoo model from timm's ``create_model`` keyword arguments (no pretrained weights)."""
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    if pretrained:
        raise ValueError(f"{name} has no pretrained weights; use pretrained=False.")
    return cls(**kwargs)
