"""Forward loss correction (Patrini et al. 2017) and its transition-matrix estimate."""

from __future__ import annotations

import torch
from torch import Tensor

from ln_lightning.losses.functional._common import check_labels, upcast


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
