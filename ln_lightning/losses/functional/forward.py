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


def forward_corrected_mean(
    mean: Tensor, transition_matrix: Tensor, *, temperature: float = 1.0, dummy_class: bool = True
) -> Tensor:
    """The Logistic-Normal mean of the *noisy* label, from the mean of the clean class.

    Forward correction in LN's logit space: the clean class probabilities
    ``p = S_C(mu / tau)`` (Sec. 3.3) become the noisy label's ``p~ = T^T p``, mapped back
    through the same bijection, ``mu~ = tau S_C^{-1}(p~)`` (Eq. 10-11). With the dummy class
    its probability is kept, so ``mu~_k = tau log sum_i exp(mu_i / tau) T_ik``; with ``T = I``,
    ``mu~ = mu``. Computed as one ``(B, M) x (M, M)`` product after subtracting the row's
    largest logit: no ``K x K`` matrix per example.

    Args:
        mean: Predicted clean mean ``mu``, shape ``(B, D)`` (``D = K`` with the dummy class,
            ``K - 1`` without).
        transition_matrix: Row-stochastic ``(K, K)``, ``T[i, j] = P(noisy j | true i)``.
        temperature: ``tau`` > 0 of the loss.
        dummy_class: Whether the logit space includes the dummy class.

    Returns:
        Float32 ``(B, D)``; the LN loss of it against the noisy label is the
        transition-aware LN (``ForwardLogisticNormalLoss``).

    Example:
        >>> import torch
        >>> mean = torch.tensor([[3.0, 0.0]])
        >>> same = forward_corrected_mean(mean, torch.eye(2))
        >>> torch.allclose(same, mean, atol=1e-6)
        True
        >>> flips = torch.tensor([[0.6, 0.4], [0.0, 1.0]])  # 40% of class 0 labelled 1
        >>> noisy = forward_corrected_mean(mean, flips)
        >>> torch.allclose(torch.softmax(noisy, -1), torch.softmax(mean, -1) @ flips)
        True
    """
    num_classes = mean.shape[-1] if dummy_class else mean.shape[-1] + 1
    if transition_matrix.shape != (num_classes, num_classes):
        raise ValueError(
            f"transition_matrix must have shape ({num_classes}, {num_classes}) for a mean of "
            f"width {mean.shape[-1]} (dummy_class={dummy_class}); "
            f"got {tuple(transition_matrix.shape)}."
        )
    with torch.autocast(mean.device.type, enabled=False):
        scaled = upcast(mean) / temperature
        logits = torch.cat([scaled, scaled.new_zeros((*scaled.shape[:-1], 1))], dim=-1)
        matrix = transition_matrix.to(logits)
        if dummy_class:  # the dummy category keeps its probability
            matrix = torch.block_diag(matrix, matrix.new_ones(1, 1))
        top = logits.amax(-1, keepdim=True).detach()
        noisy = torch.exp(logits - top) @ matrix  # p~ up to the row's normaliser
        log_noisy = torch.log(noisy.clamp_min(torch.finfo(noisy.dtype).tiny))
        return temperature * (log_noisy[..., :-1] - log_noisy[..., -1:])


def estimate_transition_matrix(probs: Tensor, percentile: float = 97.0) -> Tensor:
    """Estimate ``T`` from a model's class probabilities on the noisy training data.

    Row ``i`` is the predicted distribution of the example that is most confidently class ``i``
    (Patrini et al. 2017), its anchor (:func:`transition_anchors`). With ``percentile < 100``
    the examples above that percentile of ``p(i|x)`` are treated as outliers and the most
    confident of the rest is used, as in the reference implementation (97).

    Args:
        probs: ``(N, K)`` predicted probabilities (of the noisy labels).
        percentile: In (0, 100]; 100 takes the plain arg-max.

    Returns:
        ``(K, K)`` float32 row-stochastic estimate.
    """
    probs = probs.float()
    estimate = probs[transition_anchors(probs, percentile)]
    return estimate / estimate.sum(-1, keepdim=True)


def wrong_label_share(transition_matrix: Tensor, prior: Tensor | None = None) -> Tensor:
    """The share of labels a transition matrix calls wrong: ``sum_i prior_i (1 - T_ii)``.

    Args:
        transition_matrix: Row-stochastic ``(K, K)``, ``T[i, j] = P(noisy j | true i)``.
        prior: ``(K,)`` share of each true class; ``None`` weighs the classes equally.

    Returns:
        Float32 scalar in [0, 1].

    Example:
        >>> import torch
        >>> flips = torch.tensor([[0.6, 0.4], [0.0, 1.0]])  # 40% of class 0 labelled 1
        >>> round(float(wrong_label_share(flips)), 2)
        0.2
    """
    matrix = transition_matrix.float()
    num_classes = matrix.shape[0]
    weights = matrix.new_full((num_classes,), 1.0 / num_classes) if prior is None else prior
    return (weights.float() * (1.0 - matrix.diagonal())).sum()


