"""Shifted Gaussian Noise (SGN; Englesson & Azizpour, ICLR 2024), per example, in O(K).

Englesson & Azizpour, "Robust Classification via Regression-Based Loss Reweighting and Label
Correction", ICLR 2024 (reference code: github.com/ErikEnglesson/SGN, ``src/cifar/sgn.py``). The
successor of the Logistic-Normal loss: the label is regressed in the ``K - 1`` dimensional
logit space of the isometric log-ratio (ILR) transform under a Gaussian whose scale is
``I + r r^T`` (loss reweighting, as LN's covariance), and the Gaussian's mean is shifted towards
the label by the prediction of an exponential-moving-average (EMA) copy of the network, more
so as training goes on (label correction).

Notation: ``K`` classes, ``D = K - 1`` logit dimensions, ``H`` the ``D x K`` Helmert
sub-matrix (orthonormal rows, each orthogonal to the ones vector). Every function here works
through cumulative sums instead of ``H``, so nothing of size ``K x K`` (or ``D x K``) is made.
The hyper-parameters travel as one validated :class:`ShiftedGaussianParams`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ln_lightning.losses.functional._common import (
    check_labels,
    upcast,
    upcast_mean_and_factor,
)
from ln_lightning.losses.functional.logistic_normal import gaussian_terms
from ln_lightning.losses.functional.softmax_centered import target_logit_scale


@dataclass(frozen=True)
class ShiftedGaussianParams:
    """The SGN hyper-parameters, validated once when made (the reference code's defaults).

    Attributes:
        alpha: In ``(0, 1]``; the mean is shifted by ``1 - alpha^e`` of ``t - mu_ema`` after
            ``e`` epochs of training (1: no shift, SGN without label correction).
        ema_decay: In ``[0, 1)``; the decay ``beta`` of the EMA of the network's weights that
            gives ``mu_ema``, updated after every optimizer step.
        smoothing: Label smoothing ``t`` in ``(0, 1)`` over the ``K`` classes.

    Raises:
        ValueError: Naming the first invalid value.

    Example:
        >>> params = ShiftedGaussianParams()  # the reference code's alpha, EMA decay, smoothing
        >>> params.shift_weight(0.0), round(params.shift_weight(100.0), 2)
        (0.0, 0.39)
    """

    alpha: float = 0.995
    ema_decay: float = 0.9999
    smoothing: float = 0.001

    def __post_init__(self) -> None:
        for name, low, high, closed in (
            ("alpha", 0.0, 1.0, "(0, 1]"),
            ("ema_decay", 0.0, 1.0, "[0, 1)"),
            ("smoothing", 0.0, 1.0, "(0, 1)"),
        ):
            value = getattr(self, name)
            inside = isinstance(value, (int, float)) and not isinstance(value, bool)
            if inside:
                above = value >= low if closed.startswith("[") else value > low
                below = value <= high if closed.endswith("]") else value < high
                inside = above and below
            if not inside:
                raise ValueError(f"{name} must lie in {closed}; got {value!r}.")

    def shift_weight(self, elapsed_epochs: float) -> float:
        """``1 - alpha^e``: how far the mean moves towards the EMA's correction after ``e``
        epochs (0 at the start; 0.39 after 100 epochs and 0.78 after 300 with alpha = 0.995)."""
        return 1.0 - self.alpha ** max(float(elapsed_epochs), 0.0)


#: The reference code's settings: alpha = 0.995, beta = 0.9999, t = 0.001.
DEFAULT_SGN_PARAMS = ShiftedGaussianParams()


# --------------------------------------------------------------------------------------------
# isometric log-ratio transform through the Helmert sub-matrix, in O(K)
# --------------------------------------------------------------------------------------------
def _helmert_norms(num_rows: int, like: Tensor) -> Tensor:
    """``sqrt(k (k + 1))`` for the rows ``k = 1 .. num_rows`` of the Helmert sub-matrix."""
    k = torch.arange(1, num_rows + 1, dtype=like.dtype, device=like.device)
    return torch.sqrt(k * (k + 1))


def helmert_coordinates(values: Tensor) -> Tensor:
    """``values @ H^T``: ``(..., K)`` to ``(..., K - 1)``.

    Row ``k`` of the Helmert sub-matrix is ``(1, ..., 1, -k, 0, ..., 0) / sqrt(k (k + 1))``
    (``k`` ones), so coordinate ``k`` is ``(sum_{j < k} v_j - k v_k) / sqrt(k (k + 1))``.
    """
    num_rows = values.shape[-1] - 1
    k = torch.arange(1, num_rows + 1, dtype=values.dtype, device=values.device)
    before = torch.cumsum(values, dim=-1)[..., :-1]
    return (before - k * values[..., 1:]) / _helmert_norms(num_rows, values)


def helmert_lift(coordinates: Tensor) -> Tensor:
    """``coordinates @ H``: ``(..., K - 1)`` to ``(..., K)``, a vector whose entries sum to 0.

    Entry ``j`` is ``sum_{k > j} x_k / sqrt(k (k + 1)) - j x_j / sqrt(j (j + 1))`` (the second
    term for ``j >= 1``): one reversed cumulative sum.
    """
    num_rows = coordinates.shape[-1]
    scaled = coordinates / _helmert_norms(num_rows, coordinates)
    after = torch.flip(torch.cumsum(torch.flip(scaled, (-1,)), dim=-1), (-1,))
    zero = coordinates.new_zeros((*coordinates.shape[:-1], 1))
    k = torch.arange(1, num_rows + 1, dtype=coordinates.dtype, device=coordinates.device)
    return torch.cat([after, zero], dim=-1) - torch.cat([zero, k * scaled], dim=-1)


def isometric_log_ratio(probs: Tensor) -> Tensor:
    """ILR coordinates of points of the simplex: ``clr(p) @ H^T`` with ``clr(p) = log p -
    mean(log p)``; ``(..., K)`` to ``(..., K - 1)``. Inverse of :func:`ilr_probabilities`."""
    log_probs = torch.log(probs)
    return helmert_coordinates(log_probs - log_probs.mean(-1, keepdim=True))


def ilr_probabilities(coordinates: Tensor) -> Tensor:
    """Class probabilities ``softmax(z @ H)`` from ILR coordinates ``z`` of shape ``(B, K - 1)``
    (the reference code's ``ilr_forward``), in float32."""
    return torch.softmax(helmert_lift(upcast(coordinates)), dim=-1)


def sgn_target(
    labels: Tensor, num_classes: int, smoothing: float, dtype: torch.dtype = torch.float32
) -> Tensor:
    """ILR coordinates of the smoothed label ``q = (1 - t) e_y + t / K``, ``(B, K - 1)``.

    ``clr(q)`` is ``C (e_y - 1 / K)`` with ``C = log(((1 - t) K + t) / t)`` (LN's target scale
    with ``M = K``) and ``H 1 = 0``, so the target is ``C`` times column ``y`` of ``H``: entry
    ``k`` is ``C / sqrt(k (k + 1))`` for ``k > y``, ``-C y / sqrt(y (y + 1))`` for ``k = y``, 0
    below.
    """
    labels = labels.long()
    scale = target_logit_scale(num_classes, smoothing)
    k = torch.arange(1, num_classes, device=labels.device)[None, :]
    y = labels[:, None]
    norms = _helmert_norms(num_classes - 1, torch.empty(0, dtype=dtype, device=labels.device))
    column = torch.where(k > y, 1.0, torch.where(k == y, -y.to(dtype), 0.0)).to(dtype)
    return scale * column / norms


# --------------------------------------------------------------------------------------------
# the loss
# --------------------------------------------------------------------------------------------
def shifted_gaussian_noise_loss(
    mean: Tensor,
    factor: Tensor,
    labels: Tensor,
    teacher_mean: Tensor | None = None,
    shift_weight: float = 0.0,
    params: ShiftedGaussianParams = DEFAULT_SGN_PARAMS,
) -> Tensor:
    """SGN's loss per example: ``-log N(t; mu + w (t - mu_ema), (I + r r^T)^2)``.

    With ``t`` the ILR target (:func:`sgn_target`), ``w`` the shift weight ``1 - alpha^e``
    (:meth:`ShiftedGaussianParams.shift_weight`) and ``mu_ema`` the EMA network's mean (no
    gradient flows into it). The scale ``S = I + r r^T`` has a unit diagonal part (TFP's
    ``MultivariateNormalDiagPlusLowRank(scale_diag=1, scale_perturb_factor=r)``), so the
    negative log-density is ``0.5 |S^{-1} res|^2 + log(1 + |r|^2) + (D / 2) log 2 pi``: LN's
    full covariance (Eq. 9) with ``lambda = 1``, computed by the same Sherman-Morrison form
    (:func:`~ln_lightning.losses.functional.gaussian_terms`) in O(K).

    Args:
        mean: Predicted ILR mean ``mu`` of shape ``(B, K - 1)``.
        factor: Rank-one factor ``r`` of the scale, ``(B, K - 1)``.
        labels: Observed (possibly noisy) labels of shape ``(B,)`` in ``[0, K)``.
        teacher_mean: ``mu_ema`` of shape ``(B, K - 1)``; needed when ``shift_weight > 0``.
        shift_weight: ``w = 1 - alpha^e`` in ``[0, 1]`` (0: no label correction).
        params: The hyper-parameters (only ``smoothing`` is read here).

    Returns:
        Float32 negative log-density of shape ``(B,)``.
    """
    with torch.autocast(mean.device.type, enabled=False):
        mean, factor = upcast_mean_and_factor(mean, factor, "SGN needs a factor head")
        num_classes = mean.shape[-1] + 1
        labels = check_labels(labels, num_classes)
        target = sgn_target(labels, num_classes, params.smoothing, mean.dtype)
        residual = target - mean
        if shift_weight:
            if teacher_mean is None:
                raise ValueError(
                    f"shift_weight={shift_weight} needs the EMA network's mean (teacher_mean)."
                )
            residual = residual - shift_weight * (target - upcast(teacher_mean).detach())
        mahalanobis, logdet = gaussian_terms(residual, factor, covariance="full", min_scale=1.0)
        return 0.5 * (mahalanobis + logdet) + 0.5 * mean.shape[-1] * math.log(2.0 * math.pi)


def shifted_gaussian_residuals(
    mean: Tensor, factor: Tensor, labels: Tensor, params: ShiftedGaussianParams = DEFAULT_SGN_PARAMS
) -> tuple[Tensor, Tensor]:
    """``(|t - mu|^2, |S^{-1} (t - mu)|^2)`` per example, without the shift: how far each label
    is from the prediction, plainly and under the learned scale (large: a likely wrong label)."""
    with torch.autocast(mean.device.type, enabled=False):
        mean = upcast(mean)
        num_classes = mean.shape[-1] + 1
        labels = check_labels(labels, num_classes)
        residual = sgn_target(labels, num_classes, params.smoothing, mean.dtype) - mean
        mahalanobis, _ = gaussian_terms(residual, upcast(factor), covariance="full", min_scale=1.0)
        return residual.square().sum(-1), mahalanobis
