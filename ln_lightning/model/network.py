"""The network: a backbone, the heads its loss asks for, and the EMA teacher a loss may ask for,
as one ``nn.Module`` (what a training method with networks of its own builds more of)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from copy import deepcopy
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ln_lightning.backbones import build_backbone, feature_dim
from ln_lightning.heads import LinearHeads
from ln_lightning.losses.base import NoisyLabelLoss, teacher_key

__all__ = ["Network", "ema_teacher", "reinitialised_copy"]


class _Student(nn.Module):
    """``backbone -> heads``, what the teacher averages (a view of the network's two parts, not
    registered anywhere)."""

    def __init__(self, backbone: nn.Module, heads: LinearHeads) -> None:
        super().__init__()
        self.backbone, self.heads = backbone, heads

    def forward(self, inputs: Tensor) -> dict[str, Tensor]:
        return self.heads(self.backbone(inputs))


def ema_teacher(network: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of ``network``'s weights, starting at its current ones.

    ``AveragedModel`` with ``get_ema_multi_avg_fn``: after each :meth:`update_parameters`
    the copy's parameters are ``decay * copy + (1 - decay) * network``. It counts the current
    weights as the first average (``n_averaged = 1``), so the first update already averages,
    as TensorFlow's ``ExponentialMovingAverage`` in SGN's reference code does. The buffers
    (batch-norm statistics) are the copy's own, updated when it runs in training mode. Its
    parameters take no gradient.

    Example:
        >>> import torch
        >>> layer = torch.nn.Linear(2, 1)
        >>> teacher = ema_teacher(layer, decay=0.5)
        >>> with torch.no_grad():
        ...     _ = layer.weight.add_(2.0)
        >>> teacher.update_parameters(layer)  # halfway towards the new weights
        >>> torch.allclose(teacher.module.weight, layer.weight - 1.0)
        True
    """
    teacher = AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)
    teacher.requires_grad_(False)
    teacher.n_averaged.fill_(1)
    return teacher


def reinitialised_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose layers draw their initial weights again
    (``reset_parameters`` of every layer that has one).

    Example:
        >>> import torch
        >>> layer = torch.nn.Linear(3, 2)
        >>> copy = reinitialised_copy(layer)
        >>> copy is not layer, torch.equal(copy.weight, layer.weight)
        (True, False)
    """
    copy = deepcopy(module)
    for layer in copy.modules():
        reset = getattr(layer, "reset_parameters", None)
        if callable(reset):
            reset()
    return copy


class Network(nn.Module):
    """``backbone -> features -> heads``, plus an EMA teacher of both when the loss asks for one
    (``loss.teacher_decay``, SGN).

    Args:
        backbone: A timm model name (``num_classes=0``; the zoo's included) or an ``nn.Module``
            mapping inputs to ``(batch, features)``.
        loss: The loss whose heads (``loss.head_shapes``) and teacher it builds.
        num_classes: ``K``.
        input_shape: The shape of one input; sets ``in_chans`` and measures the feature width.
        backbone_options: ``pretrained``, ``pretrained_file``, ``backbone_kwargs`` of
            :func:`~ln_lightning.backbones.build_backbone`.
        compile: Compile the backbone (``nn.Module.compile``), after the teacher is copied.
        fresh: With an ``nn.Module`` backbone, train a copy of it with its weights initialised
            again (``reset_parameters``) instead of the module itself: another network like it
            (a strategy's peer).

    Example:
        >>> from ln_lightning import ShiftedGaussianNoise
        >>> network = Network("small_cnn", ShiftedGaussianNoise(), 10, (1, 8, 8))
        >>> outputs = network.training_outputs(torch.randn(4, 1, 8, 8))
        >>> sorted(outputs)  # its heads, and the teacher's beside them
        ['factor', 'mean', 'teacher.factor', 'teacher.mean']
    """

    def __init__(
        self,
        backbone: str | nn.Module,
        loss: NoisyLabelLoss,
        num_classes: int,
        input_shape: Sequence[int] | None = None,
        backbone_options: dict[str, Any] | None = None,
        compile: bool = False,
        fresh: bool = False,
    ) -> None:
        super().__init__()
        in_chans = input_shape[0] if input_shape else None  # channels, or a vector's width
        if fresh and isinstance(backbone, nn.Module):
            backbone = reinitialised_copy(backbone)
        self.backbone = build_backbone(backbone, in_chans=in_chans, **(backbone_options or {}))
        loss.setup(num_classes)
        self.heads = LinearHeads(
            feature_dim(self.backbone, input_shape), loss.head_shapes(num_classes)
        )
        decay = loss.teacher_decay  # before compile, so the copy stays eager
        self.teacher: AveragedModel | None = (
            ema_teacher(_Student(self.backbone, self.heads), decay) if decay is not None else None
        )
        if compile:  # after the dry run of feature_dim, which would compile for one shape
            self.backbone.compile()

    def forward(self, inputs: Tensor) -> dict[str, Tensor]:
        """Head outputs (what the loss consumes) for a batch of inputs."""
        return self.heads(self.backbone(inputs))

    def teacher_outputs(self, inputs: Tensor) -> dict[str, Tensor] | None:
        """The EMA teacher's head outputs (no gradient), or ``None`` without a teacher."""
        if self.teacher is None:
            return None
        with torch.no_grad():
            return self.teacher(inputs)

    def training_outputs(self, inputs: Tensor) -> dict[str, Tensor]:
        """Head outputs for the training loss: the network's, plus the teacher's as
        ``teacher.<head>`` when there is one."""
        outputs = self(inputs)
        taught = self.teacher_outputs(inputs)
        if taught is not None:
            outputs.update({teacher_key(name): value for name, value in taught.items()})
        return outputs

    def update_teacher(self) -> None:
        """Move the teacher one step towards the current weights (after an optimiser step)."""
        if self.teacher is not None:
            self.teacher.update_parameters(_Student(self.backbone, self.heads))

    def trained_parameters(self) -> list[nn.Parameter]:
        """The parameters an optimiser updates: all but the teacher's."""
        teacher = {id(p) for p in self.teacher.parameters()} if self.teacher is not None else set()
        return [p for p in self.parameters() if id(p) not in teacher]

    def keep_only(self, heads: Iterable[str]) -> None:
        """Drop every head but ``heads``, and the teacher (for export: training is no longer
        possible afterwards, prediction is)."""
        self.heads.keep_only(heads)
        self.teacher = None
