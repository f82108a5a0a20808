"""Base LightningDataModule: noise injection, the noisy validation split and the loaders."""

from __future__ import annotations

import copy
import warnings
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ln_lightning.data.dataset import InputSource, NoisyLabelDataset
from ln_lightning.data.sampling import ResumableSampler, TrainPosition, train_position
from ln_lightning.noise import (
    NOISE_TYPES,
    NoiseResult,
    expected_transition_matrix,
    inject_noise,
    load_noisy_labels,
    noise_from_labels,
    save_noisy_labels,
)

Transform = Callable[[Any], Any]
#: The splits ``predict_split`` can name.
PREDICT_SPLITS = ("test", "val", "train")


@dataclass
class DataSplits:
    """What a data module loads.

    Attributes:
        train_inputs: The training pool: a tensor ``(N, ...)`` or a dataset whose item ``i`` is
            the input (or an ``(input, label)`` pair).
        train_labels: True labels of the pool, ``(N,)``; ``-1`` where unknown (Clothing1M).
        test_inputs: Clean test inputs.
        test_labels: Clean test labels.
        train_noisy_labels: Real-world noisy labels of the pool (CIFAR-N, Clothing1M); when
            given, no synthetic noise is drawn.
        val_inputs: A provided validation split (e.g. Clothing1M's clean one) instead of a
            ``val_fraction`` cut of the noisy pool.
        val_labels: Labels of ``val_inputs``.
        class_names: Name of each class, when the data set knows them.
        train_ids: A name of each pool example (its file path), when it has one.
        test_ids: Likewise for the test examples.
        val_ids: Likewise for ``val_inputs``.
    """

    train_inputs: InputSource
    train_labels: Tensor
    test_inputs: InputSource
    test_labels: Tensor
    train_noisy_labels: Tensor | None = None
    val_inputs: InputSource | None = None
    val_labels: Tensor | None = None
    class_names: Sequence[str] | None = None
    train_ids: Sequence[str] | None = None
    test_ids: Sequence[str] | None = None
    val_ids: Sequence[str] | None = None


