"""One label-issue report from start to end: the pass over the labelled examples, the verdict,
every file and the line that sums it up. ``MislabelReport`` (after a fit) and
``ln-fit-sweep folds`` (out of sample, over k folds) both call it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from ln_lightning.inference import (
    Predictor,
    SplitPredictions,
    backbone_features,
    predict_batches,
)
from ln_lightning.label_issues import gallery
from ln_lightning.label_issues.cautions import caution_text, cautions
from ln_lightning.label_issues.duplicates import (
    THUMBNAIL,
    DuplicatePairs,
    DuplicateSearch,
    conflicting_pairs,
    nearest_neighbours,
    signature,
    write_near_duplicates,
)
from ln_lightning.label_issues.files import (
    DEFAULT_RELABELING,
    Relabeling,
    write_cleaned_labels,
    write_cleanlab_inputs,
    write_label_issues,
    write_relabeled_labels,
)
from ln_lightning.label_issues.rule import (
    LabelIssues,
    detection_metrics,
    find_label_issues,
    mislabel_scores,
    summary,
)
from ln_lightning.label_issues.store import IssueTable, PredProbsFile, TopClasses
from ln_lightning.labels import UNKNOWN, corrupted_mask

__all__ = [
    "Report",
    "ScoringModel",
    "detection",
    "find_near_duplicates",
    "image_source",
    "merge_folds",
    "merge_pred_probs",
    "score_splits",
    "write_report",
]

#: Rows of a fold's ``pred_probs.npy`` copied at a time when folds are merged.
MERGE_CHUNK = 4096


class ScoringModel(Predictor, Protocol):
    """What the pass needs of a model beyond a :class:`~ln_lightning.inference.Predictor`: its
    cached pass over a split and the batches of one (:class:`~ln_lightning.NoisyLabelClassifier`
    has both).

    Example:
        >>> from ln_lightning import DigitsDataModule, NoisyLabelClassifier
        >>> model: ScoringModel = NoisyLabelClassifier(input_shape=(1, 8, 8))
        >>> table = score_splits(model, DigitsDataModule(), ["val"], keep=10)
        >>> len(table.index), table.probs.full
        (144, True)
    """

    def split_predictions(self, split: str, datamodule: Any) -> SplitPredictions: ...

    def split_batches(self, split: str, datamodule: Any) -> Iterable[Any]: ...


def score_splits(
    model: ScoringModel,
    datamodule: Any,
    splits: Sequence[str],
    keep: int,
    score: str = "auto",
    pred_probs: PredProbsFile | None = None,
) -> IssueTable:
    """One inference pass over ``splits`` of ``datamodule``, batch by batch, keeping of each
    example its score, uncertainty and ``keep`` most probable classes (all when ``keep`` is the
    number of classes, sharing the model's cached pass), and writing ``pred_probs`` rows as they
    come: memory O(N k), not O(N K). A pass that fails leaves no ``pred_probs.npy``.
    """
    num_classes = int(datamodule.num_classes)
    rows = sum(len(datamodule.split(name)) for name in splits)
    top = TopClasses.empty(rows, num_classes, keep)  # one allocation per column
    columns = {name: torch.zeros(rows, dtype=torch.long) for name in ("index", "given", "clean")}
    scores, uncertainty = torch.zeros(rows), torch.zeros(rows)
    has_uncertainty, split_names, start = True, [], 0
    with pred_probs if pred_probs is not None else contextlib.nullcontext():
        for name in splits:
            if keep == num_classes:  # all kept anyway: share the module's cached pass
                parts: Any = [model.split_predictions(name, datamodule)]
            else:
                parts = predict_batches(model, model.split_batches(name, datamodule))
            for part in parts:
                stop = start + len(part.indices)
                top.put(start, TopClasses.from_probs(part.probs, part.given, keep))
                scores[start:stop] = mislabel_scores(part, score)
                columns["index"][start:stop] = part.indices
                columns["given"][start:stop] = part.given
                columns["clean"][start:stop] = part.clean
                if part.uncertainty is None:
                    has_uncertainty = False
                else:
                    uncertainty[start:stop] = part.uncertainty
                split_names += [name] * len(part.indices)
                if pred_probs is not None:
                    pred_probs.write(part.indices, part.probs)
                start = stop
    table = IssueTable(
        index=columns["index"], split=split_names, given=columns["given"],
        clean=columns["clean"], probs=top, score=scores,
        uncertainty=uncertainty if has_uncertainty else None,
        id_column=datamodule.example_id_column,
    )  # fmt: skip
    ids = {name: datamodule.example_ids(name) for name in splits}
    if all(ids[name] is not None for name in splits):
        table.paths = [str(ids[s][int(i)]) for s, i in zip(table.split, table.index, strict=True)]
    return table


def find_near_duplicates(
    model: ScoringModel, datamodule: Any, table: IssueTable, search: DuplicateSearch
) -> DuplicatePairs:
    """The pairs of ``table``'s rows whose signatures (backbone features and input thumbnails,
    :mod:`~ln_lightning.label_issues.duplicates`) are near-duplicates and whose given labels
    differ: one more inference pass over the table's splits."""
    pairs = zip(table.split, table.index.tolist(), strict=True)
    row_of = {(name, i): row for row, (name, i) in enumerate(pairs)}
    rows, signatures = [], []
    for name in dict.fromkeys(table.split):
        batches = model.split_batches(name, datamodule)
        index, features, thumbnails = backbone_features(model, batches, thumbnail=THUMBNAIL)
        rows += [row_of[(name, int(i))] for i in index]
        signatures.append(signature(features, thumbnails).half())  # half the memory
    width = signatures[0].shape[1]
    ordered = torch.empty((len(table.index), width), dtype=signatures[0].dtype)
    ordered[torch.tensor(rows)] = torch.cat(signatures)
    similarity, neighbours = nearest_neighbours(ordered, search.neighbours)
    return conflicting_pairs(similarity, neighbours, table.given, search.similarity)


