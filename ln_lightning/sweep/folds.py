"""k-fold out-of-sample label issues: one ``ln-fit fit`` per held-out fold, one merged list."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ln_lightning import gallery, label_issues
from ln_lightning.analysis import detection_metrics
from ln_lightning.labels import UNKNOWN, corrupted_mask
from ln_lightning.sweep import runner
from ln_lightning.sweep.spec import Run
from zoo.paths import resolve_config_args

__all__ = ["folds", "merge_fold_issues"]

#: Rows of a fold's ``pred_probs.npy`` copied at a time.
MERGE_CHUNK = 4096


def folds(args: argparse.Namespace) -> None:
    """k-fold cross-validation: one ``ln-fit fit`` per fold, then one merged label-issue list.

    Fold ``i`` trains on the other folds and writes its held-out labels' ``label_issues.csv``
    (``--data.num_folds K --data.fold i``); the merge takes every held-out row (each label once,
    scored by a model that never trained on it), flags them by confident learning over all of
    them and writes ``<out>/label_issues.csv`` and ``<out>/cleaned_labels.csv``.
    """
    fit_args = [a for a in args.fit_args if a != "--"] if args.fit_args else []
    if not fit_args:
        raise ValueError("give the ln-fit fit arguments after --, e.g. -- --config my.yaml")
    fit_args = resolve_config_args(fit_args)
    runs = [
        Run(
            "folds", f"fold{i}", args.seed,
            (*fit_args, f"--data.init_args.num_folds={args.num_folds}",
             f"--data.init_args.fold={i}"),
            args.out / f"fold{i}",
        )
        for i in range(args.num_folds)
    ]  # fmt: skip
    if runner.run_or_print(runs, args) is None:
        return
    merged = merge_fold_issues([run.run_dir / "label_issues.csv" for run in runs], args.out)
    print(merged)


def merge_fold_issues(paths: Sequence[Path], out: Path, cleaning: str = "remove") -> str:
    """Merge the held-out ``label_issues.csv`` of k folds into ``out``; returns the summary."""
    tables = [label_issues.read_label_issues(path) for path in paths]
    names = tables[0][1]
    if any(other != names for _, other in tables):
        raise ValueError(f"the folds' class names differ: {[n for _, n in tables]}.")
    parts = [table for table, _ in tables]
    table = label_issues.IssueTable(
        index=torch.cat([t.index for t in parts]),
        split=[f"fold{i}" for i, t in enumerate(parts) for _ in range(len(t.index))],
        given=torch.cat([t.given for t in parts]),
        clean=torch.cat([t.clean for t in parts]),
        probs=label_issues.TopClasses.cat(_same_width([t.probs for t in parts])),
        score=torch.cat([t.score for t in parts]),
        paths=None if any(t.paths is None for t in parts) else [p for t in parts for p in t.paths],
        id_column=parts[0].id_column,
    )
    # Each fold's cautions about its model stay with its rows; too few examples per class is
    # judged again on the merged table, whose thresholds cover every fold.
    rows: list[str] = []
    for part in parts:
        _, fold_classes = label_issues.cautions(part.given, names)
        fold_rows = part.caution or [""] * len(part.index)
        for given, row in zip(part.given.tolist(), fold_rows, strict=True):
            kept = [s for s in row.split("; ") if s and s != fold_classes.get(given)]
            rows.append("; ".join(kept))
    _, merged_classes = label_issues.cautions(table.given, names)
    table.caution = [
        "; ".join(filter(None, [row, merged_classes.get(given, "")]))
        for row, given in zip(rows, table.given.tolist(), strict=True)
    ]
    if len(set(table.index.tolist())) != len(table.index):
        raise ValueError("the folds hold some examples twice: were they run with the same seed?")
    issues = label_issues.find_label_issues(table.probs, table.given)
    found = label_issues.write_label_issues(table, issues, names, out / "label_issues.csv")
    # Out-of-sample pred_probs.npy (from the CSVs, or from the folds' own files at large K)
    written, _ = label_issues.write_cleanlab_inputs(table, out)
    if written is None:
        _merge_pred_probs([path.parent for path in paths], parts, out / "pred_probs.npy")
    files = (lambda i: Path(table.paths[i])) if table.id_column == "path" and table.paths else None
    page = gallery.write_gallery(
        table,
        issues,
        names,
        out / "label_issues.html",
        files,
        "Labels that look wrong, out of sample",
    )
    cleaned = label_issues.write_cleaned_labels(
        table, issues, names, out / "cleaned_labels.csv", cleaning
    )
    text = (
        f"{label_issues.summary(issues, names, table.given)}, out of sample over {len(paths)} folds"
        + label_issues.caution_text(table.caution)
    )
    corrupted, known = corrupted_mask(table.given, table.clean), table.clean != UNKNOWN
    if 0 < int(corrupted.sum()) < int(known.sum()):
        metrics = detection_metrics(table.score, corrupted, known)
        text += f"; AUROC {metrics['auroc']:.3f} against the known true labels"
    return f"{text}.\nRanked: {found}\nTo look at them: {page}\nCleaned labels: {cleaned}"


def _same_width(parts: list[label_issues.TopClasses]) -> list[label_issues.TopClasses]:
    """The folds' top classes cut to the fewest any fold kept (they may have kept all, or k)."""
    width = min(part.probs.shape[1] for part in parts)
    return [
        label_issues.TopClasses(
            part.given_prob, part.probs[:, :width], part.classes[:, :width], part.num_classes
        )
        for part in parts
    ]


def _merge_pred_probs(
    folders: Sequence[Path], parts: Sequence[label_issues.IssueTable], out: Path
) -> None:
    """One ``pred_probs.npy`` of every fold's held-out rows, where each fold wrote one (at large
    K only on request), copied in chunks of rows (bounded memory)."""
    files = [folder / "pred_probs.npy" for folder in folders]
    if not all(file.is_file() for file in files):
        return
    arrays = [np.load(file, mmap_mode="r") for file in files]
    indices = torch.cat([part.index for part in parts])
    with label_issues.PredProbsFile(
        out, indices, arrays[0].shape[1], str(arrays[0].dtype)
    ) as merged:
        for array, part in zip(arrays, parts, strict=True):
            rows = part.index.sort().values  # a fold's file is in the order of its indices
            for start in range(0, len(rows), MERGE_CHUNK):
                chunk = torch.from_numpy(np.asarray(array[start : start + MERGE_CHUNK]))
                merged.write(rows[start : start + MERGE_CHUNK], chunk)
