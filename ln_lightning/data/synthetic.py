"""Small synthetic data sets written in each data module's real on-disk format.

For trying a data module, a config or a benchmark without downloading anything, and for the
tests: MNIST's IDX files, CIFAR-10/100's pickled batches, CIFAR-N's ``*_human.pt`` label
files, Clothing1M's folders and annotation lists, and folders of PNG images with a labels CSV.
The pixels are random (or, for :func:`write_image_files`, three learnable shapes); the formats
are exactly those the data modules read.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from ln_lightning.data import MNISTDataModule
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_mnist(folder / "MNIST" / "raw", n_train=60, n_test=20)
    >>> data = MNISTDataModule(data_dir=str(folder), noise_type="none", noise_rate=0.0)
    >>> data.setup(); len(data.train_set) + len(data.val_set), len(data.test_set)
    (60, 20)
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = [
    "IMAGE_CLASSES",
    "write_cifar10",
    "write_cifar10n",
    "write_cifar100",
    "write_cifar100n",
    "write_clothing1m",
    "write_idx",
    "write_image_files",
    "write_labels_file",
    "write_mnist",
]


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """``array`` (uint8) as an IDX file, gzipped when ``path`` ends in ``.gz``."""
    path = Path(path)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def write_mnist(
    directory: str | Path, n_train: int = 60, n_test: int = 20, gz: bool = True
) -> None:
    """MNIST's four IDX files (random 28 x 28 images, labels ``i mod 10``) in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    write_idx(
        directory / f"train-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n_train, 28, 28))
    )
    write_idx(directory / f"train-labels-idx1-ubyte{suffix}", np.arange(n_train) % 10)
    write_idx(directory / f"t10k-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n_test, 28, 28)))
    write_idx(directory / f"t10k-labels-idx1-ubyte{suffix}", np.arange(n_test) % 10)


def write_cifar10(root: str | Path, per_batch: int = 20, n_test: int = 20) -> torch.Tensor:
    """``root/cifar-10-batches-py``: five training batches and a test batch of random images;
    returns the training labels."""
    root = Path(root)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = []
    for i in range(1, 6):
        batch_labels = [(i * per_batch + j) % 10 for j in range(per_batch)]
        labels += batch_labels
        batch = {
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            "labels": batch_labels,
        }
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    test = {
        "data": rng.integers(0, 256, (n_test, 3072), dtype=np.uint8),
        "labels": list(np.arange(n_test) % 10),
    }
    (folder / "test_batch").write_bytes(pickle.dumps(test))
    return torch.tensor(labels)


def write_cifar100(
    root: str | Path, n_train: int = 100, n_test: int = 20
) -> tuple[torch.Tensor, torch.Tensor]:
    """``root/cifar-100-python``: train and test files; returns the fine and coarse labels."""
    root = Path(root)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    fine = np.arange(n_train) % 100
    coarse = fine // 5
    for name, n, f, c in (
        ("train", n_train, fine, coarse),
        ("test", n_test, fine[:n_test], coarse[:n_test]),
    ):
        batch = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "fine_labels": list(f),
            "coarse_labels": list(c),
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    return torch.tensor(fine), torch.tensor(coarse)


def write_cifar10n(root: str | Path) -> torch.Tensor:
    """Tiny CIFAR-10 batches plus a ``CIFAR-10_human.pt`` whose 'worst' labels flip every third."""
    root = Path(root)
    labels = write_cifar10(root)
    worst = labels.clone()
    worst[::3] = (worst[::3] + 1) % 10
    other = labels.clone()
    other[::4] = (other[::4] + 2) % 10
    content = {
        "clean_label": labels.numpy(), "worse_label": worst.numpy(), "aggre_label": labels.numpy(),
        "random_label1": labels.numpy(), "random_label2": worst.numpy(),
        "random_label3": other.numpy(),
    }  # fmt: skip
    torch.save(content, root / "CIFAR-10_human.pt")
    return worst


def write_cifar100n(root: str | Path) -> torch.Tensor:
    """Tiny CIFAR-100 files plus a ``CIFAR-100_human.pt`` with every other label shifted."""
    root = Path(root)
    fine, coarse = write_cifar100(root)
    noisy = (fine + (torch.arange(len(fine)) % 2)) % 100
    content = {
        "clean_label": fine.numpy(), "noisy_label": noisy.numpy(),
        "clean_coarse_label": coarse.tolist(), "noisy_coarse_label": coarse.tolist(),
    }  # fmt: skip
    torch.save(content, root / "CIFAR-100_human.pt")
    return noisy


def write_clothing1m(root: str | Path, per_class: int = 3, classes: int = 14) -> None:
    """Clothing1M's layout: JPEGs under ``root/images`` and the annotation lists under
    ``root/annotations`` (the first training image of each class has a wrong noisy label)."""
    root = Path(root)
    (root / "annotations").mkdir(parents=True)
    keys = {"train": [], "val": [], "test": []}
    noisy_kv, clean_kv = [], []
    for split in keys:
        for c in range(classes):
            for i in range(per_class if split == "train" else 1):
                key = f"images/{c}/{split}{i}.jpg"
                (root / key).parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (40 + i, 30), color=(10 * c, 5 * i, 100)).save(root / key)
                keys[split].append(key)
                if split == "train":
                    noisy_kv.append(f"{key} {(c + (i == 0)) % classes}")
                    if i == 1:
                        clean_kv.append(f"{key} {c}")
                else:
                    clean_kv.append(f"{key} {c}")
    ann = root / "annotations"
    (ann / "noisy_label_kv.txt").write_text("\n".join(noisy_kv) + "\n")
    (ann / "clean_label_kv.txt").write_text("\n".join(clean_kv) + "\n")
    (ann / "noisy_train_key_list.txt").write_text("\n".join(keys["train"]) + "\n")
    (ann / "clean_val_key_list.txt").write_text("\n".join(keys["val"]) + "\n")
    (ann / "clean_test_key_list.txt").write_text("\n".join(keys["test"]) + "\n")
    (ann / "category_names_eng.txt").write_text(
        "\n".join(f"class{c}" for c in range(classes)) + "\n"
    )


