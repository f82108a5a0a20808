"""Synthetic label noise: deterministic from a seed, vectorised, usable without Lightning.

A noise model is one value, :class:`NoiseSpec` (type, rate, class map, matrix, seed), checked
once when made; the generators below are shorthands for it. Every generator returns a
:class:`NoiseResult` with the noisy labels, the is-corrupted mask, the realised noise rate and
the transition matrix of the noise that was actually realised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ln_lightning.files import atomic_write
from ln_lightning.labels import UNKNOWN, check_labels, check_transition_matrix, corrupted_mask

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

    Example:
        >>> import torch
        >>> result = noise_from_labels(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), 3)
        >>> result.realised_rate, result.is_corrupted.tolist()
        (0.25, [False, False, True, False])
        >>> result.transition_matrix[1].tolist()  # true class 1: half kept, half flipped to 2
        [0.0, 0.5, 0.5]
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


def _check_class_map(class_map: Mapping[int, int], num_classes: int) -> None:
    for source, target in class_map.items():
        if not (0 <= source < num_classes and 0 <= target < num_classes):
            raise ValueError(
                f"class_map entry {source}->{target} is outside [0, {num_classes}) classes."
            )


@dataclass(frozen=True)
class NoiseSpec:
    """Synthetic label noise as one value, validated once when made.

    What a data module (``--data.noise_type``, ``--data.noise_rate``, ``--data.class_map``,
    ``--data.transition_matrix``, ``--data.seed``) and every generator of this module use. The
    checks that need the number of classes (a class map's range, a matrix's size) run when it
    is given, in :meth:`draw` and :meth:`expected_matrix`.

    Attributes:
        noise_type: One of :data:`NOISE_TYPES`.
        noise_rate: Corruption probability in [0, 1) (``transition`` reads its matrix instead).
        class_map: Source class -> target class, for ``asymmetric`` (``pairflip`` makes its own,
            ``i -> i + 1 mod K``).
        transition_matrix: ``K x K`` row-stochastic rows, for ``transition`` (kept as tuples so
            the value compares and prints as plain data).
        seed: Seed of the generator: the same seed gives the same labels in every process.

    Raises:
        ValueError: Naming the first invalid value.

    Example:
        >>> import torch
        >>> spec = NoiseSpec("asymmetric", 0.4, class_map={7: 1, 2: 7}, seed=3)
        >>> spec.describe()
        'asymmetric noise at rate 0.4'
        >>> [round(p, 2) for p in spec.expected_matrix(num_classes=10)[7, [7, 1]].tolist()]
        [0.6, 0.4]
        >>> labels = torch.arange(10).repeat(500)
        >>> result = spec.draw(labels, num_classes=10)
        >>> bool(torch.equal(result.noisy_labels, spec.draw(labels, num_classes=10).noisy_labels))
        True
        >>> round(result.transition_matrix[7, 1].item(), 1)
        0.4
    """

    noise_type: str = "none"
    noise_rate: float = 0.0
    class_map: Mapping[int, int] | None = None
    transition_matrix: tuple[tuple[float, ...], ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.noise_type not in NOISE_TYPES:
            raise ValueError(f"noise_type must be one of {NOISE_TYPES}; got {self.noise_type!r}.")
        if not 0.0 <= self.noise_rate < 1.0:
            raise ValueError(f"noise_rate must lie in [0, 1); got {self.noise_rate!r}.")
        if self.noise_type == "asymmetric" and self.class_map is None:
            raise ValueError(
                "noise_type='asymmetric' needs a class_map, source class -> target class: a "
                "data set without a built-in map needs one given (--data.class_map "
                "'{0: 1, 1: 0}'), or another noise_type."
            )
        if self.class_map is not None:
            object.__setattr__(
                self, "class_map", {int(s): int(t) for s, t in dict(self.class_map).items()}
            )
        if self.noise_type == "transition":
            if self.transition_matrix is None:
                raise ValueError("noise_type='transition' needs a transition_matrix (K x K).")
            matrix = torch.as_tensor(self.transition_matrix, dtype=torch.float64)
            if matrix.ndim != 2:
                raise ValueError(
                    f"transition_matrix must be K x K; got shape {tuple(matrix.shape)}."
                )
            check_transition_matrix(matrix, matrix.shape[0])
            object.__setattr__(
                self, "transition_matrix", tuple(tuple(row) for row in matrix.tolist())
            )

    @property
    def injects(self) -> bool:
        """Whether any label can change (``none`` and a zero rate leave them all)."""
        return self.noise_type == "transition" or (
            self.noise_type != "none" and self.noise_rate > 0
        )

    def describe(self) -> str:
        """What the noise is, for the user: ``"symmetric noise at rate 0.4"``."""
        if not self.injects:
            return "no injected noise"
        if self.noise_type == "transition":
            return "noise drawn from the given transition matrix"
        return f"{self.noise_type} noise at rate {self.noise_rate}"

    def _matrix(self, num_classes: int) -> Tensor:
        matrix = torch.tensor(self.transition_matrix, dtype=torch.float64)
        check_transition_matrix(matrix, num_classes)
        return matrix

    def _lookup(self, num_classes: int) -> Tensor:
        """Class -> class it flips to, for ``asymmetric`` and ``pairflip``."""
        if self.noise_type == "pairflip":
            return (torch.arange(num_classes) + 1) % num_classes
        assert self.class_map is not None  # checked when made
        _check_class_map(self.class_map, num_classes)
        lookup = torch.arange(num_classes)
        for source, target in self.class_map.items():
            lookup[source] = target
        return lookup

    def expected_matrix(self, num_classes: int) -> Tensor:
        """The design ``T[i, j] = P(noisy j | true i)`` of this noise (not the realised one).

        Symmetric: ``(1 - r) I + r / K``; symmetric_other: ``(1 - r) I + r / (K - 1)`` off the
        diagonal; asymmetric and pairflip: row ``i`` of a mapped class has ``1 - r`` on the
        diagonal and ``r`` at its target, unmapped rows are identity; transition: the matrix.
        """
        rate, eye = self.noise_rate, torch.eye(num_classes)
        if self.noise_type == "transition":
            return self._matrix(num_classes).float()
        if not self.injects:
            return eye
        if self.noise_type == "symmetric":
            return (1.0 - rate) * eye + rate / num_classes
        if self.noise_type == "symmetric_other":
            return (1.0 - rate) * eye + rate / (num_classes - 1) * (1 - eye)
        lookup = self._lookup(num_classes)
        flips = lookup != torch.arange(num_classes)
        matrix = eye.clone()
        matrix[flips] = (1.0 - rate) * eye[flips] + rate * eye[lookup[flips]]
        return matrix

    def draw(self, labels: Tensor, num_classes: int) -> NoiseResult:
        """The noisy labels of ``labels`` (clean, shape ``(N,)``), vectorised and seeded."""
        labels = check_labels(labels, num_classes).cpu()
        if not self.injects:
            return noise_from_labels(labels, labels.clone(), num_classes)
        generator = torch.Generator().manual_seed(self.seed)
        if self.noise_type == "transition":
            noisy = _sample_rows(labels, self._matrix(num_classes), generator)
        elif self.noise_type in ("symmetric", "symmetric_other"):
            resample = torch.rand(labels.shape, generator=generator) < self.noise_rate
            if self.noise_type == "symmetric":  # may re-draw the true class
                new = torch.randint(0, num_classes, labels.shape, generator=generator)
            else:
                shift = torch.randint(1, num_classes, labels.shape, generator=generator)
                new = (labels + shift) % num_classes
            noisy = torch.where(resample, new, labels)
        else:
            lookup = self._lookup(num_classes)
            flip = torch.rand(labels.shape, generator=generator) < self.noise_rate
            noisy = torch.where(flip, lookup[labels], labels)
        return noise_from_labels(labels, noisy, num_classes)


def _sample_rows(labels: Tensor, matrix: Tensor, generator: torch.Generator) -> Tensor:
    """Each label drawn from row ``y`` of ``matrix`` by inverse-CDF sampling per class,
    O(N log N) with no ``N x K`` tensor."""
    num_classes = matrix.shape[0]
    uniform = torch.rand(labels.shape, generator=generator, dtype=torch.float64)
    cumulative = matrix.cumsum(1)
    cumulative[:, -1] = 1.0  # guard the last bin against rounding
    noisy = torch.empty_like(labels)
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    for source, members in zip(range(num_classes), torch.split(order, counts), strict=True):
        if len(members):
            noisy[members] = torch.searchsorted(cumulative[source], uniform[members], right=True)
    return noisy.clamp_max(num_classes - 1)


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
    return NoiseSpec("asymmetric", noise_rate, class_map, seed=seed).draw(labels, num_classes)


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
    kind = "symmetric" if include_true_class else "symmetric_other"
    return NoiseSpec(kind, noise_rate, seed=seed).draw(labels, num_classes)


def pairflip_noise(
    labels: Tensor, num_classes: int, noise_rate: float, seed: int = 0
) -> NoiseResult:
    """Flip each label to the next class, i -> (i + 1) mod K, with probability ``noise_rate``."""
    return NoiseSpec("pairflip", noise_rate, seed=seed).draw(labels, num_classes)


def transition_noise(labels: Tensor, transition_matrix: Tensor, seed: int = 0) -> NoiseResult:
    """Draw each noisy label from row ``y`` of ``transition_matrix`` (``T[i, j] = P(j | i)``)."""
    matrix = torch.as_tensor(transition_matrix, dtype=torch.float64)
    spec = NoiseSpec("transition", transition_matrix=matrix.tolist(), seed=seed)
    return spec.draw(labels, len(matrix))


def expected_transition_matrix(
    num_classes: int,
    noise_type: str,
    noise_rate: float,
    class_map: Mapping[int, int] | None = None,
    transition_matrix: Tensor | None = None,
) -> Tensor:
    """The design matrix of a noise model: :meth:`NoiseSpec.expected_matrix`."""
    spec = NoiseSpec(noise_type, noise_rate, class_map, _rows(transition_matrix))
    return spec.expected_matrix(num_classes)


def inject_noise(
    labels: Tensor,
    num_classes: int,
    noise_type: str,
    noise_rate: float,
    class_map: Mapping[int, int] | None = None,
    seed: int = 0,
    transition_matrix: Tensor | None = None,
) -> NoiseResult:
    """Inject the noise named by ``noise_type`` (one of :data:`NOISE_TYPES`) into ``labels``
    ``(N,)`` of ``num_classes`` classes: ``NoiseSpec(noise_type, noise_rate, class_map,
    transition_matrix, seed).draw(labels, num_classes)`` (the arguments as in
    :class:`NoiseSpec`; the same seed gives the same labels in every process)."""
    spec = NoiseSpec(noise_type, noise_rate, class_map, _rows(transition_matrix), seed)
    return spec.draw(labels, num_classes)


def _rows(matrix: Tensor | Sequence[Sequence[float]] | None) -> list | None:
    return None if matrix is None else torch.as_tensor(matrix, dtype=torch.float64).tolist()


def save_noisy_labels(path: str | Path, clean_labels: Tensor, noisy_labels: Tensor) -> None:
    """Write ``index,clean_label,noisy_label`` rows to a CSV file another run or tool can read."""
    if len(clean_labels) != len(noisy_labels):
        raise ValueError("clean_labels and noisy_labels must have the same length.")
    rows = torch.stack([torch.arange(len(clean_labels)), clean_labels, noisy_labels], 1).tolist()
    with atomic_write(path) as handle:
        handle.write("index,clean_label,noisy_label\n")
        handle.writelines(f"{i},{c},{n}\n" for i, c, n in rows)


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
