"""Near-duplicates with conflicting labels: ``near_duplicates.csv`` of a run vs cleanlab Datalab.

Real Fashion-MNIST (the IDX files, e.g. Debian's ``dataset-fashion-mnist``) is written out as
PNG files with a ``labels.csv``, plus planted duplicates given another class (the next one):
``--planted`` exact copies and as many copies shifted by one pixel right and one down (the
border filled with black). Then:

1. **ln-fit**: ``ln-fit fit`` on the export with the small-image recipe of
   ``zoo/configs/own/images.yaml`` (LeNet-5 at 28 x 28, ``--epochs``), which writes
   ``near_duplicates.csv`` (``MislabelReport``: cosine k-nearest neighbours of each image's
   signature, the backbone's features beside an 8 x 8 thumbnail of the input; pairs at
   ``duplicate_similarity`` or above whose labels differ); with ``--checkpoint`` an already
   trained run's model is used instead (nothing trained). The same search on the features
   alone and other thresholds are printed beside it;
2. **Datalab**: cleanlab's ``near_duplicate`` check (its defaults) on the same vectors (the
   signatures, and the features alone), its near-duplicate sets turned into pairs, those whose
   labels differ kept.

It prints, per method and threshold, the pairs reported and the precision and recall of the
planted pairs, exact and shifted apart (a reported pair is right when it is a planted copy and
its original).

    python benchmarks/near_duplicates.py --out runs/near_duplicates             # trains 20 epochs
    python benchmarks/near_duplicates.py --checkpoint runs/x/version_0/checkpoints/last.ckpt
    python benchmarks/near_duplicates.py --out /tmp/nd --limit 600 --planted 20 --epochs 1
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from label_issues import NAMES, SOURCES, find_idx  # the own-images benchmark beside this file
from PIL import Image

from ln_lightning.data.mnist import read_idx
from ln_lightning.label_issues.duplicates import (
    THUMBNAIL,
    conflicting_pairs,
    nearest_neighbours,
    signature,
)

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.99, 0.995, 0.999, 0.9999)


def shifted(pixels: np.ndarray) -> np.ndarray:
    """One pixel right and one down, the uncovered border black."""
    out = np.zeros_like(pixels)
    out[1:, 1:] = pixels[:-1, :-1]
    return out


def write_export(
    out: Path, source: list[str], limit: int | None, planted: int, seed: int
) -> tuple[Path, dict[tuple[int, int], str]]:
    """The PNG files and ``labels.csv``; the planted pairs ``(original row, copy row)`` by kind
    (rows of ``labels.csv``, 0-based)."""
    files = find_idx(source)
    images = read_idx(files["train_images"]).numpy()
    labels = read_idx(files["train_labels"]).long().numpy()
    if limit:
        images, labels = images[:limit], labels[:limit]
    n = len(images)
    rng = np.random.default_rng(seed)
    originals = rng.choice(n, size=2 * planted, replace=False)
    pairs: dict[tuple[int, int], str] = {}
    extra_images, extra_labels = [], []
    for j, row in enumerate(originals):
        kind = "exact" if j < planted else "shifted"
        extra_images.append(images[row] if kind == "exact" else shifted(images[row]))
        extra_labels.append((labels[row] + 1) % 10)  # given another class
        pairs[(int(row), n + j)] = kind
    images = np.concatenate([images, np.stack(extra_images)]) if planted else images
    labels = np.concatenate([labels, np.array(extra_labels)]) if planted else labels
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f".complete-{len(images)}-{planted}-{seed}"
    if not marker.exists():
        for i, pixels in enumerate(images):
            Image.fromarray(pixels).save(folder / f"{i:05d}.png")
        marker.touch()
    path = out / "labels.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows([f"images/{i:05d}.png", NAMES[y]] for i, y in enumerate(labels.tolist()))
    return path, pairs


def recipe(labels: Path, epochs: int, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "ln_lightning.cli", "fit",
        "--config", str(ROOT / "zoo/configs/own/images.yaml"), f"--data.labels_file={labels}",
        "--data.image_size=28", "--data.augment=false", "--data.crop_pct=1.0",
        "--data.batch_size=256", "--model.backbone=lenet5", f"--trainer.max_epochs={epochs}",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        f"--trainer.logger.init_args.save_dir={out}", "--trainer.logger.init_args.name=run",
        "--trainer.logger.init_args.version=0",
    ]  # fmt: skip


def features_of(checkpoint: Path, labels: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The backbone features, input thumbnails and given labels of every row of ``labels`` (in
    its order), by the model of ``checkpoint`` with its own evaluation transform."""
    from ln_lightning import NoisyLabelClassifier
    from ln_lightning.data import ImageFolderDataModule
    from ln_lightning.inference import backbone_features

    model = NoisyLabelClassifier.load_from_checkpoint(checkpoint, map_location="cpu")
    data = ImageFolderDataModule(labels_file=str(labels), image_size=28, augment=False,
                                 crop_pct=1.0, batch_size=512, num_workers=0)  # fmt: skip
    data.setup()
    parts = [
        backbone_features(model, torch.utils.data.DataLoader(
            data.split(name, eval_transform=True), batch_size=512), thumbnail=THUMBNAIL)
        for name in ("train", "val")
    ]  # fmt: skip
    index = torch.cat([part[0] for part in parts])
    ordered = []
    for column in (1, 2):
        values = torch.cat([part[column] for part in parts])
        ordered.append(torch.empty((len(index), values.shape[1]), dtype=values.dtype))
        ordered[-1][index] = values
    return ordered[0], ordered[1], data.noise.noisy_labels


