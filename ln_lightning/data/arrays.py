"""Your own arrays as a data module: from a file on the command line, or tensors in Python."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ln_lightning.data.base import NoisyLabelDataModule
from ln_lightning.data.dataset import InputSource
from ln_lightning.data.splits import DataSplits
from ln_lightning.labels import UNKNOWN
from ln_lightning.registry import register_datamodule

__all__ = ["ARRAY_KEYS", "ArrayDataModule", "dataset_labels", "load_arrays"]

#: What an arrays file may hold (``inputs`` and ``labels`` are required).
ARRAY_KEYS = ("inputs", "labels", "clean_labels", "class_names", "test_inputs", "test_labels")


def dataset_labels(dataset: Dataset) -> Tensor:
    """Labels of a map-style dataset of ``(input, label)`` items."""
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return torch.as_tensor(targets).long()
    return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))])


def load_arrays(path: str | Path) -> dict[str, Any]:
    """Read an arrays file: ``.npz`` (numpy) or ``.pt`` (``torch.save`` of a dict). Integer
    inputs (``uint8`` images) become ``float32`` with the same values (scale them yourself).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: For another suffix, or without ``inputs`` and ``labels``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"the arrays file {path} does not exist.")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as content:
            arrays: Mapping[str, Any] = {key: content[key] for key in content.files}
    elif path.suffix in (".pt", ".pth"):
        arrays = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(arrays, Mapping):
            raise ValueError(f"{path} holds a {type(arrays).__name__}, not a dict of arrays.")
    else:
        raise ValueError(f"{path}: give an .npz (numpy) or .pt (torch.save of a dict) file.")
    missing = [key for key in ("inputs", "labels") if key not in arrays]
    if missing:
        raise ValueError(
            f"{path} needs the arrays {missing}; it holds {sorted(arrays)}. Save inputs (N, ...) "
            f"and labels (N,), optionally {', '.join(ARRAY_KEYS[2:])}."
        )
    unknown = sorted(set(arrays) - set(ARRAY_KEYS))
    if unknown:
        raise ValueError(f"{path} holds arrays this does not know: {unknown}; use {ARRAY_KEYS}.")
    converted = {}
    for key, value in arrays.items():
        if key == "class_names":
            converted[key] = [str(name) for name in value]
        else:
            converted[key] = torch.as_tensor(
                np.asarray(value) if not isinstance(value, Tensor) else value
            )
    for key in ("inputs", "test_inputs"):  # integer pixels (uint8 images): float values as given
        if key in converted and not converted[key].is_floating_point():
            converted[key] = converted[key].float()
    return converted


