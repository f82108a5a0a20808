"""The base data module: a noisy training pool, a noisy validation split, a clean test set.

Its parts: the pool's noise and splits (``pool.py``), loaders and rank-0 work (``loading.py``),
the examples (``dataset.py``), what it promises the library (``contract.py``).
"""

from __future__ import annotations

import contextlib
import copy
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader, Sampler
from typing_extensions import override

from ln_lightning import resume
from ln_lightning.data.dataset import NoisyLabelDataset, check_batch_labels
from ln_lightning.data.loading import default_workers, file_workers, make_loader, run_on_rank_zero
from ln_lightning.data.pool import (
    PREDICT_SPLITS,
    check_settings,
    describe_splits,
    noise_source,
    pool_noise,
    pool_splits,
)
from ln_lightning.data.sampling import ResumableSampler
from ln_lightning.data.splits import (
    DataSplits,
    check_split_inputs,
    check_split_labels,
)
from ln_lightning.labels import UNKNOWN
from ln_lightning.lightning_internals import is_fitting
from ln_lightning.noise import (
    NoiseResult,
    NoiseSpec,
    save_noisy_labels,
)

__all__ = ["PREDICT_SPLITS", "NoisyLabelDataModule", "Transform"]

Transform = Callable[[Any], Any]
T = TypeVar("T")


