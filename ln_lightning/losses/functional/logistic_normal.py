"""The Logistic-Normal likelihood (Englesson et al., TMLR 2023), per example, in O(D).

Equation numbers refer to Englesson, Mehrpanah & Azizpour, "Logistic-Normal Likelihoods for
Heteroscedastic Label Noise", TMLR 2023. Notation: ``K`` real classes, ``D`` the dimension of the
logit space (``D = K`` with the dummy class, ``D = K - 1`` without), ``M = D + 1`` categories of
the simplex the smoothed target lives in. The hyper-parameters travel as one validated
:class:`LogisticNormalParams`, checked once when it is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ln_lightning.losses.functional._common import check_labels, upcast
from ln_lightning.losses.functional._ln_full_covariance import full_covariance_loss
from ln_lightning.losses.functional.softmax_centered import (
    num_classes_from_logit_dim,
    softmax_centered,
    target_logit_scale,
    target_logits,
)

Covariance = Literal["identity", "isotropic", "diagonal", "full"]
COVARIANCES: tuple[str, ...] = ("identity", "isotropic", "diagonal", "full")


@dataclass(frozen=True)
class LogisticNormalParams:
    """The Logistic-Normal hyper-parameters, validated once when made.

    Attributes:
        covariance: ``identity``, ``isotropic``, ``diagonal`` or ``full`` (Eq. 9; Table 3).
        min_scale: ``lambda`` > 0, the smallest standard deviation (Eq. 9).
        temperature: ``tau`` > 0 (Eq. 10-11).
        smoothing: Label smoothing ``t`` in (0, 1), so the target is inside the simplex.
        dummy_class: Append a dummy category so the logit space is R^K (Sec. 3.2).
        anneal_epochs: Epochs over which ``lambda`` falls from ``tau C`` to ``min_scale`` at
            the start of training (0: never, Eq. 5 exactly); see :meth:`min_scale_at`.

    Raises:
        ValueError: Naming the first invalid value.

    Example:
        >>> params = LogisticNormalParams(temperature=0.5, min_scale=0.5, anneal_epochs=10)
        >>> round(params.target_scale(dim=10), 2)  # tau C for K = 10 classes (D = 10)
        3.5
        >>> params.min_scale_at(0.0, dim=10) > params.min_scale_at(5.0, dim=10) > params.min_scale
        True
        >>> LogisticNormalParams(min_scale=0)
        Traceback (most recent call last):
            ...
        ValueError: min_scale must be a finite number > 0 (lambda in Eq. 9); got 0.
    """

    covariance: Covariance = "full"
    min_scale: float = 1.0
    temperature: float = 1.0
    smoothing: float = 0.01
    dummy_class: bool = True
    anneal_epochs: float = 0.0

    def __post_init__(self) -> None:
        temperature, min_scale = self.temperature, self.min_scale
        if not temperature > 0 or not math.isfinite(temperature):
            raise ValueError(f"temperature must be a finite number > 0; got {temperature!r}.")
        if not min_scale > 0 or not math.isfinite(min_scale):
            raise ValueError(
                f"min_scale must be a finite number > 0 (lambda in Eq. 9); got {min_scale!r}."
            )
        if not 0.0 < self.smoothing < 1.0:
            raise ValueError(
                "smoothing must lie in the open interval (0, 1) so the target is inside the "
                f"simplex; got {self.smoothing!r}."
            )
        if self.covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}; got {self.covariance!r}.")
        anneal = self.anneal_epochs
        if isinstance(anneal, bool) or not anneal >= 0 or not math.isfinite(anneal):
            raise ValueError(
                "anneal_epochs must be a finite number of epochs >= 0 (0 switches the "
                f"annealing of min_scale off); got {anneal!r}."
            )

    def target_scale(self, dim: int) -> float:
        """``tau C``, the target logit of the labelled class in a ``D``-dimensional space."""
        return self.temperature * target_logit_scale(dim + 1, self.smoothing)

    def min_scale_at(self, elapsed_epochs: float, dim: int) -> float:
        """``lambda`` after ``elapsed_epochs`` of training (graduated non-convexity).

        Sec. 3 and Fig. 2: an example whose residual exceeds ``lambda`` is attenuated (its loss
        saturates, its gradient falls as 1 / residual). At initialisation ``mu`` is about 0, so
        every residual is about ``tau C`` (about 7 tau for K = 10), far above the paper's
        ``lambda``: the whole training set starts attenuated and LN learns far more slowly
        than cross-entropy. Graduated non-convexity (Blake & Zisserman, "Visual
        Reconstruction", 1987; Black & Rangarajan, IJCV 1996) starts a robust loss at a scale
        where it is nearly quadratic and tightens it: here ``lambda`` falls from ``tau C``
        (no example attenuated) to ``min_scale`` along a half cosine over ``anneal_epochs``,
        and stays there. The correct labels are fitted while the threshold is high; the
        wrong ones, not yet memorised, exceed it when it reaches ``min_scale``.

        Args:
            elapsed_epochs: Training time in epochs (``epoch + batch / batches per epoch``).
            dim: Dimension ``D`` of the logit space.

        Returns:
            ``min_scale`` when ``anneal_epochs`` is 0 or has passed, else the annealed value.
        """
        if not self.anneal_epochs or elapsed_epochs >= self.anneal_epochs:
            return self.min_scale
        start = max(self.target_scale(dim), self.min_scale)
        progress = max(elapsed_epochs, 0.0) / self.anneal_epochs
        return self.min_scale + (start - self.min_scale) * 0.5 * (1 + math.cos(math.pi * progress))


#: The paper's defaults: full covariance, lambda = tau = 1, t = 0.01, with the dummy class, no
#: annealing.
DEFAULT_PARAMS = LogisticNormalParams()


def mean_probabilities(mean: Tensor, dummy_class: bool = True, temperature: float = 1.0) -> Tensor:
    """Class probabilities from the predicted mean only (Sec. 3.3), over the K real classes.

    The mean lives in the tau-scaled logit space (the target is ``tau C e_y``, Eq. 10-11), so
    it is mapped back through the same bijector as the target: S_C(mu / tau). With the dummy
    class S_C(mu / tau) restricted to the real classes and renormalised is softmax(mu / tau):
    the dummy class is never a prediction. Without it, S_C(mu / tau) is already over the K
    classes. The arg-max does not depend on tau; the probabilities (NLL, ECE) do.

    Args:
        mean: Predicted mean ``mu`` of shape ``(B, D)``.
        dummy_class: Whether the logit space includes the dummy class (``D = K``).
        temperature: ``tau`` > 0, the temperature the model was trained with.
    """
    logits = upcast(mean) / temperature
    return torch.softmax(logits, dim=-1) if dummy_class else softmax_centered(logits)


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


def largest_standard_deviation(
    scale: Tensor | None, *, covariance: str, min_scale: float
) -> Tensor | None:
    """The largest standard deviation of the logit-space Gaussian, per example.

    The top eigenvalue of Sigma^{1/2} (parameterised as in :func:`gaussian_terms`): ``lambda +
    |c|^2`` for ``full`` (along ``c``), ``max_k (lambda + s_k^2)`` for ``diagonal``, ``lambda +
    s^2`` for ``isotropic``. It is ``lambda`` where the model is certain and grows where it
    attenuates a residual (a likely wrong label). ``None`` for ``identity`` (no covariance head).

    Args:
        scale: Covariance head output of shape ``(B, D)`` (``(B, 1)`` for ``isotropic``).
        covariance: One of ``identity``, ``isotropic``, ``diagonal``, ``full``.
        min_scale: ``lambda`` > 0.

    Returns:
        Float32 tensor of shape ``(B,)``, or ``None``.
    """
    if covariance == "identity" or scale is None:
        return None
    squared = upcast(scale).square()
    if covariance == "full":
        return min_scale + squared.sum(-1)
    return (min_scale + squared).amax(-1)


# --------------------------------------------------------------------------------------------
# Logistic-Normal loss and density
# --------------------------------------------------------------------------------------------
def logistic_normal_loss(
    mean: Tensor,
    scale: Tensor | None,
    labels: Tensor,
    params: LogisticNormalParams = DEFAULT_PARAMS,
) -> Tensor:
    """Logistic-Normal training loss per example (Eq. 5).

    0.5 * [r^T Sigma^{-1} r + log|Sigma|] with r = tau C e_y - mu and Sigma as in
    :func:`gaussian_terms`.

    Args:
        mean: Predicted mean ``mu`` of shape ``(B, D)``.
        scale: Covariance head output (``None`` for ``identity``).
        labels: Observed (possibly noisy) labels of shape ``(B,)`` in ``[0, K)``.
        params: The hyper-parameters (covariance structure, lambda, tau, t, dummy class).

    Returns:
        Float32 loss of shape ``(B,)``.
    """
    with torch.autocast(mean.device.type, enabled=False):
        if params.covariance == "full" and scale is not None:
            return full_covariance_loss(mean, scale, labels, params)
        residual = _ln_residual(mean, labels, params)
        mahalanobis, logdet = gaussian_terms(
            residual, scale, covariance=params.covariance, min_scale=params.min_scale
        )
        return 0.5 * (mahalanobis + logdet)


def _ln_residual(mean: Tensor, labels: Tensor, params: LogisticNormalParams) -> Tensor:
    """``r = tau S_C^{-1}(q_y) - mu`` in float32 (float64 kept), after checking the labels."""
    mean = upcast(mean)
    num_classes = num_classes_from_logit_dim(mean.shape[-1], params.dummy_class)
    labels = check_labels(labels, num_classes)
    target = target_logits(
        labels,
        num_classes,
        smoothing=params.smoothing,
        dummy_class=params.dummy_class,
        temperature=params.temperature,
        dtype=mean.dtype,
    )
    return target - mean


def logistic_normal_residuals(
    mean: Tensor,
    scale: Tensor | None,
    labels: Tensor,
    params: LogisticNormalParams = DEFAULT_PARAMS,
) -> tuple[Tensor, Tensor]:
    """Squared residual of each label under Sigma = I and under the learned Sigma (Fig. 6).

    ``(r^T r, r^T Sigma_theta^{-1} r)`` with ``r = tau C e_y - mu``: the first says how far the
    label is from the prediction, the second how surprising it is given the uncertainty the
    model learned for the example. Large values flag likely mislabelled examples.

    Args: as :func:`logistic_normal_loss`.

    Returns:
        Two float32 tensors of shape ``(B,)``.
    """
    with torch.autocast(mean.device.type, enabled=False):
        residual = _ln_residual(mean, labels, params)
        mahalanobis, _ = gaussian_terms(
            residual, scale, covariance=params.covariance, min_scale=params.min_scale
        )
        return residual.square().sum(-1), mahalanobis


def logistic_normal_nll(
    mean: Tensor,
    scale: Tensor | None,
    labels: Tensor,
    params: LogisticNormalParams = DEFAULT_PARAMS,
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
    loss = logistic_normal_loss(mean, scale, labels, params)
    dim = mean.shape[-1]
    num_categories = dim + 1
    smoothing = params.smoothing
    peak = (1.0 - smoothing) + smoothing / num_categories
    floor = smoothing / num_categories
    sum_log_q = math.log(peak) + (num_categories - 1) * math.log(floor)
    constant = 0.5 * dim * math.log(2.0 * math.pi) + sum_log_q - dim * math.log(params.temperature)
    return loss + constant
