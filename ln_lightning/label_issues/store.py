"""What the label-issue pass keeps of each example: its top classes (O(N k) memory), the
probability file written row by row, and the table that becomes ``label_issues.csv``."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ln_lightning.files import atomic_write

__all__ = [
    "PRED_PROBS",
    "PROB_COLUMNS",
    "TOP_CLASSES",
    "IssueTable",
    "PredProbsFile",
    "TopClasses",
]

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
        >>> from ln_lightning.label_issues import find_label_issues, write_label_issues
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
