"""The data contract: every member of a data module that the rest of the library uses.

The model, the callbacks (``label_issues.csv``, predictions) and ``ln-fit`` read a data module
through these members and nothing else. :class:`~ln_lightning.data.NoisyLabelDataModule`
provides all of them; a data module of your own that does not subclass it provides them too
(docs/subclassing.md, "Writing a data module"). The model checks it once, when training
starts, and names what is missing in one line. (``annotator_labels``, the several annotators
of CIFAR-N, is optional: only ``AnnotatorNLL`` reads it.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from torch import Tensor

from ln_lightning.data.dataset import NoisyLabelDataset

__all__ = ["DataContractError", "NoisyLabelData", "check_data_contract", "missing_members"]


class NoisyLabelData(Protocol):
    """What the library reads of a data module (a ``LightningDataModule`` with these members).

    Attributes:
        num_classes: ``K``.
        input_shape: The shape of one input, e.g. ``(1, 28, 28)`` (``None`` if it varies).
        class_names: The name of each class, or ``None``.
        batch_size: Of the loaders, also of the library's inference passes.
        num_folds: ``0``, or the number of folds of a k-fold run (the validation split is then
            the held-out fold).
        example_id_column: ``path`` or ``row_id``: what :meth:`example_ids` name.
        inference_data_module: The data module class that labels new inputs with
            :meth:`inference_settings` (``None``: this one).

    Example:
        >>> from ln_lightning import DigitsDataModule
        >>> missing_members(DigitsDataModule())  # the base data module provides every member
        []
    """

    num_classes: int
    input_shape: Sequence[int] | None
    class_names: Sequence[str] | None
    batch_size: int
    num_folds: int
    example_id_column: str
    inference_data_module: type | None

    def split(self, name: str, eval_transform: bool = False) -> NoisyLabelDataset:
        """The labelled ``train``, ``val`` or ``test`` split (or the unlabelled ``predict``
        inputs) as a :class:`~ln_lightning.data.NoisyLabelDataset`; ``eval_transform`` gives
        the training split the evaluation transform."""
        ...

    def example_ids(self, split: str) -> Sequence[str] | None:
        """A name (file path, row id) for each example of ``split``, by index, or ``None``."""
        ...

    def knows_clean_labels(self, split: str) -> bool:
        """Whether any example of ``split`` has a known true label."""
        ...

    def has_labels(self, split: str) -> bool:
        """Whether ``split`` has labels (the unlabelled ``predict`` inputs have none)."""
        ...

    @property
    def has_test_set(self) -> bool:
        """Whether there is a clean test split."""
        ...

    def no_test_set_message(self) -> str:
        """What to say when there is no test split, with the option that gives one."""
        ...

    def prediction_split(self) -> str:
        """The split ``ln-fit predict`` reads."""
        ...

    def inference_settings(self) -> dict[str, Any]:
        """Constructor arguments that rebuild the evaluation transform and classes without the
        training data (recorded in every checkpoint; ``{}`` if there are none)."""
        ...

    def true_transition_matrix(self) -> Tensor | None:
        """The true ``K x K`` noise matrix where known (``ForwardCorrection`` may read it)."""
        ...


#: The members of :class:`NoisyLabelData`, in the order above.
MEMBERS = (
    *NoisyLabelData.__annotations__,
    "split", "example_ids", "knows_clean_labels", "has_labels", "has_test_set",
    "no_test_set_message", "prediction_split", "inference_settings", "true_transition_matrix",
)  # fmt: skip


class DataContractError(ValueError):
    """A data module lacks members of :class:`NoisyLabelData`; one line naming them.

    Example:
        >>> issubclass(DataContractError, ValueError)  # ln-fit prints it as one line
        True
    """


def missing_members(datamodule: Any) -> list[str]:
    """The members of :class:`NoisyLabelData` that ``datamodule`` lacks (data attributes set
    in ``__init__`` count; a property counts without being read)."""
    return [
        name for name in MEMBERS
        if not hasattr(type(datamodule), name) and name not in vars(datamodule)
    ]  # fmt: skip


def check_data_contract(datamodule: Any) -> None:
    """Raise :class:`DataContractError` naming every member of the contract ``datamodule``
    lacks.

    Example:
        >>> import lightning.pytorch as pl
        >>> check_data_contract(pl.LightningDataModule())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ln_lightning.data.contract.DataContractError: LightningDataModule lacks ... num_classes, ...
    """
    missing = missing_members(datamodule)
    if missing:
        raise DataContractError(
            f"{type(datamodule).__name__} lacks {len(missing)} member(s) of the data contract "
            f"that the library reads: {', '.join(missing)}. Subclass "
            "ln_lightning.data.NoisyLabelDataModule, or add them (docs/subclassing.md, "
            "'Writing a data module'; ln_lightning.data.contract.NoisyLabelData lists them)."
        )
