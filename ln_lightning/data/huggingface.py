"""Image-classification data sets of Hugging Face ``datasets``: the hub, ``save_to_disk``
folders, parquet files and ``imagefolder`` trees (``pip install "ln-lightning[hf]"``)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from ln_lightning.data.base import NoisyLabelDataModule
from ln_lightning.data.image_folder import GREY_MODES, ImageFolderDataModule, TimmImageTransforms
from ln_lightning.data.reviewed import reviewed_rows
from ln_lightning.data.splits import DataSplits
from ln_lightning.labels import UNKNOWN
from ln_lightning.registry import register_datamodule

__all__ = ["HFImageDataModule", "HFImages", "load_hf_dataset"]

MISSING = (
    "HFImageDataModule needs Hugging Face datasets: pip install 'ln-lightning[hf]' "
    "(or pip install datasets)."
)


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise ImportError(MISSING) from None
    return datasets


def load_hf_dataset(path: str, config_name: str | None = None) -> Any:
    """A ``DatasetDict`` from ``path``: a folder written by ``save_to_disk``, a parquet file or a
    folder of parquet files (``train-*.parquet``, ``test-*.parquet``), a folder of images in the
    ``imagefolder`` layout (``train/<class>/``, ``test/<class>/``), or a hub name
    (``"cifar10"``, needs internet the first time)."""
    datasets = _datasets()
    local = Path(path).expanduser()
    if local.is_dir() and any((local / f).is_file() for f in ("dataset_dict.json", "state.json")):
        loaded = datasets.load_from_disk(str(local))
    elif local.is_file() and local.suffix == ".parquet":
        loaded = datasets.load_dataset("parquet", data_files={"train": str(local)})
    elif local.is_dir() and any(local.glob("*.parquet")):
        loaded = datasets.load_dataset("parquet", data_dir=str(local))
    elif local.is_dir():
        loaded = datasets.load_dataset("imagefolder", data_dir=str(local))
    elif local.suffix or local.is_absolute() or str(path).startswith("."):
        raise FileNotFoundError(
            f"{path} does not exist: give a save_to_disk folder, a .parquet file, a folder of "
            "parquet files or images, or a Hugging Face hub name such as 'cifar10'."
        )
    else:
        loaded = datasets.load_dataset(path, config_name)
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


class HFImages(Dataset):
    """The images of one column of a Hugging Face data set, read lazily as PIL images.

    Example:
        >>> import datasets
        >>> from PIL import Image
        >>> table = datasets.Dataset.from_dict({"img": [Image.new("RGB", (4, 3))] * 2})
        >>> images = HFImages(table.cast_column("img", datasets.Image()), "img", mode="L")
        >>> len(images), images[1].mode, images[1].size
        (2, 'L', (4, 3))
    """

    def __init__(self, dataset: Any, column: str, mode: str = "RGB") -> None:
        self.dataset, self.column, self.mode = dataset.select_columns([column]), column, mode

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Image.Image:
        return self.dataset[int(index)][self.column].convert(self.mode)


@register_datamodule("huggingface", config="zoo/configs/own/huggingface.yaml")
class HFImageDataModule(TimmImageTransforms, NoisyLabelDataModule):
    """An image-classification data set of Hugging Face ``datasets``, with the library's noise,
    splits, outputs and timm's transforms.

    ``path`` is a hub name (``cifar10``, ``beans``, ...; downloaded by ``datasets``), a folder
    written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``, a ``.parquet`` file, a
    folder of parquet files, or a folder of images in ``datasets``' ``imagefolder`` layout. The
    image column (a ``datasets.Image`` feature) and the label column (a ``ClassLabel``) are found
    from the features unless named; class names come from the ``ClassLabel`` (else from the
    labels, sorted). The labels are trained on as they are given (they are the noisy ones; no
    truth is known) unless noise is injected on top (then they are taken as the truth).

    ``test_split`` is the clean test set when the data set has it (``None``: no test set).
    ``label_issues.csv``, ``label_issues.html`` and ``cleaned_labels.csv`` name each example by
    its row in ``train_split`` (``row_id``); ``labels_file`` reads such a ``row_id,label`` file
    back: the rows it lists, with its labels, are the training pool (retraining on
    ``cleaned_labels.csv`` leaves the flagged rows out).

    Args:
        path: Where the data set is (see above).
        image_column: The column of images; the first ``Image`` feature by default.
        label_column: The column of labels; the first ``ClassLabel`` feature by default.
        train_split: The split to train (and validate) on.
        test_split: The clean test split, if the data set has it; ``None`` for none.
        config_name: The hub data set's configuration, where it has several.
        labels_file: ``row_id,label`` rows (``cleaned_labels.csv`` of a run) to train on.
        image_size: Side of the square images the network sees.
        grayscale: One channel (``True``) or RGB (``False``); ``None`` decides from the first
            image.
        augment: Augment training images with timm's training transform.
        crop_pct: Fraction of the resized image the centre crop keeps (the backbone's default).
        cache: Decode the images once into memory (``auto``, ``memory``) or read the rows in
            every epoch (``none``); see :class:`~ln_lightning.data.ImageFolderDataModule`.
        **kwargs: See :class:`~ln_lightning.data.NoisyLabelDataModule`.

    Example:
        >>> import tempfile, datasets
        >>> from PIL import Image
        >>> features = datasets.Features(
        ...     {"img": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])}
        ... )
        >>> rows = {"img": [Image.new("L", (8, 8), 40 * (i % 2)) for i in range(20)],
        ...         "label": [i % 2 for i in range(20)]}
        >>> folder = tempfile.mkdtemp()
        >>> datasets.Dataset.from_dict(rows, features=features).save_to_disk(folder)
        >>> data = HFImageDataModule(folder, image_size=16, test_split=None)
        >>> data.setup()
        >>> data.class_names, data.input_shape, len(data.train_set) + len(data.val_set)
        (['cat', 'dog'], (1, 16, 16), 20)
    """

    example_id_column = "row_id"
    #: New image files are labelled (``ln-fit predict --ckpt_path ... --data.predict_root``)
    #: by the folder module with this run's settings, recorded in every checkpoint.
    inference_data_module: type | None = ImageFolderDataModule

    def __init__(
        self,
        path: str,
        image_column: str | None = None,
        label_column: str | None = None,
        train_split: str = "train",
        test_split: str | None = "test",
        config_name: str | None = None,
        labels_file: str | None = None,
        image_size: int = 224,
        grayscale: bool | None = None,
        augment: bool = True,
        crop_pct: float | None = None,
        cache: str = "auto",
        noise_type: str = "none",
        noise_rate: float = 0.0,
        **kwargs: Any,
    ) -> None:
        self._image_options(image_size, augment, crop_pct, cache)
        self.injected = noise_type != "none"  # read by has_real_noise() in the base's checks
        super().__init__(noise_type=noise_type, noise_rate=noise_rate, **kwargs)
        self.path, self.config_name, self.labels_file = path, config_name, labels_file
        self.dataset = load_hf_dataset(path, config_name)
        splits = list(self.dataset)
        if train_split not in self.dataset:
            raise ValueError(f"{path} has no split {train_split!r}; its splits: {splits}.")
        if test_split is not None and test_split not in self.dataset:
            if test_split != "test":  # a name given on purpose
                raise ValueError(
                    f"{path} has no split {test_split!r}; its splits: {splits} "
                    "(--data.test_split null: no test set)."
                )
            test_split = None  # a data set without a test split: no test accuracy
        self.train_split, self.test_split = train_split, test_split
        features = self.dataset[train_split].features
        kinds = _datasets()
        self.image_column = image_column or self._column(features, kinds.Image, "image_column")
        self.label_column = label_column or self._column(features, kinds.ClassLabel, "label_column")
        for column in (self.image_column, self.label_column):
            if column not in features:
                raise ValueError(f"{path} has no column {column!r}; its columns: {list(features)}.")
        labels = features[self.label_column]
        if hasattr(labels, "names"):
            self.class_names = list(labels.names)
        else:
            values = sorted({str(v) for v in self.dataset[train_split][self.label_column]})
            self.class_names = values
        self.num_classes = len(self.class_names)
        if grayscale is None:
            first = self.dataset[train_split][0][self.image_column]
            grayscale = first.mode in GREY_MODES
        self.grayscale = grayscale
        self.input_shape = (1 if grayscale else 3, image_size, image_size)

    def _column(self, features: Any, kind: type, option: str) -> str:
        found = [name for name, feature in features.items() if isinstance(feature, kind)]
        if not found:
            raise ValueError(
                f"{self.path} has no {kind.__name__} column; name it with --data.{option} "
                f"(its columns: "
                f"{', '.join(f'{n} ({type(f).__name__})' for n, f in features.items())})."
            )
        return found[0]

    def has_real_noise(self) -> bool:
        return not self.injected

    def no_test_set_message(self) -> str:
        return (
            f"{type(self).__name__}: {self.path} has no test split, so there is no test accuracy "
            f"(its splits: {list(self.dataset)}; choose one with --data.test_split)."
        )

    def _labels(self, split: str) -> torch.Tensor:
        values = self.dataset[split][self.label_column]
        if isinstance(self.dataset[split].features[self.label_column], _datasets().ClassLabel):
            return torch.tensor(values, dtype=torch.long)
        index = {name: i for i, name in enumerate(self.class_names)}
        unknown = sorted({str(v) for v in values} - set(index))
        if unknown:
            raise ValueError(
                f"the {split} split has labels {unknown[:5]} that are not classes of "
                f"{self.train_split} {self.class_names[:20]}."
            )
        return torch.tensor([index[str(v)] for v in values], dtype=torch.long)

    def _listed_rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows and labels of ``labels_file`` (``row_id,label``, labels by name; a reviewed
        file's rows decided ``drop`` left out), every fault named by its line."""
        index = {name: i for i, name in enumerate(self.class_names)}
        with Path(self.labels_file).expanduser().open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
        if not rows or not {"row_id", "label"} <= set(rows[0]):
            raise ValueError(f"{self.labels_file} needs the columns row_id,label.")
        kept = reviewed_rows(rows, self.labels_file, "row_id")  # a reviewed file's drops left out
        size = len(self.dataset[self.train_split])
        for line, row in kept:
            if row["label"].strip() not in index:
                raise ValueError(
                    f"{self.labels_file}:{line}: the label {row['label'].strip()!r} is not a "
                    f"class of {self.train_split} {self.class_names[:20]}."
                )
            if not row["row_id"].strip().isdigit() or int(row["row_id"]) >= size:
                raise ValueError(
                    f"{self.labels_file}:{line}: row_id {row['row_id'].strip()!r} is not a row "
                    f"of {self.train_split} (0 to {size - 1})."
                )
        rows = [{"row_id": r["row_id"].strip(), "label": r["label"].strip()} for _, r in kept]
        ids = torch.tensor([int(r["row_id"]) for r in rows], dtype=torch.long)
        return ids, torch.tensor([index[r["label"]] for r in rows])

    def _images(self, split: str, rows: Sequence[int] | None = None) -> HFImages:
        data = self.dataset[split]
        if rows is not None:
            data = data.select(list(rows))
        return HFImages(data, self.image_column, "L" if self.grayscale else "RGB")

    def load_splits(self) -> DataSplits:
        rows = torch.arange(len(self.dataset[self.train_split]))
        given = self._labels(self.train_split)
        if self.labels_file is not None:
            rows, given = self._listed_rows()
        unknown = torch.full_like(given, UNKNOWN)
        test_inputs = test_labels = test_ids = None
        if self.test_split is not None:
            test_inputs, test_labels = self._images(self.test_split), self._labels(self.test_split)
            test_ids = [str(i) for i in range(len(test_labels))]
        splits = DataSplits(
            train_inputs=self._images(self.train_split, rows.tolist()),
            # Injected noise corrupts the given labels, which are then the truth.
            train_labels=given if self.injected else unknown,
            train_noisy_labels=None if self.injected else given,
            test_inputs=test_inputs,
            test_labels=test_labels,
            class_names=self.class_names,
            train_ids=[str(int(i)) for i in rows],
            test_ids=test_ids,
        )
        return self.cache_splits(splits)
