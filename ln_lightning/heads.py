"""Linear heads on shared backbone features, shaped by what the loss declares."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from torch import Tensor, nn


class LinearHeads(nn.Module):
    """One ``nn.Linear`` per named output, all reading the same feature vector.

    The LN model's mean and covariance heads are separate linear layers on a shared backbone
    (Sec. 3.2); the widths come from ``loss.head_shapes(num_classes)``.

    Args:
        in_features: Width of the backbone features.
        shapes: Head name -> output width; entries of width 0 are skipped.

    Example:
        >>> import torch
        >>> heads = LinearHeads(in_features=16, shapes={"mean": 10, "scale": 10})
        >>> {name: tuple(out.shape) for name, out in heads(torch.randn(4, 16)).items()}
        {'mean': (4, 10), 'scale': (4, 10)}
        >>> heads.keep_only(("mean",)); list(heads.heads)
        ['mean']
    """

    def __init__(self, in_features: int, shapes: Mapping[str, int]) -> None:
        super().__init__()
        if in_features < 1:
            raise ValueError(f"in_features must be >= 1; got {in_features}.")
        self.heads = nn.ModuleDict(
            {name: nn.Linear(in_features, width) for name, width in shapes.items() if width > 0}
        )

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        return {name: head(features) for name, head in self.heads.items()}

    def keep_only(self, names: Iterable[str]) -> None:
        """Drop every head not in ``names`` (e.g. the covariance head before export)."""
        keep = set(names)
        missing = keep - set(self.heads)
        if missing:
            raise KeyError(f"cannot keep heads {sorted(missing)}: have {sorted(self.heads)}.")
        for name in list(self.heads):
            if name not in keep:
                del self.heads[name]
