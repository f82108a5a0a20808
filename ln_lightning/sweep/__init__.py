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
from pathlib import Path

import yaml

from ln_lightning.files import atomic_write
from ln_lightning.sweep import runner
from ln_lightning.sweep.folds import folds, merge_fold_issues
from ln_lightning.sweep.report import (
    markdown_table,
    mean_std,
    memorisation_figure,
    report,
    write_csv,
)
from ln_lightning.sweep.runner import run_all
from ln_lightning.sweep.search import best_point, grid_points, nested, search
from ln_lightning.sweep.spec import Run, TableSpec, last_value, load_spec, slug
from zoo.paths import zoo_path

__all__ = [
    "Run",
    "TableSpec",
    "best_point",
    "build_parser",
    "grid_points",
    "last_value",
    "load_spec",
    "main",
    "markdown_table",
    "mean_std",
    "merge_fold_issues",
    "nested",
    "run_all",
    "slug",
    "zoo_path",
]


def table(args: argparse.Namespace, spec: TableSpec) -> None:
    """``ln-fit-sweep run``: every run of the table, then ``results.md``, ``results.csv`` and
    the memorisation figure."""
    rows = runner.run_or_print(spec.runs(args.out, args.setting, args.method, args.seeds), args)
    if rows is None:
        return
    text = report(spec, rows)
    print(f"\n{text}")
    with atomic_write(args.out / "results.md") as handle:
        handle.write(f"{text}\n")
    write_csv(rows, args.out / "results.csv", spec)
    written = [args.out / "results.md", args.out / "results.csv"]
    figure = memorisation_figure(rows, args.out / "memorisation.png")
    if figure is not None:
        written.append(figure)
    print(f"\nwritten: {', '.join(str(p) for p in written)}")


def _add_run_options(command: argparse.ArgumentParser) -> None:
    """What every subcommand that starts ``ln-fit`` processes takes."""
    command.add_argument("--jobs", type=int, default=1, help="runs in parallel (default 1)")
    command.add_argument("--gpus", nargs="+", default=[], help="GPU ids, one per parallel run")
    command.add_argument(
        "--extra",
        action="append",
        default=[],
        help="argument appended to every ln-fit run, e.g. --extra=--trainer.max_epochs=5",
    )
    command.add_argument("--dry-run", action="store_true", help="print the commands, run none")


def build_parser() -> argparse.ArgumentParser:
    """The ``ln-fit-sweep`` command line: ``run``, ``search`` and ``folds``."""
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
        command = sub.add_parser(name, help=help_text)
        command.add_argument("spec", type=Path, help="table spec YAML (e.g. zoo/tables/cpu.yaml)")
        command.add_argument("--out", type=Path, help="output directory (default runs/<spec name>)")
        command.add_argument("--seeds", type=int, nargs="+", help="override the spec's seeds")
        _add_run_options(command)
    run, grid = sub.choices["run"], sub.choices["search"]
    run.add_argument("--setting", nargs="+", help="only these rows")
    run.add_argument("--method", nargs="+", help="only these columns")
    grid.add_argument("--setting", required=True, help="the row to search on")
    grid.add_argument("--method", required=True, help="the method whose grid to search")
    fold = sub.add_parser(
        "folds",
        help="k-fold out-of-sample label issues: one ln-fit per fold, merged",
        description=folds.__doc__,
    )
    fold.add_argument("--num-folds", type=int, default=5, help="folds (default 5)")
    fold.add_argument("--out", type=Path, default=Path("runs/folds"), help="output directory")
    fold.add_argument("--seed", type=int, default=0, help="seed of the folds and of each run")
    _add_run_options(fold)
    fold.add_argument("fit_args", nargs=argparse.REMAINDER, help="-- then the ln-fit fit arguments")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``ln-fit-sweep`` console script."""
    args = build_parser().parse_args(argv)
    if args.command == "folds":
        if args.num_folds < 2:
            raise SystemExit(f"ln-fit-sweep: --num-folds must be >= 2; got {args.num_folds}.")
        try:
            folds(args)
        except (ValueError, RuntimeError, OSError) as error:
            raise SystemExit(f"ln-fit-sweep: {error}") from None
        return
    try:
        spec = load_spec(args.spec)
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise SystemExit(f"ln-fit-sweep: cannot read the table spec: {error}") from None
    args.out = args.out or Path("runs") / args.spec.stem
    try:
        (table if args.command == "run" else search)(args, spec)
    except (ValueError, RuntimeError) as error:
        raise SystemExit(f"ln-fit-sweep: {error}") from None
