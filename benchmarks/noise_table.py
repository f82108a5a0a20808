"""Realised noise of every built-in setting, and the noise engine's speed on 1M labels.

Label vectors: the real training labels where this machine has them (digits, the toy sets,
Fashion-MNIST from Debian's package, the CIFAR-N files beside the checkout); otherwise the data
set's exact class counts (MNIST's published counts, CIFAR's balanced 5,000 / 500 per class),
which is all the noise engine reads. ``expected`` is the rate implied by the design transition
matrix and the class counts.

    python benchmarks/noise_table.py [--cifar-n ../shared/data/cifar-n]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ln_lightning.data import (
    CirclesDataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    TwoMoonsDataModule,
)
from ln_lightning.data.cifar import read_cifar_n
from ln_lightning.noise import (
    ASYMMETRIC_MAPS,
    expected_transition_matrix,
    inject_noise,
    noise_from_labels,
)

MNIST_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def labels_from_counts(counts: list[int]) -> torch.Tensor:
    return torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))


def pool_labels(datamodule) -> torch.Tensor:
    return datamodule.load_splits().train_labels


def row(name: str, labels: torch.Tensor, k: int, kind: str, rate: float, class_map=None) -> str:
    result = inject_noise(labels, k, kind, rate, class_map, seed=0)
    design = expected_transition_matrix(k, kind, rate, class_map)
    counts = torch.bincount(labels, minlength=k).float()
    expected = float((counts * (1 - design.diagonal())).sum() / counts.sum())
    return (
        f"| {name} | {len(labels):,} | {kind} {rate:.0%} | {expected:.2%} | "
        f"{result.realised_rate:.2%} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar-n"
    parser.add_argument("--cifar-n", type=Path, default=default)
    args = parser.parse_args()

    rows = [
        "| setting | labels | noise | expected | realised (seed 0) |",
        "| --- | --- | --- | --- | --- |",
    ]
    digits = pool_labels(DigitsDataModule())
    rows.append(row("digits (pool)", digits, 10, "asymmetric", 0.4, ASYMMETRIC_MAPS["mnist"]))
    rows.append(row("digits (pool)", digits, 10, "symmetric", 0.6))
    for cls in (TwoMoonsDataModule, CirclesDataModule):
        labels = pool_labels(cls())
        rows.append(row(f"{cls.__name__[:-10]} (1,000)", labels, 2, "symmetric", 0.4))
    mnist = labels_from_counts(MNIST_COUNTS)
    rows.append(row("MNIST", mnist, 10, "asymmetric", 0.4, ASYMMETRIC_MAPS["mnist"]))
    rows.append(row("MNIST", mnist, 10, "symmetric", 0.6))
    try:
        fashion = pool_labels(FashionMNISTDataModule(data_dir="data"))
        source = "Fashion-MNIST"
    except FileNotFoundError:
        fashion, source = labels_from_counts([6000] * 10), "Fashion-MNIST (counts)"
    rows.append(row(source, fashion, 10, "asymmetric", 0.4, ASYMMETRIC_MAPS["fashion_mnist"]))
    cifar10, cifar100 = labels_from_counts([5000] * 10), labels_from_counts([500] * 100)
    rows.append(row("CIFAR-10", cifar10, 10, "asymmetric", 0.4, ASYMMETRIC_MAPS["cifar10"]))
    rows.append(row("CIFAR-10", cifar10, 10, "symmetric", 0.4))
    rows.append(row("CIFAR-100", cifar100, 100, "asymmetric", 0.4, ASYMMETRIC_MAPS["cifar100"]))
    rows.append(row("CIFAR-100", cifar100, 100, "symmetric", 0.4))
    for file, keys, k in (
        (
            "CIFAR-10_human.pt",
            ["aggre_label", "random_label1", "random_label2", "random_label3", "worse_label"],
            10,
        ),
        ("CIFAR-100_human.pt", ["noisy_label"], 100),
    ):
        path = args.cifar_n / file
        if not path.is_file():
            rows.append(f"| {file} | - | not found at {path} | | |")
            continue
        for key in keys:
            noisy, clean = read_cifar_n(path, key, "clean_label")
            rate = noise_from_labels(clean, noisy, k).realised_rate
            rows.append(f"| {file[:-9]}N {key} | {len(clean):,} | human labels | - | {rate:.2%} |")
    print("\n".join(rows))

    labels = torch.arange(1_000_000) % 100
    print("\nnoise engine on 1,000,000 labels, K = 100 (median of 5):")
    for kind, kwargs in (
        ("symmetric", {}),
        ("asymmetric", {"class_map": ASYMMETRIC_MAPS["cifar100"]}),
        ("transition", {"transition_matrix": torch.softmax(torch.randn(100, 100), 1)}),
    ):
        times = []
        for _ in range(5):
            start = time.perf_counter()
            inject_noise(labels, 100, kind, 0.4, seed=0, **kwargs)
            times.append(time.perf_counter() - start)
        print(f"  {kind:<11} {sorted(times)[2] * 1e3:7.1f} ms")


if __name__ == "__main__":
    main()
