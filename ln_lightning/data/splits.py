"""What a data module loads (:class:`DataSplits`), its checks, and the noisy validation cut."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ln_lightning.data.dataset import InputSource
from ln_lightning.labels import check_labels

__all__ = [
    "DataSplits",
    "check_split_inputs",
    "check_split_labels",
    "fold_split",
    "validation_split",
]


@dataclass
class DataSplits:
    """What a data module loads.

    Attributes:
        train_inputs: The training pool: a tensor ``(N, ...)`` or a dataset whose item ``i`` is
            the input (or an ``(input, label)`` pair).
        train_labels: True labels of the pool, ``(N,)``; ``-1`` where unknown (Clothing1M).
        test_inputs: Clean test inputs; ``None`` when the data has no test set (then there is no
            test accuracy).
        test_labels: Clean test labels (``None`` with ``test_inputs``).
        train_noisy_labels: Real-world noisy labels of the pool (CIFAR-N, Clothing1M); when
            given, no synthetic noise is drawn.
        val_inputs: A provided validation split (e.g. Clothing1M's clean one) instead of a
            ``val_fraction`` cut of the noisy pool.
        val_labels: Labels of ``val_inputs``.
        class_names: Name of each class, when the data set knows them.
        train_ids: A name of each pool example (its file path), when it has one.
        test_ids: Likewise for the test examples.
        val_ids: Likewise for ``val_inputs``.

    Example:
        >>> import torch
        >>> splits = DataSplits(
        ...     train_inputs=torch.zeros(6, 2), train_labels=torch.tensor([0, 1, 0, 1, 0, 1]),
        ...     test_inputs=torch.zeros(2, 2), test_labels=torch.tensor([0, 1]),
        ...     class_names=["no", "yes"],
        ... )
        >>> len(splits.train_inputs), splits.train_noisy_labels is None  # noise is drawn later
        (6, True)
    """

    train_inputs: InputSource
    train_labels: Tensor
    test_inputs: InputSource | None
    test_labels: Tensor | None
    train_noisy_labels: Tensor | None = None
    val_inputs: InputSource | None = None
    val_labels: Tensor | None = None
    class_names: Sequence[str] | None = None
    train_ids: Sequence[str] | None = None
    test_ids: Sequence[str] | None = None
    val_ids: Sequence[str] | None = None


def check_split_labels(splits: DataSplits, num_classes: int, name: str) -> None:
    """Raise ``ValueError`` for labels outside ``[0, K)`` (clean training labels may be -1)."""
    checks = [] if splits.test_labels is None else [("test", splits.test_labels, 0)]
    checks.append(("training", splits.train_labels, -1))
    if splits.train_noisy_labels is not None:
        checks.append(("noisy training", splits.train_noisy_labels, 0))
    if splits.val_labels is not None:
        checks.append(("validation", splits.val_labels, 0))
    for what, labels, low in checks:
        if len(labels) == 0:
            raise ValueError(
                f"{name}: the {what} split is empty. Check that the data files or arrays hold "
                "examples (a truncated download, a filter that removed everything)."
            )
        check_labels(labels, num_classes, what=f"{name}: {what} labels", allow_unknown=low < 0)


def check_split_inputs(splits: DataSplits, name: str) -> None:
    """Raise ``ValueError`` when floating-point input tensors hold NaN or inf."""
    sources = {"training": splits.train_inputs}
    if splits.test_inputs is not None:
        sources["test"] = splits.test_inputs
    if splits.val_inputs is not None:
        sources["validation"] = splits.val_inputs
    for what, inputs in sources.items():
        if not (isinstance(inputs, Tensor) and inputs.is_floating_point() and inputs.ndim):
            continue  # uint8 images, files, datasets: nothing to check up front
        bad = torch.nonzero(~torch.isfinite(inputs.reshape(len(inputs), -1)).all(1)).flatten()
        if len(bad):
            raise ValueError(
                f"{name}: {len(bad)} of {len(inputs)} {what} inputs contain NaN or inf "
                f"(indices {bad[:10].tolist()}{' ...' if len(bad) > 10 else ''}). Drop or repair "
                "them before building the data module, e.g. keep = torch.isfinite(x).flatten(1)"
                ".all(1); x, y = x[keep], y[keep]."
            )


def fold_split(num_examples: int, num_folds: int, fold: int, seed: int) -> tuple[Tensor, Tensor]:
    """``(train, held-out)`` pool indices for fold ``fold`` of ``num_folds`` (k-fold cross
    validation), each sorted; the folds partition the pool and are drawn from ``seed + 1``.

    Raises:
        ValueError: For fewer than two folds, a fold out of range, or fewer examples than folds.
    """
    if num_folds < 2 or not 0 <= fold < num_folds:
        raise ValueError(
            f"fold must lie in [0, num_folds) with num_folds >= 2; got fold={fold}, "
            f"num_folds={num_folds}."
        )
    if num_examples < num_folds:
        raise ValueError(f"{num_examples} examples cannot make {num_folds} folds.")
    generator = torch.Generator().manual_seed(seed + 1)
    assignment = torch.empty(num_examples, dtype=torch.long)
    assignment[torch.randperm(num_examples, generator=generator)] = (
        torch.arange(num_examples) % num_folds
    )
    held_out = assignment == fold
    return torch.nonzero(~held_out).flatten(), torch.nonzero(held_out).flatten()


def validation_split(num_examples: int, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """``(train, val)`` pool indices, each sorted: ``fraction`` of the pool (at least one
    example) held out, drawn from ``seed + 1`` (the noise uses ``seed``).

    Raises:
        ValueError: When the pool is too small to leave a training example.
    """
    generator = torch.Generator().manual_seed(seed + 1)
    order = torch.randperm(num_examples, generator=generator)
    num_val = max(1, round(fraction * num_examples))
    val, train = order[:num_val].sort().values, order[num_val:].sort().values
    if len(train) == 0:
        raise ValueError(
            f"the training pool ({num_examples} examples) is too small to split off a validation "
            f"set (val_fraction={fraction}): give it more examples."
        )
    return train, val
