"""Regenerate the figures of docs/analysis.md from real runs (about 8 minutes on 2 CPU cores).

* ``memorisation.png`` (Fig. 4): training accuracy on corrupted labels against the given and
  the true label, CE vs LN, on the default setting (``cli.yaml``: digits, 40% asymmetric).
* ``residual_histograms.png`` (Fig. 6): LN's residuals on the same run.
* ``decision_boundary_ce.png`` / ``decision_boundary_ln.png`` (Fig. 3): Two Moons with 40%
  symmetric noise, the CPU variant of ``zoo/tables/cpu.yaml`` (2x500 hidden units, lr 0.1).

Each run is an ``ln-fit fit`` with the analysis callbacks; the figures are copied to ``--out``::

    python benchmarks/analysis_figures.py --out docs/figures
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import matplotlib

from ln_lightning.cli import run_cli

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
MOONS = [
    "--config", str(ROOT / "zoo/configs/two_moons/base.yaml"),
    "--config", str(ROOT / "zoo/configs/two_moons/sym40.yaml"),
    "--model.init_args.backbone_kwargs={hidden: [500, 500]}",
    "--model.init_args.optimizer.init_args.lr=0.1",
]  # fmt: skip


def fit(work: Path, name: str, *args: str) -> Path:
    """One ``ln-fit fit`` run logging to ``work/name``; returns its log directory."""
    cli = run_cli(
        ["fit", *args, "--test_after_fit=true", "--trainer.enable_progress_bar=false",
         f"--trainer.logger.init_args.save_dir={work}", f"--trainer.logger.init_args.name={name}"]
    )  # fmt: skip
    return Path(cli.trainer.log_dir)


def epoch_series(metrics_csv: Path, key: str) -> tuple[list[int], list[float]]:
    epochs, values = [], []
    with metrics_csv.open() as handle:
        for row in csv.DictReader(handle):
            if row.get(key):
                epochs.append(int(row["epoch"]))
                values.append(100 * float(row[key]))
    return epochs, values


def memorisation_figure(runs: dict[str, Path], path: Path) -> None:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, key, title in (
        (axes[0], "train/acc_corrupted_vs_noisy", "corrupted labels: predicts the WRONG label"),
        (axes[1], "train/acc_corrupted_vs_true", "corrupted labels: predicts the TRUE label"),
    ):
        for name, run in runs.items():
            ax.plot(*epoch_series(run / "metrics.csv", key), label=name)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend()
    axes[0].set_ylabel("training accuracy (%)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    parser.add_argument("--work", type=Path, default=Path("runs/analysis_figures"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    histogram = "--trainer.callbacks+=ln_lightning.callbacks.ResidualHistogram"
    boundary = "--trainer.callbacks+=ln_lightning.callbacks.DecisionBoundaryPlot"
    ce = ["--config", str(ROOT / "zoo/configs/losses/ce.yaml")]
    digits = ["--config", str(ROOT / "cli.yaml")]
    runs = {
        "LN": fit(args.work, "digits_ln", *digits, histogram),
        "CE": fit(args.work, "digits_ce", *digits, *ce),
    }
    memorisation_figure(runs, args.out / "memorisation.png")
    shutil.copy(runs["LN"] / "figures/analysis_residual_histograms.png",
                args.out / "residual_histograms.png")  # fmt: skip
    for name, extra in (("ln", []), ("ce", ce)):
        run = fit(args.work, f"moons_{name}", *MOONS, *extra, boundary)
        shutil.copy(run / "figures/analysis_decision_boundary.png",
                    args.out / f"decision_boundary_{name}.png")  # fmt: skip
    print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
