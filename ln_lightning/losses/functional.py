"""Pure, per-example loss functions (tensors in, one loss per example out).

Equation numbers refer to Englesson, Mehrjou & Azizpour, "Logistic-Normal Likelihoods for
Heteroscedastic Label Noise", TMLR 2023. Notation: ``K`` real classes, ``D`` the dimension of the
logit space (``D = K`` with the dummy class, ``D = K - 1`` without), ``M = D + 1`` categories of
the simplex the smoothed target lives in.

Every function here computes in float32 whatever the input dtype (float64 inputs stay float64;
autocast is switched off inside), never materialises a ``D x D`` matrix and costs O(D) per
example.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Covariance = Literal["identity", "isotropic", "diagonal", "full"]
COVARIANCES: tuple[str, ...] = ("identity", "isotropic", "diagonal", "full")


def upcast(tensor: Tensor) -> Tensor:
    """``tensor`` in float32, or float64 if it already is (half precision is never kept)."""
    return tensor if tensor.dtype == torch.float64 else tensor.float()


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def check_labels(labels: Tensor, num_classes: int) -> None:
    """Raise ``ValueError`` unless ``labels`` are integer class indices in ``[0, num_classes)``.

    Args:
        labels: Integer tensor of shape ``(B,)``.
        num_classes: Number of real classes ``K``.
    """
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise ValueError(
            f"labels must be an integer tensor of class indices in [0, {num_classes}); "
            f"got dtype {labels.dtype}. Convert one-hot or float labels with .argmax(-1) "
            "or .long()."
        )
    if labels.numel() == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"labels must lie in [0, {num_classes}) for num_classes={num_classes}; "
            f"got values in [{low}, {high}]. Check that num_classes matches the data set and that "
            "labels are 0-based."
        )


def check_ln_hparams(
    *, temperature: float, min_scale: float, smoothing: float, covariance: str
) -> None:
    """Raise ``ValueError`` naming the first invalid Logistic-Normal hyper-parameter."""
    if not temperature > 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number > 0; got {temperature!r}.")
    if not min_scale > 0 or not math.isfinite(min_scale):
        raise ValueError(
            f"min_scale must be a finite number > 0 (lambda in Eq. 9); got {min_scale!r}."
        )
    if not 0.0 < smoothing < 1.0:
        raise ValueError(
            f"smoothing must lie in the open interval (0, 1) so the target is inside the simplex; "
            f"got {smoothing!r}."
        )
    if covariance not in COVARIANCES:
        raise ValueError(f"covariance must be one of {COVARIANCES}; got {covariance!r}.")


# --------------------------------------------------------------------------------------------
# softmax-centered bijection and targets
# --------------------------------------------------------------------------------------------
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


def mean_probabilities(mean: Tensor, dummy_class: bool = True) -> Tensor:
    """Class probabilities from the predicted mean only (Sec. 3.3), over the K real classes.

    With the dummy class S_C(mu) restricted to the real classes and renormalised is softmax(mu):
    the dummy class is never a prediction. Without it, S_C(mu) is already over the K classes.
    """
    mean = upcast(mean)
    return torch.softmax(mean, dim=-1) if dummy_class else softmax_centered(mean)


# --------------------------------------------------------------------------------------------
# Gaussian terms in closed form
# --------------------------------------------------------------------------------------------
def scale_dim(covariance: str, dim: int) -> int:
    """Width of the covariance head for a logit space of dimension ``D`` (0: no head)."""
    return {"identity": 0, "isotropic": 1, "diagonal": dim, "full": dim}[covariance]


def gaussian_terms(
    residual: Tensor, scale: Tensor | None, *, covariance: str, min_scale: float
) -> tuple[Tensor, Tensor]:
    """Mahalanobis term r^T Sigma^{-1} r and log|Sigma| per example, in O(D).

    Parameterisations (``s`` is the covariance head's raw output, ``lambda = min_scale``):

    * ``identity``: Sigma = I (``scale`` unused).
    * ``isotropic``: Sigma^{1/2} = (lambda + s^2) I, ``s`` of shape ``(B, 1)``.
    * ``diagonal``: Sigma^{1/2} = diag(lambda + s_k^2), ``s`` of shape ``(B, D)``.
    * ``full`` (Eq. 9): Sigma^{1/2} = c c^T + lambda I with ``c = s`` of shape ``(B, D)``, so
      Sigma = lambda^2 I + (|c|^2 + 2 lambda) c c^T.

    In every variant lambda bounds the standard deviation from below. For ``full`` the
    Mahalanobis term is |w|^2 with w = Sigma^{-1/2} r = (r - c (c.r) / (lambda + |c|^2)) / lambda
    (Sherman-Morrison), which equals the paper's expanded form
    (|r|^2 - (|c|^2 + 2 lambda)(c.r)^2 / (lambda + |c|^2)^2) / lambda^2 but cannot go negative
    through cancellation; log|Sigma| = 2(D - 1) log lambda + 2 log(lambda + |c|^2).

    Args:
        residual: ``r = target - mu``, float32 of shape ``(B, D)``.
        scale: Covariance head output (see above) or ``None`` for ``identity``.
        covariance: One of ``identity``, ``isotropic``, ``diagonal``, ``full``.
        min_scale: ``lambda`` > 0.

    Returns:
        ``(mahalanobis, logdet)``, each float32 of shape ``(B,)``.
    """
    residual = upcast(residual)
    dim = residual.shape[-1]
    if covariance == "identity":
        return residual.square().sum(-1), residual.new_zeros(residual.shape[0])
    if scale is None:
        raise ValueError(f"covariance={covariance!r} needs the 'scale' head output; got None.")
    scale = upcast(scale).to(residual.dtype)
    if covariance == "full":
        c = scale
        c_sq = c.square().sum(-1, keepdim=True)
        c_dot_r = (c * residual).sum(-1, keepdim=True)
        whitened = (residual - c * (c_dot_r / (min_scale + c_sq))) / min_scale
        mahalanobis = whitened.square().sum(-1)
        logdet = 2.0 * (dim - 1) * math.log(min_scale) + 2.0 * torch.log(min_scale + c_sq[:, 0])
        return mahalanobis, logdet
    std = min_scale + scale.square()
    if covariance == "isotropic":
        std = std[:, 0]
        return residual.square().sum(-1) / std.square(), 2.0 * dim * torch.log(std)
    if covariance == "diagonal":
        return (residual / std).square().sum(-1), 2.0 * torch.log(std).sum(-1)
    raise ValueError(f"covariance must be one of {COVARIANCES}; got {covariance!r}.")


# --------------------------------------------------------------------------------------------
# Logistic-Normal loss and density
# --------------------------------------------------------------------------------------------
def logistic_normal_loss(
    mean: Tensor,
    scale: Tensor | None,
    labels: Tensor,
    *,
    covariance: Covariance = "full",
    min_scale: float = 1.0,
    temperature: float = 1.0,
    smoothing: float = 0.01,
    dummy_class: bool = True,
) -> Tensor:
    """Logistic-Normal training loss per example (Eq. 5).

    0.5 * [r^T Sigma^{-1} r + log|Sigma|] with r = tau C e_y - mu and Sigma as in
    :func:`gaussian_terms`.

    Args:
        mean: Predicted mean ``mu`` of shape ``(B, D)``.
        scale: Covariance head output (``None`` for ``identity``).
        labels: Observed (possibly noisy) labels of shape ``(B,)`` in ``[0, K)``.
        covariance: Covariance structure (Table 3 ablation); ``full`` is Eq. 9.
        min_scale: ``lambda`` > 0, the smallest standard deviation.
        temperature: ``tau`` > 0 (Eq. 10-11).
        smoothing: Label smoothing ``t`` in (0, 1).
        dummy_class: Whether the logit space includes the dummy class (``D = K``).

    Returns:
        Float32 loss of shape ``(B,)``.
    """
    check_ln_hparams(
        temperature=temperature, min_scale=min_scale, smoothing=smoothing, covariance=covariance
    )
    with torch.autocast(mean.device.type, enabled=False):
        mean = upcast(mean)
        num_classes = num_classes_from_logit_dim(mean.shape[-1], dummy_class)
        check_labels(labels, num_classes)
        target = target_logits(
            labels,
            num_classes,
            smoothing=smoothing,
            dummy_class=dummy_class,
            temperature=temperature,
            dtype=mean.dtype,
        )
        mahalanobis, logdet = gaussian_terms(
            target - mean, scale, covariance=covariance, min_scale=min_scale
        )
        return 0.5 * (mahalanobis + logdet)


def logistic_normal_nll(
    mean: Tensor,
    scale: Tensor | None,
    labels: Tensor,
    *,
    covariance: Covariance = "full",
    min_scale: float = 1.0,
    temperature: float = 1.0,
    smoothing: float = 0.01,
    dummy_class: bool = True,
) -> Tensor:
    """Exact negative log-density of the smoothed target under the LN distribution (Eq. 16).

    The training loss (Eq. 5) plus the terms constant in the parameters:
    (D/2) log 2 pi + sum_{k=1}^{M} log q_k - D log tau, where the last is the Jacobian of the
    temperature. TensorFlow Probability's SoftmaxCentered bijector adds a further
    0.5 log(M), which is not included here.

    Args: as :func:`logistic_normal_loss`.

    Returns:
        Float32 negative log-density of shape ``(B,)``.
    """
    loss = logistic_normal_loss(
        mean,
        scale,
        labels,
        covariance=covariance,
        min_scale=min_scale,
        temperature=temperature,
        smoothing=smoothing,
        dummy_class=dummy_class,
    )
    dim = mean.shape[-1]
    num_categories = dim + 1
    peak = (1.0 - smoothing) + smoothing / num_categories
    floor = smoothing / num_categories
    sum_log_q = math.log(peak) + (num_categories - 1) * math.log(floor)
    constant = 0.5 * dim * math.log(2.0 * math.pi) + sum_log_q - dim * math.log(temperature)
    return loss + constant


# --------------------------------------------------------------------------------------------
# Softmax baselines
# --------------------------------------------------------------------------------------------
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
