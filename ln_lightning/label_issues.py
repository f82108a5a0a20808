"""Which given labels look wrong: confident learning on the model's probabilities, and its files.

The rule (confident learning, Northcutt, Jiang & Chuang, JAIR 2021; cleanlab's
``find_label_issues(filter_by="confident_learning")``): class ``j``'s threshold ``t_j`` is the
mean probability of ``j`` over the examples *labelled* ``j``; an example's confident classes
are those whose probability reaches their threshold; its label looks wrong when it has a
confident class and the most probable of them is not its label, which is then the suggested
label. The thresholds adapt to how confident the model is per class, so no number is tuned by
hand. As in cleanlab, every class keeps at least one example unflagged. Ranking (which wrong
label to look at first) uses a separate score, by default ``1 - p(given label)``.

Files (one row per labelled example, most suspicious first): ``label_issues.csv`` and
``cleaned_labels.csv`` (see :func:`write_label_issues`, :func:`write_cleaned_labels`).
Everything here is plain tensors and CSV, usable without Lightning.
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ln_lightning.files import atomic_write
from ln_lightning.labels import UNKNOWN

__all__ = [
    "CLASSES_FILE",
    "CLEANING",
    "MIN_TRUSTED_PER_CLASS",
    "PRED_PROBS",
    "PROB_COLUMNS",
    "TOP_CLASSES",
    "IssueTable",
    "LabelIssues",
    "PredProbsFile",
    "TopClasses",
    "caution_rows",
    "caution_text",
    "cautions",
    "find_label_issues",
    "read_label_issues",
    "summary",
    "write_class_names",
    "write_cleaned_labels",
    "write_cleanlab_inputs",
    "write_label_issues",
]

#: What ``cleaned_labels.csv`` does with a flagged example: leave it out, or give it the
#: suggested label.
CLEANING = ("remove", "relabel")
#: Up to this many classes ``label_issues.csv`` has a ``p_<class>`` column per class (and
#: every probability is kept); beyond, the ``TOP_CLASSES`` most probable classes of each row.
PROB_COLUMNS = 20
#: Classes kept per example beyond ``PROB_COLUMNS`` classes.
TOP_CLASSES = 5
#: What ``pred_probs.npy`` is written as: ``auto`` (float32 up to ``PROB_COLUMNS`` classes,
#: else not written: N x K numbers), ``float32``, ``float16`` (half the disk) or ``none``.
PRED_PROBS = ("auto", "float32", "float16", "none")


@dataclass
class TopClasses:
    """What confident learning needs of each example's class probabilities, in O(N k) memory:
    the probability of its given label and its ``k`` most probable classes. With ``k = K`` it
    holds every probability (:attr:`full`), and the verdict is exact.

    Attributes:
        given_prob: ``p(given label)``, ``(N,)``.
        probs: The ``k`` largest probabilities of each example, descending, ``(N, k)``.
        classes: Their classes, ``(N, k)``.
        num_classes: ``K``.

    Example:
        >>> import torch
        >>> probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
        >>> top = TopClasses.from_probs(probs, given=torch.tensor([0, 1]), k=2)
        >>> top.classes.tolist(), top.given_prob.tolist(), top.full
        ([[0, 1], [2, 1]], [0.699999988079071, 0.30000001192092896], False)
    """

    given_prob: Tensor
    probs: Tensor
    classes: Tensor
    num_classes: int

    @classmethod
    def from_probs(cls, probs: Tensor, given: Tensor, k: int | None = None) -> TopClasses:
        """The ``k`` (all by default) most probable classes of each row of ``probs`` ``(N, K)``;
        with all of them, equal probabilities keep the class order."""
        probs = probs.float()
        num_classes = probs.shape[1]
        k = num_classes if k is None else min(k, num_classes)
        if k < 1:
            raise ValueError(f"k must be >= 1; got {k}.")
        if k == num_classes:
            values, classes = probs.sort(dim=1, descending=True, stable=True)
        else:
            values, classes = probs.topk(k, 1)
        given_prob = probs.gather(1, given.long().to(probs.device)[:, None])[:, 0]
        return cls(given_prob.cpu(), values.cpu(), classes.cpu(), num_classes)

    @classmethod
    def cat(cls, parts: Sequence[TopClasses]) -> TopClasses:
        """The rows of ``parts`` one after the other."""
        return cls(
            torch.cat([p.given_prob for p in parts]),
            torch.cat([p.probs for p in parts]),
            torch.cat([p.classes for p in parts]),
            parts[0].num_classes,
        )

    @classmethod
    def empty(cls, rows: int, num_classes: int, k: int) -> TopClasses:
        """Room for ``rows`` examples, filled batch by batch with :meth:`put` (one allocation:
        many small tensors kept between large temporary ones fragment the heap, which then
        grows by hundreds of MB)."""
        return cls(
            torch.zeros(rows), torch.zeros(rows, k), torch.zeros(rows, k, dtype=torch.long),
            num_classes,
        )  # fmt: skip

    def put(self, start: int, part: TopClasses) -> None:
        """Write ``part``'s rows from row ``start`` on."""
        stop = start + len(part)
        self.given_prob[start:stop] = part.given_prob
        self.probs[start:stop] = part.probs
        self.classes[start:stop] = part.classes

    @property
    def full(self) -> bool:
        """Whether every class is kept (``k == K``)."""
        return self.probs.shape[1] == self.num_classes

    def dense(self) -> Tensor:
        """The ``(N, K)`` probabilities (only when :attr:`full`)."""
        if not self.full:
            raise ValueError(
                f"only the top {self.probs.shape[1]} of {self.num_classes} classes are kept."
            )
        return torch.zeros_like(self.probs).scatter_(1, self.classes, self.probs)

    def __len__(self) -> int:
        return len(self.given_prob)

    def __getitem__(self, rows: Tensor | slice) -> TopClasses:
        return TopClasses(
            self.given_prob[rows], self.probs[rows], self.classes[rows], self.num_classes
        )


