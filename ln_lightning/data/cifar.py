"""CIFAR-10/100 from the python pickle batches, and the CIFAR-10N/100N human noisy labels."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms import v2

from ln_lightning.data.base import NoisyLabelDataModule, Transform
from ln_lightning.data.pickles import load_cifar_n_file, load_data_pickle
from ln_lightning.data.splits import DataSplits
from ln_lightning.noise import CIFAR10_ASYMMETRIC_MAP, CIFAR100_ASYMMETRIC_MAP
from ln_lightning.registry import register_datamodule

CIFAR_N_URL = (
    "https://github.com/UCSC-REAL/cifar-10-100n (files data/CIFAR-10_human.pt and "
    "data/CIFAR-100_human.pt)"
)


def read_cifar_batches(paths: list[Path], label_key: str) -> tuple[Tensor, Tensor]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels from CIFAR python pickle batch files."""
    images, labels = [], []
    for path in paths:
        batch = load_data_pickle(path)
        if label_key not in batch or "data" not in batch:
            raise ValueError(
                f"{path} is not a CIFAR batch with '{label_key}' (keys: {sorted(batch)})."
            )
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


@register_datamodule("cifar10", config="zoo/configs/cifar10/base.yaml")
class CIFAR10DataModule(NoisyLabelDataModule):
    """CIFAR-10 (32x32 colour, 50k train / 10k test) with the paper's augmentation.

    Reads torchvision's layout ``data_dir/cifar-10-batches-py/``; ``download=True`` fetches it with
    torchvision. Training inputs get a 4-pixel-padded random crop and a horizontal flip; all
    inputs are normalised with the data set's mean and standard deviation. Asymmetric noise uses
    the paper's map (bird->airplane, cat<->dog, deer->horse).

    Args:
        data_dir: Where ``cifar-10-batches-py`` is, or where to download it.
        download: Download with torchvision when missing (needs internet).
        augment: Random crop + flip on the training split.
        **kwargs: See :class:`NoisyLabelDataModule`.

    Example:
        >>> import tempfile
        >>> from ln_lightning.data.synthetic import write_cifar10
        >>> folder = tempfile.mkdtemp()
        >>> _ = write_cifar10(folder, per_batch=20, n_test=20)  # CIFAR-10's pickled batches
        >>> data = CIFAR10DataModule(data_dir=folder, noise_type="asymmetric", noise_rate=0.4)
        >>> data.setup()
        >>> len(data.train_set), len(data.test_set), data.input_shape, data.noise_spec.class_map[3]
        (90, 20, (3, 32, 32), 5)
    """

    num_classes = 10
    input_shape = (3, 32, 32)
    default_class_map = CIFAR10_ASYMMETRIC_MAP
    class_names = (
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    )  # fmt: skip
    folder = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files = ("test_batch",)
    label_key = "labels"
    torchvision_name = "CIFAR10"
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)

    def __init__(
        self, data_dir: str = "data", download: bool = False, augment: bool = True, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.data_dir = data_dir
        self.download = download
        self.augment = augment

    @property
    def root(self) -> Path:
        return Path(self.data_dir).expanduser() / self.folder

    def _missing(self) -> list[Path]:
        return [
            self.root / f
            for f in (*self.train_files, *self.test_files)
            if not (self.root / f).is_file()
        ]

    def prepare_data(self) -> None:
        if self._missing() and self.download:
            import torchvision

            getattr(torchvision.datasets, self.torchvision_name)(self.data_dir, download=True)

    def load_pool(self) -> DataSplits:
        """The CIFAR images and clean labels."""
        if self._missing():
            self.prepare_data()
        missing = self._missing()
        if missing:
            raise FileNotFoundError(
                f"{type(self).__name__}: missing {', '.join(str(p) for p in missing)}. Pass "
                "--data.download true to fetch the data set with torchvision (needs internet), or "
                f"--data.data_dir pointing at the folder that contains {self.folder}/."
            )
        train_x, train_y = read_cifar_batches(
            [self.root / f for f in self.train_files], self.label_key
        )
        test_x, test_y = read_cifar_batches(
            [self.root / f for f in self.test_files], self.label_key
        )
        return DataSplits(train_x, train_y, test_x, test_y, class_names=self.read_class_names())

    def read_class_names(self) -> list[str] | None:
        """The class names of the ``meta`` file (``batches.meta`` for CIFAR-10), if present."""
        key = self.label_key.replace("labels", "label_names")  # labels -> label_names, fine_...
        for name in ("batches.meta", "meta"):
            path = self.root / name
            if path.is_file():
                meta = load_data_pickle(path)
                if isinstance(meta, dict) and key in meta:
                    return [str(n) for n in meta[key]]
        return list(self.class_names) if self.class_names is not None else None

    def load_splits(self) -> DataSplits:
        return self.load_pool()

    def _normalise(self) -> list:
        return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)]

    def train_transform(self) -> Transform | None:
        if not self.augment:
            return self.eval_transform()
        return v2.Compose(
            [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), *self._normalise()]
        )

    def eval_transform(self) -> Transform | None:
        return v2.Compose(self._normalise())


