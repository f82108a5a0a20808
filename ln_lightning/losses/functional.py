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
        if covariance == "full" and scale is not None:
            return _full_covariance_loss(
                mean, scale, labels, min_scale, temperature, smoothing, dummy_class
            )
        residual = _ln_residual(mean, labels, temperature, smoothing, dummy_class)
        mahalanobis, logdet = gaussian_terms(
            residual, scale, covariance=covariance, min_scale=min_scale
        )
        return 0.5 * (mahalanobis + logdet)


def _full_covariance_loss(
    mean: Tensor,
    factor: Tensor,
    labels: Tensor,
    min_scale: float,
    temperature: float,
    smoothing: float,
    dummy_class: bool,
) -> Tensor:
    """Eq. 5 under Eq. 9's covariance through :class:`_FullCovarianceLN` (checks, upcasts)."""
    mean = upcast(mean)
    factor = upcast(factor).to(mean.dtype)
    if factor.shape != mean.shape:
        raise ValueError(
            f"covariance='full' needs a scale head as wide as the mean: got scale of shape "
            f"{tuple(factor.shape)} for mean of shape {tuple(mean.shape)}."
        )
    dim = mean.shape[-1]
    check_labels(labels, num_classes_from_logit_dim(dim, dummy_class))
    target_scale = temperature * target_logit_scale(dim + 1, smoothing)
    return _FullCovarianceLN.apply(
        mean, factor, labels.long(), min_scale, target_scale, not dummy_class
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


def _ln_residual(
    mean: Tensor, labels: Tensor, temperature: float, smoothing: float, dummy_class: bool
) -> Tensor:
    """``r = tau S_C^{-1}(q_y) - mu`` in float32 (float64 kept), after checking the labels."""
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
    return target - mean


def logistic_normal_residuals(
    mean: Tensor,
    scale: Tensor | None,
    labels: Tensor,
    *,
    covariance: Covariance = "full",
    min_scale: float = 1.0,
    temperature: float = 1.0,
    smoothing: float = 0.01,
    dummy_class: bool = True,
) -> tuple[Tensor, Tensor]:
    """Squared residual of each label under Sigma = I and under the learned Sigma (Fig. 6).

    ``(r^T r, r^T Sigma_theta^{-1} r)`` with ``r = tau C e_y - mu``: the first says how far the
    label is from the prediction, the second how surprising it is given the uncertainty the
    model learned for the example. Large values flag likely mislabelled examples.

    Args: as :func:`logistic_normal_loss`.

    Returns:
        Two float32 tensors of shape ``(B,)``.
    """
    check_ln_hparams(
        temperature=temperature, min_scale=min_scale, smoothing=smoothing, covariance=covariance
    )
    with torch.autocast(mean.device.type, enabled=False):
        residual = _ln_residual(mean, labels, temperature, smoothing, dummy_class)
        mahalanobis, _ = gaussian_terms(residual, scale, covariance=covariance, min_scale=min_scale)
        return residual.square().sum(-1), mahalanobis


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


def label_smoothing_cross_entropy(logits: Tensor, labels: Tensor, smoothing: float) -> Tensor:
    """Cross-entropy against ``(1 - t) onehot(y) + t / K`` (LS baseline).

    Args:
        logits: Shape ``(B, K)``.
        labels: Shape ``(B,)`` in ``[0, K)``.
        smoothing: ``t`` in [0, 1]; 0 is plain cross-entropy.
    """
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"smoothing must lie in [0, 1]; got {smoothing!r}.")
    with torch.autocast(logits.device.type, enabled=False):
        check_labels(labels, logits.shape[-1])
        log_probs = torch.log_softmax(upcast(logits), dim=-1)
        nll = -log_probs.gather(1, labels.long()[:, None]).squeeze(1)
        return (1.0 - smoothing) * nll - smoothing * log_probs.mean(-1)


