"""The full-covariance LN loss (Eq. 5 under Eq. 9's covariance) as one autograd function:
four reductions per example, no ``D x D`` matrix."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ln_lightning.losses.functional._common import check_labels, upcast_mean_and_factor
from ln_lightning.losses.functional.softmax_centered import num_classes_from_logit_dim

__all__ = ["full_covariance_loss"]


def full_covariance_loss(mean: Tensor, factor: Tensor, labels: Tensor, params: Any) -> Tensor:
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
