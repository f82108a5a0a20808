"""Noise-aware metrics (torchmetrics, synchronised across DDP ranks).

* :class:`NoiseSplitAccuracy`: training accuracy split by whether an example's label was
  corrupted, on corrupted examples both against the given (noisy) label, i.e. memorisation, and
  against the true one (the paper's Fig. 4).
* :class:`NegativeLogLikelihood` and :class:`BrierScore`: proper scores of predicted
  probabilities; with torchmetrics' ``MulticlassCalibrationError`` (15 bins) they make the
  calibration report of the clean test set.

Labels equal to ``-1`` (unknown clean label, e.g. most of Clothing1M) are left out everywhere.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from ln_lightning.labels import UNKNOWN, corrupted_mask

__all__ = [
    "MODEL_SELECTION",
    "SELECTED_TEST",
    "SELECTION_MONITOR",
    "TEST",
    "TRAIN",
    "VAL",
    "VAL_LOSS",
    "BrierScore",
    "NegativeLogLikelihood",
    "NoiseSplitAccuracy",
    "metric_name",
]

#: Prefixes of the logged metrics: the training split, the (noisy) validation split.
TRAIN, VAL = "train", "val"
#: Prefix of the clean test metrics of the final weights (``test/acc``, ``test/nll``, ...).
TEST = "test"
#: Prefix of the same metrics for the checkpoint the monitored ``ModelCheckpoint`` selected
#: (:data:`SELECTION_MONITOR` in the shipped configs; ``test_selected/acc``, ...), which
#: ``ln-fit fit --test_after_fit true`` also evaluates.
SELECTED_TEST = "test_selected"
#: The paper's model-selection metric: accuracy on the noisy validation split.
MODEL_SELECTION = "val/acc_noisy"
#: What the shipped configs' ``ModelCheckpoint`` monitors: :data:`MODEL_SELECTION`, logged as
#: NaN (which ``ModelCheckpoint`` ranks last) while the method warms up with another loss
#: (``ForwardCorrection``'s and DivideMix's cross-entropy epochs), so the selected checkpoint
#: is one the method trained and not an early warm-up epoch that noisy validation happens to
#: rank first.
SELECTION_MONITOR = "val/acc_noisy_after_warmup"
#: The validation loss (what an ``lr_scheduler`` that needs a metric watches).
VAL_LOSS = "val/loss"


def metric_name(prefix: str, name: str) -> str:
    """``"<prefix>/<name>"``, e.g. ``metric_name(TEST, "acc") == "test/acc"``."""
    return f"{prefix}/{name}"


def _check(probs: Tensor, labels: Tensor) -> None:
    if probs.ndim != 2 or labels.shape != probs.shape[:1]:
        raise ValueError(
            f"expected probabilities (B, K) and labels (B,); got {tuple(probs.shape)} and "
            f"{tuple(labels.shape)}."
        )


class _MeanOverKnown(Metric):
    """Mean of a per-example score over the examples whose label is known (not ``-1``)."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def score(self, probs: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError

    def update(self, probs: Tensor, labels: Tensor) -> None:
        _check(probs, labels)
        known = labels != UNKNOWN
        # Masked rather than indexed, so that no step waits for the device (no host sync).
        scores = self.score(probs.float(), labels.clamp_min(0))
        self.total += torch.where(known, scores, 0.0).double().sum()
        self.count += known.sum()

    def compute(self) -> Tensor:
        return (self.total / self.count).float() if self.count > 0 else torch.tensor(float("nan"))