#: Classes of the stand-in image data sets: a bright square in a different corner each.
IMAGE_CLASSES = ("circle", "square", "triangle")


def _picture(label: int, generator: np.random.Generator, size: int = 16) -> np.ndarray:
    image = generator.integers(0, 60, (size, size), dtype=np.uint8)
    row, col = divmod(label, 2)
    image[row * size // 2 : (row + 1) * size // 2, col * size // 2 : (col + 1) * size // 2] += 150
    return image


def write_image_files(
    root: str | Path,
    per_class: int = 12,
    flips: int = 0,
    seed: int = 0,
    rgb: bool = False,
    in_given_folder: bool = False,
) -> tuple[list[Path], list[int], list[int]]:
    """PNG files of the three learnable ``IMAGE_CLASSES`` under ``root/<class>/``.

    Returns:
        ``(paths, true labels, given labels)``: the first ``flips`` images of each class are
        given the next class's label (the wrong labels a test should find); with
        ``in_given_folder`` they are filed in that class's folder (an ``ImageFolder`` tree with
        wrong labels), else in their true class's.
    """
    root = Path(root)
    generator = np.random.default_rng(seed)
    paths, truth, given = [], [], []
    for label, name in enumerate(IMAGE_CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = _picture(label, generator)
            image = Image.fromarray(np.stack([pixels] * 3, -1) if rgb else pixels)
            wrong = (label + 1) % len(IMAGE_CLASSES) if i < flips else label
            folder = root / IMAGE_CLASSES[wrong if in_given_folder else label]
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{name}_{i:03d}.png"
            image.save(path)
            paths.append(path)
            truth.append(label)
            given.append(wrong)
    return paths, truth, given


def write_labels_file(
    path: Path, paths: list[Path], labels: list[int], clean: list[int] | None = None
) -> Path:
    """A ``path,label[,clean_label]`` CSV with paths relative to its folder, labels as names."""
    lines = ["path,label" + (",clean_label" if clean is not None else "")]
    for i, image in enumerate(paths):
        row = f"{image.relative_to(path.parent)},{IMAGE_CLASSES[labels[i]]}"
        if clean is not None:
            row += f",{IMAGE_CLASSES[clean[i]]}"
        lines.append(row)
    path.write_text("\n".join(lines) + "\n")
    return path
