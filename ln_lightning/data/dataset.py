"""Datasets whose samples carry the observed label, the clean label and the sample index."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from ln_lightning.labels import check_labels

#: Where inputs come from: a tensor ``(N, ...)`` indexed directly, or a map-style dataset whose
#: item ``i`` is the input or an ``(input, label)`` pair (the label is ignored).
InputSource = Tensor | Dataset


class NoisySample(NamedTuple):
    """One example (or, after collation, one batch).

    Attributes:
        input: The input tensor.
        target: The observed, possibly noisy, label.
        clean_target: The true label (equal to ``target`` on clean splits; ``-1`` if unknown;
            ``None`` for a plain ``(inputs, labels)`` batch, see :func:`unpack_batch`).
        index: Position in the data set's training pool (or test set), stable across epochs,
            so per-example quantities (is-corrupted mask, scores) can be looked up (``None``
            for a plain batch).

    Example:
        >>> import torch
        >>> sample = NoisySample(torch.zeros(3), torch.tensor(1), torch.tensor(0), torch.tensor(7))
        >>> int(sample.target), int(sample.clean_target), int(sample.index)  # a wrong label
        (1, 0, 7)
    """

    input: Tensor
    target: Tensor
    clean_target: Tensor | None
    index: Tensor | None


class NoisyLabelDataset(Dataset):
    """A view of ``indices`` into a pool of inputs with noisy and clean labels.

    Args:
        inputs: All inputs of the pool (see :data:`InputSource`).
        noisy_labels: Observed labels of the pool, shape ``(N,)``.
        clean_labels: True labels of the pool, shape ``(N,)``.
        indices: Which pool positions this split holds.
        transform: Applied to each input (e.g. augmentation for the training split).

    Example:
        >>> import torch
        >>> pool = torch.arange(10.0).unsqueeze(1)
        >>> noisy, clean = torch.tensor([0, 1] * 5), torch.tensor([0, 0] * 5)
        >>> val = NoisyLabelDataset(pool, noisy, clean, indices=torch.tensor([3, 8]))
        >>> len(val), val[0].input.tolist(), int(val[0].index)
        (2, [3.0], 3)
    """

    def __init__(
        self,
        inputs: InputSource,
        noisy_labels: Tensor,
        clean_labels: Tensor,
        indices: Tensor,
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        if not len(inputs) == len(noisy_labels) == len(clean_labels):
            raise ValueError(
                f"inputs, noisy_labels and clean_labels must have the same length; got "
                f"{len(inputs)}, {len(noisy_labels)}, {len(clean_labels)}."
            )
        self.inputs = inputs
        self.noisy_labels = noisy_labels
        self.clean_labels = clean_labels
        self.indices = indices
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> NoisySample:
        index = self.indices[item]
        x = self.inputs[index] if isinstance(self.inputs, Tensor) else self.inputs[int(index)]
        if isinstance(x, (tuple, list)):
            x = x[0]
        if self.transform is not None:
            x = self.transform(x)
        return NoisySample(x, self.noisy_labels[index], self.clean_labels[index], index)

    def __getitems__(self, items: list[int]) -> Sequence[NoisySample]:
        """The examples of a batch (what ``DataLoader`` asks for), read at once where the inputs
        allow: a tensor without a transform, or images in memory with a ``batched`` transform
        (:mod:`ln_lightning.data.image_cache`), as a :class:`SampleBatch`; one by one
        otherwise. The examples are the same either way."""
        index = self.indices[torch.as_tensor(items, dtype=torch.long)]
        if isinstance(self.inputs, Tensor) and self.transform is None:
            inputs = self.inputs[index]
        elif getattr(self.inputs, "in_memory", False) and getattr(self.transform, "batched", False):
            inputs = self.transform.batch_from(self.inputs, index)
        else:
            return [self[item] for item in items]
        noisy, clean = self.noisy_labels[index], self.clean_labels[index]
        return SampleBatch(NoisySample(inputs, noisy, clean, index))


class SampleBatch(Sequence):
    """A batch read at once: a sequence of its examples for any ``collate_fn``, and the batch
    itself for :func:`collate_samples`, which skips taking it apart and stacking it again.

    Example:
        >>> import torch
        >>> batch = SampleBatch(NoisySample(torch.zeros(3, 2), torch.tensor([0, 1, 2]),
        ...                                 torch.tensor([0, 1, 1]), torch.tensor([5, 6, 7])))
        >>> len(batch), int(batch[2].clean_target), collate_samples(batch) is batch.sample
        (3, 1, True)
    """

    def __init__(self, sample: NoisySample) -> None:
        self.sample = sample

    def __len__(self) -> int:
        return len(self.sample.target)

    def __getitem__(self, i: int) -> NoisySample:  # type: ignore[override]
        return NoisySample(*(field[i] for field in self.sample))


def collate_samples(items: Sequence[Any]) -> Any:
    """The library's ``collate_fn``: a :class:`SampleBatch` as it is, anything else as
    PyTorch's ``default_collate`` makes it."""
    if isinstance(items, SampleBatch):
        return items.sample
    return default_collate(items)


def unpack_batch(batch: Any) -> NoisySample:
    """Any supported batch as a :class:`NoisySample` ``(input, target, clean_target, index)``.

    Accepts the library's :class:`NoisySample` batches (returned as they are),
    ``(inputs, noisy labels, clean labels, indices)`` tuples and plain ``(inputs, labels)``
    pairs, whose clean labels and indices are ``None`` (unknown).

    Example:
        >>> import torch
        >>> sample = unpack_batch((torch.zeros(2, 3), torch.tensor([0, 1])))
        >>> sample.target.tolist(), sample.clean_target, sample.index
        ([0, 1], None, None)
    """
    if isinstance(batch, NoisySample):
        return batch
    if isinstance(batch, (tuple, list)) and len(batch) == 4:
        return NoisySample(*batch)
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return NoisySample(batch[0], batch[1], None, None)
    raise TypeError(
        "expected a batch (inputs, labels) or (inputs, noisy labels, clean labels, indices); "
        f"got {type(batch).__name__}."
    )


def check_batch_labels(batch: Any, num_classes: int) -> None:
    """Raise ``ValueError`` when a batch of the library holds a label outside ``[0, K)`` (or a
    clean label outside it other than ``-1``, unknown); other batches pass as they are.

    Example:
        >>> import torch
        >>> check_batch_labels(NoisySample(torch.zeros(2), torch.tensor([0, 3]), None, None), 3)
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ValueError: the batch's labels must lie in [0, 3); got values in [0, 3]...
    """
    if not isinstance(batch, NoisySample):
        return
    check_labels(batch.target, num_classes, what="the batch's labels", values=True)
    if batch.clean_target is not None:
        check_labels(
            batch.clean_target, num_classes, what="the batch's clean labels",
            allow_unknown=True, values=True,
        )  # fmt: skip