def wrong_label_spread(transition_matrix: Tensor) -> Tensor:
    """How evenly a transition matrix spreads each class's wrong labels over the other classes:
    1 when they go to every other class alike (symmetric noise), ``1 / (K - 1)`` when all go to
    one class (a confused pair).

    Per row ``i`` the wrong labels' distribution ``q`` (``T[i, j != i]``, normalised) counts
    ``1 / sum_j q_j^2`` classes (the inverse Simpson index), divided by ``K - 1``; the rows are
    averaged with their wrong-label mass ``1 - T_ii`` as weights, so rows with hardly any
    wrong labels count little.

    Args:
        transition_matrix: Row-stochastic ``(K, K)``, ``K >= 3``.

    Returns:
        Float32 scalar in ``[1 / (K - 1), 1]``; 1 for the identity (nothing wrong).

    Example:
        >>> import torch
        >>> symmetric = torch.full((4, 4), 0.1) + 0.6 * torch.eye(4)
        >>> round(float(wrong_label_spread(symmetric)), 2)
        1.0
        >>> pairs = torch.tensor(
        ...     [[0.6, 0.4, 0, 0], [0, 1.0, 0, 0], [0, 0, 0.7, 0.3], [0, 0, 0, 1.0]]
        ... )
        >>> round(float(wrong_label_spread(pairs)), 2)
        0.33
    """
    matrix = transition_matrix.float()
    num_classes = matrix.shape[0]
    if num_classes < 3:
        raise ValueError(f"the spread needs 3 classes or more; got {num_classes}.")
    off = matrix * (1.0 - torch.eye(num_classes, device=matrix.device))
    mass = off.sum(-1)
    if float(mass.sum()) <= 0.0:
        return matrix.new_tensor(1.0)
    shares = off / mass.clamp_min(torch.finfo(matrix.dtype).tiny).unsqueeze(-1)
    classes = 1.0 / (shares**2).sum(-1).clamp_min(torch.finfo(matrix.dtype).tiny)
    return (mass * classes).sum() / mass.sum() / (num_classes - 1)


def transition_anchors(probs: Tensor, percentile: float = 97.0) -> Tensor:
    """The example each row of :func:`estimate_transition_matrix` is read from: per class
    ``i``, the highest ``p(i|x)`` below the ``percentile`` of ``p(i|x)`` over all examples
    (the plain arg-max at 100).

    Args:
        probs: ``(N, K)`` predicted probabilities.
        percentile: In (0, 100].

    Returns:
        ``(K,)`` int64 indices into ``probs``.

    Example:
        >>> import torch
        >>> probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
        >>> transition_anchors(probs, 100).tolist(), transition_anchors(probs, 50).tolist()
        ([0, 2], [3, 1])
    """
    _check_percentile(percentile)
    probs = probs.float()
    if percentile < 100.0:
        # The 'higher' interpolation of the reference: the threshold is an observed value.
        threshold = torch.quantile(probs, percentile / 100.0, dim=0, interpolation="higher")
        scores = torch.where(probs >= threshold, torch.zeros_like(probs), probs)
    else:
        scores = probs
    return scores.argmax(dim=0)


def filtered_share(probs: Tensor, percentile: float) -> Tensor:
    """The share of the examples predicted as each class that the outlier filter of
    :func:`estimate_transition_matrix` sets aside.

    The filter drops the top ``100 - percentile`` % of *all* examples by ``p(i|x)``, whatever
    the number of classes: with 10 balanced classes the 97th percentile sets aside about 30% of
    a class's examples, with 100 classes all of them, and row ``i`` of ``T`` then comes from an
    example of another class (the reference turns the filter off for CIFAR-100). A share of 0.5
    or more is the sign.

    Args:
        probs: ``(N, K)`` predicted probabilities.
        percentile: In (0, 100]; 100 sets nothing aside.

    Returns:
        ``(K,)`` float32: the examples with ``p(i|x)`` at or above the threshold over the
        examples whose arg-max is ``i`` (``inf`` for a class the model never predicts; above 1
        when the filter reaches into other classes' examples).

    Example:
        >>> import torch
        >>> def confident(n, k):  # n examples of k balanced classes, mostly right
        ...     logits = torch.randn(n, k, generator=torch.Generator().manual_seed(0))
        ...     logits[torch.arange(n), torch.arange(n) % k] += 4
        ...     return logits.softmax(-1)
        >>> [round(float(filtered_share(confident(5000, 10), p).max()), 1) for p in (97, 99)]
        [0.3, 0.1]
        >>> [round(float(filtered_share(confident(5000, 50), p).max()), 1) for p in (97, 99)]
        [1.7, 0.6]
    """
    _check_percentile(percentile)
    probs = probs.float()
    num_classes = probs.shape[-1]
    if percentile == 100.0:
        return torch.zeros(num_classes)
    predicted = torch.bincount(probs.argmax(-1), minlength=num_classes).float()
    threshold = torch.quantile(probs, percentile / 100.0, dim=0, interpolation="higher")
    return (probs >= threshold).sum(0).float() / predicted


def _check_percentile(percentile: float) -> None:
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must lie in (0, 100]; got {percentile!r}.")