class NoisyLabelDataModule(pl.LightningDataModule):
    """Train / noisy validation / clean test splits with label noise.

    Subclasses only say where the data comes from (:meth:`load_splits`), set
    :attr:`num_classes`, :attr:`input_shape` and, for asymmetric noise, :attr:`default_class_map`,
    and may override :meth:`train_transform`, :meth:`eval_transform` and :meth:`train_sampler`.

    Noise is drawn once, from ``seed``, over the whole training pool (vectorised, so identical on
    every DDP rank and after a resume); the validation split (``val_fraction`` of the pool, from
    the same seed) is therefore noisy too, as in the paper; the test set stays clean. Batches are
    :class:`NoisySample` tuples ``(input, noisy label, clean label, index)``.

    Args:
        noise_type: One of :data:`ln_lightning.noise.NOISE_TYPES`.
        noise_rate: Corruption probability in [0, 1).
        class_map: Source -> target class for asymmetric noise; the data set's own map if ``None``.
        transition_matrix: ``K x K`` row-stochastic matrix for ``noise_type="transition"``.
        val_fraction: Fraction of the training pool held out as the noisy validation split.
        batch_size: Batch size of every loader.
        num_workers: DataLoader worker processes.
        seed: Seed of the noise and of the validation split (not of the model).
        noisy_labels_file: Read the pool's noisy labels from this CSV (written by
            ``save_noisy_labels_to`` or :func:`ln_lightning.noise.save_noisy_labels`) instead of
            drawing them; its clean labels must match the data.
        save_noisy_labels_to: Write the pool's ``index,clean_label,noisy_label`` CSV here.
        predict_split: The split ``ln-fit predict`` (``predict_dataloader``) runs on: ``test``
            (default), ``val`` or ``train``, always with the evaluation transform.
    """

    num_classes: int
    input_shape: tuple[int, ...]
    default_class_map: Mapping[int, int] | None = None
    #: Name of each class, where the data set has them (used in every written output).
    class_names: Sequence[str] | None = None

    def __init__(
        self,
        noise_type: str = "asymmetric",
        noise_rate: float = 0.4,
        class_map: dict[int, int] | None = None,
        transition_matrix: list[list[float]] | None = None,
        val_fraction: float = 0.1,
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        noisy_labels_file: str | None = None,
        save_noisy_labels_to: str | None = None,
        predict_split: str = "test",
    ) -> None:
        super().__init__()
        if noise_type not in NOISE_TYPES:
            raise ValueError(f"noise_type must be one of {NOISE_TYPES}; got {noise_type!r}.")
        if not 0.0 <= noise_rate < 1.0:
            raise ValueError(f"noise_rate must lie in [0, 1); got {noise_rate!r}.")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1); got {val_fraction!r}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size!r}.")
        if predict_split not in PREDICT_SPLITS:
            raise ValueError(
                f"predict_split must be one of {PREDICT_SPLITS}; got {predict_split!r}."
            )
        synthetic = not self._has_real_noise()  # real-noise data sets ignore the noise arguments
        if (
            synthetic
            and noise_type == "asymmetric"
            and class_map is None
            and self.default_class_map is None
        ):
            raise ValueError(
                f"noise_type='asymmetric' needs a class_map: {type(self).__name__} has no built-in "
                "map. Pass class_map (e.g. --data.class_map '{0: 1, 1: 0}') or another noise_type."
            )
        if synthetic and noise_type == "transition" and transition_matrix is None:
            raise ValueError("noise_type='transition' needs transition_matrix (a K x K list).")
        self.noise_type = noise_type
        self.noise_rate = noise_rate
        self.class_map = class_map
        self.noise_transition_matrix = transition_matrix
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.noisy_labels_file = noisy_labels_file
        self.save_noisy_labels_to = save_noisy_labels_to
        self.predict_split = predict_split
        self._example_ids: dict[str, Sequence[str] | None] = {}
        self.noise: NoiseResult | None = None
        self.train_set: NoisyLabelDataset | None = None
        self.val_set: NoisyLabelDataset | None = None
        self.test_set: NoisyLabelDataset | None = None
        self._resume_from: TrainPosition | None = None

    # ------------------------------------------------------------ what subclasses provide
    @abstractmethod
    def load_splits(self) -> DataSplits:
        """Load the training pool and the test set (clean labels)."""

    def train_transform(self) -> Transform | None:
        """Transform of training inputs (augmentation); ``None`` keeps inputs as loaded."""
        return None

    def eval_transform(self) -> Transform | None:
        """Transform of validation, test and predict inputs."""
        return None

    def train_sampler(self, dataset: NoisyLabelDataset) -> Sampler | None:
        """The training loader's sampler: a :class:`ResumableSampler` unless overridden.

        Its order depends only on ``seed_everything``'s seed and the epoch, so a run resumed
        with ``--ckpt_path`` sees the same batches, mid-epoch included. Return ``None`` for a
        plain ``shuffle=True`` loader (a resumed epoch then restarts with a new order).
        """
        return ResumableSampler(dataset)

    # ------------------------------------------------------------ noise
    @property
    def transition_matrix(self) -> Tensor:
        """The true ``K x K`` transition matrix of the configured noise (its design, not a fit).

        ``ForwardCorrection(transition_matrix="data")`` reads it; the realised matrix of the
        drawn labels is ``self.noise.transition_matrix`` after ``setup``.
        """
        if self.noise_type != "transition" and self._has_real_noise():
            if self.noise is None:
                self.setup()
            return self.noise.transition_matrix
        return expected_transition_matrix(
            self.num_classes,
            self.noise_type,
            self.noise_rate,
            self._class_map(),
            self.noise_transition_matrix,
        )

    def _has_real_noise(self) -> bool:
        """Whether the data set brings its own noisy labels (then its realised T is the truth)."""
        return False

    def _class_map(self) -> Mapping[int, int] | None:
        return self.class_map if self.class_map is not None else self.default_class_map

    def _draw_noise(self, splits: DataSplits) -> NoiseResult:
        clean = splits.train_labels.long()
        if self.noisy_labels_file is not None:
            file_clean, noisy = load_noisy_labels(self.noisy_labels_file)
            if not torch.equal(file_clean, clean):
                raise ValueError(
                    f"{self.noisy_labels_file} was written for other data: its clean labels "
                    f"({len(file_clean)}) do not match this data set's training pool "
                    f"({len(clean)})."
                )
            return noise_from_labels(clean, noisy, self.num_classes)
        if splits.train_noisy_labels is not None:
            return noise_from_labels(clean, splits.train_noisy_labels.long(), self.num_classes)
        return inject_noise(
            clean,
            self.num_classes,
            self.noise_type,
            self.noise_rate,
            self._class_map(),
            self.seed,
            self.noise_transition_matrix,
        )

    # ------------------------------------------------------------ Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        splits = self.load_splits()
        check_split_labels(splits, self.num_classes, type(self).__name__)
        check_split_inputs(splits, type(self).__name__)
        self.noise = self._draw_noise(splits)
        noisy, clean = self.noise.noisy_labels, splits.train_labels.long()
        train_tf, eval_tf = self.train_transform(), self.eval_transform()
        if splits.val_inputs is None:
            generator = torch.Generator().manual_seed(self.seed + 1)
            order = torch.randperm(len(clean), generator=generator)
            num_val = max(1, round(self.val_fraction * len(clean)))
            val_idx, train_idx = order[:num_val].sort().values, order[num_val:].sort().values
            if len(train_idx) == 0:
                raise ValueError(
                    f"{type(self).__name__}: the training pool ({len(clean)} examples) is too "
                    f"small to split off a validation set (val_fraction={self.val_fraction}): "
                    "give it more examples."
                )
            self.val_set = NoisyLabelDataset(splits.train_inputs, noisy, clean, val_idx, eval_tf)
        else:
            train_idx = torch.arange(len(clean))
            val_labels = splits.val_labels.long()
            self.val_set = NoisyLabelDataset(
                splits.val_inputs, val_labels, val_labels, torch.arange(len(val_labels)), eval_tf
            )
        self.train_set = NoisyLabelDataset(splits.train_inputs, noisy, clean, train_idx, train_tf)
        test_labels = splits.test_labels.long()
        self.test_set = NoisyLabelDataset(
            splits.test_inputs, test_labels, test_labels, torch.arange(len(test_labels)), eval_tf
        )
        if splits.class_names is not None:
            self.class_names = list(splits.class_names)
        val_ids = splits.train_ids if splits.val_inputs is None else splits.val_ids
        self._example_ids = {"train": splits.train_ids, "val": val_ids, "test": splits.test_ids}
        if self.save_noisy_labels_to is not None:
            save_noisy_labels(self.save_noisy_labels_to, clean, noisy)
        self._report_noise()

    def _report_noise(self) -> None:
        assert self.noise is not None and self.train_set is not None
        rate = self.noise.realised_rate
        source = (
            f"labels from {Path(self.noisy_labels_file).name}"
            if self.noisy_labels_file
            else "real-world noisy labels"
            if self._has_real_noise()
            else f"{self.noise_type} noise at rate {self.noise_rate}"
        )
        rank_zero_info(
            f"{type(self).__name__}: {source} -> realised noise rate {rate:.2%} of "
            f"{len(self.noise.noisy_labels)} training-pool labels (train {len(self.train_set)}, "
            f"{'clean' if self.val_set.noisy_labels is self.val_set.clean_labels else 'noisy'} "
            f"val {len(self.val_set)}, clean test {len(self.test_set)})."
        )
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.state.fn == TrainerFn.FITTING:
            for logger in trainer.loggers:
                logger.log_metrics({"noise/realised_rate": rate}, step=0)

    def _loader(self, dataset: NoisyLabelDataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before asking for loaders.")
        sampler = self.train_sampler(dataset) if train else None
        if train and self._resume_from is not None:
            self._resume_sampler(sampler, self._resume_from)
            self._resume_from = None
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    # ------------------------------------------------------------ resuming
    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: how far into its epoch training was.

        Loading it makes the next training loader continue the epoch from there
        (:meth:`ResumableSampler.resume`).
        """
        trainer = self.trainer
        if trainer is None or trainer.state.fn != TrainerFn.FITTING:
            return {}
        return {"train_position": train_position(trainer).state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the training position; the next training loader continues from it."""
        if "train_position" in state_dict:
            self._resume_from = TrainPosition.from_state_dict(state_dict["train_position"])

    def _resume_sampler(self, sampler: Sampler | None, position: TrainPosition) -> None:
        if isinstance(sampler, ResumableSampler):
            sampler.resume(position, self.batch_size)
            # Lightning only knows stateful loaders resume exactly; this one does too.
            warnings.filterwarnings(
                "ignore",
                message="You're resuming from a checkpoint that ended before the epoch ended",
                category=PossibleUserWarning,
            )
        elif position.batches and not position.epoch_done:
            rank_zero_warn(
                f"Resuming mid-epoch ({position.batches} batches into epoch {position.epoch}) "
                f"with a {type(sampler).__name__ if sampler else 'shuffling'} sampler that cannot "
                "skip what was trained: the epoch restarts with a new order. Return a "
                "ln_lightning.data.sampling.ResumableSampler from train_sampler() to continue "
                "exactly."
            )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        """The ``predict_split`` split in a fixed order, with the evaluation transform."""
        return self._loader(self.split(self.predict_split, eval_transform=True), train=False)

    def split(self, name: str, eval_transform: bool = False) -> NoisyLabelDataset:
        """The ``train``, ``val`` or ``test`` split (after ``setup``).

        Args:
            name: One of :data:`PREDICT_SPLITS`.
            eval_transform: Give the training split the evaluation transform (no augmentation),
                e.g. to predict on it; ``val`` and ``test`` have it already.
        """
        if name not in PREDICT_SPLITS:
            raise ValueError(f"split must be one of {PREDICT_SPLITS}; got {name!r}.")
        if self.train_set is None:
            self.setup()
        dataset = {"train": self.train_set, "val": self.val_set, "test": self.test_set}[name]
        if eval_transform and name == "train":
            dataset = copy.copy(dataset)
            dataset.transform = self.eval_transform()
        return dataset

    def example_ids(self, split: str) -> Sequence[str] | None:
        """A name (file path) for each example of ``split``, indexed by ``NoisySample.index``;
        ``None`` when the examples have none (then their index is their name)."""
        return self._example_ids.get(split)

    # ------------------------------------------------------------ user data
    @staticmethod
    def from_arrays(
        train_inputs: Tensor,
        train_labels: Tensor,
        test_inputs: Tensor,
        test_labels: Tensor,
        num_classes: int | None = None,
        class_map: dict[int, int] | None = None,
        **kwargs: Any,
    ) -> ArrayDataModule:
        """A data module over your own in-memory data, with the same noise, splits and batches.

        Example:
            >>> import torch
            >>> x, y = torch.randn(100, 5), torch.arange(100) % 3
            >>> dm = NoisyLabelDataModule.from_arrays(x, y, x[:10], y[:10], noise_type="symmetric")
            >>> dm.setup(); len(dm.train_set), len(dm.val_set), dm.num_classes
            (90, 10, 3)
        """
        return ArrayDataModule(
            train_inputs, train_labels, test_inputs, test_labels, num_classes, class_map, **kwargs
        )

    @staticmethod
    def from_dataset(
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
        return ArrayDataModule(
            train_dataset,
            dataset_labels(train_dataset),
            test_dataset,
            dataset_labels(test_dataset),
            num_classes,
            input_shape=input_shape,
            **kwargs,
        )


def dataset_labels(dataset: Dataset) -> Tensor:
    """Labels of a map-style dataset of ``(input, label)`` items."""
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return torch.as_tensor(targets).long()
    return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))])