@register_datamodule("cifar100", config="zoo/configs/cifar100/base.yaml")
class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100 (100 fine classes; ``coarse=True`` for the 20 super-classes).

    Reads ``data_dir/cifar-100-python/``. Asymmetric noise uses the paper's map i -> i + 1 mod 100
    (20 super-classes: i -> i + 1 mod 20).

    Args:
        coarse: Use the 20 coarse labels instead of the 100 fine ones.
        **kwargs: See :class:`CIFAR10DataModule`.

    Example:
        >>> import tempfile
        >>> from ln_lightning.data.synthetic import write_cifar100
        >>> folder = tempfile.mkdtemp()
        >>> _ = write_cifar100(folder, n_train=100, n_test=20)
        >>> data = CIFAR100DataModule(data_dir=folder, coarse=True, noise_type="none")
        >>> data.setup()
        >>> data.num_classes, len(data.train_set) + len(data.val_set)  # the 20 superclasses
        (20, 100)
    """

    num_classes = 100
    default_class_map = CIFAR100_ASYMMETRIC_MAP
    class_names = None  # read from the data set's meta file
    folder = "cifar-100-python"
    train_files = ("train",)
    test_files = ("test",)
    label_key = "fine_labels"
    torchvision_name = "CIFAR100"
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)

    def __init__(self, coarse: bool = False, **kwargs) -> None:
        self.coarse = coarse
        if coarse:  # before the base class reads the default map into its noise
            self.num_classes = 20
            self.label_key = "coarse_labels"
            self.default_class_map = {i: (i + 1) % 20 for i in range(20)}
        super().__init__(**kwargs)


class _CIFARNMixin:
    """Replace CIFAR's training labels by a CIFAR-N label set after checking the clean labels."""

    label_keys: ClassVar[dict[str, str]]
    file_name: str

    def _init_cifar_n(self, label_set: str, labels_file: str | None) -> None:
        if label_set not in self.label_keys:
            raise ValueError(
                f"label_set must be one of {sorted(self.label_keys)}; got {label_set!r}."
            )
        self.label_set = label_set
        self.labels_file = labels_file

    def _labels_path(self) -> Path:
        return Path(self.labels_file or Path(self.data_dir) / self.file_name).expanduser()

    def has_real_noise(self) -> bool:
        return True

    def load_splits(self) -> DataSplits:
        splits = self.load_pool()
        noisy, clean = read_cifar_n(
            self._labels_path(), self.label_keys[self.label_set], self._clean_key()
        )
        if len(clean) != len(splits.train_labels) or not torch.equal(clean, splits.train_labels):
            mismatches = (
                int((clean != splits.train_labels).sum())
                if len(clean) == len(splits.train_labels)
                else "all"
            )
            raise ValueError(
                f"{self._labels_path()} does not belong to these CIFAR labels: its clean labels "
                f"differ from the {type(self).__name__} training labels ({mismatches} of "
                f"{len(clean)} differ). Use CIFAR-10_human.pt with CIFAR-10 and CIFAR-100_human.pt "
                "with CIFAR-100, and the original training order."
            )
        splits.train_noisy_labels = noisy
        return splits

    def _clean_key(self) -> str:
        return "clean_label"


def read_cifar_n(path: Path, noisy_key: str, clean_key: str) -> tuple[Tensor, Tensor]:
    """``(noisy, clean)`` labels from an official CIFAR-N ``*_human.pt`` file."""
    if not path.is_file():
        raise FileNotFoundError(
            f"CIFAR-N label file {path} not found. Download it from {CIFAR_N_URL} and pass "
            "--data.labels_file PATH (or put it in data_dir)."
        )
    content = load_cifar_n_file(path)
    if not isinstance(content, dict) or noisy_key not in content or clean_key not in content:
        keys = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise ValueError(f"{path} has no '{noisy_key}' / '{clean_key}' entries (found {keys}).")
    return (
        torch.as_tensor(np.asarray(content[noisy_key])).long(),
        torch.as_tensor(np.asarray(content[clean_key])).long(),
    )