def score(found: set[tuple[int, int]], planted: dict[tuple[int, int], str]) -> dict[str, float]:
    right = found & set(planted)
    result = {"pairs": len(found), "precision": len(right) / len(found) if found else 0.0}
    for kind in ("exact", "shifted"):
        wanted = {pair for pair, k in planted.items() if k == kind}
        result[f"recall {kind}"] = len(right & wanted) / len(wanted) if wanted else 0.0
    return result


def ours(neighbours: tuple, labels: torch.Tensor, threshold: float) -> set[tuple[int, int]]:
    pairs = conflicting_pairs(*neighbours, labels, threshold)
    return set(zip(pairs.first.tolist(), pairs.second.tolist(), strict=True))


def from_csv(path: Path, rows: dict[str, int]) -> set[tuple[int, int]]:
    with path.open(newline="") as handle:
        return {
            tuple(sorted((rows[r["first"]], rows[r["second"]]))) for r in csv.DictReader(handle)
        }


def datalab(features: torch.Tensor, labels: torch.Tensor) -> set[tuple[int, int]]:
    """cleanlab's ``near_duplicate`` check (its defaults) on ``features``: the pairs of its
    near-duplicate sets whose labels differ."""
    from cleanlab import Datalab

    lab = Datalab(data={"label": labels.numpy()}, label_name="label", verbosity=0)
    lab.find_issues(features=features.float().numpy(), issue_types={"near_duplicate": {}})
    issues = lab.get_issues("near_duplicate")
    found = set()
    for i, (flagged, others) in enumerate(
        zip(issues["is_near_duplicate_issue"], issues["near_duplicate_sets"], strict=True)
    ):
        if flagged:
            found |= {tuple(sorted((i, int(j)))) for j in others if labels[i] != labels[int(j)]}
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/near_duplicates"))
    parser.add_argument("--source", nargs="+", default=list(SOURCES), help="IDX file folders")
    parser.add_argument("--limit", type=int, help="only the first N training images")
    parser.add_argument("--planted", type=int, default=200, help="exact copies (and shifted)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--checkpoint", type=Path, help="a trained run's model (nothing trained)")
    args = parser.parse_args(argv)
    labels, planted = write_export(args.out, args.source, args.limit, args.planted, args.seed)
    rows = {str((args.out / "images" / f"{i:05d}.png").resolve()): i
            for i in range(len(labels.read_text().splitlines()) - 1)}  # fmt: skip
    results = {}
    checkpoint = args.checkpoint
    if checkpoint is None:
        run = args.out / "run" / "version_0"
        if not (run / "near_duplicates.csv").exists():
            log = args.out / "run.log"
            with log.open("w") as handle:
                env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
                code = subprocess.run(recipe(labels, args.epochs, args.out), stdout=handle,
                                      stderr=subprocess.STDOUT, env=env).returncode  # fmt: skip
            if code:
                raise SystemExit(f"ln-fit failed ({code}): see {log}")
        results["ln-fit run (near_duplicates.csv, its default)"] = score(
            from_csv(run / "near_duplicates.csv", rows), planted
        )
        checkpoint = run / "checkpoints" / "last.ckpt"
    features, thumbnails, given = features_of(checkpoint, labels)
    vectors = {
        "signature": signature(features, thumbnails).half(),  # as the run keeps them
        "features alone": signature(features).half(),
    }
    for name, values in vectors.items():
        neighbours = nearest_neighbours(values, 5)
        for threshold in THRESHOLDS:
            results[f"ours, {name}, similarity >= {threshold}"] = score(
                ours(neighbours, given, threshold), planted
            )
    try:
        for name, values in vectors.items():
            results[f"Datalab near_duplicate (defaults), {name}"] = score(
                datalab(values, given), planted
            )
    except ImportError:
        print('Datalab skipped: pip install -e ".[cleanlab]"')
    print(f"\n{len(given)} images, {args.planted} exact and {args.planted} shifted copies planted "
          f"with another label; the model of {checkpoint}\n")  # fmt: skip
    print("| method | pairs reported | precision | recall (exact) | recall (shifted) |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in results.items():
        print(f"| {name} | {r['pairs']} | {r['precision']:.3f} | {r['recall exact']:.3f} | "
              f"{r['recall shifted']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
