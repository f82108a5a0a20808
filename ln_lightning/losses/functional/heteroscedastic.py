"""Heteroscedastic MC-softmax likelihoods: Het, Het-tau and Het-tau-Sigma_full."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ln_lightning.losses.functional._common import check_labels, upcast


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
