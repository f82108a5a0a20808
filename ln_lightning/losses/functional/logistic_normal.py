"""The Logistic-Normal likelihood (Englesson et al., TMLR 2023), per example, in O(D).

Equation numbers refer to Englesson, Mehrjou & Azizpour, "Logistic-Normal Likelihoods for
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
import torch.nn.functional as F
from torch import Tensor

from ln_lightning.losses.functional._common import (
    check_labels,
    upcast,
    upcast_mean_and_factor,
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
            return _full_covariance_loss(mean, scale, labels, params)
        residual = _ln_residual(mean, labels, params)
        mahalanobis, logdet = gaussian_terms(
            residual, scale, covariance=params.covariance, min_scale=params.min_scale
        )
        return 0.5 * (mahalanobis + logdet)


def _full_covariance_loss(
    mean: Tensor, factor: Tensor, labels: Tensor, params: LogisticNormalParams
) -> Tensor:
    """Eq. 5 under Eq. 9's covariance through :class:`_FullCovarianceLN` (checks, upcasts)."""
    mean, factor = upcast_mean_and_factor(mean, factor, "covariance='full' needs a scale head")
    dim = mean.shape[-1]
    labels = check_labels(labels, num_classes_from_logit_dim(dim, params.dummy_class))
    return _FullCovarianceLN.apply(
        mean, factor, labels, params.min_scale, params.target_scale(dim), not params.dummy_class
    )


class _FullCovarianceLN(torch.autograd.Function):
    """LN loss with Sigma^{1/2} = c c^T + lambda I (Eq. 5, 9) from four reductions per example.

    With ``r = t - mu``, ``s = |c|^2`` and ``p = c.r`` (``t`` the target logits):

        loss = 0.5 (|r|^2 - p^2 (s + 2 lambda) / (lambda + s)^2) / lambda^2
               + (D - 1) log lambda + log(lambda + s)

    and, from Eq. 6 and the derivative in ``c``,

        dL/dmu = -r / lambda^2 + gamma c,   gamma = p (s + 2 lambda) / (lambda^2 (lambda + s)^2)
        dL/dc  = -gamma r + delta c,        delta = p^2 (s + 3 lambda) / (lambda^2 (lambda + s)^3)
                                                    + 2 / (lambda + s).

    ``t`` is ``a e_y`` (``a = tau C``), or ``-a 1`` for the reference class without the dummy
    class, so ``|r|^2`` and ``p`` come from ``|mu|^2``, ``c.mu``, ``|c|^2`` and entries at the
    label; neither pass keeps a ``(B, D)`` temporary beyond the two gradients. Autograd through
    the whitened form of :func:`gaussian_terms` is as fast at D <= 100, 1.4x slower at 1000 and
    4-7x at 10000 (``benchmarks/loss_scaling.py``). The Mahalanobis term is clamped below by
    ``|r|^2 / (lambda + s)^2``, which the expanded form can cross by rounding (it cannot exceed
    ``|r|^2 / lambda^2``: the subtracted term is non-negative); the gradient never cancels.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        mean: Tensor,
        factor: Tensor,
        labels: Tensor,
        min_scale: float,
        target_scale: float,
        has_reference: bool,
    ) -> Tensor:
        dim = mean.shape[-1]
        a, lam = target_scale, min_scale
        factor_sq = torch.linalg.vector_norm(factor, dim=-1).square_()
        mean_sq = torch.linalg.vector_norm(mean, dim=-1).square_()
        factor_dot_mean = torch.linalg.vecdot(factor, mean)
        target_sq = a * a  # |t|^2, D a^2 for the reference class
        if has_reference:
            target_sq = (labels == dim).to(mean.dtype).mul_((dim - 1) * a * a).add_(a * a)
        # |r|^2 = |mu|^2 - 2 t.mu + |t|^2 and p = c.r = c.t - c.mu, with t = a * (e_y or -1)
        residual_sq = torch.add(
            mean_sq, _at_target(mean, labels, has_reference), alpha=-2 * a
        ).add_(target_sq)
        residual_sq.clamp_min_(0)
        factor_dot_residual = torch.add(
            factor_dot_mean, _at_target(factor, labels, has_reference), alpha=-a
        ).neg_()
        shifted = factor_sq + lam
        inv_shifted_sq = shifted.reciprocal().square_()
        weight = (shifted + lam).mul_(inv_shifted_sq)  # (s + 2 lambda) / (lambda + s)^2
        p_sq = factor_dot_residual.square()
        mahalanobis = torch.addcmul(residual_sq, p_sq, weight, value=-1).div_(lam * lam)
        mahalanobis = torch.maximum(mahalanobis, residual_sq * inv_shifted_sq)
        if any(ctx.needs_input_grad[:2]):
            gamma = factor_dot_residual.mul_(weight).div_(lam * lam)
            # delta = p^2 (s + 3 lambda) / (lambda^2 (lambda + s)^3) + 2 / (lambda + s)
            delta = p_sq.mul_(shifted + 2 * lam).mul_(inv_shifted_sq).div_(lam * lam)
            delta.add_(2.0).div_(shifted)
            ctx.save_for_backward(mean, factor, labels, gamma, delta)
        ctx.target_scale, ctx.min_scale, ctx.has_reference = a, lam, has_reference
        loss = torch.log(shifted).add_(mahalanobis, alpha=0.5)
        return loss.add_((dim - 1) * math.log(lam))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, ...]:
        mean, factor, labels, gamma, delta = ctx.saved_tensors
        a, lam, has_reference = ctx.target_scale, ctx.min_scale, ctx.has_reference
        # dL/dmu = (mu - t) / lambda^2 + gamma c and dL/dc = gamma (mu - t) + delta c, per row
        # scaled by the incoming gradient; one (B, D) allocation each.
        grad_mean = (grad / (lam * lam))[:, None]
        grad_gamma = (grad * gamma)[:, None]
        d_mean = torch.mul(factor, grad_gamma).addcmul_(mean, grad_mean)
        _sub_target(d_mean, labels, a * grad_mean, has_reference)
        d_factor = torch.mul(factor, (grad * delta)[:, None]).addcmul_(mean, grad_gamma)
        _sub_target(d_factor, labels, a * grad_gamma, has_reference)
        return d_mean, d_factor, None, None, None, None


def _at_target(values: Tensor, labels: Tensor, has_reference: bool) -> Tensor:
    """``t . x / a`` per row: ``x_y``, or ``-sum(x)`` where ``y = D`` (the reference class of
    S_C, only without the dummy class: ``has_reference``)."""
    dim = values.shape[-1]
    if not has_reference:
        return values.gather(-1, labels[:, None])[:, 0]
    at_label = values.gather(-1, labels.clamp_max(dim - 1)[:, None])[:, 0]
    return torch.where(labels == dim, -values.sum(-1), at_label)


def _sub_target(grad: Tensor, labels: Tensor, coef: Tensor, has_reference: bool) -> None:
    """``grad -= coef * t / a`` in place (``coef`` of shape ``(B, 1)``, ``t`` as in
    :func:`_at_target`)."""
    dim = grad.shape[-1]
    if not has_reference:
        grad.scatter_add_(-1, labels[:, None], -coef)
        return
    is_reference = (labels == dim)[:, None]
    grad.scatter_add_(-1, labels.clamp_max(dim - 1)[:, None], -coef * ~is_reference)
    grad.add_(coef * is_reference)


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
