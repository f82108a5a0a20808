"""Sparse over-parameterisation (SOP; Liu et al., ICML 2022): the label noise modelled by
per-example parameters ``u``, ``v`` that learn, with their own learning rates, to absorb it."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ln_lightning.data.dataset import NoisySample
from ln_lightning.losses.softmax import CrossEntropy
from ln_lightning.registry import register_strategy
from ln_lightning.strategies.base import TrainingStrategy

__all__ = ["SOP", "sop_loss"]

#: The reference code's clip of the corrected prediction.
EPS = 1e-4


def sop_loss(logits: Tensor, labels: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """SOP's loss per example (Eqs. 6-7 of the paper, as the reference code computes them):
    with ``y`` one-hot, ``s = clamp(u^2 y, 0, 1) - clamp(v^2 (1 - y), 0, 1)``,
    ``-log(normalise(clamp(softmax(logits) + s_u - sg(s_v))))_y`` (``v`` learns from the
    second term alone) plus ``||onehot(argmax logits) + s - y||^2``. Float32.

    Args:
        logits: ``(B, K)``.
        labels: ``(B,)`` integer labels.
        u: ``(B, 1)`` rows of ``u``.
        v: ``(B, K)`` rows of ``v``.

    Example:
        >>> import torch
        >>> logits, labels = torch.tensor([[1.0, 0.0]]), torch.tensor([1])
        >>> value = sop_loss(logits, labels, torch.zeros(1, 1), torch.zeros(1, 2))
        >>> round(float(value), 4)  # u = v = 0: CE, log(1 + e), plus ||(1, 0) - (0, 1)||^2 = 2
        3.3133
    """
    target = F.one_hot(labels.long(), logits.shape[1]).float()
    towards = torch.clamp(u.float() ** 2 * target, 0.0, 1.0)
    away = torch.clamp(v.float() ** 2 * (1.0 - target), 0.0, 1.0)
    probs = F.softmax(logits.float(), dim=1)
    corrected = torch.clamp(probs + towards - away.detach(), min=EPS)
    corrected = torch.clamp(F.normalize(corrected, p=1, eps=EPS), min=EPS, max=1.0)
    cross_entropy = -(target * torch.log(corrected)).sum(1)
    predicted = F.one_hot(logits.detach().argmax(1), logits.shape[1]).float()
    squared = ((predicted + towards - away - target) ** 2).sum(1)
    return cross_entropy + squared


@register_strategy("sop", example={"lr_u": 1.0, "lr_v": 10.0})
class SOP(TrainingStrategy):
    """Sparse over-parameterisation: per-example ``u`` (one number) and ``v`` (``K`` numbers)
    that absorb a wrong label, trained by SGD with their own learning rates beside the network's
    optimiser (manual optimisation).

    ``u_i^2`` raises the given label's probability and ``v_i^2`` lowers the others', so an
    example whose label the network cannot fit is explained by its own parameters instead of
    by the network; they start near zero (``N(0, 1e-8^2)``) and, with an implicit bias towards
    sparsity, grow only where the labels are wrong. The network is trained with softmax
    cross-entropy through the corrected prediction: SOP needs ``CrossEntropy`` as the loss.
    Predictions are the network's softmax.

    Args:
        lr_u: SGD learning rate of ``u`` (no momentum, no weight decay), > 0; 1 is the reference
            code's CIFAR-100 setting.
        lr_v: SGD learning rate of ``v``, > 0 (10 in that setting).
        init_std: The standard deviation of the initial ``u`` and ``v``, > 0.

    Example:
        >>> from ln_lightning import CrossEntropy, NoisyLabelClassifier
        >>> model = NoisyLabelClassifier(loss=CrossEntropy(), strategy=SOP(), input_shape=(1, 8, 8))
        >>> model.automatic_optimization, model.strategy.v.shape  # v: sized when a fit starts
        (False, torch.Size([0, 10]))
    """

    manual_optimization = True

    def __init__(self, lr_u: float = 1.0, lr_v: float = 10.0, init_std: float = 1e-8) -> None:
        super().__init__()
        for name, value in (("lr_u", lr_u), ("lr_v", lr_v), ("init_std", init_std)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0; got {value!r}.")
        self.lr_u, self.lr_v, self.init_std = float(lr_u), float(lr_v), float(init_std)

    def build(self, model: Any) -> None:
        if type(model.loss) is not CrossEntropy:
            raise ValueError(
                f"SOP trains the network with cross-entropy through its corrected prediction, so "
                f"its loss must be CrossEntropy; got {type(model.loss).__name__}. Add "
                "--model.loss ln_lightning.CrossEntropy (zoo/configs/strategies/sop.yaml does)."
            )
        self.per_sample("u", 1, parameter=True, std=self.init_std)
        self.per_sample("v", model.num_classes, parameter=True, std=self.init_std)

    def extra_optimizers(self, model: Any) -> list[Any]:
        """SGD over ``u`` and ``v``, each with its learning rate (the reference's)."""
        groups = [{"params": [self.u], "lr": self.lr_u}, {"params": [self.v], "lr": self.lr_v}]
        return [torch.optim.SGD(groups, lr=self.lr_u, momentum=0.0, weight_decay=0.0)]

    def training_step(
        self, model: Any, sample: NoisySample, batch_idx: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        index = self.index(sample)
        outputs = model.network.training_outputs(sample.input)
        loss = sop_loss(outputs["logits"], sample.target, self.u[index], self.v[index])
        return loss.mean(), outputs
