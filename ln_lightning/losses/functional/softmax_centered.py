"""The softmax-centered bijection between logit space and the simplex, and the label's
regression target in logit space (Sec. 3.2, Eq. 10-11, App. B.5).

Notation as in :mod:`ln_lightning.losses.functional.logistic_normal`: ``K`` real classes, ``D``
the logit dimension (``K`` with the dummy class, ``K - 1`` without), ``M = D + 1`` categories.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "inverse_softmax_centered",
    "logit_dim",
    "num_classes_from_logit_dim",
    "smoothed_target",
    "softmax_centered",
    "target_logit_scale",
    "target_logits",
]


def softmax_centered(logits: Tensor) -> Tensor:
    """Softmax-centered map S_C(z) = softmax([z, 0]) from R^D to the interior of the M-simplex."""
    zeros = logits.new_zeros((*logits.shape[:-1], 1))
    return torch.softmax(torch.cat([logits, zeros], dim=-1), dim=-1)


def inverse_softmax_centered(probs: Tensor) -> Tensor:
    """Inverse S_C^{-1}(q) = log(q_{1..D} / q_M) (Sec. 3.2)."""
    return torch.log(probs[..., :-1]) - torch.log(probs[..., -1:])


def logit_dim(num_classes: int, dummy_class: bool) -> int:
    """Dimension ``D`` of the logit space for ``K`` real classes."""
    return num_classes if dummy_class else num_classes - 1


def num_classes_from_logit_dim(dim: int, dummy_class: bool) -> int:
    """Number of real classes ``K`` for a logit space of dimension ``D``."""
    return dim if dummy_class else dim + 1


def target_logit_scale(num_categories: int, smoothing: float) -> float:
    """C = log(((1 - t) M + t) / t), the target logit of the labelled class (App. B.5)."""
    return math.log(((1.0 - smoothing) * num_categories + smoothing) / smoothing)


def smoothed_target(
    labels: Tensor,
    num_classes: int,
    smoothing: float,
    dummy_class: bool,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Label-smoothed target q = (1 - t) onehot_M(y) + t / M on the M-simplex (Sec. 3.2)."""
    num_categories = logit_dim(num_classes, dummy_class) + 1
    onehot = F.one_hot(labels.long(), num_categories).to(dtype)
    return (1.0 - smoothing) * onehot + smoothing / num_categories


def target_logits(
    labels: Tensor,
    num_classes: int,
    *,
    smoothing: float = 0.01,
    dummy_class: bool = True,
    temperature: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Regression target tau * S_C^{-1}(q) in logit space (Eq. 10-11, App. B.5).

    With the dummy class this is ``tau * C * e_y``. Without it the last real class is the
    reference category, so its target is ``-tau * C * 1`` and the others are ``tau * C * e_y``.

    Args:
        labels: Integer class indices of shape ``(B,)``.
        num_classes: Number of real classes ``K``.
        smoothing: Label smoothing ``t`` in (0, 1).
        dummy_class: Append a dummy category so the logit space is R^K.
        temperature: ``tau`` > 0.
        dtype: Floating dtype of the result.

    Returns:
        Tensor of shape ``(B, D)``.
    """
    dim = logit_dim(num_classes, dummy_class)
    scale = temperature * target_logit_scale(dim + 1, smoothing)
    labels = labels.long()
    if dummy_class:
        return F.one_hot(labels, dim).to(dtype) * scale
    # Without the dummy class label K-1 is the reference category of S_C: one_hot over D + 1
    # columns, minus its last column, gives e_y for y < K-1 and -1 for y = K-1.
    onehot = F.one_hot(labels, dim + 1).to(dtype)
    return (onehot[:, :-1] - onehot[:, -1:]) * scale
