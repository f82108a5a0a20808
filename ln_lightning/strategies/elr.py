"""Early-learning regularisation (ELR; Liu et al., NeurIPS 2020): per-example targets, a moving
average of the model's own predictions, that the prediction is kept close to."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ln_lightning.data.dataset import NoisySample
from ln_lightning.registry import register_strategy
from ln_lightning.strategies.base import TrainingStrategy, gather_rows

__all__ = ["ELR", "elr_regularizer", "updated_targets"]

#: Predictions are clipped to ``[EPS, 1 - EPS]`` before they enter the targets and the
#: regulariser (the reference code's 1e-4), so ``log(1 - <t, p>)`` stays finite.
EPS = 1e-4


def updated_targets(targets: Tensor, probs: Tensor, momentum: float) -> Tensor:
    """ELR's temporal ensembling (Eq. 5 of the paper), per row:
    ``momentum * t + (1 - momentum) * p / sum(p)``, ``p`` the clipped, detached prediction.

    Example:
        >>> import torch
        >>> updated_targets(torch.zeros(1, 2), torch.tensor([[0.5, 0.5]]), momentum=0.5).tolist()
        [[0.25, 0.25]]
    """
    probs = probs.detach().float().clamp(EPS, 1.0 - EPS)
    return momentum * targets + (1.0 - momentum) * probs / probs.sum(1, keepdim=True)


def elr_regularizer(probs: Tensor, targets: Tensor) -> Tensor:
    """``log(1 - <t, p>)`` per example (Eq. 6), minimised by keeping the prediction ``p``
    on the target ``t``; float32.

    Example:
        >>> import torch
        >>> p, t = torch.tensor([[0.5, 0.5]]), torch.tensor([[0.25, 0.25]])
        >>> round(float(elr_regularizer(p, t)), 4)  # log(1 - 0.25)
        -0.2877
    """
    probs = probs.float().clamp(EPS, 1.0 - EPS)
    return torch.log(1.0 - (targets * probs).sum(1))


@register_strategy("elr", example={"momentum": 0.7, "regularization": 3.0})
class ELR(TrainingStrategy):
    """Early-learning regularisation: the loss plus ``regularization * log(1 - <t_i, p_i>)``.

    Early in training a network fits the clean labels first (Arpit et al. 2017); ELR keeps a
    target ``t_i`` per training example, a moving average of the model's own predictions, and
    penalises a prediction that leaves it, so the network does not memorise a wrong label later.
    The targets are per-sample state (a buffer, checkpointed, the same on every DDP rank).
    With any loss of the library: the loss's term stays, the regulariser reads the loss's
    ``predict_proba`` (LN's ``S_C(mu / tau)``).

    Args:
        momentum: ``beta``, how slowly the targets follow the predictions, in [0, 1) (0.7 in
            the paper's CIFAR-10 setting).
        regularization: ``lambda``, the weight of the regulariser, >= 0 (3 on CIFAR-10).

    Example:
        >>> import torch
        >>> from ln_lightning import CrossEntropy, NoisyLabelClassifier
        >>> model = NoisyLabelClassifier(loss=CrossEntropy(), strategy=ELR(), input_shape=(1, 8, 8))
        >>> model.strategy.targets.shape  # sized to the training pool when a fit starts
        torch.Size([0, 10])
    """

    def __init__(self, momentum: float = 0.7, regularization: float = 3.0) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1); got {momentum!r}.")
        if regularization < 0:
            raise ValueError(f"regularization must be >= 0; got {regularization!r}.")
        self.momentum = float(momentum)
        self.regularization = float(regularization)

    def build(self, model: Any) -> None:
        self.per_sample("targets", model.num_classes)

    def training_step(
        self, model: Any, sample: NoisySample, batch_idx: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Targets of the batch updated (from every rank's rows), then the loss plus the
        regulariser against the updated targets (the reference code's order)."""
        index = self.index(sample)
        outputs = model.network.training_outputs(sample.input)
        probs = self.loss.predict_proba(outputs)
        rows, seen = gather_rows(model, index, probs.detach().float())
        self.targets[rows] = updated_targets(self.targets[rows], seen, self.momentum)
        penalty = elr_regularizer(probs, self.targets[index]).mean()
        return self.loss.per_example(outputs, sample.target).mean() + self.regularization * (
            penalty
        ), outputs
