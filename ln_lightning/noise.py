"""Synthetic label noise: deterministic from a seed, vectorised, usable without Lightning.

Every generator returns a :class:`NoiseResult` with the noisy labels, the is-corrupted mask, the
realised noise rate and the transition matrix of the noise that was actually realised.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

#: MNIST asymmetric map of the paper (App. C): 7->1, 2->7, 5<->6, 3->8.
MNIST_ASYMMETRIC_MAP: dict[int, int] = {7: 1, 2: 7, 5: 6, 6: 5, 3: 8}

NOISE_TYPES = ("none", "symmetric", "asymmetric")


@dataclass(frozen=True)
class NoiseResult:
    """Outcome of a noise injection.

    Attributes:
        noisy_labels: Observed labels, shape ``(N,)``, int64.
        is_corrupted: ``noisy_labels != clean labels``, shape ``(N,)``, bool.
        realised_rate: Fraction of labels that changed.
        transition_matrix: ``(K, K)`` float tensor, row ``i`` the empirical distribution of the
            noisy label among examples of true class ``i`` (rows of absent classes are identity).
    """

    noisy_labels: Tensor
    is_corrupted: Tensor
    realised_rate: float
    transition_matrix: Tensor


def _check_noise_rate(noise_rate: float) -> None:
    if not 0.0 <= noise_rate < 1.0:
        raise ValueError(f"noise_rate must lie in [0, 1); got {noise_rate!r}.")


def _check_labels(labels: Tensor, num_classes: int) -> Tensor:
    labels = torch.as_tensor(labels)
    if labels.dtype.is_floating_point or labels.ndim != 1:
        raise ValueError(
            f"labels must be a 1-D integer tensor; got dtype {labels.dtype}, "
            f"shape {tuple(labels.shape)}."
        )
    labels = labels.long().cpu()
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}); got values in "
            f"[{int(labels.min())}, {int(labels.max())}]."
        )
    return labels


def realised_transition_matrix(clean: Tensor, noisy: Tensor, num_classes: int) -> Tensor:
    """Empirical ``P(noisy = j | clean = i)`` as a ``(K, K)`` float tensor."""
    counts = torch.zeros(num_classes * num_classes, dtype=torch.float64)
    counts.index_add_(0, clean * num_classes + noisy, torch.ones_like(clean, dtype=torch.float64))
    counts = counts.view(num_classes, num_classes)
    totals = counts.sum(1, keepdim=True)
    eye = torch.eye(num_classes, dtype=torch.float64)
    return torch.where(totals > 0, counts / totals.clamp_min(1), eye).float()


def _result(clean: Tensor, noisy: Tensor, num_classes: int) -> NoiseResult:
    corrupted = noisy != clean
    rate = float(corrupted.float().mean()) if clean.numel() else 0.0
    return NoiseResult(
        noisy, corrupted, rate, realised_transition_matrix(clean, noisy, num_classes)
    )


def asymmetric_noise(
    labels: Tensor,
    num_classes: int,
    noise_rate: float,
    class_map: Mapping[int, int],
    seed: int = 0,
) -> NoiseResult:
    """Flip each label of a source class of ``class_map`` to its target with ``noise_rate``.

    Args:
        labels: Clean labels, shape ``(N,)``.
        num_classes: Number of classes ``K``.
        noise_rate: Flip probability for examples of a mapped class, in [0, 1).
        class_map: Source class -> target class, e.g. :data:`MNIST_ASYMMETRIC_MAP`.
        seed: Seed of the generator; the same seed gives the same labels everywhere.
    """
    _check_noise_rate(noise_rate)
    labels = _check_labels(labels, num_classes)
    lookup = torch.arange(num_classes)
    for source, target in class_map.items():
        if not (0 <= int(source) < num_classes and 0 <= int(target) < num_classes):
            raise ValueError(
                f"class_map entry {source}->{target} is outside [0, {num_classes}) classes."
            )
        lookup[int(source)] = int(target)
    generator = torch.Generator().manual_seed(seed)
    flip = torch.rand(labels.shape, generator=generator) < noise_rate
    noisy = torch.where(flip, lookup[labels], labels)
    return _result(labels, noisy, num_classes)


def symmetric_noise(
    labels: Tensor, num_classes: int, noise_rate: float, seed: int = 0
) -> NoiseResult:
    """Re-sample each label uniformly over all K classes with probability ``noise_rate``.

    As in the paper's code the re-sampled label may be the true one, so the realised flip rate
    is about ``noise_rate * (K - 1) / K``.
    """
    _check_noise_rate(noise_rate)
    labels = _check_labels(labels, num_classes)
    generator = torch.Generator().manual_seed(seed)
    resample = torch.rand(labels.shape, generator=generator) < noise_rate
    random_labels = torch.randint(0, num_classes, labels.shape, generator=generator)
    return _result(labels, torch.where(resample, random_labels, labels), num_classes)


def expected_transition_matrix(
    num_classes: int,
    noise_type: str,
    noise_rate: float,
    class_map: Mapping[int, int] | None = None,
) -> Tensor:
    """The design ``T[i, j] = P(noisy j | true i)`` of a noise model (not the realised one).

    Symmetric: ``(1 - r) I + r / K``. Asymmetric: row ``i`` of a mapped class has ``1 - r`` on
    the diagonal and ``r`` at its target; unmapped rows are identity.
    """
    _check_noise_rate(noise_rate)
    eye = torch.eye(num_classes)
    if noise_type == "none" or noise_rate == 0.0:
        return eye
    if noise_type == "symmetric":
        return (1.0 - noise_rate) * eye + noise_rate / num_classes
    if noise_type == "asymmetric":
        if class_map is None:
            raise ValueError("asymmetric noise needs a class_map (source class -> target class).")
        matrix = eye.clone()
        for source, target in class_map.items():
            matrix[int(source)] = 0.0
            matrix[int(source), int(source)] += 1.0 - noise_rate
            matrix[int(source), int(target)] += noise_rate
        return matrix
    raise ValueError(f"noise_type must be one of {NOISE_TYPES}; got {noise_type!r}.")


def inject_noise(
    labels: Tensor,
    num_classes: int,
    noise_type: str,
    noise_rate: float,
    class_map: Mapping[int, int] | None = None,
    seed: int = 0,
) -> NoiseResult:
    """Inject the noise named by ``noise_type``: ``none``, ``symmetric`` or ``asymmetric``."""
    if noise_type == "none" or noise_rate == 0.0:
        _check_noise_rate(noise_rate)
        labels = _check_labels(labels, num_classes)
        return _result(labels, labels.clone(), num_classes)
    if noise_type == "symmetric":
        return symmetric_noise(labels, num_classes, noise_rate, seed)
    if noise_type == "asymmetric":
        if class_map is None:
            raise ValueError("asymmetric noise needs a class_map (source class -> target class).")
        return asymmetric_noise(labels, num_classes, noise_rate, class_map, seed)
    raise ValueError(f"noise_type must be one of {NOISE_TYPES}; got {noise_type!r}.")
