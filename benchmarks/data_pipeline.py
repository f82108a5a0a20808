"""Training-loader throughput: the library's data modules vs a bare torchvision loader.

Images per second of the training loader of ``FashionMNISTDataModule`` and
``CIFAR10DataModule`` (noisy labels, index wrapping, the same transforms) against
``torchvision.datasets.FashionMNIST`` / ``CIFAR10`` in a plain ``DataLoader`` with the same
batch size, workers and transforms. Medians over ``--repeats`` passes of ``--batches`` batches.

Fashion-MNIST comes from ``--fashion-dir`` (default: Debian's ``dataset-fashion-mnist`` files);
CIFAR-10 from ``--cifar-dir`` (a ``cifar-10-batches-py`` copy) or, when not given, a synthetic
copy of full size written in the real format (random pixels; torchvision's checksum test is
skipped).

    python benchmarks/data_pipeline.py
    python benchmarks/data_pipeline.py --workers 0 4 --cifar-dir data
"""

from __future__ import annotations

import argparse
import gzip
import logging
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import torch
import torchvision
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from ln_lightning.data import CIFAR10DataModule, FashionMNISTDataModule
from ln_lightning.data.base import NoisyLabelDataModule

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def images_per_second(loader: Iterable, batches: int, repeats: int) -> float:
    """Median images/s over ``repeats`` passes of the first ``batches`` batches."""
    rates = []
    for _ in range(repeats):
        seen, start = 0, time.perf_counter()
        for i, batch in enumerate(loader):
            seen += len(batch[0])
            if i + 1 == batches:
                break
        rates.append(seen / (time.perf_counter() - start))
    return statistics.median(rates)


def fashion_mnist(source: Path, scratch: Path, batch: int, workers: int) -> tuple[DataLoader, ...]:
    raw = scratch / "FashionMNIST" / "raw"  # torchvision reads the uncompressed files here
    if not raw.exists():
        raw.mkdir(parents=True)
        for path in source.glob("*-ubyte.gz"):
            with gzip.open(path) as packed, (raw / path.stem).open("wb") as out:
                shutil.copyfileobj(packed, out)
    data = FashionMNISTDataModule(data_dir=str(source), batch_size=batch, num_workers=workers)
    transform = v2.Compose(
        [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize([data.mean], [data.std])]
    )
    bare = torchvision.datasets.FashionMNIST(str(scratch), train=True, transform=transform)
    return ours(data), bare_loader(bare, batch, workers)


class UncheckedCIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR-10 reader without its MD5 checks (which the synthetic copy fails and
    which only guard downloads) and without reading the class names."""

    def _check_integrity(self) -> bool:
        return True

    def _load_meta(self) -> None:
        self.classes = [str(label) for label in range(10)]
        self.class_to_idx = {name: label for label, name in enumerate(self.classes)}


def cifar10(source: Path | None, scratch: Path, batch: int, workers: int) -> tuple[DataLoader, ...]:
    if source is None:
        source = scratch / "cifar"
        if not source.exists():
            from ln_lightning.data.synthetic import write_cifar10

            write_cifar10(source, per_batch=10_000, n_test=10_000)
    data = CIFAR10DataModule(data_dir=str(source), batch_size=batch, num_workers=workers)
    data.setup()
    augment = data.train_transform()
    transform = v2.Compose([v2.ToImage(), *augment.transforms])
    bare = UncheckedCIFAR10(str(source), train=True, transform=transform)
    return ours(data), bare_loader(bare, batch, workers)


def ours(data: NoisyLabelDataModule) -> DataLoader:
    data.setup()
    return data.train_dataloader()


def bare_loader(dataset, batch: int, workers: int) -> DataLoader:
    return DataLoader(
        dataset, batch_size=batch, shuffle=True, num_workers=workers,
        persistent_workers=workers > 0,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--fashion-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist")
    )
    parser.add_argument("--cifar-dir", type=Path, default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batches", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    quiet = logging.getLogger("lightning.pytorch.utilities.rank_zero")  # the noise reports
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        measure(args)
    finally:
        quiet.setLevel(level)  # in-process callers (the tests) keep their logging


def measure(args: argparse.Namespace) -> None:
    print(f"CPU threads {torch.get_num_threads()}, batch {args.batch_size}, "
          f"{args.batches} batches per pass, median of {args.repeats}\n")  # fmt: skip
    print("| data | workers | ln-lightning (img/s) | bare torchvision (img/s) | ours / bare |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as scratch:
        sources = {"Fashion-MNIST": (fashion_mnist, args.fashion_dir),
                   "CIFAR-10 format": (cifar10, args.cifar_dir)}  # fmt: skip
        for name, (build, source) in sources.items():
            for workers in args.workers:
                ours_loader, bare = build(source, Path(scratch), args.batch_size, workers)
                rates = [images_per_second(loader, args.batches, args.repeats)
                         for loader in (ours_loader, bare)]  # fmt: skip
                print(f"| {name} | {workers} | {rates[0]:,.0f} | {rates[1]:,.0f} | "
                      f"{rates[0] / rates[1]:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