class NoisyLabelDataModule(pl.LightningDataModule):
    """Train / noisy validation / clean test splits with label noise.

    A subclass says where the data comes from and sets a few class attributes; everything else
    (noise, splits, loaders, resuming) is done here. The hooks a subclass may override:

    * :meth:`load_splits` (required): the training pool and the clean test set, as
      :class:`~ln_lightning.data.splits.DataSplits`.
    * :meth:`train_transform` / :meth:`eval_transform`: per-example transforms (augmentation
      for training; the evaluation one for validation, test and predict).
    * :meth:`train_sampler`: the training order (a resumable shuffle by default).
    * :meth:`has_real_noise`: ``True`` for data sets that bring their own noisy labels
      (CIFAR-N, Clothing1M); the noise arguments are then ignored.

    and the class attributes :attr:`num_classes`, :attr:`input_shape`, :attr:`class_names` and,
    for asymmetric noise, :attr:`default_class_map`.

    Noise is drawn once, from ``seed``, over the whole training pool (identical on every DDP
    rank and after a resume), so the validation split (``val_fraction`` of the pool) is noisy
    too, as in the paper; the test set stays clean. The five noise arguments become one
    :class:`~ln_lightning.noise.NoiseSpec` (:attr:`noise_spec`; ``None`` for data sets with
    their own noisy labels). Batches are :class:`NoisySample` ``(input, noisy label, clean
    label, index)``.

    Args:
        noise_type: One of :data:`ln_lightning.noise.NOISE_TYPES`.
        noise_rate: Corruption probability in [0, 1).
        class_map: Source -> target class for asymmetric noise; the data set's own map if ``None``.
        transition_matrix: ``K x K`` row-stochastic matrix for ``noise_type="transition"``.
        val_fraction: Fraction of the training pool held out as the noisy validation split.
        batch_size: Batch size of every loader.
        num_workers: DataLoader worker processes; ``None``: none for tensors in memory, one per
            CPU core but one (at most 8) for files.
        seed: Seed of the noise and of the validation split (not of the model).
        noisy_labels_file: Read the pool's noisy labels from this CSV (written by
            ``save_noisy_labels_to`` or :func:`ln_lightning.noise.save_noisy_labels`) instead of
            drawing them; its clean labels must match the data.
        save_noisy_labels_to: Write the pool's ``index,clean_label,noisy_label`` CSV here.
        predict_split: The split ``ln-fit predict`` (``predict_dataloader``) runs on: ``test``
            (default), ``val`` or ``train``, always with the evaluation transform (a data module
            with unlabelled images to predict, :meth:`unlabelled_predict_set`, uses those).
        num_folds: With 2 or more, k-fold cross-validation instead of a ``val_fraction`` cut:
            fold ``fold`` of the pool is held out as the validation split, scored by a model that
            never trained on it (``ln-fit-sweep folds`` runs every fold and merges the scores).
        fold: Which fold to hold out, in ``[0, num_folds)``.

    Example:
        >>> import torch
        >>> from ln_lightning.data import DataSplits
        >>> class Blobs(NoisyLabelDataModule):  # a data set says where its data comes from
        ...     num_classes, input_shape = 2, (2,)
        ...     def load_splits(self) -> DataSplits:
        ...         inputs = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
        ...         labels = (inputs[:, 0] > 0).long()
        ...         return DataSplits(inputs[:150], labels[:150], inputs[150:], labels[150:])
        >>> data = Blobs(noise_type="symmetric", noise_rate=0.4, batch_size=32)
        >>> data.setup()
        >>> len(data.train_set), len(data.val_set), len(data.test_set)
        (135, 15, 50)
        >>> batch = next(iter(data.train_dataloader()))
        >>> batch.input.shape, batch.target.shape  # with the clean labels and pool indices beside
        (torch.Size([32, 2]), torch.Size([32]))
    """

    num_classes: int
    input_shape: tuple[int, ...]
    #: Source -> target class of the data set's asymmetric noise, if it has one.
    default_class_map: Mapping[int, int] | None = None
    #: Name of each class, where the data set has them (used in every written output).
    class_names: Sequence[str] | None = None
    #: What :meth:`example_ids` name: ``path`` (files) or ``row_id`` (rows of a data set); the
    #: column of ``label_issues.csv`` and ``cleaned_labels.csv`` that holds them.
    example_id_column: str = "path"
    #: The data module that labels new inputs with :meth:`inference_settings` (``ln-fit
    #: predict --ckpt_path ...`` builds it from a checkpoint); this one when ``None``.
    inference_data_module: type | None = None

    def __init__(
        self,
        noise_type: str = "asymmetric",
        noise_rate: float = 0.4,
        class_map: dict[int, int] | None = None,
        transition_matrix: list[list[float]] | None = None,
        val_fraction: float = 0.1,
        batch_size: int = 128,
        num_workers: int | None = None,
        seed: int = 0,
        noisy_labels_file: str | None = None,
        save_noisy_labels_to: str | None = None,
        predict_split: str = "test",
        num_folds: int = 0,
        fold: int = 0,
    ) -> None:
        super().__init__()
        check_settings(val_fraction, batch_size, num_workers, predict_split, num_folds, fold)
        # Data sets with their own noisy labels ignore the noise arguments (has_real_noise).
        self.noise_spec: NoiseSpec | None = None
        if not self.has_real_noise():
            if class_map is None and noise_type == "asymmetric":
                class_map = self.default_class_map  # the data set's own map
            self.noise_spec = NoiseSpec(noise_type, noise_rate, class_map, transition_matrix, seed)
        self.val_fraction, self.batch_size, self.num_workers = val_fraction, batch_size, num_workers
        self.seed, self.predict_split = seed, predict_split
        self.noisy_labels_file, self.save_noisy_labels_to = noisy_labels_file, save_noisy_labels_to
        self.num_folds, self.fold = num_folds, fold
        self.noise: NoiseResult | None = None
        self.train_set: NoisyLabelDataset | None = None
        self.val_set: NoisyLabelDataset | None = None
        self.test_set: NoisyLabelDataset | None = None
        self._example_ids: dict[str, Sequence[str] | None] = {}
        self._resume_from: resume.TrainingPosition | None = None
        self._resuming = contextlib.ExitStack()  # what resume_sampler sets up, until teardown

    # ------------------------------------------------------------ hooks of subclasses
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
        """The training loader's sampler: a :class:`ResumableSampler` (its order depends only on
        the seed and the epoch, so a resumed run sees the same batches, mid-epoch included);
        ``None``: a plain ``shuffle=True`` loader (a resumed epoch restarts in a new order)."""
        return ResumableSampler(dataset)

    def has_real_noise(self) -> bool:
        """Whether the data set brings its own noisy labels (``DataSplits.train_noisy_labels``):
        then no noise is drawn, and the realised matrix of its labels is the true one."""
        return False

    def unlabelled_predict_set(self) -> NoisyLabelDataset | None:
        """Inputs without labels (``-1``) for ``ln-fit predict``, e.g. a folder of new images;
        :meth:`example_ids` names them under the split ``predict``."""
        return None

    # ------------------------------------------------------------ noise
    def true_transition_matrix(self) -> Tensor:
        """The true ``K x K`` matrix ``T[i, j] = P(noisy j | true i)`` of the data's noise: the
        design of synthetic noise (not a fit), or the realised matrix of a data set's own noisy
        labels, which needs :meth:`setup` first (``ForwardCorrection(transition_matrix="data")``
        reads it).

        Raises:
            RuntimeError: For real noise before ``setup`` (this method loads nothing).
        """
        from_data = self.noisy_labels_file is not None or self.noise_spec is None
        if from_data and self.noise is None:
            raise RuntimeError(
                f"{type(self).__name__}.true_transition_matrix(): the noisy labels come from "
                "the data, so call setup() first."
            )
        if from_data:
            return self.noise.transition_matrix
        return self.noise_spec.expected_matrix(self.num_classes)

    # ------------------------------------------------------------ Lightning hooks
    @override
    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if stage == "predict" and self.prediction_only():
            return  # new unlabelled inputs need no training pool
        name = type(self).__name__
        splits = self.load_splits()
        check_split_labels(splits, self.num_classes, name)
        check_split_inputs(splits, name)
        file = self.noisy_labels_file  # a reviewed one also says which examples to drop
        self.noise, clean, dropped = pool_noise(splits, self.noise_spec, file, self.num_classes)
        noisy = self.noise.noisy_labels
        pool = pool_splits(
            splits, noisy, clean, (self.train_transform(), self.eval_transform()),
            self.val_fraction, self.seed, self.num_folds, self.fold, dropped,
        )  # fmt: skip
        self.train_set, self.val_set, self.test_set = pool.train, pool.val, pool.test
        self._example_ids = pool.example_ids
        if splits.class_names is not None:
            self.class_names = list(splits.class_names)
        if self.save_noisy_labels_to is not None:
            save_noisy_labels(self.save_noisy_labels_to, clean, noisy)
        self._report_noise()

    def _report_noise(self) -> None:
        """Print the realised noise; log it to the loggers when fitting."""
        source = noise_source(self.noise_spec, self.noisy_labels_file)
        held_out = f"held-out fold {self.fold} of {self.num_folds}, " if self.num_folds else ""
        rank_zero_info(
            f"{type(self).__name__}: {self.noise.describe(source)} "
            f"{describe_splits(self.train_set, self.val_set, self.test_set, held_out)}."
        )
        trainer = getattr(self, "trainer", None)
        if is_fitting(trainer):
            for logger in trainer.loggers:
                logger.log_metrics({"noise/realised_rate": self.noise.realised_rate}, step=0)

    def _loader(self, dataset: NoisyLabelDataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before asking for loaders.")
        resuming = None
        if train and self._resume_from is not None:
            resuming, self._resume_from = (self._resuming, self._resume_from), None
        return make_loader(
            dataset, self.batch_size, self.train_sampler(dataset) if train else None,
            self.loader_workers(dataset), train, self._to_gpu(), resuming,
        )  # fmt: skip

    def loader_workers(self, dataset: NoisyLabelDataset) -> int:
        """The loaders' worker processes: ``num_workers``, or the default it documents."""
        return default_workers(self.num_workers, dataset.inputs)

    def file_workers(self) -> int:
        """Worker processes for data read from files (:func:`~.loading.file_workers`)."""
        return file_workers(self.num_workers)

    def on_rank_zero(self, compute: Callable[[], T]) -> T:
        """``compute()`` on global rank 0 only, its result (or error) sent to every rank.

        Example:
            >>> from ln_lightning import DigitsDataModule
            >>> DigitsDataModule().on_rank_zero(lambda: "checked once")
            'checked once'
        """
        return run_on_rank_zero(getattr(self, "trainer", None), compute)

    def _to_gpu(self) -> bool:
        trainer = getattr(self, "trainer", None)
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    @override
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Check a batch's labels while it is still on the CPU: the losses skip that check for
        labels on an accelerator (reading them back would stall the device every step)."""
        trainer = getattr(self, "trainer", None)
        if not (trainer is not None and trainer.predicting):
            check_batch_labels(batch, self.num_classes)
        return batch

    @override
    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    @override
    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    @override
    def test_dataloader(self) -> DataLoader:
        return self._loader(self.split("test"), train=False)

    @override
    def predict_dataloader(self) -> DataLoader:
        """The unlabelled inputs if the data module has some (:meth:`unlabelled_predict_set`),
        else the ``predict_split`` split; in a fixed order, with the evaluation transform."""
        return self._loader(self.split(self.prediction_split(), eval_transform=True), train=False)

    def prediction_split(self) -> str:
        """The split ``predict_dataloader`` reads: ``predict`` (unlabelled) or
        ``predict_split``."""
        return "predict" if self.unlabelled_predict_set() is not None else self.predict_split

    @property
    def has_test_set(self) -> bool:
        """Whether there is a clean test set (after ``setup``)."""
        if self.train_set is None:
            self.setup()
        return self.test_set is not None

    # ------------------------------------------------------------ splits and their examples
    def split(self, name: str, eval_transform: bool = False) -> NoisyLabelDataset:
        """The ``train``, ``val`` or ``test`` split (after ``setup``, which this runs if needed).

        Args:
            name: One of :data:`PREDICT_SPLITS`.
            eval_transform: Give the training split the evaluation transform (no augmentation),
                e.g. to predict on it; ``val`` and ``test`` have it already.
        """
        if name == "predict":
            dataset = self.unlabelled_predict_set()
            if dataset is None:
                raise ValueError(f"{type(self).__name__} has no unlabelled inputs to predict.")
            return dataset
        if name not in PREDICT_SPLITS:
            raise ValueError(f"split must be one of {PREDICT_SPLITS}; got {name!r}.")
        if self.train_set is None:
            self.setup()
        dataset = {"train": self.train_set, "val": self.val_set, "test": self.test_set}[name]
        if dataset is None:
            raise ValueError(self.no_test_set_message())
        if eval_transform and name == "train":
            dataset = copy.copy(dataset)
            dataset.transform = self.eval_transform()
        return dataset

    def no_test_set_message(self) -> str:
        """What to say when there is no clean test set, with the option that gives one."""
        return (
            f"{type(self).__name__} has no clean test set, so there is no test accuracy (give "
            "one with --data.test_root or --data.test_labels_file)."
        )

    def example_ids(self, split: str) -> Sequence[str] | None:
        """A name (file path) for each example of ``split``, by index; ``None`` if none."""
        return self._example_ids.get(split)

    def prediction_only(self) -> bool:
        """Whether it holds only unlabelled inputs to predict (built from a checkpoint)."""
        return False

    def inference_settings(self) -> dict[str, Any]:
        """Constructor arguments that rebuild the evaluation transform and classes without the
        training data (every checkpoint records them for ``ln-fit predict`` and
        ``predict_images``); empty for a data set that builds itself."""
        return {}

    def has_labels(self, split: str) -> bool:
        """Whether ``split`` comes with labels (all but the unlabelled ``"predict"`` inputs)."""
        return split != "predict"

    def knows_clean_labels(self, split: str) -> bool:
        """Whether any example of ``split`` has a known true label (your own images without a
        ``clean_label`` column have none: no clean-label metric, which would read 0.0)."""
        if not self.has_labels(split):
            return False
        dataset = self.split(split)
        return bool((dataset.clean_labels[dataset.indices] != UNKNOWN).any())

    # ------------------------------------------------------------ resuming
    @override
    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: how far into its epoch training was
        (:func:`ln_lightning.resume.training_position_state`)."""
        return resume.training_position_state(self.trainer)

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the training position; the next training loader continues from it."""
        self._resume_from = resume.training_position_from_state(state_dict)

    @override
    def teardown(self, stage: str) -> None:
        self._resuming.close()