class PredProbsFile:
    """``pred_probs.npy`` written batch by batch, each example at the row of its index (the
    rows sorted by index), without holding the ``N x K`` array: the file is sized first and
    each batch's rows are written in place.

    Args:
        path: The ``.npy`` file.
        indices: The index of every example that will be written.
        num_classes: ``K``.
        dtype: ``float32`` or ``float16``.

    Example:
        >>> import numpy as np, tempfile, torch
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "pred_probs.npy"
        >>> with PredProbsFile(path, torch.tensor([7, 3, 5]), num_classes=2) as file:
        ...     file.write(torch.tensor([5, 7]), torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
        ...     file.write(torch.tensor([3]), torch.tensor([[0.2, 0.8]]))
        >>> np.load(path).astype(float).round(2).tolist()  # the rows of index 3, 5 and 7
        [[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]]
    """

    def __init__(
        self, path: str | Path, indices: Tensor, num_classes: int, dtype: str = "float32"
    ) -> None:
        if dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be float32 or float16; got {dtype!r}.")
        self.path, self.dtype = Path(path), np.dtype(dtype)
        self.sorted_indices = torch.as_tensor(indices).long().sort().values
        self.row_bytes = num_classes * self.dtype.itemsize
        header = {"descr": self.dtype.str, "fortran_order": False,
                  "shape": (len(self.sorted_indices), num_classes)}  # fmt: skip
        # Whole or not at all: rows go to a temporary file, renamed over the path on close.
        self._writing = atomic_write(self.path, "wb")
        self._file = self._writing.__enter__()
        np.lib.format.write_array_header_2_0(self._file, header)
        self.offset = self._file.tell()
        self._file.truncate(self.offset + len(self.sorted_indices) * self.row_bytes)

    def write(self, indices: Tensor, probs: Tensor) -> None:
        """Write the rows of the examples ``indices`` (``probs``: ``(B, K)``)."""
        rows = torch.searchsorted(self.sorted_indices, indices.long().cpu()).numpy()
        order = np.argsort(rows)
        rows, values = rows[order], probs.detach().float().cpu().numpy()[order]
        runs = np.flatnonzero(np.diff(rows) != 1) + 1  # consecutive rows: one write each run
        for run_rows, run_values in zip(np.split(rows, runs), np.split(values, runs), strict=True):
            self._file.seek(self.offset + int(run_rows[0]) * self.row_bytes)
            self._file.write(run_values.astype(self.dtype).tobytes())

    def close(self) -> None:
        """Finish the file: it appears at :attr:`path` now, whole."""
        self.__exit__(None, None, None)

    def abort(self, error: BaseException | None = None) -> None:
        """Give the file up (a failed pass): :attr:`path` keeps what it held."""
        self.__exit__(type(error or RuntimeError()), error or RuntimeError("aborted"), None)

    def __enter__(self) -> PredProbsFile:
        return self

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        writing, self._writing = self._writing, None
        if writing is None:
            return  # closed already
        if kind is None:
            writing.__exit__(None, None, None)
            return
        with contextlib.suppress(BaseException):
            writing.__exit__(kind, error, traceback)  # removes the temporary file


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


@dataclass
class IssueTable:
    """What ``label_issues.csv`` holds, as tensors (one row per example).

    ``probs``: the class probabilities as :class:`TopClasses` (``(N, K)`` probabilities given
    here are kept whole);
    ``caution``: why the row's flag cannot be trusted (empty where no reason is known), see
    :func:`cautions`; ``uncertainty``: the loss's per-example uncertainty (LN: the largest
    standard deviation of its Gaussian), where it has one (shown in ``label_issues.html``);
    ``paths``: each example's id, a file path or (``id_column="row_id"``) a row of a data set.

    Example:
        >>> import csv, tempfile, torch
        >>> from pathlib import Path
        >>> probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.9, 0.1]])
        >>> given = torch.tensor([0, 0, 1, 1, 1])
        >>> self_confidence = probs[torch.arange(5), given]
        >>> table = IssueTable(
        ...     index=torch.arange(5), split=["train"] * 5, given=given,
        ...     clean=torch.full((5,), -1), probs=probs, score=1 - self_confidence,
        ... )
        >>> path = write_label_issues(table, find_label_issues(probs, given), ["cat", "dog"],
        ...                           Path(tempfile.mkdtemp()) / "label_issues.csv")
        >>> with path.open() as handle:
        ...     top = next(csv.DictReader(handle))  # ranked by score, most suspicious first
        >>> top["index"], top["given_label"], top["suggested_label"], top["is_issue"]
        ('4', 'dog', 'cat', '1')
    """

    index: Tensor
    split: list[str]
    given: Tensor
    clean: Tensor
    probs: TopClasses | Tensor
    score: Tensor
    paths: list[str] | None = None
    caution: list[str] | None = None
    uncertainty: Tensor | None = None
    id_column: str = "path"

    def __post_init__(self) -> None:
        if not isinstance(self.probs, TopClasses):  # (N, K) probabilities: keep them all
            self.probs = TopClasses.from_probs(self.probs, self.given)


#: A class with fewer labelled examples than this has a threshold too noisy to trust.
MIN_TRUSTED_PER_CLASS = 10


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
        chance = max(1.0 / num_classes, float(counts.max()) / max(1, int(counts.sum())))
        if last < chance + (1.0 - chance) / 4:
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
