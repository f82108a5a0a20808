"""Synthetic label noise: deterministic from a seed, vectorised, usable without Lightning.

Every generator returns a :class:`NoiseResult` with the noisy labels, the is-corrupted mask, the
realised noise rate and the transition matrix of the noise that was actually realised.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ln_lightning.labels import UNKNOWN, check_labels, corrupted_mask

#: MNIST asymmetric map of the paper (App. C): 7->1, 2->7, 5<->6, 3->8.
MNIST_ASYMMETRIC_MAP: dict[int, int] = {7: 1, 2: 7, 5: 6, 6: 5, 3: 8}
#: CIFAR-10 map of the paper: bird->airplane, cat<->dog, deer->horse.
CIFAR10_ASYMMETRIC_MAP: dict[int, int] = {2: 0, 3: 5, 5: 3, 4: 7}
#: The common extension used in other work: also truck->automobile.
CIFAR10_ASYMMETRIC_MAP_EXTENDED: dict[int, int] = {**CIFAR10_ASYMMETRIC_MAP, 9: 1}
#: CIFAR-100 map of the paper: class i -> (i + 1) mod 100.
CIFAR100_ASYMMETRIC_MAP: dict[int, int] = {i: (i + 1) % 100 for i in range(100)}
#: Fashion-MNIST (a project choice): T-shirt/top->Shirt, Pullover->Coat, Sandal->Sneaker,
#: Ankle boot->Sneaker.
FASHION_MNIST_ASYMMETRIC_MAP: dict[int, int] = {0: 6, 2: 4, 5: 7, 9: 7}

ASYMMETRIC_MAPS: dict[str, dict[int, int]] = {
    "mnist": MNIST_ASYMMETRIC_MAP,
    "cifar10": CIFAR10_ASYMMETRIC_MAP,
    "cifar10_extended": CIFAR10_ASYMMETRIC_MAP_EXTENDED,
    "cifar100": CIFAR100_ASYMMETRIC_MAP,
    "fashion_mnist": FASHION_MNIST_ASYMMETRIC_MAP,
}

#: ``symmetric`` may re-draw the true class (the paper's definition); ``symmetric_other`` draws
#: among the other classes only; ``pairflip`` maps class i to i + 1 mod K; ``transition`` samples
#: the noisy label from row y of a given transition matrix.
NOISE_TYPES = ("none", "symmetric", "symmetric_other", "asymmetric", "pairflip", "transition")


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
    num_known: int | None = None

    def describe(self, source: str) -> str:
        """One line for the user: ``"<source> -> realised noise rate 20.95% of 1437 ..."``.

        Without any known true label the rate cannot be measured, and the line says so.
        """
        total = len(self.noisy_labels)
        known = total if self.num_known is None else self.num_known
        if known == 0:
            return (
                f"{source}: {total} training-pool labels whose true labels are unknown, so "
                "their noise rate cannot be measured"
            )
        share = "" if known == total else f" (the {known} with a known true label)"
        return (
            f"{source} -> realised noise rate {self.realised_rate:.2%} of {total} "
            f"training-pool labels{share}"
        )


def _check_noise_rate(noise_rate: float) -> None:
    if not 0.0 <= noise_rate < 1.0:
        raise ValueError(f"noise_rate must lie in [0, 1); got {noise_rate!r}.")


def realised_transition_matrix(clean: Tensor, noisy: Tensor, num_classes: int) -> Tensor:
    """Empirical ``P(noisy = j | clean = i)`` as a ``(K, K)`` float tensor."""
    counts = torch.zeros(num_classes * num_classes, dtype=torch.float64)
    counts.index_add_(0, clean * num_classes + noisy, torch.ones_like(clean, dtype=torch.float64))
    counts = counts.view(num_classes, num_classes)
    totals = counts.sum(1, keepdim=True)
    eye = torch.eye(num_classes, dtype=torch.float64)
    return torch.where(totals > 0, counts / totals.clamp_min(1), eye).float()


def noise_from_labels(clean: Tensor, noisy: Tensor, num_classes: int) -> NoiseResult:
    """Describe given noisy labels (e.g. CIFAR-N's human labels) as a :class:`NoiseResult`.

    Clean labels of ``-1`` mean unknown: such examples count as uncorrupted and are left out of
    the realised rate and the transition matrix.
    """
    clean, noisy = torch.as_tensor(clean).long().cpu(), torch.as_tensor(noisy).long().cpu()
    if clean.shape != noisy.shape:
        raise ValueError(f"clean and noisy labels differ in shape: {clean.shape} vs {noisy.shape}.")
    known = clean != UNKNOWN
    corrupted = corrupted_mask(noisy, clean)
    rate = float(corrupted.sum() / known.sum()) if known.any() else 0.0
    matrix = realised_transition_matrix(clean[known], noisy[known], num_classes)
    return NoiseResult(noisy, corrupted, rate, matrix, int(known.sum()))


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
    labels = check_labels(labels, num_classes).cpu()
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
    return noise_from_labels(labels, noisy, num_classes)


def symmetric_noise(
    labels: Tensor,
    num_classes: int,
    noise_rate: float,
    seed: int = 0,
    include_true_class: bool = True,
) -> NoiseResult:
    """Re-sample each label with probability ``noise_rate``.

    With ``include_true_class`` (the paper's code) the new label is uniform over all K classes,
    so it may be the true one and the realised flip rate is about ``noise_rate * (K - 1) / K``;
    otherwise it is uniform over the K - 1 other classes and every re-sampled label changes.
    """
    _check_noise_rate(noise_rate)
    labels = check_labels(labels, num_classes).cpu()
    generator = torch.Generator().manual_seed(seed)
    resample = torch.rand(labels.shape, generator=generator) < noise_rate
    if include_true_class:
        new = torch.randint(0, num_classes, labels.shape, generator=generator)
    else:
        new = (
            labels + torch.randint(1, num_classes, labels.shape, generator=generator)
        ) % num_classes
    return noise_from_labels(labels, torch.where(resample, new, labels), num_classes)


def pairflip_noise(
    labels: Tensor, num_classes: int, noise_rate: float, seed: int = 0
) -> NoiseResult:
    """Flip each label to the next class, i -> (i + 1) mod K, with probability ``noise_rate``."""
    pairs = {i: (i + 1) % num_classes for i in range(num_classes)}
    return asymmetric_noise(labels, num_classes, noise_rate, pairs, seed)


def transition_noise(labels: Tensor, transition_matrix: Tensor, seed: int = 0) -> NoiseResult:
    """Draw each noisy label from row ``y`` of ``transition_matrix`` (``T[i, j] = P(j | i)``).

    Vectorised by inverse-CDF sampling per class, O(N log N) with no ``N x K`` tensor.
    """
    matrix = torch.as_tensor(transition_matrix, dtype=torch.float64)
    num_classes = matrix.shape[0]
    check_transition_matrix(matrix, num_classes)
    labels = check_labels(labels, num_classes).cpu()
    generator = torch.Generator().manual_seed(seed)
    uniform = torch.rand(labels.shape, generator=generator, dtype=torch.float64)
    cumulative = matrix.cumsum(1)
    cumulative[:, -1] = 1.0  # guard the last bin against rounding
    noisy = torch.empty_like(labels)
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    for source, members in zip(range(num_classes), torch.split(order, counts), strict=True):
        if len(members):
            noisy[members] = torch.searchsorted(cumulative[source], uniform[members], right=True)
    return noise_from_labels(labels, noisy.clamp_max(num_classes - 1), num_classes)


def check_transition_matrix(matrix: Tensor, num_classes: int) -> None:
    """Raise ``ValueError`` unless ``matrix`` is a row-stochastic ``K x K`` matrix."""
    if tuple(matrix.shape) != (num_classes, num_classes):
        raise ValueError(
            f"transition_matrix must be {num_classes} x {num_classes} for {num_classes} classes; "
            f"got shape {tuple(matrix.shape)}."
        )
    rows = matrix.sum(-1)
    if (matrix < 0).any() or not torch.allclose(rows, torch.ones_like(rows), atol=1e-4):
        raise ValueError(
            "transition_matrix must be row-stochastic: entries >= 0 and each row summing to 1 "
            "(row i is P(noisy label | true class i))."
        )


def expected_transition_matrix(
    num_classes: int,
    noise_type: str,
    noise_rate: float,
    class_map: Mapping[int, int] | None = None,
    transition_matrix: Tensor | None = None,
) -> Tensor:
    """The design ``T[i, j] = P(noisy j | true i)`` of a noise model (not the realised one).

    Symmetric: ``(1 - r) I + r / K``; symmetric_other: ``(1 - r) I + r / (K - 1)`` off the
    diagonal; asymmetric and pairflip: row ``i`` of a mapped class has ``1 - r`` on the diagonal
    and ``r`` at its target, unmapped rows are identity; transition: the matrix itself.
    """
    _check_noise_type(noise_type)
    if noise_type == "transition":
        if transition_matrix is None:
            raise ValueError("noise_type='transition' needs a transition_matrix (K x K).")
        matrix = torch.as_tensor(transition_matrix, dtype=torch.float32)
        check_transition_matrix(matrix, num_classes)
        return matrix
    _check_noise_rate(noise_rate)
    eye = torch.eye(num_classes)
    if noise_type == "none" or noise_rate == 0.0:
        return eye
    if noise_type == "symmetric":
        return (1.0 - noise_rate) * eye + noise_rate / num_classes
    if noise_type == "symmetric_other":
        return (1.0 - noise_rate) * eye + noise_rate / (num_classes - 1) * (1 - eye)
    if noise_type == "pairflip":
        class_map = {i: (i + 1) % num_classes for i in range(num_classes)}
    if class_map is None:
        raise ValueError("asymmetric noise needs a class_map (source class -> target class).")
    matrix = eye.clone()
    for source, target in class_map.items():
        matrix[int(source)] = 0.0
        matrix[int(source), int(source)] += 1.0 - noise_rate
        matrix[int(source), int(target)] += noise_rate
    return matrix


def _check_noise_type(noise_type: str) -> None:
    if noise_type not in NOISE_TYPES:
        raise ValueError(f"noise_type must be one of {NOISE_TYPES}; got {noise_type!r}.")


def inject_noise(
    labels: Tensor,
    num_classes: int,
    noise_type: str,
    noise_rate: float,
    class_map: Mapping[int, int] | None = None,
    seed: int = 0,
    transition_matrix: Tensor | None = None,
) -> NoiseResult:
    """Inject the noise named by ``noise_type`` (one of :data:`NOISE_TYPES`).

    Args:
        labels: Clean labels, shape ``(N,)``.
        num_classes: Number of classes ``K``.
        noise_type: ``none``, ``symmetric``, ``symmetric_other``, ``asymmetric``, ``pairflip``
            or ``transition``.
        noise_rate: Corruption probability in [0, 1) (unused by ``transition``).
        class_map: Source -> target class, for ``asymmetric``.
        seed: Seed of the generator: the same seed gives the same labels in every process.
        transition_matrix: ``K x K`` row-stochastic matrix, for ``transition``.
    """
    _check_noise_type(noise_type)
    if noise_type == "transition":
        if transition_matrix is None:
            raise ValueError("noise_type='transition' needs a transition_matrix (K x K).")
        return transition_noise(labels, torch.as_tensor(transition_matrix), seed)
    _check_noise_rate(noise_rate)
    if noise_type == "none" or noise_rate == 0.0:
        labels = check_labels(labels, num_classes).cpu()
        return noise_from_labels(labels, labels.clone(), num_classes)
    if noise_type in ("symmetric", "symmetric_other"):
        return symmetric_noise(labels, num_classes, noise_rate, seed, noise_type == "symmetric")
    if noise_type == "pairflip":
        return pairflip_noise(labels, num_classes, noise_rate, seed)
    if class_map is None:
        raise ValueError("asymmetric noise needs a class_map (source class -> target class).")
    return asymmetric_noise(labels, num_classes, noise_rate, class_map, seed)


def save_noisy_labels(path: str | Path, clean_labels: Tensor, noisy_labels: Tensor) -> None:
    """Write ``index,clean_label,noisy_label`` rows to a CSV file another run or tool can read."""
    if len(clean_labels) != len(noisy_labels):
        raise ValueError("clean_labels and noisy_labels must have the same length.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = torch.stack([torch.arange(len(clean_labels)), clean_labels, noisy_labels], 1).tolist()
    path.write_text(
        "index,clean_label,noisy_label\n" + "".join(f"{i},{c},{n}\n" for i, c, n in rows)
    )


def load_noisy_labels(path: str | Path) -> tuple[Tensor, Tensor]:
    """Read ``(clean_labels, noisy_labels)`` written by :func:`save_noisy_labels`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"noisy-label file {path} does not exist.")
    lines = path.read_text().splitlines()
    if not lines or lines[0].strip() != "index,clean_label,noisy_label":
        raise ValueError(
            f"{path} is not a noisy-label file: the header must be 'index,clean_label,noisy_label'."
        )
    values = torch.tensor([[int(v) for v in line.split(",")] for line in lines[1:] if line.strip()])
    if len(values) == 0 or not torch.equal(values[:, 0], torch.arange(len(values))):
        raise ValueError(f"{path}: indices must run 0, 1, 2, ... without gaps.")
    return values[:, 1].clone(), values[:, 2].clone()
