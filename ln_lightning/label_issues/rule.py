"""Which given labels look wrong (confident learning), and how suspicious each one is.

The rule (Northcutt, Jiang & Chuang, JAIR 2021; cleanlab's
``find_label_issues(filter_by="confident_learning")``): class ``j``'s threshold ``t_j`` is the
mean probability of ``j`` over the examples *labelled* ``j``; an example's confident classes
are those whose probability reaches their threshold; its label looks wrong when it has a
confident class and the most probable of them is not its label, which is then the suggested
label. The thresholds adapt to how confident the model is per class, so no number is tuned by
hand. As in cleanlab, every class keeps at least one example unflagged. Ranking (which wrong
label to look at first) uses a separate score (:func:`mislabel_scores`), by default
``1 - p(given label)``, and :func:`detection_metrics` says how well it ranks the labels known
to be wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc, binary_average_precision

from ln_lightning.inference import SplitPredictions
from ln_lightning.label_issues.store import TopClasses

__all__ = [
    "SCORES",
    "LabelIssues",
    "detection_metrics",
    "find_label_issues",
    "mislabel_scores",
    "summary",
]


@dataclass
class LabelIssues:
    """The verdict on every example (same order as the probabilities given).

    Attributes:
        is_issue: Whether the label looks wrong (bool, ``(N,)``).
        suggested: The confident class (the most probable one where none is confident).
        thresholds: Per-class thresholds ``t_j``, ``(K,)`` (1.0 for a class nobody has).
        undecided: Examples whose verdict may differ from the one over every class: none of
            their kept classes reaches its threshold, but a class beyond them (whose
            probability is at most their smallest kept one) could (0 when every class is kept).

    Example:
        >>> import torch
        >>> probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.9, 0.1]])
        >>> issues = find_label_issues(probs, given=torch.tensor([0, 0, 1, 1, 1]))
        >>> issues.is_issue.tolist(), issues.suggested.tolist()  # the last label looks wrong
        ([False, False, False, False, True], [0, 0, 1, 1, 0])
    """

    is_issue: Tensor
    suggested: Tensor
    thresholds: Tensor
    undecided: int = 0


def find_label_issues(
    probs: Tensor | TopClasses, given: Tensor, min_examples_per_class: int = 1
) -> LabelIssues:
    """Confident learning's label issues (see the module docstring).

    Needs of each example only ``p(given label)`` and its most probable classes
    (:class:`TopClasses`): the thresholds are class means of ``p(given label)``, and the most
    probable class reaching its threshold is among the top ones unless none of them reaches
    its own (:attr:`LabelIssues.undecided` counts where a class beyond them could).

    Args:
        probs: ``(N, K)`` predicted class probabilities, or their :class:`TopClasses`.
        given: ``(N,)`` labels the examples were given.
        min_examples_per_class: Every given class keeps at least this many examples unflagged
            (its least suspicious ones, by ``p(given label)``), so that the cleaned labels still
            have every class and a new run on them has the same classes as the test set
            (cleanlab's rule of the same name and default). ``0`` turns it off.
    """
    if min_examples_per_class < 0:
        raise ValueError(f"min_examples_per_class must be >= 0; got {min_examples_per_class}.")
    given = given.long()
    top = probs if isinstance(probs, TopClasses) else TopClasses.from_probs(probs, given)
    num_classes, p_given = top.num_classes, top.given_prob.float()
    counts = torch.bincount(given, minlength=num_classes).float()
    sums = torch.zeros(num_classes).index_add_(0, given, p_given)
    thresholds = torch.where(counts > 0, sums / counts.clamp_min(1), torch.ones(num_classes))
    confident = top.probs >= thresholds[top.classes]  # (N, k), most probable first
    has_confident = confident.any(1)
    best = top.classes.gather(1, confident.int().argmax(1, keepdim=True))[:, 0]
    suggested = torch.where(has_confident, best, top.classes[:, 0])
    is_issue = has_confident & (best != given)
    undecided = 0
    if not top.full:
        undecided = int((~has_confident & (top.probs[:, -1] >= thresholds.min())).sum())
    for label in given.unique().tolist():
        members = (given == label).nonzero()[:, 0]
        keep = min(min_examples_per_class, len(members))
        missing = keep - int((~is_issue[members]).sum())
        if missing > 0:  # un-flag the flagged members most likely to be right
            flagged = members[is_issue[members]]
            is_issue[flagged[p_given[flagged].argsort(descending=True)[:missing]]] = False
    return LabelIssues(is_issue, suggested, thresholds, undecided)


def summary(issues: LabelIssues, class_names: Sequence[str], given: Tensor) -> str:
    """``"N of M labels look wrong ..."`` with the thresholds used."""
    present = torch.bincount(given.long(), minlength=len(class_names)) > 0
    thresholds = issues.thresholds.clone()
    low = int(torch.where(present, thresholds, torch.full_like(thresholds, 2.0)).argmin())
    high = int(torch.where(present, thresholds, torch.full_like(thresholds, -1.0)).argmax())
    undecided = ""
    if issues.undecided:
        undecided = (
            f"; for {issues.undecided} of them a class beyond the top ones kept might also "
            "reach its threshold (they count as not confident; keep more classes with "
            "MislabelReport's top_classes)"
        )
    return (
        f"{int(issues.is_issue.sum())} of {len(given)} labels look wrong (confident learning: "
        "another class's probability reaches that class's mean probability over its own "
        f"labelled examples; thresholds from {thresholds[low]:.2f} ({class_names[low]}) to "
        f"{thresholds[high]:.2f} ({class_names[high]}){undecided})"
    )


SCORES = ("auto", "self_confidence", "residual", "whitened_residual")


def mislabel_scores(predictions: SplitPredictions, score: str = "auto") -> Tensor:
    """How likely each given label is wrong (higher = more suspicious).

    Args:
        predictions: From :func:`ln_lightning.inference.predict_split`.
        score: ``self_confidence``: ``1 - p(given label)`` (works for every loss; the usual
            baseline, as in cleanlab's self-confidence ranking); ``residual``: LN's squared
            residual ``r^T r`` of the label; ``whitened_residual``: ``r^T Sigma^{-1} r`` under the
            learned covariance; ``auto``: ``self_confidence``, which ranked the corrupted labels
            best for LN models too (docs/analysis.md).

    Raises:
        ValueError: For an unknown score, or a residual score without LN predictions.
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}; got {score!r}.")
    if score == "auto":
        score = "self_confidence"
    if score == "self_confidence":
        return 1.0 - predictions.probs.gather(1, predictions.given[:, None]).squeeze(1)
    values = getattr(predictions, score)
    if values is None:
        raise ValueError(
            f"score={score!r} needs a model trained with LogisticNormalLoss; use "
            "'self_confidence' for other losses."
        )
    return values


def detection_metrics(scores: Tensor, corrupted: Tensor, known: Tensor | None = None) -> dict:
    """How well ``scores`` rank the corrupted labels first (examples with a known clean label).

    Returns:
        ``auroc``, ``average_precision`` and ``precision_at_n`` (precision of the top ``n``
        scores, ``n`` the number of corrupted labels; equal to the recall there), plus
        ``num_corrupted`` and ``num_examples``.

    Raises:
        ValueError: If there is nothing to detect (no corrupted or no clean examples).
    """
    if known is not None:
        scores, corrupted = scores[known], corrupted[known]
    corrupted = corrupted.bool()
    num = int(corrupted.sum())
    if num == 0 or num == len(corrupted):
        raise ValueError(
            f"detection needs both corrupted and clean labels; got {num} corrupted of "
            f"{len(corrupted)}."
        )
    scores = scores.float()
    top = scores.topk(num).indices
    return {
        "auroc": float(binary_auroc(scores, corrupted.long())),
        "average_precision": float(binary_average_precision(scores, corrupted.long())),
        "precision_at_n": float(corrupted[top].float().mean()),
        "num_corrupted": num,
        "num_examples": len(corrupted),
    }
