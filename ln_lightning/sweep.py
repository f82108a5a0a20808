"""``ln-fit-sweep``: run a table of settings x methods x seeds, and search hyper-parameter grids.

A *table spec* is a YAML file (the paper's tables ship in ``zoo/tables/``)::

    title: "Synthetic noise"
    seeds: [0, 1, 2, 3, 4]
    methods:                       # column -> ln-fit arguments added to every setting
      CE: --config zoo/configs/losses/ce.yaml
      LN: ""                       # the setting's own loss: LN with the cell's [tau, lambda]
    settings:                      # row -> ln-fit arguments, and the paper's numbers
      MNIST asym 40%:
        args: --config zoo/configs/mnist/base.yaml --config zoo/configs/mnist/asym40.yaml
        paper: {CE: 80.31, LN: 96.54}
        method_args: {GCE: --model.init_args.loss.init_args.q=0.4}   # optional, per cell
    search:                        # grids for `ln-fit-sweep search` (or a path to a grids file)
      LN:
        model.init_args.loss.init_args.temperature: [0.5, 1.0]
        model.init_args.loss.init_args.min_scale: [0.1, 0.5, 1.0]

Every run is ``ln-fit fit`` in its own process with ``--seed_everything S --data.init_args.seed
S`` (initialisation, data order, noise draw and validation split all follow the seed),
``--test_after_fit true`` and a ``CSVLogger`` writing ``<out>/<setting>/<method>/seed<S>/``.
A run whose ``metrics.csv`` already holds ``test/acc`` is skipped and a run cut off mid-way
continues from its ``checkpoints/last.ckpt`` (``--ckpt_path``; the earlier ``metrics.csv`` is
kept as ``metrics.partN.csv``), so an interrupted sweep resumes where it stopped. The table
reports mean ± std over seeds of the clean test accuracy of the final weights (``test/acc``),
the paper's end-of-training number, next to the paper's.

``search`` runs the product of a method's grid for one setting and selects the point with the
best noisy validation accuracy at the end of training (``val/acc_noisy``; the paper's procedure:
no clean labels are used), writing it as a config to pass with ``--config``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import os
import queue
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from ln_lightning.metrics import MODEL_SELECTION, SELECTED_TEST, TEST, metric_name
from ln_lightning.resume import last_checkpoint_of_run
from zoo.paths import resolve_config_args, zoo_path

#: The clean test accuracy of the final weights.
FINAL_ACC = metric_name(TEST, "acc")
#: The file a run's folder gets when its ``ln-fit`` process has exited cleanly (its wall time).
FINISHED = "finished"
#: What each run reports: column name -> the logged metric it is read from (its last value).
RESULTS = {
    "test_acc": FINAL_ACC,  # the paper's number: the final weights
    "selected_acc": metric_name(SELECTED_TEST, "acc"),  # the best val/acc_noisy checkpoint
    "test_nll": metric_name(TEST, "nll"),
    "test_ece": metric_name(TEST, "ece"),
    "selected_nll": metric_name(SELECTED_TEST, "nll"),
    "selected_ece": metric_name(SELECTED_TEST, "ece"),
    "val_acc_noisy": MODEL_SELECTION,
    "realised_noise": "noise/realised_rate",
}
#: The tables ``ln-fit-sweep run`` writes: row key, what it is, how it is shown.
TABLES = (
    ("test_acc", "Final weights", "Clean test accuracy (%) of the final weights (the paper's "
     "number)", "percent"),
    ("selected_acc", "Selected by noisy validation", "Clean test accuracy (%) of the checkpoint "
     "with the best noisy validation accuracy (early stopping on the noisy validation split)",
     "percent"),
    ("test_nll", "Test NLL", "Test NLL of the final weights (lower is better)", "plain"),
    ("test_ece", "Test ECE", "Test ECE (%) of the final weights, 15 bins (lower is better)",
     "percent"),
)  # fmt: skip

__all__ = [
    "Run",
    "TableSpec",
    "best_point",
    "grid_points",
    "last_value",
    "load_spec",
    "main",
    "markdown_table",
    "run_all",
    "slug",
    "zoo_path",
]


@dataclass(frozen=True)
class Run:
    """One ``ln-fit fit`` process: its arguments, its seed and its output directory."""

    setting: str
    method: str
    seed: int
    args: tuple[str, ...]
    run_dir: Path

    def command(self, extra: Sequence[str] = ()) -> list[str]:
        """The ``ln-fit`` command line (as ``python -m ln_lightning.cli``)."""
        return [
            sys.executable, "-m", "ln_lightning.cli", "fit", *self.args,
            f"--seed_everything={self.seed}", f"--data.init_args.seed={self.seed}",
            "--test_after_fit=true",
            "--trainer.logger.class_path=lightning.pytorch.loggers.CSVLogger",
            f"--trainer.logger.init_args.save_dir={self.run_dir.parent}",
            "--trainer.logger.init_args.name=",
            f"--trainer.logger.init_args.version={self.run_dir.name}",
            "--trainer.enable_progress_bar=false",
            *extra,
        ]  # fmt: skip

    @property
    def metrics_csv(self) -> Path:
        return self.run_dir / "metrics.csv"

    def finished(self) -> bool:
        """Whether the run has ended (then it is not run again): its ``ln-fit`` process exited
        cleanly, or (runs of earlier versions) its metrics hold the test evaluation."""
        if (self.run_dir / FINISHED).exists():
            return True
        return self.metrics_csv.exists() and last_value(self.metrics_csv, FINAL_ACC) is not None


@dataclass
class TableSpec:
    """A parsed table spec (see the module docstring for the format)."""

    title: str
    seeds: list[int]
    methods: dict[str, str]
    settings: dict[str, dict[str, Any]]
    search: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    path: Path | None = None

    def runs(
        self,
        out: Path,
        settings: Sequence[str] | None = None,
        methods: Sequence[str] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Run]:
        """Every run of the table (or of the chosen rows, columns and seeds), row by row."""
        chosen_settings = self._choose("setting", settings, list(self.settings))
        chosen_methods = self._choose("method", methods, list(self.methods))
        runs = []
        for setting in chosen_settings:
            row = self.settings[setting]
            for method in chosen_methods:
                args = [*shlex.split(row.get("args", "")), *shlex.split(self.methods[method])]
                args += shlex.split((row.get("method_args") or {}).get(method, ""))
                args = resolve_config_args(args)
                for seed in seeds if seeds is not None else self.seeds:
                    run_dir = out / slug(setting) / slug(method) / f"seed{seed}"
                    runs.append(Run(setting, method, seed, tuple(args), run_dir))
        return runs

    @staticmethod
    def _choose(kind: str, chosen: Sequence[str] | None, known: list[str]) -> list[str]:
        if not chosen:
            return known
        unknown = [name for name in chosen if name not in known]
        if unknown:
            raise ValueError(f"Unknown {kind}(s) {unknown}; the spec has {known}.")
        return list(chosen)


def slug(name: str) -> str:
    """A directory name for a setting or method: ``"MNIST asym 40%"`` -> ``"mnist_asym_40"``."""
    return re.sub(r"[^a-z0-9.]+", "_", name.lower()).strip("_") or "_"


def load_spec(path: str | Path) -> TableSpec:
    """Read and check a table spec.

    Raises:
        ValueError: If a required key is missing, a paper number names an unknown method, or a
            search grid is empty.
    """
    path = zoo_path(path)
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a table spec is a YAML mapping; got {type(raw).__name__}.")
    missing = [key for key in ("methods", "settings") if not raw.get(key)]
    if missing:
        raise ValueError(f"{path}: missing {missing}; see `ln-fit-sweep --help` for the format.")
    methods = {str(k): str(v or "") for k, v in raw["methods"].items()}
    settings = {}
    for name, row in raw["settings"].items():
        row = {"args": row} if isinstance(row, str) else dict(row or {})
        unknown = set(row) - {"args", "paper", "method_args"}
        if unknown:
            raise ValueError(
                f"{path}: setting {name!r} has unknown keys {sorted(unknown)}; "
                "allowed: args, paper, method_args."
            )
        for key in ("paper", "method_args"):
            strays = set(row.get(key) or {}) - set(methods)
            if strays:
                raise ValueError(
                    f"{path}: setting {name!r} {key} names {sorted(strays)}, which are not "
                    f"methods of this table {sorted(methods)}."
                )
        settings[str(name)] = row
    search = raw.get("search") or {}
    if isinstance(search, str):  # grids shared between specs live in their own file
        search_path = zoo_path(search)
        if not search_path.is_file():
            raise ValueError(f"{path}: search grids file {search!r} not found.")
        search = yaml.safe_load(search_path.read_text()) or {}
        search = {method: grid for method, grid in search.items() if method in methods}
    for method, grid in search.items():
        if method not in methods:
            raise ValueError(f"{path}: search grid for unknown method {method!r}.")
        if not grid or not all(isinstance(v, list) and v for v in grid.values()):
            raise ValueError(
                f"{path}: search grid for {method!r} must map each CLI key to a non-empty list."
            )
    return TableSpec(
        title=str(raw.get("title", path.stem)),
        seeds=[int(s) for s in raw.get("seeds", [0, 1, 2])],
        methods=methods,
        settings=settings,
        search=search,
        path=path,
    )


def last_value(metrics_csv: Path, key: str) -> float | None:
    """The last non-empty value of column ``key`` in a Lightning ``CSVLogger`` metrics file."""
    value = None
    with metrics_csv.open() as handle:
        for row in csv.DictReader(handle):
            if row.get(key):
                value = float(row[key])
    return value


def run_results(run: Run) -> dict[str, float | None]:
    """The :data:`RESULTS` of a run, read from its ``metrics.csv`` (``None`` where missing)."""
    if not run.metrics_csv.exists():
        return dict.fromkeys(RESULTS)
    return {column: last_value(run.metrics_csv, key) for column, key in RESULTS.items()}


def run_seconds(run: Run) -> float | None:
    """The wall time a finished run took, as its ``finished`` file records it (for runs of
    earlier sweeps: from its command file, written at the start, to its log's last write)."""
    marker = run.run_dir / FINISHED
    if marker.exists():
        try:
            return float(marker.read_text().split()[0])
        except (ValueError, IndexError):
            return None
    started, log = run.run_dir / "command.txt", run.run_dir / "stdout.log"
    if started.exists() and log.exists() and run.finished():
        return log.stat().st_mtime - started.stat().st_mtime
    return None


def _run_once(run: Run, extra: Sequence[str], env: dict[str, str], log: Callable) -> float:
    """Run ``run`` unless finished; returns the wall time in seconds (nan when skipped)."""
    if run.finished():
        log(f"cached   {run.run_dir}")
        return math.nan
    run.run_dir.mkdir(parents=True, exist_ok=True)
    command = run.command(extra)
    last = last_checkpoint_of_run(run.run_dir)
    if last is not None:  # cut off earlier: continue from its last checkpoint
        command += ["--ckpt_path", str(last)]
        if run.metrics_csv.exists():  # CSVLogger starts the file afresh: keep the earlier rows
            parts = len(list(run.run_dir.glob("metrics.part*.csv")))
            run.metrics_csv.rename(run.run_dir / f"metrics.part{parts + 1}.csv")
        log(f"resume   {run.run_dir} from {last}")
    else:
        log(f"start    {run.run_dir}")
    (run.run_dir / "command.txt").write_text(shlex.join(command) + "\n")
    start = time.perf_counter()
    with (run.run_dir / "stdout.log").open("w") as stdout:
        result = subprocess.run(command, env=env, stdout=stdout, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        tail = (run.run_dir / "stdout.log").read_text()[-3000:]
        raise RuntimeError(
            f"{run.setting} / {run.method} / seed {run.seed} failed (exit {result.returncode}); "
            f"log: {run.run_dir / 'stdout.log'}\n{tail}\ncommand: {shlex.join(command)}"
        )
    (run.run_dir / FINISHED).write_text(f"{seconds:.1f} s\n")
    log(f"done     {run.run_dir} ({seconds:.0f} s)")
    return seconds


def run_all(
    runs: Sequence[Run],
    jobs: int = 1,
    extra: Sequence[str] = (),
    gpus: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run ``runs`` in ``jobs`` parallel processes and collect their results.

    Args:
        runs: From :meth:`TableSpec.runs`; finished ones are skipped.
        jobs: Processes at a time. Each gets ``cpu_count // jobs`` threads (``OMP_NUM_THREADS``),
            or the ``OMP_NUM_THREADS`` the sweep was started with (e.g. 1 beside other work).
        extra: Arguments appended to every ``ln-fit`` command (e.g. ``--trainer.max_epochs=5``).
        gpus: GPU ids handed out round-robin, one per process (``CUDA_VISIBLE_DEVICES``).
        log: Progress printer.

    Returns:
        One row per run: setting, method, seed, the :data:`RESULTS` of the run, seconds (the
        wall time of its ``ln-fit`` process, also for runs of earlier sweeps where recorded),
        run_dir.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1; got {jobs}.")
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(jobs):
        slots.put(slot)
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // jobs))

    def work(run: Run) -> dict[str, Any]:
        slot = slots.get()
        try:
            env = {**os.environ, "OMP_NUM_THREADS": threads}
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = str(gpus[slot % len(gpus)])
            seconds = _run_once(run, extra, env, log)
        finally:
            slots.put(slot)
        return {
            "setting": run.setting,
            "method": run.method,
            "seed": run.seed,
            **run_results(run),
            "seconds": seconds if not math.isnan(seconds) else run_seconds(run),
            "run_dir": str(run.run_dir),
        }

    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(work, runs))


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
    caption: str = TABLES[0][2],
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
    for key, title, caption, style in TABLES:
        if any(r.get(key) is not None for r in rows):
            table = markdown_table(spec, rows, key, caption, percent=style == "percent")
            parts.append(f"### {title}\n\n{table}")
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
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def write_csv(rows: Sequence[dict[str, Any]], path: Path, spec: TableSpec) -> None:
    """Per-run results with the paper's number of the cell (empty when the paper has none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*rows[0], "paper"])
        writer.writeheader()
        for row in rows:
            paper = (spec.settings[row["setting"]].get("paper") or {}).get(row["method"], "")
            writer.writerow({**row, "paper": paper})


def grid_points(grid: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """Every combination of a search grid, in order (the first key varies slowest)."""
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        yield dict(zip(keys, values, strict=True))


def _point_name(point: dict[str, Any]) -> str:
    return ",".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in point.items())


def best_point(results: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]]) -> dict[str, Any]:
    """The grid point with the highest mean noisy validation accuracy (ties: the first)."""

    def score(item: tuple[dict[str, Any], list[dict[str, Any]]]) -> float:
        values = [r["val_acc_noisy"] for r in item[1] if r["val_acc_noisy"] is not None]
        return statistics.mean(values) if values else -math.inf

    return max(results, key=score)[0]


def nested(point: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b.c": 1}`` -> ``{"a": {"b": {"c": 1}}}`` (a config ``ln-fit --config`` reads)."""
    tree: dict[str, Any] = {}
    for key, value in point.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _cmd_run(args: argparse.Namespace, spec: TableSpec) -> None:
    runs = spec.runs(args.out, args.setting, args.method, args.seeds)
    if args.dry_run:
        for run in runs:
            print(shlex.join(run.command(args.extra)))
        return
    rows = run_all(runs, args.jobs, args.extra, args.gpus)
    text = report(spec, rows)
    print(f"\n{text}")
    (args.out / "results.md").write_text(f"{text}\n")
    write_csv(rows, args.out / "results.csv", spec)
    written = [args.out / "results.md", args.out / "results.csv"]
    figure = memorisation_figure(rows, args.out / "memorisation.png")
    if figure is not None:
        written.append(figure)
    print(f"\nwritten: {', '.join(str(p) for p in written)}")


def _cmd_search(args: argparse.Namespace, spec: TableSpec) -> None:
    if args.method not in spec.search:
        raise SystemExit(
            f"The spec has no search grid for {args.method!r}; grids: {sorted(spec.search)}."
        )
    if args.setting not in spec.settings:
        raise SystemExit(f"Unknown setting {args.setting!r}; the spec has {list(spec.settings)}.")
    seeds = args.seeds or spec.seeds[:1]
    base = spec.runs(args.out, [args.setting], [args.method], [0])[0]
    search_dir = base.run_dir.parent / "search"
    runs, points = [], list(grid_points(spec.search[args.method]))
    for point in points:
        overrides = tuple(f"--{key}={value}" for key, value in point.items())
        for seed in seeds:
            run_dir = search_dir / slug(_point_name(point)) / f"seed{seed}"
            runs.append(Run(args.setting, args.method, seed, base.args + overrides, run_dir))
    if args.dry_run:
        for run in runs:
            print(shlex.join(run.command(args.extra)))
        return
    rows = run_all(runs, args.jobs, args.extra, args.gpus)
    results = [(p, rows[i * len(seeds) : (i + 1) * len(seeds)]) for i, p in enumerate(points)]
    best = best_point(results)
    lines = [
        "| grid point | noisy val acc (%) | clean test acc (%) |",
        "| --- | --- | --- |",
    ]
    for point, mine in results:
        mark = " **selected**" if point == best else ""
        lines.append(
            f"| {_point_name(point)}{mark} | {mean_std([r['val_acc_noisy'] for r in mine])} | "
            f"{mean_std([r['test_acc'] for r in mine])} |"
        )
    table = "\n".join(lines)
    search_dir.mkdir(parents=True, exist_ok=True)
    keys = list(spec.search[args.method])
    if len(keys) == 2:  # the sensitivity grid of Fig. 5
        from ln_lightning.analysis import plot_grid_heatmap

        cells = [
            {**point, "noisy val acc (%)": r["val_acc_noisy"], "clean test acc (%)": r["test_acc"]}
            for point, mine in results
            for r in mine
        ]
        figure = plot_grid_heatmap(
            cells, keys[1], keys[0], ["noisy val acc (%)", "clean test acc (%)"]
        )
        figure.savefig(search_dir / "heatmap.png", dpi=120)
        print(f"Heat map: {search_dir / 'heatmap.png'}")
    best_file = search_dir / "best.yaml"
    best_file.write_text(
        f"# {args.method} on {args.setting}: best of {len(points)} grid points by noisy "
        f"validation accuracy (seeds {seeds}).\n" + yaml.safe_dump(nested(best), sort_keys=False)
    )
    print(f"\n## {args.method} on {args.setting}: grid search\n\n{table}\n")
    print("Selected by noisy validation accuracy; the clean test column is for information only.")
    print(f"Best point written as a config: {best_file}")


def _cmd_folds(args: argparse.Namespace) -> None:
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
    if args.dry_run:
        for run in runs:
            print(shlex.join(run.command(args.extra)))
        return
    run_all(runs, args.jobs, args.extra, args.gpus)
    merged = merge_fold_issues([run.run_dir / "label_issues.csv" for run in runs], args.out)
    print(merged)


def merge_fold_issues(paths: Sequence[Path], out: Path, cleaning: str = "remove") -> str:
    """Merge the held-out ``label_issues.csv`` of k folds into ``out``; returns the summary."""
    from ln_lightning import label_issues
    from ln_lightning.labels import UNKNOWN, corrupted_mask

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
        probs=torch.cat([t.probs for t in parts]),
        score=torch.cat([t.score for t in parts]),
        paths=None if any(t.paths is None for t in parts) else [p for t in parts for p in t.paths],
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
    cleaned = label_issues.write_cleaned_labels(
        table, issues, names, out / "cleaned_labels.csv", cleaning
    )
    text = (
        f"{label_issues.summary(issues, names, table.given)}, out of sample over {len(paths)} folds"
        + label_issues.caution_text(table.caution)
    )
    corrupted, known = corrupted_mask(table.given, table.clean), table.clean != UNKNOWN
    if 0 < int(corrupted.sum()) < int(known.sum()):
        from ln_lightning.analysis import detection_metrics

        metrics = detection_metrics(table.score, corrupted, known)
        text += f"; AUROC {metrics['auroc']:.3f} against the known true labels"
    return f"{text}.\nRanked: {found}\nCleaned labels: {cleaned}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ln-fit-sweep",
        description="Run a table spec (settings x methods x seeds) or search a method's grid.",
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("run", "run the table and write results.md / results.csv"),
        ("search", "grid-search one method on one setting, select by noisy val accuracy"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("spec", type=Path, help="table spec YAML (e.g. zoo/tables/cpu.yaml)")
        cmd.add_argument("--out", type=Path, help="output directory (default runs/<spec name>)")
        cmd.add_argument("--seeds", type=int, nargs="+", help="override the spec's seeds")
        cmd.add_argument("--jobs", type=int, default=1, help="runs in parallel (default 1)")
        cmd.add_argument("--gpus", nargs="+", default=[], help="GPU ids, one per parallel run")
        cmd.add_argument(
            "--extra",
            action="append",
            default=[],
            help="argument appended to every ln-fit run, e.g. --extra=--trainer.max_epochs=5",
        )
        cmd.add_argument("--dry-run", action="store_true", help="print the commands, run none")
    run, search = sub.choices["run"], sub.choices["search"]
    run.add_argument("--setting", nargs="+", help="only these rows")
    run.add_argument("--method", nargs="+", help="only these columns")
    search.add_argument("--setting", required=True, help="the row to search on")
    search.add_argument("--method", required=True, help="the method whose grid to search")
    folds = sub.add_parser(
        "folds",
        help="k-fold out-of-sample label issues: one ln-fit per fold, merged",
        description=_cmd_folds.__doc__,
    )
    folds.add_argument("--num-folds", type=int, default=5, help="folds (default 5)")
    folds.add_argument("--out", type=Path, default=Path("runs/folds"), help="output directory")
    folds.add_argument("--seed", type=int, default=0, help="seed of the folds and of each run")
    folds.add_argument("--jobs", type=int, default=1, help="runs in parallel (default 1)")
    folds.add_argument("--gpus", nargs="+", default=[], help="GPU ids, one per parallel run")
    folds.add_argument("--extra", action="append", default=[], help=argparse.SUPPRESS)
    folds.add_argument("--dry-run", action="store_true", help="print the commands, run none")
    folds.add_argument(
        "fit_args", nargs=argparse.REMAINDER, help="-- then the ln-fit fit arguments"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``ln-fit-sweep`` console script."""
    args = build_parser().parse_args(argv)
    if args.command == "folds":
        if args.num_folds < 2:
            raise SystemExit(f"ln-fit-sweep: --num-folds must be >= 2; got {args.num_folds}.")
        try:
            _cmd_folds(args)
        except (ValueError, RuntimeError, OSError) as error:
            raise SystemExit(f"ln-fit-sweep: {error}") from None
        return
    try:
        spec = load_spec(args.spec)
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise SystemExit(f"ln-fit-sweep: cannot read the table spec: {error}") from None
    args.out = args.out or Path("runs") / args.spec.stem
    try:
        (_cmd_run if args.command == "run" else _cmd_search)(args, spec)
    except (ValueError, RuntimeError) as error:
        raise SystemExit(f"ln-fit-sweep: {error}") from None


if __name__ == "__main__":
    main()
