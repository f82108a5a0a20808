"""How long your own images take: seconds per training epoch of the own-images recipes.

Writes ``--images`` PNG files in ``--classes`` class folders (grey 28x28 pictures, resized by the
transform like any photo), then trains each recipe for ``--epochs`` epochs through the same
``ln-fit fit --config zoo/configs/own/images.yaml ...`` a user types, in this process, and reads
the mean training time per epoch (no start-up, no validation) of the loss alone
(``--model.strategy null``: forward correction; the config's ``ForwardOrCoTeaching`` also
trains a peer network for the first tenth of the epochs, and for all of them where the labels'
noise is even, which doubles the network's share of an epoch there):

* ``default``: the config as shipped (ResNet-18 from timm at 224 pixels, timm's training
  augmentation, batch 64);
* ``small``: the small-image recipe of docs/data.md (LeNet-5 at 28 pixels, no augmentation,
  the whole image, batch 256).

It prints a table: seconds per epoch, images per second and the estimated time of a whole run
(the config's 30 epochs) on ``--estimate`` images. Run it on a quiet machine, e.g.

    python benchmarks/own_images_speed.py                       # CPU, all cores
    python benchmarks/own_images_speed.py --accelerator gpu     # a GPU
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {
    "default": [],
    "small": [
        "--model.backbone=lenet5", "--data.image_size=28", "--data.augment=false",
        "--data.crop_pct=1.0", "--data.batch_size=256",
    ],
}  # fmt: skip


def write_images(folder: Path, count: int, classes: int, seed: int = 0) -> Path:
    """``count`` grey 28x28 PNG files in ``classes`` class folders."""
    generator = np.random.default_rng(seed)
    for i in range(count):
        label = i % classes
        pixels = generator.integers(0, 80, (28, 28), dtype=np.uint8)
        pixels[label * 2 : label * 2 + 8, 4:24] += 150
        target = folder / f"class_{label}"
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(target / f"{i:05d}.png")
    return folder


def epoch_seconds(images: Path, recipe: list[str], epochs: int, accelerator: str) -> float:
    """Mean training seconds per epoch of one recipe (no start-up, no validation)."""
    import time

    from lightning.pytorch.callbacks import Callback

    from ln_lightning.cli import run_cli

    class Clock(Callback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self.seconds.append(time.perf_counter() - self.start)

    cli = run_cli(
        [
            "--config", str(ROOT / "zoo/configs/own/images.yaml"),
            f"--data.root={images}", *recipe, f"--trainer.max_epochs={epochs}",
            "--model.strategy=null",
            f"--trainer.accelerator={accelerator}", "--trainer.limit_val_batches=0",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            f"--trainer.logger.init_args.save_dir={images.parent / 'runs'}",
        ],
        run=False,
    )  # fmt: skip
    clock = Clock()
    cli.trainer.callbacks.append(clock)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return sum(clock.seconds) / len(clock.seconds)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2, help="trained; the mean is reported")
    parser.add_argument("--estimate", type=int, default=10_000, help="images of the estimate")
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--accelerator", default="cpu")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        images = write_images(Path(tmp) / "photos", args.images, args.classes)
        for name in args.recipes:
            seconds = epoch_seconds(images, RECIPES[name], args.epochs, args.accelerator)
            train_images = round(args.images * 0.9)  # 10% are the validation split
            rate = train_images / seconds
            rows.append({"recipe": name, "seconds_per_epoch": seconds, "images_per_second": rate})
    print(f"\n{args.images} images ({args.classes} classes), {args.accelerator}:\n")
    print(f"| recipe | s / epoch | images / s | 30 epochs on {args.estimate:,} images |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        total = 30 * args.estimate * 0.9 / row["images_per_second"]
        estimate = f"{total / 60:.0f} min" if total >= 120 else f"{total:.0f} s"
        print(
            f"| {row['recipe']} | {row['seconds_per_epoch']:.3g} | "
            f"{row['images_per_second']:.0f} | {estimate} |"
        )
    return rows


if __name__ == "__main__":
    main()
