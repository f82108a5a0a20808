"""Why the flags of a run cannot be trusted yet (the ``caution`` column and the summary's
"Do not trust these flags yet: ...")."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "MIN_TRUSTED_PER_CLASS",
    "caution_rows",
    "caution_text",
    "cautions",
    "chance_level",
    "near_chance",
]

#: A class with fewer labelled examples than this has a threshold too noisy to trust.
MIN_TRUSTED_PER_CLASS = 10


def chance_level(given: Tensor, num_classes: int) -> float:
    """The accuracy of a model that knows nothing: the larger of ``1 / K`` and the share of the
    most common given label.

    Example:
        >>> import torch
        >>> chance_level(torch.tensor([0, 0, 0, 1]), 4)
        0.75
    """
    counts = torch.bincount(given.long(), minlength=num_classes)
    return max(1.0 / num_classes, float(counts.max()) / max(1, int(counts.sum())))


def near_chance(accuracy: float, chance: float) -> bool:
    """Whether an accuracy on the given (noisy) labels is too close to chance for the model's
    probabilities to be read: below ``chance + (1 - chance) / 4``.

    Example:
        >>> near_chance(0.33, 0.25), near_chance(0.6, 0.25)
        (True, False)
    """
    return accuracy < chance + (1.0 - chance) / 4


def cautions(
    given: Tensor, class_names: Sequence[str], val_accuracy: Sequence[float] = ()
) -> tuple[list[str], dict[int, str]]:
    """Why the flags of a run cannot be trusted yet, for every row and for some classes' rows.

    Confident learning trusts the model's probabilities; a weak model flags labels at random
    (a 4-class model at 33% noisy-validation accuracy flagged 276 of 600 labels, 120 wrong).
    Named here:

    * the model is near chance on the noisy validation split: its last accuracy is below
      ``chance + (1 - chance) / 4``, where chance is the larger of ``1 / K`` and the share of
      the most common given label;
    * it was still improving: the last epoch's noisy validation accuracy beat every earlier
      epoch's by more than a point (train longer);
    * a class has fewer than :data:`MIN_TRUSTED_PER_CLASS` labelled examples (its threshold
      is the mean of a handful of probabilities).

    Args:
        given: ``(N,)`` the labels the scored examples were given.
        class_names: The K class names.
        val_accuracy: Noisy validation accuracy after each epoch, in order (may be empty).

    Returns:
        ``(overall, by_class)``: sentences that concern every row, and class index -> sentence.
    """
    num_classes = len(class_names)
    counts = torch.bincount(given.long(), minlength=num_classes)
    overall = []
    if len(val_accuracy):
        last = float(val_accuracy[-1])
        chance = chance_level(given, num_classes)
        if near_chance(last, chance):
            overall.append(
                f"the model is near chance on the noisy validation split (accuracy {last:.2f}, "
                f"chance {chance:.2f})"
            )
        if len(val_accuracy) >= 2 and last > max(map(float, val_accuracy[:-1])) + 0.01:
            overall.append(
                "it was still improving at the last epoch (noisy validation accuracy "
                f"{max(map(float, val_accuracy[:-1])):.2f} -> {last:.2f}): train longer"
            )
    by_class = {
        k: f"only {int(n)} labelled example{'s' if n != 1 else ''} of {class_names[k]!r}"
        for k, n in enumerate(counts.tolist())
        if 0 < n < MIN_TRUSTED_PER_CLASS
    }
    return overall, by_class


def caution_rows(given: Tensor, overall: Sequence[str], by_class: dict[int, str]) -> list[str]:
    """The ``caution`` column: the overall sentences and the row's class's, ``; ``-joined."""
    return [
        "; ".join([*overall, *([by_class[g]] if g in by_class else [])]) for g in given.tolist()
    ]


def caution_text(rows: Sequence[str] | None) -> str:
    """``". Do not trust these flags yet: ..."`` from a ``caution`` column (every distinct
    sentence once), or ``""``."""
    sentences = dict.fromkeys(
        part for row in rows or () for part in row.split("; ") if part
    )  # ordered, unique
    if not sentences:
        return ""
    return ". Do not trust these flags yet: " + "; ".join(sentences)