class NegativeLogLikelihood(_MeanOverKnown):
    """Mean ``-log p(y | x)`` of the probabilities given to the labels.

    Args:
        eps: Probabilities are clamped to ``[eps, 1]`` first, so a confident mistake costs
            ``-log(eps)`` instead of infinity.

    Example:
        >>> import math, torch
        >>> nll = NegativeLogLikelihood()
        >>> nll.update(torch.tensor([[0.5, 0.5], [0.9, 0.1]]), torch.tensor([0, 0]))
        >>> math.isclose(float(nll.compute()), -(math.log(0.5) + math.log(0.9)) / 2, rel_tol=1e-6)
        True
    """

    def __init__(self, eps: float = 1e-12, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 < eps < 1.0:
            raise ValueError(f"eps must lie in (0, 1); got {eps!r}.")
        self.eps = eps

    def score(self, probs: Tensor, labels: Tensor) -> Tensor:
        picked = probs.gather(1, labels[:, None]).squeeze(1)
        return -picked.clamp_min(self.eps).log()


class BrierScore(_MeanOverKnown):
    """Mean ``sum_k (p_k - [y = k])^2`` (0 is perfect, 2 the worst).

    Example:
        >>> import torch
        >>> brier = BrierScore()
        >>> brier.update(torch.tensor([[1.0, 0.0], [0.5, 0.5]]), torch.tensor([0, 1]))
        >>> float(brier.compute())  # (0 + 0.5) / 2
        0.25
    """

    def score(self, probs: Tensor, labels: Tensor) -> Tensor:
        squared = probs.square().sum(1)
        return squared - 2 * probs.gather(1, labels[:, None]).squeeze(1) + 1


class NoiseSplitAccuracy(Metric):
    """Accuracy on correctly and on wrongly labelled training examples (memorisation curves).

    ``compute()`` returns a dict:

    * ``acc_uncorrupted``: accuracy on examples whose given label is the true one;
    * ``acc_corrupted_vs_noisy``: on corrupted examples, how often the prediction is the wrong
      label they were given (how much of the noise the network has memorised);
    * ``acc_corrupted_vs_true``: on corrupted examples, how often the prediction is the true
      label (how much of the noise it has corrected).

    A value is ``nan`` when no example of its kind was seen (e.g. no noise).

    Example:
        >>> import torch
        >>> split = NoiseSplitAccuracy()
        >>> probs = torch.eye(3)[torch.tensor([0, 2, 1])]  # predicts 0, 2, 1
        >>> noisy, clean = torch.tensor([0, 2, 2]), torch.tensor([0, 1, 1])  # two wrong labels
        >>> split.update(probs, noisy_labels=noisy, clean_labels=clean)
        >>> {k: round(float(v), 2) for k, v in split.compute().items()}
        {'acc_uncorrupted': 1.0, 'acc_corrupted_vs_noisy': 0.5, 'acc_corrupted_vs_true': 0.5}
    """

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("uncorrupted_right", "uncorrupted", "memorised", "corrected", "corrupted"):
            self.add_state(name, torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, probs: Tensor, noisy_labels: Tensor, clean_labels: Tensor) -> None:
        _check(probs, noisy_labels)
        if clean_labels.shape != noisy_labels.shape:
            raise ValueError("noisy_labels and clean_labels must have the same shape.")
        predicted = probs.argmax(1)
        corrupted = corrupted_mask(noisy_labels, clean_labels)
        uncorrupted = (clean_labels != UNKNOWN) & ~corrupted
        self.uncorrupted += uncorrupted.sum()
        self.uncorrupted_right += (uncorrupted & (predicted == noisy_labels)).sum()
        self.corrupted += corrupted.sum()
        self.memorised += (corrupted & (predicted == noisy_labels)).sum()
        self.corrected += (corrupted & (predicted == clean_labels)).sum()

    def compute(self) -> dict[str, Tensor]:
        def ratio(part: Tensor, whole: Tensor) -> Tensor:
            return part.float() / whole if whole > 0 else torch.tensor(float("nan"))

        return {
            "acc_uncorrupted": ratio(self.uncorrupted_right, self.uncorrupted),
            "acc_corrupted_vs_noisy": ratio(self.memorised, self.corrupted),
            "acc_corrupted_vs_true": ratio(self.corrected, self.corrupted),
        }
