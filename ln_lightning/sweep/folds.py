"""k-fold out-of-sample label issues: one ``ln-fit fit`` per held-out fold, one merged list."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ln_lightning import label_issues
from ln_lightning.label_issues import report
from ln_lightning.sweep import runner
from ln_lightning.sweep.spec import Run
from zoo.paths import resolve_config_args

__all__ = ["folds", "merge_fold_issues"]


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
    table = report.merge_folds(parts, names)
    files = (lambda i: Path(table.paths[i])) if table.id_column == "path" and table.paths else None
    merged = report.write_report(
        table, names, out, images=files, title="Labels that look wrong, out of sample",
        cleaning=cleaning, note=f", out of sample over {len(paths)} folds",
    )  # fmt: skip
    # Out-of-sample pred_probs.npy: from the CSVs, or from the folds' own files at large K.
    written, _ = label_issues.write_cleanlab_inputs(table, out)
    if written is None:
        report.merge_pred_probs([path.parent / "pred_probs.npy" for path in paths], parts,
                                out / "pred_probs.npy")  # fmt: skip
    metrics = report.detection(table, merged.issues)
    if metrics:
        merged.message += f"; AUROC {metrics['mislabel/auroc']:.3f} against the known true labels"
    return merged.message