def check_split_labels(splits: DataSplits, num_classes: int, name: str) -> None:
    """Raise ``ValueError`` for labels outside ``[0, K)`` (clean training labels may be -1)."""
    checks = [("test", splits.test_labels, 0)]
    checks.append(("training", splits.train_labels, -1))
    if splits.train_noisy_labels is not None:
        checks.append(("noisy training", splits.train_noisy_labels, 0))
    if splits.val_labels is not None:
        checks.append(("validation", splits.val_labels, 0))
    for what, labels, low in checks:
        if len(labels) == 0:
            raise ValueError(
                f"{name}: the {what} split is empty. Check that the data files or arrays hold "
                "examples (a truncated download, a filter that removed everything)."
            )
        if int(labels.min()) < low or int(labels.max()) >= num_classes:
            raise ValueError(
                f"{name}: {what} labels must lie in [0, {num_classes}); got values in "
                f"[{int(labels.min())}, {int(labels.max())}]. Check num_classes and 0-based labels."
            )


def check_split_inputs(splits: DataSplits, name: str) -> None:
    """Raise ``ValueError`` when floating-point input tensors hold NaN or inf."""
    sources = {"training": splits.train_inputs, "test": splits.test_inputs}
    if splits.val_inputs is not None:
        sources["validation"] = splits.val_inputs
    for what, inputs in sources.items():
        if not (isinstance(inputs, Tensor) and inputs.is_floating_point() and inputs.ndim):
            continue  # uint8 images, files, datasets: nothing to check up front
        bad = torch.nonzero(~torch.isfinite(inputs.reshape(len(inputs), -1)).all(1)).flatten()
        if len(bad):
            raise ValueError(
                f"{name}: {len(bad)} of {len(inputs)} {what} inputs contain NaN or inf "
                f"(indices {bad[:10].tolist()}{' ...' if len(bad) > 10 else ''}). Drop or repair "
                "them before building the data module, e.g. keep = torch.isfinite(x).flatten(1)"
                ".all(1); x, y = x[keep], y[keep]."
            )


class ArrayDataModule(NoisyLabelDataModule):
    """Your own data (tensors or datasets) with the library's noise, splits and batches.

    Build it with :meth:`NoisyLabelDataModule.from_arrays` or :meth:`~.from_dataset`.
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
