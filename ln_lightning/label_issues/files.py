"""The files of a label-issue pass: ``label_issues.csv`` (and reading it back),
``cleaned_labels.csv``, ``relabeled_labels.csv``, ``classes.txt`` and cleanlab's inputs
(``pred_probs.npy``, ``labels.npy``), each written whole
(:func:`ln_lightning.files.atomic_write`)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ln_lightning.files import atomic_write
from ln_lightning.label_issues.rule import LabelIssues
from ln_lightning.label_issues.store import IssueTable, PredProbsFile, TopClasses
from ln_lightning.labels import UNKNOWN

__all__ = [
    "CLASSES_FILE",
    "CLEANING",
    "DOUBTFUL",
    "Relabeling",
    "read_label_issues",
    "suggested_probability",
    "write_class_names",
    "write_cleaned_labels",
    "write_cleanlab_inputs",
    "write_label_issues",
    "write_relabeled_labels",
]

#: What ``relabeled_labels.csv`` does with a flagged example whose suggestion is not confident:
#: leave it out of training, or keep its given label (marked ``unsure``).
DOUBTFUL = ("drop", "keep")


@dataclass(frozen=True)
class Relabeling:
    """How ``relabeled_labels.csv`` is made, checked once when made.

    Attributes:
        confidence: A flagged example takes its suggested class when the model gives that
            class at least this probability, in (0, 1].
        doubtful: A flagged example below it is left out (``drop``) or keeps its given label
            (``keep``, marked ``unsure``).

    Example:
        >>> Relabeling(confidence=0.8).doubtful
        'drop'
        >>> Relabeling(doubtful="skip")
        Traceback (most recent call last):
        ...
        ValueError: doubtful must be one of ('drop', 'keep'); got 'skip'.
    """

    confidence: float = 0.5
    doubtful: str = "drop"

    def __post_init__(self) -> None:
        if not 0 < self.confidence <= 1:
            raise ValueError(f"confidence must be in (0, 1]; got {self.confidence}.")
        if self.doubtful not in DOUBTFUL:
            raise ValueError(f"doubtful must be one of {DOUBTFUL}; got {self.doubtful!r}.")


#: Relabel at probability 0.5 (the suggestion beats all other classes together); drop the rest.
DEFAULT_RELABELING = Relabeling()

#: What ``cleaned_labels.csv`` does with a flagged example: leave it out, or give it the
#: suggested label.
CLEANING = ("remove", "relabel")


def _name(names: Sequence[str], label: int) -> str:
    return "" if label == UNKNOWN else str(names[label])


def write_label_issues(
    table: IssueTable, issues: LabelIssues, class_names: Sequence[str], path: str | Path
) -> Path:
    """Write ``label_issues.csv``, most suspicious first.

    Columns: ``rank``, ``index`` (position in the training pool), ``path`` (for files; the
    ``id_column`` of the table, ``row_id`` for a Hugging Face data set),
    ``split`` (``train`` / ``val``), ``given_label``, ``suggested_label``, ``score``,
    ``is_issue`` (the confident-learning verdict), ``clean_label`` and ``is_noisy`` (where the
    truth is known), ``caution`` (why the row's flag cannot be trusted yet, empty when no reason
    is known; :func:`cautions`), then the probabilities: ``p_<class>`` for every class where the
    table keeps them all (:attr:`TopClasses.full`, up to :data:`PROB_COLUMNS` classes from
    ``ln-fit``), else ``p_given`` and the ``k`` most probable classes, ``top1_label``,
    ``top1_p``, ... ``topk_label``, ``topk_p`` (K x N numbers would not fit a CSV at K = 21,843).
    ``classes.txt`` beside it lists the class names in index order (the columns of
    ``pred_probs.npy``; what :func:`read_label_issues` reads for top-k columns).
    """
    path = Path(path)
    known = table.clean != UNKNOWN
    top: TopClasses = table.probs
    header = ["rank", "index"] + ([table.id_column] if table.paths is not None else [])
    header += ["split", "given_label", "suggested_label", "score", "is_issue"]
    if known.any():
        header += ["clean_label", "is_noisy"]
    header += ["caution"]
    if top.full:
        header += [f"p_{name}" for name in class_names]
        dense = top.dense()
    else:
        k = top.probs.shape[1]
        header += ["p_given"]
        header += [f"top{j}_{what}" for j in range(1, k + 1) for what in ("label", "p")]
    write_class_names(class_names, path.parent / CLASSES_FILE)
    order = table.score.argsort(descending=True, stable=True).tolist()
    with atomic_write(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for rank, i in enumerate(order, start=1):
            row = [rank, int(table.index[i])]
            if table.paths is not None:
                row.append(table.paths[i])
            row += [
                table.split[i],
                _name(class_names, int(table.given[i])),
                _name(class_names, int(issues.suggested[i])),
                f"{float(table.score[i]):.6g}",
                int(issues.is_issue[i]),
            ]
            if known.any():
                clean = int(table.clean[i])
                noisy = "" if clean == UNKNOWN else int(clean != int(table.given[i]))
                row += [_name(class_names, clean), noisy]
            row.append(table.caution[i] if table.caution is not None else "")
            if top.full:
                row += [f"{p:.6g}" for p in dense[i].tolist()]
            else:
                row.append(f"{float(top.given_prob[i]):.6g}")
                for label, p in zip(top.classes[i].tolist(), top.probs[i].tolist(), strict=True):
                    row += [class_names[label], f"{p:.6g}"]
            writer.writerow(row)
    return path


#: The class names of a ``label_issues.csv`` with top-k columns, one per line in index order.
CLASSES_FILE = "classes.txt"


def write_class_names(class_names: Sequence[str], path: str | Path) -> Path:
    """One class name per line, in index order (the columns of ``pred_probs.npy``)."""
    path = Path(path)
    with atomic_write(path) as handle:
        handle.write("".join(f"{name}\n" for name in class_names))
    return path


def read_label_issues(path: str | Path) -> tuple[IssueTable, list[str]]:
    """Read back what :func:`write_label_issues` wrote (to merge the folds of a cross-validation).

    Returns:
        The table (its ``score`` column as written) and the class names (from ``p_<class>``,
        or from ``classes.txt`` beside a file with top-k columns).
    """
    path = Path(path)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{path} holds no rows.")
    full = "p_given" not in rows[0]
    if full:
        names = [key[2:] for key in rows[0] if key.startswith("p_")]
    else:
        classes = path.parent / CLASSES_FILE
        if not classes.is_file():
            raise FileNotFoundError(
                f"{path} keeps only each row's top classes, and {classes}, which names all of "
                "them, is missing: copy it from the run folder that wrote the file."
            )
        names = classes.read_text(encoding="utf-8").splitlines()
    index = {name: i for i, name in enumerate(names)}
    id_column = next((key for key in ("path", "row_id") if key in rows[0]), None)

    def label(value: str | None) -> int:
        return index[value] if value else UNKNOWN

    given = torch.tensor([label(r["given_label"]) for r in rows])
    if full:
        probs: TopClasses | Tensor = torch.tensor(
            [[float(r[f"p_{n}"]) for n in names] for r in rows]
        )
    else:
        k = sum(1 for key in rows[0] if key.startswith("top") and key.endswith("_label"))
        probs = TopClasses(
            given_prob=torch.tensor([float(r["p_given"]) for r in rows]),
            probs=torch.tensor([[float(r[f"top{j}_p"]) for j in range(1, k + 1)] for r in rows]),
            classes=torch.tensor(
                [[index[r[f"top{j}_label"]] for j in range(1, k + 1)] for r in rows]
            ),
            num_classes=len(names),
        )
    return (
        IssueTable(
            index=torch.tensor([int(r["index"]) for r in rows]),
            split=[r["split"] for r in rows],
            given=given,
            clean=torch.tensor([label(r.get("clean_label")) for r in rows]),
            probs=probs,
            score=torch.tensor([float(r["score"]) for r in rows]),
            paths=[r[id_column] for r in rows] if id_column else None,
            caution=[r.get("caution") or "" for r in rows],
            id_column=id_column or "path",
        ),
        names,
    )


def write_cleaned_labels(
    table: IssueTable,
    issues: LabelIssues,
    class_names: Sequence[str],
    path: str | Path,
    cleaning: str = "remove",
) -> Path:
    """Write the labels with the flagged ones cleaned, in a format a new run reads back.

    With file paths: the ``labels_file`` format (``path,label`` plus ``clean_label`` where
    known; absolute paths), for ``--data.labels_file`` (``row_id,label`` for the rows of a
    Hugging Face data set, which ``HFImageDataModule`` reads back the same way);
    ``cleaning="remove"`` leaves flagged examples out, ``"relabel"`` gives them the suggested
    label. Without paths: the ``noisy_labels_file`` format (``index,clean_label,noisy_label``
    over the pool, flagged labels replaced by the suggestion), for
    ``--data.noisy_labels_file``.
    """
    if cleaning not in CLEANING:
        raise ValueError(f"cleaning must be one of {CLEANING}; got {cleaning!r}.")
    path = Path(path)
    cleaned = torch.where(issues.is_issue, issues.suggested, table.given)
    order = table.index.argsort().tolist()
    with atomic_write(path, newline="") as handle:
        writer = csv.writer(handle)
        if table.paths is None:
            writer.writerow(["index", "clean_label", "noisy_label"])
            for i in order:
                writer.writerow([int(table.index[i]), int(table.clean[i]), int(cleaned[i])])
            return path
        known = bool((table.clean != UNKNOWN).any())
        writer.writerow([table.id_column, "label", *(["clean_label"] if known else [])])
        for i in order:
            if cleaning == "remove" and bool(issues.is_issue[i]):
                continue
            label = cleaned[i] if cleaning == "relabel" else table.given[i]
            row = [table.paths[i], class_names[int(label)]]
            if known:
                row.append(_name(class_names, int(table.clean[i])))
            writer.writerow(row)
    return path


def write_cleanlab_inputs(
    table: IssueTable, folder: str | Path, pred_probs: bool = True
) -> tuple[Path | None, Path]:
    """``pred_probs.npy`` (``(N, K)`` float32, when ``pred_probs`` and the table keeps every
    probability) and ``labels.npy`` (``(N,)`` int64, the given labels) in ``folder``: every
    scored example, in the order of its ``index`` (row ``i`` is the example with the ``i``-th
    smallest index of ``label_issues.csv``; for a whole training pool, example ``i``), as
    cleanlab's ``find_label_issues(labels, pred_probs)`` and ``Datalab`` take them.
    Both go through :class:`PredProbsFile`, as the batch-by-batch pass of large K does.

    From one ``ln-fit fit`` the probabilities are in-sample (the model trained on most of these
    labels); from ``ln-fit-sweep folds`` they are out-of-sample, what cleanlab asks for.

    Returns:
        The two paths (``None`` for ``pred_probs.npy`` when not written here).
    """
    folder = Path(folder)
    order = table.index.argsort()
    probs, labels = folder / "pred_probs.npy", folder / "labels.npy"
    with atomic_write(labels, "wb") as handle:
        np.save(handle, table.given[order].long().numpy())
    if not (pred_probs and table.probs.full):
        return None, labels
    with PredProbsFile(probs, table.index, table.probs.num_classes) as file:
        file.write(table.index, table.probs.dense())
    return probs, labels


def suggested_probability(table: IssueTable, issues: LabelIssues) -> Tensor:
    """The model's probability of each example's suggested class (0 where it is not among the
    kept top classes)."""
    top = table.probs
    match = top.classes == issues.suggested[:, None]
    return torch.where(match, top.probs, torch.zeros_like(top.probs)).sum(1)


def write_relabeled_labels(
    table: IssueTable,
    issues: LabelIssues,
    class_names: Sequence[str],
    path: str | Path,
    relabeling: Relabeling = DEFAULT_RELABELING,
) -> Path:
    """Write ``relabeled_labels.csv``: the labels with the model as the reviewer.

    A flagged example whose suggested class has probability ``>= relabeling.confidence``
    takes it (``accept``); a flagged example below it is left out (``doubtful="drop"``) or
    keeps its given label (``"keep"``, marked ``unsure``); the rest keep theirs. The file has
    the format of ``label_issues.html``'s ``reviewed_labels.csv``
    (:mod:`ln_lightning.data.reviewed`), every example once, so ``--data.labels_file`` reads
    it as it is (``row_id`` rows of a Hugging Face data set too); without paths it is the
    ``index,clean_label,noisy_label`` file of ``--data.noisy_labels_file`` with
    ``given_label`` and ``decision`` added.
    """
    path = Path(path)
    doubtful = relabeling.doubtful
    sure = issues.is_issue & (suggested_probability(table, issues) >= relabeling.confidence)
    unsure = issues.is_issue & ~sure
    label = torch.where(sure, issues.suggested, table.given)
    decisions = [
        "accept" if bool(s) else ("drop" if doubtful == "drop" else "unsure") if bool(u) else ""
        for s, u in zip(sure, unsure, strict=True)
    ]
    known = bool((table.clean != UNKNOWN).any())
    with atomic_write(path, newline="") as handle:
        writer = csv.writer(handle)
        if table.paths is None:
            writer.writerow(["index", "clean_label", "noisy_label", "given_label", "decision"])
        else:
            extra = ["clean_label"] if known else []
            writer.writerow([table.id_column, "label", "given_label", "decision", *extra])
        for i in table.index.argsort().tolist():
            if table.paths is None:
                row = [int(table.index[i]), int(table.clean[i]), int(label[i]),
                       int(table.given[i]), decisions[i]]  # fmt: skip
            else:
                row = [table.paths[i], class_names[int(label[i])],
                       class_names[int(table.given[i])], decisions[i]]  # fmt: skip
                if known:
                    row.append(_name(class_names, int(table.clean[i])))
            writer.writerow(row)
    return path