def image_source(datamodule: Any, table: IssueTable) -> gallery.ImageSource:
    """The picture of each row: its file where the examples are files, else its input drawn
    as an image (nothing for inputs that are no image)."""
    splits = {name: datamodule.split(name) for name in set(table.split)}

    def image(row: int) -> Any:
        files = table.paths is not None and table.id_column == "path"
        if files and Path(table.paths[row]).is_file():
            return Path(table.paths[row])
        return gallery.example_image(splits[table.split[row]].inputs[int(table.index[row])])

    return image


@dataclass
class Report:
    """What :func:`write_report` decided and wrote.

    Attributes:
        issues: The verdict on every row of the table.
        files: What was written, by name (``label_issues``, ``labels``, ``gallery``,
            ``contact_sheet``, ``cleaned_labels``).
        message: ``N of M labels look wrong ...``, the cautions and where the files are.

    Example: see :func:`write_report`.

        >>> Report(issues=None).files
        {}
    """

    issues: LabelIssues
    files: dict[str, Path] = field(default_factory=dict)
    message: str = ""


def write_report(
    table: IssueTable,
    class_names: Sequence[str],
    folder: str | Path,
    *,
    images: gallery.ImageSource | None = None,
    title: str = "Labels that look wrong",
    file_name: str = "label_issues.csv",
    page: bool = True,
    contact_sheet: int = 0,
    cleaned: bool = True,
    cleaning: str = "remove",
    relabeling: Relabeling = DEFAULT_RELABELING,
    duplicates: DuplicatePairs | None = None,
    note: str = "",
) -> Report:
    """The verdict on ``table`` (confident learning) and its files in ``folder``:
    ``label_issues.csv`` (with ``classes.txt``), ``labels.npy``, ``label_issues.html`` (when
    ``page``; the pictures from ``images``), ``label_issues.png`` (the first ``contact_sheet``
    flagged examples, when > 0), ``cleaned_labels.csv`` and ``relabeled_labels.csv`` (when
    ``cleaned``; a fold alone does not cover the pool) and ``near_duplicates.csv`` (when
    ``duplicates`` are given, also shown on the page). ``note`` follows the summary in
    :attr:`Report.message`.

    Example:
        >>> import tempfile, torch
        >>> probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.9, 0.1]])
        >>> given = torch.tensor([0, 0, 1, 1, 1])
        >>> table = IssueTable(index=torch.arange(5), split=["train"] * 5, given=given,
        ...                    clean=torch.full((5,), -1), probs=probs, score=probs[:, 0])
        >>> report = write_report(table, ["cat", "dog"], tempfile.mkdtemp())
        >>> report.message.split(" (")[0]
        '1 of 5 labels look wrong'
        >>> sorted(report.files)  # doctest: +NORMALIZE_WHITESPACE
        ['cleaned_labels', 'gallery', 'label_issues', 'labels', 'relabeled_labels']
    """
    folder = Path(folder)
    issues = find_label_issues(table.probs, table.given)
    files = {"label_issues": write_label_issues(table, issues, class_names, folder / file_name)}
    _, files["labels"] = write_cleanlab_inputs(table, folder, pred_probs=False)
    stem = folder / Path(file_name).stem
    message = (
        summary(issues, class_names, table.given) + note + caution_text(table.caution)
        + f". Ranked: {files['label_issues']}"
    )  # fmt: skip
    if duplicates is not None:
        ids = table.paths or [str(int(i)) for i in table.index]
        files["near_duplicates"] = write_near_duplicates(
            duplicates, ids, table.given, class_names, folder / "near_duplicates.csv", table.clean
        )
        message += f"; {len(duplicates)} near-duplicate pair(s) with different labels"
    if page:
        files["gallery"] = gallery.write_gallery(
            table, issues, class_names, stem.with_suffix(".html"), images, title, duplicates
        )
        message += f"; to look at them: {files['gallery']}"
    if contact_sheet:
        sheet = gallery.write_contact_sheet(
            table, issues, class_names, stem.with_suffix(".png"), images, contact_sheet
        )
        if sheet is not None:
            files["contact_sheet"] = sheet
    if cleaned:
        files["cleaned_labels"] = write_cleaned_labels(
            table, issues, class_names, folder / "cleaned_labels.csv", cleaning
        )
        files["relabeled_labels"] = write_relabeled_labels(
            table, issues, class_names, folder / "relabeled_labels.csv", relabeling
        )
        message += (
            f"; cleaned labels: {files['cleaned_labels']}; relabeled: {files['relabeled_labels']}"
        )
    return Report(issues, files, message)


