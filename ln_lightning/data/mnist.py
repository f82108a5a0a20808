"""MNIST and Fashion-MNIST from the original IDX files (torchvision downloads them)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ln_lightning.data.base import NoisyLabelDataModule
from ln_lightning.data.splits import DataSplits
from ln_lightning.noise import FASHION_MNIST_ASYMMETRIC_MAP, MNIST_ASYMMETRIC_MAP
from ln_lightning.registry import register_datamodule

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: str | Path) -> Tensor:
    """Read an IDX file (optionally gzipped) of unsigned bytes into a uint8 tensor."""
    path = Path(path)
    if path.suffix == ".gz":
        with gzip.open(path) as handle:
            raw = handle.read()
    else:
        raw = path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (bad magic number).")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(
            f"{path} is truncated: expected {int(np.prod(shape))} values, got {data.size}."
        )
    return torch.from_numpy(data.copy()).view(shape)


@register_datamodule("mnist", config="zoo/configs/mnist/base.yaml")
class MNISTDataModule(NoisyLabelDataModule):
    """MNIST (28x28 grey-scale digits, 60k train / 10k test).

    Looks for the four IDX files (``.gz`` or not) in ``data_dir``, in torchvision's layout
    ``data_dir/MNIST/raw/``, and in :attr:`search_dirs`; with ``download=True`` torchvision fetches
    them into ``data_dir`` first. Inputs are scaled to [0, 1] and standardised with the data set's
    mean and standard deviation; no augmentation (the paper's setting). Asymmetric noise uses the
    paper's MNIST map.

    Args:
        data_dir: Where the files are, or where to download them.
        download: Download with torchvision when the files are missing (needs internet).
        **kwargs: See :class:`NoisyLabelDataModule`.

    Example:
        >>> import tempfile
        >>> from ln_lightning.data.synthetic import write_mnist
        >>> folder = tempfile.mkdtemp()
        >>> write_mnist(folder, n_train=100, n_test=20)  # MNIST's IDX files
        >>> data = MNISTDataModule(data_dir=folder, noise_type="symmetric", noise_rate=0.4)
        >>> data.setup()
        >>> len(data.train_set), len(data.test_set), data.input_shape
        (90, 20, (1, 28, 28))
    """

    num_classes = 10
    input_shape = (1, 28, 28)
    default_class_map = MNIST_ASYMMETRIC_MAP
    class_names = tuple(str(digit) for digit in range(10))
    torchvision_name = "MNIST"
    mean, std = 0.1307, 0.3081
    search_dirs: tuple[str, ...] = ()

    def __init__(self, data_dir: str = "data", download: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.data_dir = data_dir
        self.download = download

    def candidate_dirs(self) -> list[Path]:
        root = Path(self.data_dir).expanduser()
        return [root, root / self.torchvision_name / "raw", *map(Path, self.search_dirs)]

    def find_files(self) -> dict[str, Path] | None:
        for directory in self.candidate_dirs():
            found = {}
            for key, name in FILES.items():
                for candidate in (directory / name, directory / f"{name}.gz"):
                    if candidate.is_file():
                        found[key] = candidate
                        break
            if len(found) == len(FILES):
                return found
        return None

    def prepare_data(self) -> None:
        if self.find_files() is None and self.download:
            import torchvision

            dataset = getattr(torchvision.datasets, self.torchvision_name)
            for train in (True, False):
                dataset(self.data_dir, train=train, download=True)

    def load_splits(self) -> DataSplits:
        files = self.find_files()
        if files is None:
            self.prepare_data()
            files = self.find_files()
        if files is None:
            searched = "\n  ".join(str(d) for d in self.candidate_dirs())
            raise FileNotFoundError(
                f"{type(self).__name__}: cannot find {', '.join(FILES.values())} (.gz or not) in:\n"
                f"  {searched}\nPass --data.download true to fetch them with torchvision "
                "(needs internet), or --data.data_dir pointing at a local copy."
            )
        images = {k: read_idx(files[k]) for k in ("train_images", "test_images")}
        labels = {k: read_idx(files[k]).long() for k in ("train_labels", "test_labels")}

        def prepare(x: Tensor) -> Tensor:
            return ((x.float() / 255.0 - self.mean) / self.std).unsqueeze(1)

        return DataSplits(
            prepare(images["train_images"]),
            labels["train_labels"],
            prepare(images["test_images"]),
            labels["test_labels"],
        )


@register_datamodule("fashion_mnist", config="zoo/configs/fashion_mnist/base.yaml")
class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (28x28 grey-scale clothing, 10 classes).

    Also finds Debian's ``dataset-fashion-mnist`` package in place
    (``/usr/share/datasets/fashion-mnist/*.gz``), without copying. Asymmetric noise uses this
    project's map (T-shirt/top->Shirt, Pullover->Coat, Sandal->Sneaker, Ankle boot->Sneaker).

    Example:
        >>> import tempfile
        >>> from ln_lightning.data.synthetic import write_mnist
        >>> folder = tempfile.mkdtemp()
        >>> write_mnist(folder, n_train=100, n_test=20)
        >>> data = FashionMNISTDataModule(data_dir=folder, noise_rate=0.4)  # asymmetric
        >>> data.setup()
        >>> list(data.class_names[:2]), data.noise_spec.class_map[0]  # T-shirt/top -> Shirt
        (['T-shirt/top', 'Trouser'], 6)
    """

    torchvision_name = "FashionMNIST"
    default_class_map = FASHION_MNIST_ASYMMETRIC_MAP
    class_names = (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )  # fmt: skip
    mean, std = 0.2860, 0.3530
    search_dirs = ("/usr/share/datasets/fashion-mnist",)
