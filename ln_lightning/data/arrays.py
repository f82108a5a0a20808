"""Your own tensors or datasets as a data module, with the library's noise, splits and batches."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ln_lightning.data.base import NoisyLabelDataModule
from ln_lightning.data.dataset import InputSource
from ln_lightning.data.splits import DataSplits

__all__ = ["ArrayDataModule", "dataset_labels"]


def dataset_labels(dataset: Dataset) -> Tensor:
    """Labels of a map-style dataset of ``(input, label)`` items."""
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return torch.as_tensor(targets).long()
    return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))])


class ArrayDataModule(NoisyLabelDataModule):
    """Your own data (tensors or datasets) with the library's noise, splits and batches.

    Build it with :meth:`from_arrays` (tensors) or :meth:`from_dataset` (datasets of
    ``(input, label)`` items).
    """

    def __init__(
        self,
        train_inputs: InputSource,
        train_labels: Tensor,
        test_inputs: InputSource,
        test_labels: Tensor,
        num_classes: int | None = None,
        class_map: dict[int, int] | None = None,
        input_shape: tuple[int, ...] | None = None,
        **kwargs: Any,
    ) -> None:
        if len(train_inputs) != len(train_labels) or len(test_inputs) != len(test_labels):
            raise ValueError(
                f"inputs and labels must have the same length in each split; got "
                f"{len(train_inputs)} training inputs for {len(train_labels)} labels and "
                f"{len(test_inputs)} test inputs for {len(test_labels)} labels."
            )
        for what, labels in (("training", train_labels), ("test", test_labels)):
            if len(labels) == 0:
                raise ValueError(f"the {what} split is empty: pass at least one example.")
        train_labels, test_labels = torch.as_tensor(train_labels), torch.as_tensor(test_labels)
        if num_classes is None:
            num_classes = int(max(train_labels.max(), test_labels.max())) + 1
        self.num_classes = num_classes
        if input_shape is None:
            first = train_inputs[0]
            first = first[0] if isinstance(first, (tuple, list)) else first
            input_shape = tuple(torch.as_tensor(first).shape)
        self.input_shape = tuple(input_shape)
        kwargs.setdefault("noise_type", "none" if class_map is None else "asymmetric")
        super().__init__(class_map=class_map, **kwargs)
        self._splits = DataSplits(train_inputs, train_labels, test_inputs, test_labels)

    def load_splits(self) -> DataSplits:
        return self._splits

    @classmethod
    def from_arrays(
        cls,
        train_inputs: InputSource,
        train_labels: Tensor,
        test_inputs: InputSource,
        test_labels: Tensor,
        num_classes: int | None = None,
        class_map: dict[int, int] | None = None,
        **kwargs: Any,
    ) -> ArrayDataModule:
        """A data module over your own in-memory data, with the same noise, splits and batches.

        Example:
            >>> import torch
            >>> x, y = torch.randn(100, 5), torch.arange(100) % 3
            >>> dm = ArrayDataModule.from_arrays(x, y, x[:10], y[:10], noise_type="symmetric")
            >>> dm.setup(); len(dm.train_set), len(dm.val_set), dm.num_classes
            (90, 10, 3)
        """
        return cls(
            train_inputs, train_labels, test_inputs, test_labels, num_classes, class_map, **kwargs
        )

    @classmethod
    def from_dataset(
        cls,
        train_dataset: Dataset,
        test_dataset: Dataset,
        num_classes: int | None = None,
        input_shape: tuple[int, ...] | None = None,
        **kwargs: Any,
    ) -> ArrayDataModule:
        """A data module over map-style datasets of ``(input, label)`` items.

        Labels are read from a ``targets`` attribute (torchvision's convention) when present,
        otherwise by iterating the dataset once. Inputs are read lazily, with the dataset's own
        transform.
        """
        return cls(
            train_dataset,
            dataset_labels(train_dataset),
            test_dataset,
            dataset_labels(test_dataset),
            num_classes,
            input_shape=input_shape,
            **kwargs,
        )
