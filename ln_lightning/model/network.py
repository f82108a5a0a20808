"""The network: a backbone, the heads its loss asks for, the EMA teacher a loss may ask for and
the average of its weights that evaluates, as one ``nn.Module`` (what a training method with
networks of its own builds more of)."""

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

__all__ = ["Network", "ema_teacher", "reinitialised_copy", "weight_average"]


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
    return _frozen_average(network, get_ema_multi_avg_fn(decay), use_buffers=False)


def _frozen_average(network: nn.Module, multi_avg_fn: Any, use_buffers: bool) -> AveragedModel:
    """``AveragedModel`` of ``network`` that takes no gradient and counts the current weights
    as its first average (``n_averaged = 1``)."""
    average = AveragedModel(network, multi_avg_fn=multi_avg_fn, use_buffers=use_buffers)
    average.requires_grad_(False)
    average.n_averaged.fill_(1)
    return average


def ramped_ema_multi_avg_fn(decay: float) -> Any:
    """``AveragedModel``'s ``multi_avg_fn`` for an EMA whose decay ramps up with the number of
    updates ``n``: ``min(decay, (1 + n) / (10 + n))``, TensorFlow's ``ExponentialMovingAverage``
    with ``num_updates``. Early in a run (or on a small data set) the average then spans about
    the last tenth of the steps taken instead of starting weights that a fixed decay keeps for
    ``1 / (1 - decay)`` steps. Floating tensors are averaged, others (batch-norm's step count)
    copied."""

    @torch.no_grad()
    def update(averaged: list[Tensor], current: list[Tensor], updates: Tensor) -> None:
        # AveragedModel passes the count before this update: 1 after the copy at the start.
        step = min(decay, (1.0 + float(updates)) / (10.0 + float(updates)))
        floats = [(a, c) for a, c in zip(averaged, current, strict=True) if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], 1.0 - step)
        for a, c in zip(averaged, current, strict=True):
            if not a.is_floating_point():
                a.copy_(c)

    return update


def weight_average(network: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of ``network``'s weights *and* buffers (batch-norm
    statistics), starting at its current ones, with the decay ramped up as in
    :func:`ramped_ema_multi_avg_fn`: what :class:`Network` evaluates with when it is given a
    ``weight_average_decay``. Its parameters take no gradient.

    Example:
        >>> import torch
        >>> layer = torch.nn.Linear(2, 1)
        >>> average = weight_average(layer, decay=0.999)
        >>> with torch.no_grad():
        ...     _ = layer.weight.add_(11.0)
        >>> average.update_parameters(layer)  # the first update: decay min(0.999, 2 / 11)
        >>> torch.allclose(average.module.weight, layer.weight - 11.0 * 2 / 11)
        True
    """
    return _frozen_average(network, ramped_ema_multi_avg_fn(decay), use_buffers=True)


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
    (``loss.teacher_decay``, SGN), plus an average of its weights that evaluates when
    ``weight_average_decay`` is given.

    With the average, the network in evaluation mode (``.eval()``: validation, test,
    prediction, the passes over the training split) runs the average's weights; in training mode
    its own. The average moves towards the weights after every optimiser step
    (:meth:`update_averages`).

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
        weight_average_decay: The decay of the evaluating average
            (:func:`weight_average`), in ``(0, 1)``; ``None``: evaluate with the weights as
            they are.

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
        weight_average_decay: float | None = None,
    ) -> None:
        super().__init__()
        check_weight_average_decay(weight_average_decay)
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
        self.average: AveragedModel | None = (
            weight_average(_Student(self.backbone, self.heads), weight_average_decay)
            if weight_average_decay is not None
            else None
        )
        if compile:  # after the dry run of feature_dim, which would compile for one shape
            self.backbone.compile()

    def forward(self, inputs: Tensor) -> dict[str, Tensor]:
        """Head outputs (what the loss consumes) for a batch of inputs: the average's in
        evaluation mode, when there is one."""
        if self.average is not None and not self.training:
            return self.average(inputs)
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

    def update_averages(self) -> None:
        """Move the teacher and the evaluating average one step towards the current weights
        (after an optimiser step)."""
        for averaged in (self.teacher, self.average):
            if averaged is not None:
                averaged.update_parameters(_Student(self.backbone, self.heads))

    def trained_parameters(self) -> list[nn.Parameter]:
        """The parameters an optimiser updates: all but the teacher's and the average's."""
        copies = {id(p) for copy in (self.teacher, self.average) if copy is not None
                  for p in copy.parameters()}  # fmt: skip
        return [p for p in self.parameters() if id(p) not in copies]

    def keep_only(self, heads: Iterable[str]) -> None:
        """Drop every head but ``heads`` and the teacher; the average's weights become the
        network's (for export: training is no longer possible afterwards, prediction is, as it
        was in evaluation mode)."""
        if self.average is not None:
            student = _Student(self.backbone, self.heads)
            student.load_state_dict(self.average.module.state_dict())
            self.average = None
        self.heads.keep_only(heads)
        self.teacher = None


def check_weight_average_decay(decay: float | None) -> None:
    """A clear error for a decay outside ``(0, 1)``."""
    if decay is not None and not 0.0 < decay < 1.0:
        raise ValueError(
            f"weight_average_decay must lie in (0, 1) (e.g. 0.998: the average of about the last "
            f"500 steps), or be null (None in Python) to evaluate with the weights as they are; "
            f"got {decay!r}."
        )
