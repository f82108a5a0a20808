"""How close is forward correction's estimate of ``T`` to the truth, by its outlier filter?

``ForwardCorrection`` trains plain cross-entropy for its warm-up, then estimates the noise's
transition matrix ``T`` from the model's probabilities on the training data: row ``i`` is the
prediction on the most confident example of class ``i`` below the ``percentile`` of ``p(i|x)``
(``functional.estimate_transition_matrix``). This benchmark reproduces that moment on the
own-images benchmark of ``label_issues.py`` (real Fashion-MNIST as PNG files, the small-image
recipe): one CE run as long as the 20-epoch run's warm-up (8 epochs, the same weights Forward
has when it estimates, since its warm-up is CE with the same seed), then, from that run's
``label_issues.csv`` (every training image's probabilities, given and true label), the estimate
at each percentile against the realised ``T`` of the labels. It prints per seed and percentile
the mean L1 error of a row, the largest, the share of wrong labels the estimate gives
(``wrong_label_share``, beside the labels' own) and its ``wrong_label_spread``, the share of
training labels the model's prediction differs from (``ForwardOrCoTeaching``'s cap on the share
it leaves out), and the estimated flip rates of the true map's flips. ``--epochs 2`` (or 3)
is the moment ``ForwardOrCoTeaching``, the own configs' method, decides at in a 20- (30-)
epoch run: the same CE weights, since its model trains with CE beside the peer until then.

    python benchmarks/transition_estimate.py --out runs/matrix --seeds 0 1 2    # ~3 CE runs
    python benchmarks/transition_estimate.py --out runs/matrix --epochs 2 --noise symmetric
    python benchmarks/transition_estimate.py --out /tmp/te --limit 600 --epochs 1  # smoke test
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import numpy
import torch
from label_issues import SOURCES, fit_args, ln_fit, run, write_folder  # the own-images benchmark

from ln_lightning.losses.functional import (
    estimate_transition_matrix,
    wrong_label_share,
    wrong_label_spread,
)
from ln_lightning.noise import realised_transition_matrix

#: Around the reference's filter (97, the default): a weaker one, a stronger one (99), none.
PERCENTILES = (95.0, 97.0, 99.0, 100.0)


def read_training_split(
    run_dir: Path,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Probabilities, given and true labels of a run's training split: the images the estimate
    sees (the noisy validation split is left out, as the run leaves it out). The probabilities
    are the run's ``pred_probs.npy`` (full precision, rows by ``index``), the split and the
    labels (and the class names) its ``label_issues.csv``'s."""
    with (run_dir / "label_issues.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "train"]
    if not rows or "clean_label" not in rows[0]:
        raise SystemExit(f"{run_dir}/label_issues.csv: no training rows with a clean_label.")
    names = [key[2:] for key in rows[0] if key.startswith("p_")]
    index = {name: i for i, name in enumerate(names)}
    every = torch.from_numpy(numpy.load(run_dir / "pred_probs.npy")).float()
    probs = every[torch.tensor([int(row["index"]) for row in rows])]
    given = torch.tensor([index[row["given_label"]] for row in rows])
    true = torch.tensor([index[row["clean_label"]] for row in rows])
    return probs, given, true, names


def realised_matrix(given: torch.Tensor, true: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``T[i, j]``: the share of the images of true class ``i`` labelled ``j``."""
    return realised_transition_matrix(true, given, num_classes)


def errors(probs: torch.Tensor, truth: torch.Tensor, percentile: float) -> dict:
    """The estimate at ``percentile`` against ``truth``: row L1 errors, the share of wrong labels
    and their spread by the estimate, and the flip rates."""
    estimate = estimate_transition_matrix(probs, percentile)
    rows = (estimate - truth).abs().sum(-1)
    flips = [(i, j) for i in range(len(truth)) for j in range(len(truth))
             if i != j and truth[i, j] > 0.05]  # fmt: skip
    return {
        "mean_l1": float(rows.mean()),
        "max_l1": float(rows.max()),
        "share": float(wrong_label_share(estimate)),
        "spread": float(wrong_label_spread(estimate)),
        "flips": [(i, j, float(truth[i, j]), float(estimate[i, j])) for i, j in flips],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/label_issues"))
    parser.add_argument("--source", nargs="+", default=list(SOURCES), help="IDX file folders")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--noise", default="asymmetric", choices=["asymmetric", "symmetric"])
    parser.add_argument(
        "--epochs", type=int, default=8, help="of the CE run: the warm-up (0.4 of 20 epochs)"
    )
    parser.add_argument("--limit", type=int, help="only the first N training images (smoke tests)")
    parser.add_argument("--percentiles", type=float, nargs="+", default=list(PERCENTILES))
    args = parser.parse_args(argv)
    lines = [
        "| seed | percentile | row L1 error, mean | row L1 error, max "
        "| wrong labels: true, estimated | spread: true, estimated | model disagrees "
        "| flips: true rate: estimated |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    by_percentile: dict[float, list[float]] = {p: [] for p in args.percentiles}
    for seed in args.seeds:
        out = args.out / f"seed{seed}"
        files = write_folder(out, args.source, args.limit, seed)
        name = f"ce_warmup_{args.epochs}"
        command = fit_args(files[args.noise], files["test"], args.epochs, "CE", seed)
        run(ln_fit(command, out / args.noise, name)[1], out / args.noise / f"{name}.log")
        probs, given, true, names = read_training_split(out / args.noise / name / "version_0")
        truth = realised_matrix(given, true, probs.shape[1])
        true_share, true_spread = wrong_label_share(truth), wrong_label_spread(truth)
        disagrees = float((probs.argmax(-1) != given).float().mean())
        for percentile in args.percentiles:
            found = errors(probs, truth, percentile)
            by_percentile[percentile].append(found["mean_l1"])
            flips = "; ".join(
                f"{names[i]} -> {names[j]} {a:.3f}: {b:.3f}" for i, j, a, b in found["flips"]
            )
            lines.append(
                f"| {seed} | {percentile:g} | {found['mean_l1']:.3f} | {found['max_l1']:.3f} "
                f"| {true_share:.3f}: {found['share']:.3f} "
                f"| {true_spread:.2f}: {found['spread']:.2f} | {disagrees:.3f} | {flips} |"
            )
    print("\n".join(lines))
    print("\nMean row L1 error over the seeds:")
    for percentile, values in by_percentile.items():
        spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
        print(f"  percentile {percentile:g}: {statistics.fmean(values):.3f}{spread}")


if __name__ == "__main__":
    main()
