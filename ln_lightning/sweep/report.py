"""The tables and figures of a sweep: mean ± std per cell, the paper's numbers beside ours."""

from __future__ import annotations

import csv
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ln_lightning.files import atomic_write, save_figure
from ln_lightning.sweep.spec import TableSpec

__all__ = [
    "TABLES",
    "Table",
    "markdown_table",
    "mean_std",
    "memorisation_figure",
    "report",
    "write_csv",
]


class Table(NamedTuple):
    """One table ``ln-fit-sweep run`` writes.

    Example:
        >>> [(table.key, table.percent) for table in TABLES][:2]
        [('test_acc', True), ('selected_acc', True)]
    """

    key: str  #: the results column it shows (see ``RESULTS``)
    title: str
    caption: str  #: what the value is
    percent: bool  #: fractions shown in percent


#: The tables ``ln-fit-sweep run`` writes.
TABLES = (
    Table("test_acc", "Final weights",
          "Clean test accuracy (%) of the final weights (the paper's number)", percent=True),
    Table("selected_acc", "Selected by noisy validation",
          "Clean test accuracy (%) of the checkpoint with the best noisy validation accuracy "
          "(early stopping on the noisy validation split)", percent=True),
    Table("test_nll", "Test NLL", "Test NLL of the final weights (lower is better)",
          percent=False),
    Table("test_ece", "Test ECE", "Test ECE (%) of the final weights, 15 bins (lower is better)",
          percent=True),
)  # fmt: skip


def _percent(values: Sequence[float | None]) -> list[float]:
    return [100 * v for v in values if v is not None]


def mean_std(values: Sequence[float | None], percent: bool = True) -> str:
    """``"mean ± std"`` of the non-missing values (fractions shown in percent), ``"-"`` if none."""
    values = _percent(values) if percent else [v for v in values if v is not None]
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def markdown_table(
    spec: TableSpec,
    rows: Sequence[dict[str, Any]],
    key: str = "test_acc",
    caption: str = TABLES[0].caption,
    percent: bool = True,
) -> str:
    """The paper's layout: a row per setting, a column per method, ours then the paper's.

    Args:
        spec: The table spec (for the paper's numbers, shown for the final accuracy).
        rows: From :func:`run_all`.
        key: The row value to show (see :data:`RESULTS`).
        caption: What the value is.
        percent: Show fractions in percent.
    """
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    higher_is_better = key.endswith("acc")
    lines = [
        "| setting | " + " | ".join(methods) + " |",
        "| --- |" + " --- |" * len(methods),
    ]
    for setting in settings:
        paper = (spec.settings[setting].get("paper") or {}) if key == "test_acc" else {}
        best = _best_method(rows, setting, key, higher_is_better)
        cells = []
        for method in methods:
            mine = [r.get(key) for r in rows if r["setting"] == setting and r["method"] == method]
            present = [v for v in mine if v is not None]
            text = mean_std(mine, percent)
            if method == best and len(methods) > 1:
                text = f"**{text}**"
            if method in paper:
                text += f" (paper {paper[method]:.2f})"
            cells.append(f"{text} [n={len(present)}]" if len(present) != len(mine) else text)
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    seeds = sorted({r["seed"] for r in rows})
    lines.append("")
    note = f"{caption}, mean ± std over seeds {seeds}"
    if key == "test_acc" and any(spec.settings[s].get("paper") for s in settings):
        note += "; in brackets the paper's mean over 5 seeds"
    lines.append(note + ". Bold: best of this run; [n=...]: runs with a result, if not all.")
    return "\n".join(lines)


def report(spec: TableSpec, rows: Sequence[dict[str, Any]]) -> str:
    """Every table of :data:`TABLES` for which the runs have values, and the wall times."""
    parts = [f"## {spec.title}"]
    for table in TABLES:
        if any(r.get(table.key) is not None for r in rows):
            text = markdown_table(spec, rows, table.key, table.caption, table.percent)
            parts.append(f"### {table.title}\n\n{text}")
    seconds = [r["seconds"] for r in rows if r.get("seconds")]
    if seconds:
        parts.append(
            f"Wall time per run: median {statistics.median(seconds):.0f} s, from "
            f"{min(seconds):.0f} to {max(seconds):.0f} s ({len(seconds)} runs)."
        )
    return "\n\n".join(parts)


def _best_method(
    rows: Sequence[dict[str, Any]], setting: str, key: str = "test_acc", higher: bool = True
) -> str | None:
    means = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r.get(key) for r in rows if (r["setting"], r["method"]) == (setting, method)]
        present = [v for v in mine if v is not None]
        if present:
            means[method] = statistics.mean(present)
    if not means:
        return None
    return max(means, key=means.get) if higher else min(means, key=means.get)


def memorisation_figure(rows: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """Fig. 4 for a table: per setting, the share of wrong training labels each method fits
    (``train/acc_corrupted_vs_noisy``) per epoch, for the lowest seed; ``None`` if not logged."""
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for row in rows:
        if row["seed"] != min(r["seed"] for r in rows):
            continue
        metrics = Path(row["run_dir"]) / "metrics.csv"
        parts = [*sorted(Path(row["run_dir"]).glob("metrics.part*.csv")), metrics]
        points = []
        for part in (p for p in parts if p.exists()):
            with part.open() as handle:
                for record in csv.DictReader(handle):
                    if record.get("train/acc_corrupted_vs_noisy"):
                        epoch = int(record["epoch"])
                        points.append((epoch, float(record["train/acc_corrupted_vs_noisy"])))
        if points:
            curves.setdefault(row["setting"], {})[row["method"]] = sorted(dict(points).items())
    if not curves:
        return None
    from ln_lightning.analysis import plot_memorisation

    figure = plot_memorisation(curves)
    return save_figure(figure, path)


def write_csv(rows: Sequence[dict[str, Any]], path: Path, spec: TableSpec) -> None:
    """Per-run results with the paper's number of the cell (empty when the paper has none)."""
    with atomic_write(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*rows[0], "paper"])
        writer.writeheader()
        for row in rows:
            paper = (spec.settings[row["setting"]].get("paper") or {}).get(row["method"], "")
            writer.writerow({**row, "paper": paper})