def generalized_cross_entropy(logits: Tensor, labels: Tensor, q: float) -> Tensor:
    """Generalized cross-entropy (1 - p_y^q) / q (Zhang & Sabuncu 2018).

    ``q -> 0`` recovers cross-entropy and ``q = 1`` is MAE, ``1 - p_y``. ``p_y^q`` is computed as
    ``exp(q log p_y)`` from ``log_softmax`` so tiny probabilities keep their gradient.

    Args:
        logits: Shape ``(B, K)``.
        labels: Shape ``(B,)`` in ``[0, K)``.
        q: Exponent in (0, 1].
    """
    if not 0.0 < q <= 1.0:
        raise ValueError(f"q must lie in (0, 1]; got {q!r}.")
    with torch.autocast(logits.device.type, enabled=False):
        check_labels(labels, logits.shape[-1])
        log_p = torch.log_softmax(upcast(logits), dim=-1).gather(1, labels.long()[:, None])
        return -torch.expm1(q * log_p.squeeze(1)) / q


def noisy_target_cross_entropy(
    logits: Tensor, labels: Tensor, sigma: float, generator: torch.Generator | None = None
) -> Tensor:
    """Noise against noise (NAN / SLN, Chen et al. 2021): -sum((onehot + sigma eps) log softmax).

    A fresh ``eps ~ N(0, I)`` is drawn on every call (from ``generator`` if given).

    Args:
        logits: Shape ``(B, K)``.
        labels: Shape ``(B,)`` in ``[0, K)``.
        sigma: Standard deviation of the target noise, >= 0; 0 is plain cross-entropy.
        generator: Optional random generator on the logits' device.
    """
    if not sigma >= 0.0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be a finite number >= 0; got {sigma!r}.")
    with torch.autocast(logits.device.type, enabled=False):
        logits = upcast(logits)
        check_labels(labels, logits.shape[-1])
        target = F.one_hot(labels.long(), logits.shape[-1]).to(logits.dtype)
        if sigma > 0:
            noise = torch.randn(
                logits.shape, generator=generator, device=logits.device, dtype=logits.dtype
            )
            target = target + sigma * noise
        return -(target * torch.log_softmax(logits, dim=-1)).sum(-1)


def forward_corrected_cross_entropy(
    logits: Tensor, labels: Tensor, transition_matrix: Tensor
) -> Tensor:
    """Forward loss correction -log((T^T p)_y) (Patrini et al. 2017).

    ``T[i, j] = P(noisy label j | true class i)``; computed in log space,
    ``log (T^T p)_y = logsumexp_i(log p_i + log T_iy)``, so zeros in ``T`` are exact.

    Args:
        logits: Shape ``(B, K)``, the clean-class logits.
        labels: Observed (noisy) labels, shape ``(B,)`` in ``[0, K)``.
        transition_matrix: Row-stochastic ``(K, K)`` matrix.
    """
    num_classes = logits.shape[-1]
    if transition_matrix.shape != (num_classes, num_classes):
        raise ValueError(
            f"transition_matrix must have shape ({num_classes}, {num_classes}); "
            f"got {tuple(transition_matrix.shape)}."
        )
    with torch.autocast(logits.device.type, enabled=False):
        check_labels(labels, num_classes)
        log_probs = torch.log_softmax(upcast(logits), dim=-1)
        log_t = torch.log(transition_matrix.to(log_probs))
        columns = log_t[:, labels.long()].T  # (B, K): log T[i, y_b]
        return -torch.logsumexp(log_probs + columns, dim=-1)


def estimate_transition_matrix(probs: Tensor, percentile: float = 97.0) -> Tensor:
    """Estimate ``T`` from a model's class probabilities on the noisy training data.

    Row ``i`` is the predicted distribution of the example that is most confidently class ``i``
    (Patrini et al. 2017). With ``percentile < 100`` the examples above that percentile of
    ``p(i|x)`` are treated as outliers and the most confident of the rest is used, as in the
    reference implementation (97).

    Args:
        probs: ``(N, K)`` predicted probabilities (of the noisy labels).
        percentile: In (0, 100]; 100 takes the plain arg-max.

    Returns:
        ``(K, K)`` float32 row-stochastic estimate.
    """
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must lie in (0, 100]; got {percentile!r}.")
    probs = probs.float()
    if percentile < 100.0:
        # The 'higher' interpolation of the reference: the threshold is an observed value.
        threshold = torch.quantile(probs, percentile / 100.0, dim=0, interpolation="higher")
        scores = torch.where(probs >= threshold, torch.zeros_like(probs), probs)
    else:
        scores = probs
    best = scores.argmax(dim=0)  # (K,): one example per class
    estimate = probs[best]
    return estimate / estimate.sum(-1, keepdim=True)