@register_datamodule("arrays", config="zoo/configs/own/arrays.yaml")
class ArrayDataModule(NoisyLabelDataModule):
    """Your own arrays with the library's noise, splits, batches and outputs.

    From the command line, ``--data ln_lightning.data.ArrayDataModule --data.path data.npz``: the
    file (``.npz``, or ``.pt`` holding a dict) has ``inputs`` (``(N, ...)``) and ``labels``
    (``(N,)``, the labels as given), optionally ``clean_labels`` (the truth, ``-1`` where
    unknown), ``class_names`` and a clean test set ``test_inputs`` / ``test_labels``. In Python,
    :meth:`from_arrays` takes the tensors and :meth:`from_dataset` datasets of ``(input,
    label)`` items.

    The given labels are trained on as they are (they are the noisy labels; the truth is known
    only where ``clean_labels`` says). Injected noise (``noise_type`` other than ``none``)
    corrupts the given labels, which are then taken as the truth (the experiment of corrupting
    a clean set on purpose). Without a test set there is no test accuracy.

    Args:
        path: The arrays file.
        num_classes: Number of classes; by default the class names', or the largest label + 1.
        class_map: Source -> target class, for ``noise_type="asymmetric"``.
        input_shape: Shape of one input; read from the first input by default.
        **kwargs: See :class:`NoisyLabelDataModule` (``noise_type`` defaults to ``none``).

    Example:
        >>> import tempfile, numpy as np
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "data.npz"
        >>> np.savez(path, inputs=np.random.rand(50, 4).astype("float32"), labels=np.arange(50) % 3,
        ...          test_inputs=np.zeros((9, 4), "float32"), test_labels=np.arange(9) % 3)
        >>> data = ArrayDataModule(str(path))  # the labels as given are the noisy ones
        >>> data.setup()
        >>> data.num_classes, data.input_shape, len(data.split("val")), len(data.test_set)
        (3, (4,), 5, 9)
    """

    def __init__(
        self,
        path: str,
        num_classes: int | None = None,
        class_map: dict[int, int] | None = None,
        input_shape: tuple[int, ...] | None = None,
        **kwargs: Any,
    ) -> None:
        arrays = load_arrays(path)
        self.path = path
        self._adopt(
            arrays["inputs"], arrays["labels"],
            arrays.get("test_inputs"), arrays.get("test_labels"),
            clean_labels=arrays.get("clean_labels"), class_names=arrays.get("class_names"),
            num_classes=num_classes, class_map=class_map, input_shape=input_shape, **kwargs,
        )  # fmt: skip

    def _adopt(
        self,
        train_inputs: InputSource,
        train_labels: Tensor,
        test_inputs: InputSource | None,
        test_labels: Tensor | None,
        *,
        clean_labels: Tensor | None = None,
        class_names: Sequence[str] | None = None,
        num_classes: int | None = None,
        class_map: dict[int, int] | None = None,
        input_shape: tuple[int, ...] | None = None,
        **kwargs: Any,
    ) -> None:
        """The constructor's work, shared by the file and the in-memory routes."""
        if (test_inputs is None) != (test_labels is None):
            raise ValueError("give both test inputs and test labels, or neither.")
        lengths = {"training inputs": len(train_inputs), "training labels": len(train_labels)}
        if clean_labels is not None:
            lengths["clean labels"] = len(clean_labels)
        if len(set(lengths.values())) > 1:
            raise ValueError(f"inputs and labels must have the same length; got {lengths}.")
        if test_inputs is not None and len(test_inputs) != len(test_labels):
            raise ValueError(
                f"the test split has {len(test_inputs)} inputs for {len(test_labels)} labels."
            )
        for what, labels in (("training", train_labels), ("test", test_labels)):
            if labels is not None and len(labels) == 0:
                raise ValueError(f"the {what} split is empty: pass at least one example.")
        train_labels = torch.as_tensor(train_labels)
        test_labels = None if test_labels is None else torch.as_tensor(test_labels)
        if num_classes is None:
            labelled = [train_labels] + ([test_labels] if test_labels is not None else [])
            largest = int(max(int(labels.max()) for labels in labelled)) + 1
            num_classes = len(class_names) if class_names is not None else largest
        self.num_classes = num_classes
        if class_names is not None:
            if len(class_names) != num_classes:
                raise ValueError(
                    f"{len(class_names)} class names for {num_classes} classes: give one name "
                    "per class."
                )
            self.class_names = list(class_names)
        if input_shape is None:
            first = train_inputs[0]
            first = first[0] if isinstance(first, (tuple, list)) else first
            input_shape = tuple(torch.as_tensor(first).shape)
        self.input_shape = tuple(input_shape)
        noise_type = kwargs.pop("noise_type", "none" if class_map is None else "asymmetric")
        self.injected = noise_type != "none"  # read by has_real_noise() in the base's checks
        super().__init__(noise_type=noise_type, class_map=class_map, **kwargs)
        clean = (
            torch.as_tensor(clean_labels).long()
            if clean_labels is not None
            else torch.full((len(train_labels),), UNKNOWN)
        )
        self._splits = DataSplits(
            train_inputs=train_inputs,
            # Injected noise corrupts the given labels, which are then the truth; otherwise the
            # given labels are the noisy ones and the truth is whatever clean_labels says.
            train_labels=train_labels if self.injected else clean,
            train_noisy_labels=None if self.injected else train_labels,
            test_inputs=test_inputs,
            test_labels=test_labels,
            class_names=class_names,
        )

    def has_real_noise(self) -> bool:
        return not self.injected

    def load_splits(self) -> DataSplits:
        return self._splits

    @classmethod
    def from_arrays(
        cls,
        train_inputs: InputSource,
        train_labels: Tensor,
        test_inputs: InputSource | None = None,
        test_labels: Tensor | None = None,
        num_classes: int | None = None,
        class_map: dict[int, int] | None = None,
        *,
        clean_labels: Tensor | None = None,
        class_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> ArrayDataModule:
        """A data module over your own in-memory data (tensors, or datasets of inputs).

        Example:
            >>> import torch
            >>> x, y = torch.randn(100, 5), torch.arange(100) % 3
            >>> dm = ArrayDataModule.from_arrays(x, y, x[:10], y[:10], noise_type="symmetric")
            >>> dm.setup(); len(dm.train_set), len(dm.val_set), dm.num_classes
            (90, 10, 3)
        """
        module = cls.__new__(cls)
        module.path = None
        module._adopt(
            train_inputs, train_labels, test_inputs, test_labels, clean_labels=clean_labels,
            class_names=class_names, num_classes=num_classes, class_map=class_map, **kwargs,
        )  # fmt: skip
        return module

    @classmethod
    def from_dataset(
        cls,
        train_dataset: Dataset,
        test_dataset: Dataset | None = None,
        num_classes: int | None = None,
        input_shape: tuple[int, ...] | None = None,
        **kwargs: Any,
    ) -> ArrayDataModule:
        """A data module over map-style datasets of ``(input, label)`` items.

        Labels are read from a ``targets`` attribute (torchvision's convention) when present,
        otherwise by iterating the dataset once. Inputs are read lazily, with the dataset's own
        transform.
        """
        return cls.from_arrays(
            train_dataset,
            dataset_labels(train_dataset),
            test_dataset,
            None if test_dataset is None else dataset_labels(test_dataset),
            num_classes,
            input_shape=input_shape,
            **kwargs,
        )
