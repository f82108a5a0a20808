"""Softmax baselines per example: CE, label smoothing, GCE and noise against noise."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ln_lightning.losses.functional._common import check_labels, upcast


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy -log softmax(z)_y per example, in float32.

    Args:
        logits: Shape ``(B, K)``.
        labels: Integer class indices of shape ``(B,)`` in ``[0, K)``.

    Returns:
        Float32 loss of shape ``(B,)``.
    """
    with torch.autocast(logits.device.type, enabled=False):
        check_labels(labels, logits.shape[-1])
        return F.cross_entropy(upcast(logits), labels.long(), reduction="none")


def label_smoothing_cross_entropy(logits: Tensor, labels: Tensor, smoothing: float) -> Tensor:
    """Cross-entropy against ``(1 - t) onehot(y) + t / K`` (LS baseline).

    Args:
        logits: Shape ``(B, K)``.
        labels: Shape ``(B,)`` in ``[0, K)``.
        smoothing: ``t`` in [0, 1]; 0 is plain cross-entropy.
    """
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"smoothing must lie in [0, 1]; got {smoothing!r}.")
    with torch.autocast(logits.device.type, enabled=False):
        check_labels(labels, logits.shape[-1])
        log_probs = torch.log_softmax(upcast(logits), dim=-1)
        nll = -log_probs.gather(1, labels.long()[:, None]).squeeze(1)
        return (1.0 - smoothing) * nll - smoothing * log_probs.mean(-1)


def generalized_cross_entropy(logits: Tensor, labels: Tensor, q: float) -> Tensor:
    """Generalized cross-entropy (1 - p_y^q) / q (Zhang & Sabuncu 2018).

    ``q -> 0`` recovers cross-entropy and ``q = 1`` is MAE, ``1 - p_y``. ``p_y^q`` is computed as
    ``exp(q log p_y)`` from ``log_softmax`` so tiny probabilities keep their gradient.

    Args:
        logits: Shape ``(B, K)``.
        labels: Shape ``(B,)`` in ``[0, K)``.
        q: Exponent in (0, 1].
    """
    if not 0.0 < q <= 1.0:
        raise ValueError(f"q must lie in (0, 1]; got {q!r}.")
    with torch.autocast(logits.device.type, enabled=False):
        check_labels(labels, logits.shape[-1])
        log_p = torch.log_softmax(upcast(logits), dim=-1).gather(1, labels.long()[:, None])
        return -torch.expm1(q * log_p.squeeze(1)) / q


def noisy_target_cross_entropy(
    logits: Tensor, labels: Tensor, sigma: float, generator: torch.Generator | None = None
) -> Tensor:
    """Noise against noise (NAN / SLN, Chen et al. 2021): -sum((onehot + sigma eps) log softmax).

    A fresh ``eps ~ N(0, I)`` is drawn on every call (from ``generator`` if given).

    Args:
        logits: Shape ``(B, K)``.
        labels: Shape ``(B,)`` in ``[0, K)``.
        sigma: Standard deviation of the target noise, >= 0; 0 is plain cross-entropy.
        generator: Optional random generator on the logits' device.
    """
    if not sigma >= 0.0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be a finite number >= 0; got {sigma!r}.")
    with torch.autocast(logits.device.type, enabled=False):
        logits = upcast(logits)
        check_labels(labels, logits.shape[-1])
        target = F.one_hot(labels.long(), logits.shape[-1]).to(logits.dtype)
        if sigma > 0:
            noise = torch.randn(
                logits.shape, generator=generator, device=logits.device, dtype=logits.dtype
            )
            target = target + sigma * noise
        return -(target * torch.log_softmax(logits, dim=-1)).sum(-1)