@register_datamodule("cifar10n", config="zoo/configs/cifar10n/base.yaml")
class CIFAR10NDataModule(_CIFARNMixin, CIFAR10DataModule):
    """CIFAR-10 with the human noisy labels of CIFAR-10N (Wei et al. 2022).

    Label sets: ``aggre`` (9.0% noise), ``random1``/``random2``/``random3`` (about 17-18%),
    ``worst`` (40.2%). The file's clean labels must equal the CIFAR-10 training labels.

    Args:
        label_set: Which CIFAR-10N labels to train on.
        labels_file: Path of ``CIFAR-10_human.pt``; ``data_dir/CIFAR-10_human.pt`` by default.
        **kwargs: See :class:`CIFAR10DataModule` (noise arguments are ignored: the noise is real).

    Example:
        >>> import tempfile
        >>> from ln_lightning.data.synthetic import write_cifar10n
        >>> folder = tempfile.mkdtemp()
        >>> _ = write_cifar10n(folder)  # CIFAR-10 batches and a CIFAR-10_human.pt label file
        >>> data = CIFAR10NDataModule(data_dir=folder, label_set="worst")
        >>> data.setup()
        >>> data.has_real_noise(), data.noise_spec, round(data.noise.realised_rate, 2)
        (True, None, 0.34)
    """

    label_keys: ClassVar[dict[str, str]] = {
        "aggre": "aggre_label",
        "random1": "random_label1",
        "random2": "random_label2",
        "random3": "random_label3",
        "worst": "worse_label",
    }
    file_name = "CIFAR-10_human.pt"

    annotator_keys: ClassVar[tuple[str, ...]] = ("random_label1", "random_label2", "random_label3")

    def __init__(self, label_set: str = "worst", labels_file: str | None = None, **kwargs) -> None:
        kwargs.setdefault("noise_type", "none")
        super().__init__(**kwargs)
        self._init_cifar_n(label_set, labels_file)
        self._annotator_labels: Tensor | None = None

    @property
    def annotator_labels(self) -> Tensor:
        """The three independent human labels of every training image, ``(50000, 3)``.

        In the training pool's order (``NoisySample.index``); used by
        :class:`~ln_lightning.callbacks.AnnotatorNLL` (the paper's Table 4).
        """
        if self._annotator_labels is None:
            columns = [read_cifar_n(self._labels_path(), key, "clean_label")[0]
                       for key in self.annotator_keys]  # fmt: skip
            self._annotator_labels = torch.stack(columns, 1)
        return self._annotator_labels


@register_datamodule("cifar100n", config="zoo/configs/cifar100n/base.yaml")
class CIFAR100NDataModule(_CIFARNMixin, CIFAR100DataModule):
    """CIFAR-100 with the human noisy labels of CIFAR-100N (40.2% noise).

    Args:
        label_set: ``noisy`` (fine labels); with ``coarse=True`` the coarse noisy labels are used.
        labels_file: Path of ``CIFAR-100_human.pt``; ``data_dir/CIFAR-100_human.pt`` by default.
        **kwargs: See :class:`CIFAR100DataModule`.

    Example:
        >>> import tempfile
        >>> from ln_lightning.data.synthetic import write_cifar100n
        >>> folder = tempfile.mkdtemp()
        >>> _ = write_cifar100n(folder)
        >>> data = CIFAR100NDataModule(data_dir=folder, label_set="noisy")
        >>> data.setup()
        >>> data.num_classes, round(data.noise.realised_rate, 2)  # every other label shifted
        (100, 0.5)
    """

    label_keys: ClassVar[dict[str, str]] = {"noisy": "noisy_label"}
    file_name = "CIFAR-100_human.pt"

    def __init__(self, label_set: str = "noisy", labels_file: str | None = None, **kwargs) -> None:
        kwargs.setdefault("noise_type", "none")
        super().__init__(**kwargs)
        self._init_cifar_n(label_set, labels_file)
        if self.coarse:
            self.label_keys = {"noisy": "noisy_coarse_label"}

    def _clean_key(self) -> str:
        return "clean_coarse_label" if self.coarse else "clean_label"
