"""How well do the scores of ``MislabelReport`` find the corrupted training labels?

For each data set x noise type, trains CE and LN with the project's setups (digits: ``cli.yaml``'s
small_cnn, Adam 1e-3, batch 128; Fashion-MNIST: LeNet-5, Adam 1e-3, batch 256) and scores every
training example with

* ``1 - p(given label)`` (self-confidence) of the final model, and averaged over training
  (scored every ``--every`` epochs, what ``MislabelReport(every_n_epochs=...)`` does);
* for LN also its squared residual ``r^T r`` and ``r^T Sigma^-1 r`` (Fig. 6);
* with ``pip install cleanlab`` (the ``cleanlab`` extra): cleanlab's ``normalized_margin``
  ranking and its confident-learning ``find_label_issues`` flags, on the final CE model's
  probabilities (in-sample: no cross-validation, as a user of a trained model would run it).

The truth is the known corruption mask (synthetic noise). Prints a markdown table of AUROC,
average precision and precision at n (n = number of corrupted labels) and writes it, with a
CSV, to ``--out``. Example (the table in docs/analysis.md)::

    python benchmarks/mislabel_detection.py --data digits fashion_mnist \\
        --noise asymmetric symmetric --seed 0
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

from ln_lightning import CrossEntropy, LogisticNormalLoss, NoisyLabelClassifier
from ln_lightning.data import DigitsDataModule, FashionMNISTDataModule
from ln_lightning.label_issues import detection_metrics, mislabel_scores

SETUPS = {
    # data set -> (data module factory, backbone, batch size, default epochs, score every)
    "digits": (DigitsDataModule, "small_cnn", 128, 200, 10),
    "fashion_mnist": (FashionMNISTDataModule, "lenet5", 256, 20, 2),
}


class ScoreTracker(pl.Callback):
    """Collect the self-confidence score of every training example every ``every`` epochs."""

    def __init__(self, every: int) -> None:
        self.every, self.history = every, []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every == 0:
            predictions = pl_module.split_predictions()
            self.history.append(mislabel_scores(predictions, "self_confidence"))


def train(data: str, noise: str, loss_name: str, epochs: int, seed: int) -> tuple:
    factory, backbone, batch_size, _, every = SETUPS[data]
    pl.seed_everything(seed, verbose=False)
    datamodule = factory(noise_type=noise, noise_rate=0.4, batch_size=batch_size, seed=seed)
    loss = LogisticNormalLoss() if loss_name == "LN" else CrossEntropy()
    if loss_name == "LN" and data == "fashion_mnist":
        loss = LogisticNormalLoss(temperature=0.5, min_scale=0.5)  # the setting's own values
    model = NoisyLabelClassifier(
        backbone=backbone, loss=loss, num_classes=10, input_shape=datamodule.input_shape
    )
    tracker = ScoreTracker(every)
    trainer = pl.Trainer(
        max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[tracker], accelerator="cpu",
    )  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    return model, datamodule, tracker


def rows_for(data: str, noise: str, epochs: int, seed: int) -> list[dict]:
    rows = []

    def add(method: str, scores: torch.Tensor, predictions) -> None:
        found = detection_metrics(scores, predictions.corrupted, predictions.known)
        rows.append({"data": data, "noise": noise, "score": method, **found})

    for loss_name in ("CE", "LN"):
        start = time.perf_counter()
        model, datamodule, tracker = train(data, noise, loss_name, epochs, seed)
        predictions = model.split_predictions(datamodule=datamodule)
        final = mislabel_scores(predictions, "self_confidence")
        add(f"{loss_name} self-confidence, final model", final, predictions)
        add(
            f"{loss_name} self-confidence, mean over training",
            torch.stack([*tracker.history, final]).mean(0),
            predictions,
        )
        if loss_name == "LN":
            add("LN residual r^T r", mislabel_scores(predictions, "residual"), predictions)
            add(
                "LN whitened residual r^T Sigma^-1 r",
                mislabel_scores(predictions, "whitened_residual"),
                predictions,
            )
        else:
            rows.extend(cleanlab_rows(data, noise, predictions))
        print(f"  {data} {noise} {loss_name}: {time.perf_counter() - start:.0f} s", flush=True)
    return rows


def cleanlab_rows(data: str, noise: str, predictions) -> list[dict]:
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError:
        return []
    labels, probs = predictions.given.numpy(), predictions.probs.double().numpy()
    probs = probs / probs.sum(1, keepdims=True)
    quality = get_label_quality_scores(labels, probs, method="normalized_margin")
    found = detection_metrics(-torch.as_tensor(quality), predictions.corrupted, predictions.known)
    rows = [{"data": data, "noise": noise, "score": "cleanlab normalized margin (CE)", **found}]
    flagged = torch.as_tensor(find_label_issues(labels, probs))
    corrupted = predictions.corrupted
    hits = int((flagged & corrupted).sum())
    rows.append(
        {
            "data": data, "noise": noise, "score": "cleanlab find_label_issues flags (CE)",
            "auroc": float("nan"), "average_precision": float("nan"),
            "precision_at_n": hits / max(1, int(flagged.sum())),
            "recall": hits / int(corrupted.sum()), "num_flagged": int(flagged.sum()),
            "num_corrupted": int(corrupted.sum()), "num_examples": len(corrupted),
        }
    )  # fmt: skip
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| data | noise | score | AUROC | average precision | precision at n |",
        "| --- | --- | --- | --- | --- | --- |",
    ]

    def cell(row: dict, key: str) -> str:
        value = row.get(key, float("nan"))
        return "-" if value != value else f"{value:.3f}"

    for r in rows:
        precision = cell(r, "precision_at_n")
        if "recall" in r:
            precision = f"{precision} (flags {r['num_flagged']}, recall {r['recall']:.3f})"
        lines.append(
            f"| {r['data']} | {r['noise']} 40% ({r['num_corrupted']} of {r['num_examples']}) | "
            f"{r['score']} | {cell(r, 'auroc')} | {cell(r, 'average_precision')} | {precision} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", default=["digits"], choices=sorted(SETUPS))
    parser.add_argument("--noise", nargs="+", default=["asymmetric", "symmetric"])
    parser.add_argument("--epochs", type=int, help="override the data set's default epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/mislabel_detection"))
    args = parser.parse_args(argv)
    rows = []
    for data in args.data:
        epochs = args.epochs or SETUPS[data][3]
        for noise in args.noise:
            rows += rows_for(data, noise, epochs, args.seed)
    table = markdown(rows)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "detection.md").write_text(table + "\n")
    with (args.out / "detection.csv").open("w", newline="") as handle:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    return rows


if __name__ == "__main__":
    main()