def _het_logits(
    mean: Tensor,
    std: Tensor,
    num_samples: int,
    factor: Tensor | None,
    share_samples: bool,
    generator: torch.Generator | None,
) -> Tensor:
    """Samples u = mu + d * eps_K (+ V eps_R) of shape ``(B, S, K)``."""
    batch, num_classes = mean.shape
    rows = 1 if share_samples else batch

    def normal(*shape: int) -> Tensor:
        return torch.randn(shape, generator=generator, device=mean.device, dtype=mean.dtype)

    # eps_K is drawn first so a low-rank model with V = 0 sees the same noise as a diagonal one.
    logits = mean[:, None, :] + std[:, None, :] * normal(rows, num_samples, num_classes)
    if factor is not None:
        eps_r = normal(rows, num_samples, factor.shape[-1]).expand(batch, -1, -1)
        logits = logits + torch.einsum("bkr,bsr->bsk", factor, eps_r)
    return logits


def heteroscedastic_loss(
    mean: Tensor,
    std: Tensor,
    labels: Tensor,
    *,
    num_samples: int = 100,
    temperature: float = 1.0,
    factor: Tensor | None = None,
    share_samples: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Heteroscedastic MC softmax loss -log((1/S) sum_s softmax(u_s / tau)_y).

    ``u_s = mu + d * eps_s`` (Het, Kendall & Gal 2017; Het-tau with ``temperature``, Collier et
    al. 2020), plus ``V eps_R`` when ``factor`` (``V``, shape ``(B, K, R)``) is given
    (Het-tau-Sigma_full, Collier et al. 2021). Log-mean-exp over samples in float32; memory
    ``O(B S K)``.

    Args:
        mean: ``mu``, shape ``(B, K)``.
        std: ``d >= 0``, shape ``(B, K)``.
        labels: Shape ``(B,)`` in ``[0, K)``.
        num_samples: MC samples ``S`` >= 1.
        temperature: ``tau`` > 0.
        factor: Optional low-rank factor ``V`` of shape ``(B, K, R)``.
        share_samples: Draw one set of ``eps`` for the whole batch (less memory for the noise).
        generator: Optional random generator on the inputs' device.
    """
    check_het_hparams(num_samples, temperature)
    with torch.autocast(mean.device.type, enabled=False):
        mean, std = upcast(mean), upcast(std).to(upcast(mean).dtype)
        factor = None if factor is None else upcast(factor).to(mean.dtype)
        check_labels(labels, mean.shape[-1])
        logits = _het_logits(mean, std, num_samples, factor, share_samples, generator)
        log_probs = torch.log_softmax(logits / temperature, dim=-1)
        index = labels.long()[:, None, None].expand(-1, num_samples, 1)
        log_p_y = log_probs.gather(2, index).squeeze(2)  # (B, S)
        return math.log(num_samples) - torch.logsumexp(log_p_y, dim=1)


def heteroscedastic_probabilities(
    mean: Tensor,
    std: Tensor,
    *,
    num_samples: int = 100,
    temperature: float = 1.0,
    factor: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """MC average of softmax(u_s / tau) over ``num_samples`` samples, shape ``(B, K)``."""
    check_het_hparams(num_samples, temperature)
    with torch.autocast(mean.device.type, enabled=False):
        mean = upcast(mean)
        std = upcast(std).to(mean.dtype)
        factor = None if factor is None else upcast(factor).to(mean.dtype)
        logits = _het_logits(mean, std, num_samples, factor, False, generator)
        return torch.softmax(logits / temperature, dim=-1).mean(1)


def check_het_hparams(num_samples: int, temperature: float) -> None:
    """Raise ``ValueError`` naming the first invalid heteroscedastic hyper-parameter."""
    if int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1; got {num_samples!r}.")
    if not temperature > 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number > 0; got {temperature!r}.")
