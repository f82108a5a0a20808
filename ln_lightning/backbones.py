"""Backbones: a timm model by name (the zoo registers its own) or any ``nn.Module``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

import zoo  # noqa: F401  (registers the zoo's backbones in timm)

__all__ = ["build_backbone", "feature_dim"]


def build_backbone(
    backbone: str | nn.Module,
    *,
    pretrained: bool = False,
    pretrained_file: str | None = None,
    in_chans: int | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """A feature extractor: a timm model (``num_classes=0``) by name, or the module as given.

    Args:
        backbone: A timm model name (the zoo's included) or an ``nn.Module``.
        pretrained: Load timm's pretrained weights (from the Hugging Face hub: needs internet).
        pretrained_file: Load pretrained weights from this local file instead (``.pth``,
            ``.bin`` or ``.safetensors``, a state dict of the same timm architecture), through
            timm's ``pretrained_cfg_overlay={"file": ...}``: no download; timm adapts the first
            convolution to ``in_chans`` and leaves the classifier out as usual.
        in_chans: Input channels of a timm model.
        backbone_kwargs: More keyword arguments for ``timm.create_model``.
    """
    if isinstance(backbone, nn.Module):
        if backbone_kwargs or pretrained or pretrained_file:
            raise ValueError(
                "pretrained, pretrained_file and backbone_kwargs apply to timm model names only; "
                "configure an nn.Module backbone through its own constructor."
            )
        return backbone
    kwargs = dict(backbone_kwargs or {})
    if in_chans is not None:
        kwargs.setdefault("in_chans", in_chans)
    if pretrained_file is not None:
        if not Path(pretrained_file).expanduser().is_file():
            raise FileNotFoundError(
                f"pretrained_file {pretrained_file} does not exist: give the path of a saved "
                f"state dict (.pth or .safetensors) of the timm model {backbone!r}."
            )
        pretrained = True
        kwargs["pretrained_cfg_overlay"] = {"file": str(Path(pretrained_file).expanduser())}
    try:
        return timm.create_model(backbone, pretrained=pretrained, num_classes=0, **kwargs)
    except RuntimeError as err:
        if "Unknown model" not in str(err):
            raise
        raise ValueError(
            f"backbone {backbone!r} is not a timm model. Use a name from timm.list_models() or the "
            "zoo (e.g. 'small_cnn'; `import zoo` registers them), or pass an nn.Module."
        ) from err


def feature_dim(backbone: nn.Module, input_shape: Sequence[int] | None) -> int:
    """Width of the backbone's output, from a dry run when the input shape is known.

    Falls back to timm's ``head_hidden_size`` / ``num_features`` attributes.
    """
    if input_shape is not None:
        was_training = backbone.training
        backbone.eval()
        try:
            with torch.no_grad():
                out = backbone(torch.zeros(2, *input_shape))
        except RuntimeError as error:
            raise ValueError(
                f"the backbone {type(backbone).__name__} cannot take inputs of shape "
                f"{tuple(input_shape)} (the data module's input_shape): {error}. Choose a backbone "
                "made for this input (small_cnn for 8x8 digits, lenet5 for 28x28, wrn28_2 or "
                "resnet18_cifar for 32x32, a timm model for larger images)."
            ) from None
        finally:
            backbone.train(was_training)
        if out.ndim != 2:
            raise ValueError(
                f"the backbone must return features of shape (batch, features); got "
                f"{tuple(out.shape)} for input shape {tuple(input_shape)}. Add global pooling and "
                "flatten at the end of the backbone."
            )
        return int(out.shape[1])
    for attribute in ("head_hidden_size", "num_features"):
        value = getattr(backbone, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(
        "cannot tell the backbone's feature width: give input_shape (the CLI links it from the "
        "data module) or set a `num_features` attribute on the backbone."
    )