def detection(table: IssueTable, issues: LabelIssues, scores: Tensor | None = None) -> dict:
    """How well the scores rank, and the flags find, the labels known to be wrong
    (``mislabel/auroc``, ``mislabel/flag_precision``, ...); empty when nothing is known."""
    scores = table.score if scores is None else scores
    known = table.clean != UNKNOWN
    corrupted = corrupted_mask(table.given, table.clean)
    if not 0 < int(corrupted.sum()) < int(known.sum()):
        return {}
    found = detection_metrics(scores, corrupted, known)
    metrics = {f"mislabel/{k}": float(v) for k, v in found.items() if not k.startswith("num_")}
    flagged = issues.is_issue & known
    hits = int((flagged & corrupted).sum())
    metrics["mislabel/flag_precision"] = hits / max(1, int(flagged.sum()))
    metrics["mislabel/flag_recall"] = hits / int(corrupted.sum())
    return metrics


# ------------------------------------------------------------------ out of sample, k folds
def merge_folds(parts: Sequence[IssueTable], class_names: Sequence[str]) -> IssueTable:
    """One table of the held-out rows of k folds (each label once, scored by a model that never
    trained on it). Each fold's cautions about its model stay with its rows; too few examples
    per class is judged again on the merged table, whose thresholds cover every fold.

    Raises:
        ValueError: When the folds hold an example twice (run with different seeds).
    """
    width = min(part.probs.probs.shape[1] for part in parts)
    table = IssueTable(
        index=torch.cat([t.index for t in parts]),
        split=[f"fold{i}" for i, t in enumerate(parts) for _ in range(len(t.index))],
        given=torch.cat([t.given for t in parts]),
        clean=torch.cat([t.clean for t in parts]),
        probs=TopClasses.cat([_first_classes(t.probs, width) for t in parts]),
        score=torch.cat([t.score for t in parts]),
        paths=None if any(t.paths is None for t in parts) else [p for t in parts for p in t.paths],
        id_column=parts[0].id_column,
    )
    if len(set(table.index.tolist())) != len(table.index):
        raise ValueError("the folds hold some examples twice: were they run with the same seed?")
    rows: list[str] = []
    for part in parts:
        _, fold_classes = cautions(part.given, class_names)
        for given, row in zip(
            part.given.tolist(), part.caution or [""] * len(part.index), strict=True
        ):
            rows.append("; ".join(s for s in row.split("; ") if s and s != fold_classes.get(given)))
    _, merged_classes = cautions(table.given, class_names)
    table.caution = [
        "; ".join(filter(None, [row, merged_classes.get(given, "")]))
        for row, given in zip(rows, table.given.tolist(), strict=True)
    ]
    return table


def _first_classes(top: TopClasses, width: int) -> TopClasses:
    """The first ``width`` of each row's top classes (folds may have kept all, or k)."""
    return TopClasses(top.given_prob, top.probs[:, :width], top.classes[:, :width], top.num_classes)


def merge_pred_probs(files: Sequence[Path], parts: Sequence[IssueTable], out: Path) -> Path | None:
    """One ``pred_probs.npy`` of every fold's held-out rows where each fold wrote one (at large
    K only on request), copied in chunks of rows (bounded memory); ``None`` otherwise."""
    if not all(file.is_file() for file in files):
        return None
    arrays = [np.load(file, mmap_mode="r") for file in files]
    indices = torch.cat([part.index for part in parts])
    with PredProbsFile(out, indices, arrays[0].shape[1], str(arrays[0].dtype)) as merged:
        for array, part in zip(arrays, parts, strict=True):
            rows = part.index.sort().values  # a fold's file is in the order of its indices
            for start in range(0, len(rows), MERGE_CHUNK):
                chunk = torch.from_numpy(np.array(array[start : start + MERGE_CHUNK]))
                merged.write(rows[start : start + MERGE_CHUNK], chunk)
    return out
