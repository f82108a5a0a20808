"""How long your own images take to set up, against the number of images, next to one epoch.

Writes ``--images`` counts of image files (grey 28x28 PNG by default; ``--format jpg``: 500x375
colour JPEG, Clothing1M's size) in ``--classes`` class folders, once per count, into
``--folder`` (kept, so a second run only measures), then times what a run does before its
first step, in this process:

* ``scan``: building ``ImageFolderDataModule(root=...)`` (list the class folders, check the
  classes, read the first image's mode);
* ``setup header`` / ``setup decode`` / ``setup none``: ``datamodule.setup()`` with each
  ``--data.check_images`` (the unreadable-image check, the noise draw and the splits), on
  ``--workers`` processes;
* ``epoch read``: reading and transforming every training image once through the training
  loader (what one epoch costs at the least, before any network runs), on the same workers.

Every file is read once before the timings, so each step finds them in the file cache (a first
run after a reboot, or on a network file system, reads them from the disk in ``scan`` or
``setup`` instead). It prints a table, with set-up (scan + setup header) as a percentage of that
epoch. Run it on a quiet machine, e.g.

    python benchmarks/data_setup.py                                  # 1k, 10k, 100k PNG
    python benchmarks/data_setup.py --format jpg --images 1000 10000
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ln_lightning.data import ImageFolderDataModule
from ln_lightning.data.images import IMAGE_CHECKS
from ln_lightning.lightning_internals import RANK_ZERO_LOGGERS

SIZES = {"png": (28, 28), "jpg": (375, 500)}


def write_images(folder: Path, count: int, classes: int, kind: str, seed: int = 0) -> Path:
    """``count`` image files in ``classes`` class folders (written once: a folder with a
    ``done`` marker is reused)."""
    if (folder / "done").is_file():
        return folder
    generator = np.random.default_rng(seed)
    height, width = SIZES[kind]
    for i in range(count):
        label = i % classes
        target = folder / f"class_{label}"
        target.mkdir(parents=True, exist_ok=True)
        shape = (height, width) if kind == "png" else (height, width, 3)
        pixels = generator.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(pixels).save(target / f"{i:07d}.{kind}")
    (folder / "done").write_text(str(count))
    return folder


def seconds(work) -> tuple[float, object]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def measure(root: Path, workers: int) -> dict[str, float]:
    """Seconds of each step of the set-up, and of reading one epoch."""
    options = dict(
        root=str(root), image_size=28, augment=False, crop_pct=1.0, grayscale=True,
        batch_size=256, num_workers=workers, noise_type="none", cache="none",
    )  # fmt: skip  # cache "none": the epoch read measures reading the files
    for path in root.rglob("*.*"):  # the file cache warm for every step alike
        path.read_bytes()
    found: dict[str, float] = {}
    found["scan"], data = seconds(lambda: ImageFolderDataModule(**options))
    for check in IMAGE_CHECKS:
        data = ImageFolderDataModule(**options, check_images=check)
        found[f"setup {check}"], _ = seconds(data.setup)
    loader = data.train_dataloader()
    found["epoch read"], _ = seconds(lambda: sum(len(batch.target) for batch in loader))
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--format", choices=sorted(SIZES), default="png")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument(
        "--workers", type=int, default=max(0, min(8, (os.cpu_count() or 1) - 1)),
        help="processes of the check and of the loader (the data module's default)",
    )  # fmt: skip
    parser.add_argument("--folder", type=Path, default=Path("runs/data_setup"))
    args = parser.parse_args(argv)
    loggers = [logging.getLogger(name) for name in RANK_ZERO_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:  # the data module's one-line noise report, for each run
        logger.setLevel(logging.WARNING)
    try:
        report(args)
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def report(args: argparse.Namespace) -> None:
    """Print the table."""
    columns = ["scan", *(f"setup {check}" for check in IMAGE_CHECKS), "epoch read"]
    print(
        f"Set-up of ImageFolderDataModule, {args.format} {'x'.join(map(str, SIZES[args.format]))}"
        f", {args.workers} worker process(es), {os.cpu_count()} CPU cores; seconds"
    )
    print("| images | " + " | ".join(columns) + " | set-up / epoch read |")
    print("|---" * (len(columns) + 2) + "|")
    for count in args.images:
        root = write_images(
            args.folder / f"{args.format}_{count}", count, args.classes, args.format
        )
        found = measure(root, args.workers)
        share = (found["scan"] + found["setup header"]) / found["epoch read"]
        cells = " | ".join(f"{found[name]:.2f}" for name in columns)
        print(f"| {count} | {cells} | {100 * share:.0f}% |")


if __name__ == "__main__":
    main()
