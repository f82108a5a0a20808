"""Softmax losses on a single ``logits`` head: CE and the robust baselines LS, GCE and NAN."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ln_lightning.losses import functional as LF
from ln_lightning.losses.base import NoisyLabelLoss


class SoftmaxLoss(NoisyLabelLoss):
    """Base of the losses that read one ``logits`` head of width ``K`` and predict its softmax."""

    prediction_heads = ("logits",)

    def head_shapes(self, num_classes: int) -> dict[str, int]:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2; got {num_classes}.")
        return {"logits": num_classes}

    def predict_proba(self, outputs: Mapping[str, Tensor]) -> Tensor:
        return torch.softmax(LF.upcast(self._require(outputs, "logits")), dim=-1)


class CrossEntropy(SoftmaxLoss):
    """Plain softmax cross-entropy (CE), computed in float32.

    Args:
        reduction: ``mean``, ``sum`` or ``none``.
    """

    def per_example(self, outputs: Mapping[str, Tensor], labels: Tensor) -> Tensor:
        return LF.cross_entropy(self._require(outputs, "logits"), labels)


class LabelSmoothing(SoftmaxLoss):
    """Cross-entropy against the smoothed target ``(1 - t) onehot(y) + t / K`` (LS).

    Args:
        smoothing: ``t`` in [0, 1]; the paper's grid is 0.1, ..., 0.9. 0 is CE.
        reduction: ``mean``, ``sum`` or ``none``.
    """

    def __init__(self, smoothing: float = 0.1, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        if not 0.0 <= smoothing <= 1.0:
            raise ValueError(f"smoothing must lie in [0, 1]; got {smoothing!r}.")
        self.smoothing = float(smoothing)

    def extra_repr(self) -> str:
        return f"smoothing={self.smoothing}"

    def per_example(self, outputs: Mapping[str, Tensor], labels: Tensor) -> Tensor:
        logits = self._require(outputs, "logits")
        return LF.label_smoothing_cross_entropy(logits, labels, self.smoothing)


class GeneralizedCrossEntropy(SoftmaxLoss):
    """Generalized cross-entropy ``(1 - p_y^q) / q`` (GCE, Zhang & Sabuncu 2018).

    Args:
        q: In (0, 1]; ``q -> 0`` is CE, ``q = 1`` is MAE. Paper grid 0.1, ..., 0.9; 0.7 is the
            original paper's default.
        reduction: ``mean``, ``sum`` or ``none``.
    """

    def __init__(self, q: float = 0.7, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        if not 0.0 < q <= 1.0:
            raise ValueError(f"q must lie in (0, 1]; got {q!r}.")
        self.q = float(q)

    def extra_repr(self) -> str:
        return f"q={self.q}"

    def per_example(self, outputs: Mapping[str, Tensor], labels: Tensor) -> Tensor:
        return LF.generalized_cross_entropy(self._require(outputs, "logits"), labels, self.q)


class NoiseAgainstNoise(SoftmaxLoss):
    """Noise against noise (NAN, also SLN; Chen et al. 2021).

    While training, Gaussian noise ``sigma * N(0, I)`` is added to the one-hot target at every
    step; in evaluation (``.eval()``, e.g. validation) the loss is plain CE. The noise comes from
    torch's global generator, so ``seed_everything`` makes a run reproducible.

    Args:
        sigma: Noise standard deviation >= 0; paper grid 0.1, 0.2, 0.5, 0.75, 1.0.
        reduction: ``mean``, ``sum`` or ``none``.
    """

    def __init__(self, sigma: float = 0.5, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        if not sigma >= 0.0:
            raise ValueError(f"sigma must be a finite number >= 0; got {sigma!r}.")
        self.sigma = float(sigma)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"

    def per_example(self, outputs: Mapping[str, Tensor], labels: Tensor) -> Tensor:
        sigma = self.sigma if self.training else 0.0
        return LF.noisy_target_cross_entropy(self._require(outputs, "logits"), labels, sigma)
