"""Softmax losses on a single ``logits`` head: CE and the robust baselines LS, GCE and NAN."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ln_lightning.losses import functional as LF
from ln_lightning.losses.base import NoisyLabelLoss
from ln_lightning.registry import register_method


class SoftmaxLoss(NoisyLabelLoss):
    """Base of the losses that read one ``logits`` head of width ``K`` and predict its softmax.

    Example:
        >>> import torch
        >>> from ln_lightning import GeneralizedCrossEntropy
        >>> loss = GeneralizedCrossEntropy(q=0.7)  # a SoftmaxLoss: one "logits" head
        >>> isinstance(loss, SoftmaxLoss), loss.head_shapes(num_classes=5)
        (True, {'logits': 5})
    """

    prediction_heads = ("logits",)

    def head_shapes(self, num_classes: int) -> dict[str, int]:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2; got {num_classes}.")
        return {"logits": num_classes}

    def predict_proba(self, outputs: Mapping[str, Tensor]) -> Tensor:
        return torch.softmax(LF.upcast(self._require(outputs, "logits")), dim=-1)


@register_method("ce")
class CrossEntropy(SoftmaxLoss):
    """Plain softmax cross-entropy (CE), computed in float32.

    Args:
        reduction: ``mean``, ``sum`` or ``none``.

    Example:
        >>> import math, torch
        >>> loss = CrossEntropy()
        >>> value = loss({"logits": torch.zeros(2, 4)}, torch.tensor([0, 3]))
        >>> math.isclose(float(value), math.log(4), rel_tol=1e-6)  # uniform over 4 classes
        True
    """

    def per_example(self, outputs: Mapping[str, Tensor], labels: Tensor) -> Tensor:
        return LF.cross_entropy(self._require(outputs, "logits"), labels)


@register_method("ls")
class LabelSmoothing(SoftmaxLoss):
    """Cross-entropy against the smoothed target ``(1 - t) onehot(y) + t / K`` (LS).

    Args:
        smoothing: ``t`` in [0, 1]; the paper's grid is 0.1, ..., 0.9. 0 is CE.
        reduction: ``mean``, ``sum`` or ``none``.

    Example:
        >>> import torch
        >>> sure = {"logits": torch.tensor([[20.0, -20.0]])}
        >>> label = torch.tensor([0])
        >>> ce, ls = CrossEntropy()(sure, label), LabelSmoothing(smoothing=0.1)(sure, label)
        >>> bool(ls > ce)  # smoothing penalises over-confidence
        True
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


@register_method("gce")
class GeneralizedCrossEntropy(SoftmaxLoss):
    """Generalized cross-entropy ``(1 - p_y^q) / q`` (GCE, Zhang & Sabuncu 2018).

    Args:
        q: In (0, 1]; ``q -> 0`` is CE, ``q = 1`` is MAE. Paper grid 0.1, ..., 0.9; 0.7 is the
            original paper's default.
        reduction: ``mean``, ``sum`` or ``none``.

    Example:
        >>> import torch
        >>> wrong = {"logits": torch.tensor([[-10.0, 10.0]])}  # sure of 1; the label says 0
        >>> round(float(GeneralizedCrossEntropy(q=0.7)(wrong, torch.tensor([0]))), 3)  # <= 1/q
        1.429
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


@register_method("nan")
class NoiseAgainstNoise(SoftmaxLoss):
    """Noise against noise (NAN, also SLN; Chen et al. 2021).

    While training, Gaussian noise ``sigma * N(0, I)`` is added to the one-hot target at every
    step; in evaluation (``.eval()``, e.g. validation) the loss is plain CE. The noise comes from
    torch's global generator, so ``seed_everything`` makes a run reproducible.

    Args:
        sigma: Noise standard deviation >= 0; paper grid 0.1, 0.2, 0.5, 0.75, 1.0.
        reduction: ``mean``, ``sum`` or ``none``.

    Example:
        >>> import torch
        >>> loss = NoiseAgainstNoise(sigma=0.5)
        >>> loss.head_shapes(num_classes=3)
        {'logits': 3}
        >>> loss({"logits": torch.zeros(4, 3)}, torch.tensor([0, 1, 2, 0])).shape
        torch.Size([])
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
