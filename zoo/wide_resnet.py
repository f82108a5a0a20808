"""Wide ResNets (Zagoruyko & Komodakis 2016), pre-activation, for 32x32 images (CIFAR).

WRN-28-2 is the paper's CIFAR-10/100 and CIFAR-N backbone (App. D): depth 28 (a stem conv and
three groups of four pre-activation basic blocks), widen factor 2, about 1.47M parameters.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from timm.models import register_model
from torch import nn

from zoo._base import ZooClassifier, build_without_weights

__all__ = ["PreActBlock", "WideResNet"]


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 with an identity or 1x1-conv shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.shortcut = (
            nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # The projection shortcut sees the pre-activated input, as in the reference WRN code.
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = F.relu(self.bn2(out))
        out = F.dropout(out, self.drop_rate, self.training)
        return self.conv2(out) + shortcut


class WideResNet(ZooClassifier):
    """WRN-``depth``-``widen_factor``: a stem conv, three groups of pre-activation blocks.

    Args:
        num_classes: Classifier width; 0 for a feature extractor.
        in_chans: Input channels.
        depth: 6n + 4 (28 gives four blocks per group).
        widen_factor: Channel multiplier of the groups (16, 32, 64) x k.
        drop_rate: Dropout between the two convs of each block.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        depth: int = 28,
        widen_factor: int = 2,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"depth must be 6n + 4 with n >= 1 (e.g. 16, 22, 28); got {depth}.")
        if widen_factor < 1:
            raise ValueError(f"widen_factor must be >= 1; got {widen_factor}.")
        blocks_per_group = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.stem = nn.Conv2d(in_chans, widths[0], 3, padding=1, bias=False)
        groups = []
        for index, (cin, cout) in enumerate(itertools.pairwise(widths)):
            stride = 1 if index == 0 else 2
            blocks = [PreActBlock(cin, cout, stride, drop_rate)]
            blocks += [PreActBlock(cout, cout, 1, drop_rate) for _ in range(blocks_per_group - 1)]
            groups.append(nn.Sequential(*blocks))
        self.groups = nn.Sequential(*groups)
        self.final_norm = nn.BatchNorm2d(widths[-1])
        self._init_classifier(widths[-1], num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.final_norm(self.groups(self.stem(x))))

    def _pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


@register_model
def wrn28_2(pretrained: bool = False, **kwargs: Any) -> WideResNet:
    """WRN-28-2 (about 1.47M parameters), the paper's CIFAR backbone."""
    kwargs = {"depth": 28, "widen_factor": 2, **kwargs}
    return build_without_weights(WideResNet, "wrn28_2", pretrained, **kwargs)


@register_model
def wrn28_10(pretrained: bool = False, **kwargs: Any) -> WideResNet:
    """WRN-28-10 (about 36.5M parameters), the common larger CIFAR baseline."""
    kwargs = {"depth": 28, "widen_factor": 10, **kwargs}
    return build_without_weights(WideResNet, "wrn28_10", pretrained, **kwargs)
