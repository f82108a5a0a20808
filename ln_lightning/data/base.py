"""The base data module: a noisy training pool, a noisy validation split, a clean test set.

What lives elsewhere: :class:`~ln_lightning.data.splits.DataSplits` and its checks
(``splits.py``), the examples and their batches (``dataset.py``), the noise itself
(:mod:`ln_lightning.noise`), your own arrays (``arrays.py``), the resumable order of the
training split (``sampling.py``) and the training position a checkpoint records
(:mod:`ln_lightning.resume`).
"""

from __future__ import annotations

import contextlib
import copy
import os
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from ln_lightning import resume
from ln_lightning.data.dataset import NoisyLabelDataset, NoisySample
from ln_lightning.data.sampling import ResumableSampler
from ln_lightning.data.splits import (
    DataSplits,
    check_split_inputs,
    check_split_labels,
    fold_split,
    validation_split,
)
from ln_lightning.labels import UNKNOWN, check_labels
from ln_lightning.noise import (
    NoiseResult,
    NoiseSpec,
    load_noisy_labels,
    noise_from_labels,
    save_noisy_labels,
)
from ln_lightning.resume.lightning import is_fitting

__all__ = ["PREDICT_SPLITS", "NoisyLabelDataModule", "Transform"]

Transform = Callable[[Any], Any]
T = TypeVar("T")
#: The splits ``predict_split`` can name.
PREDICT_SPLITS = ("test", "val", "train")


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

    Noise is drawn once, from ``seed``, over the whole training pool (vectorised, so identical on
    every DDP rank and after a resume); the validation split (``val_fraction`` of the pool, from
    the same seed) is therefore noisy too, as in the paper; the test set stays clean. Batches are
    :class:`NoisySample` tuples ``(input, noisy label, clean label, index)``.

    The five noise arguments become one :class:`~ln_lightning.noise.NoiseSpec`, checked once
    (:attr:`noise_spec`; ``None`` for data sets with their own noisy labels).

    Args:
        noise_type: One of :data:`ln_lightning.noise.NOISE_TYPES`.
        noise_rate: Corruption probability in [0, 1).
        class_map: Source -> target class for asymmetric noise; the data set's own map if ``None``.
        transition_matrix: ``K x K`` row-stochastic matrix for ``noise_type="transition"``.
        val_fraction: Fraction of the training pool held out as the noisy validation split.
        batch_size: Batch size of every loader.
        num_workers: DataLoader worker processes; ``None`` (default): none for data held in
            memory as tensors (workers only add copying), and one per CPU core but one (at
            most 8) for data read from files (decoding images is the work).
        seed: Seed of the noise and of the validation split (not of the model).
        noisy_labels_file: Read the pool's noisy labels from this CSV (written by
            ``save_noisy_labels_to`` or :func:`ln_lightning.noise.save_noisy_labels`) instead of
            drawing them; its clean labels must match the data.
        save_noisy_labels_to: Write the pool's ``index,clean_label,noisy_label`` CSV here.
        predict_split: The split ``ln-fit predict`` (``predict_dataloader``) runs on: ``test``
            (default), ``val`` or ``train``, always with the evaluation transform (a data module
            with unlabelled images to predict, :meth:`unlabelled_predict_set`, uses those).
        num_folds: With 2 or more, k-fold cross-validation instead of a ``val_fraction`` cut:
            the pool is split into ``num_folds`` folds (from ``seed``), fold ``fold`` is held out
            as the validation split and the model trains on the others, so every held-out label
            is scored by a model that never trained on it (``ln-fit-sweep folds`` runs them all
            and merges the label-issue scores).
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
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1); got {val_fraction!r}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size!r}.")
        if num_workers is not None and num_workers < 0:
            raise ValueError(f"num_workers must be >= 0 or None; got {num_workers!r}.")
        if predict_split not in PREDICT_SPLITS:
            raise ValueError(
                f"predict_split must be one of {PREDICT_SPLITS}; got {predict_split!r}."
            )
        if num_folds and (num_folds < 2 or not 0 <= fold < num_folds):
            raise ValueError(
                f"num_folds must be >= 2 and fold in [0, num_folds); got num_folds={num_folds}, "
                f"fold={fold}."
            )
        # Data sets with their own noisy labels ignore the noise arguments (has_real_noise).
        self.noise_spec: NoiseSpec | None = None
        if not self.has_real_noise():
            if class_map is None and noise_type == "asymmetric":
                class_map = self.default_class_map  # the data set's own map
            self.noise_spec = NoiseSpec(noise_type, noise_rate, class_map, transition_matrix, seed)
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.noisy_labels_file = noisy_labels_file
        self.save_noisy_labels_to = save_noisy_labels_to
        self.predict_split = predict_split
        self.num_folds = num_folds
        self.fold = fold
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
        """The training loader's sampler: a :class:`ResumableSampler` unless overridden.

        Its order depends only on ``seed_everything``'s seed and the epoch, so a run resumed
        with ``--ckpt_path`` sees the same batches, mid-epoch included. Return ``None`` for a
        plain ``shuffle=True`` loader (a resumed epoch then restarts with a new order).
        """
        return ResumableSampler(dataset)

    def has_real_noise(self) -> bool:
        """Whether the data set brings its own noisy labels (``DataSplits.train_noisy_labels``).

        Then no noise is drawn, the noise arguments are ignored, and the realised matrix of its
        labels is the true one.
        """
        return False

    def unlabelled_predict_set(self) -> NoisyLabelDataset | None:
        """Inputs without labels for ``ln-fit predict`` (e.g. a folder of new images), if any.

        Their labels are ``-1``; :meth:`example_ids` names them under the split ``"predict"``.
        """
        return None

    # ------------------------------------------------------------ noise
    def true_transition_matrix(self) -> Tensor:
        """The true ``K x K`` matrix ``T[i, j] = P(noisy j | true i)`` of the data's noise.

        For synthetic noise, the design of the configured noise (not a fit); for a data set's own
        noisy labels, their realised matrix, which needs :meth:`setup` first.
        ``ForwardCorrection(transition_matrix="data")`` reads it.

        Raises:
            RuntimeError: For real noise before ``setup`` (this method loads nothing).
        """
        if self.noisy_labels_file is not None or self.noise_spec is None:
            if self.noise is None:
                raise RuntimeError(
                    f"{type(self).__name__}.true_transition_matrix(): the noisy labels come from "
                    "the data, so call setup() first."
                )
            return self.noise.transition_matrix
        return self.noise_spec.expected_matrix(self.num_classes)

    def _draw_noise(self, splits: DataSplits) -> tuple[NoiseResult, Tensor]:
        """The pool's noisy labels and its true labels (``-1`` where unknown)."""
        clean = splits.train_labels.long()
        if self.noisy_labels_file is not None:
            file_clean, noisy = load_noisy_labels(self.noisy_labels_file)
            # The file's clean labels must agree with the data's where the data knows them; where
            # it does not (your own data), the file's are taken.
            known = clean != UNKNOWN
            if len(file_clean) != len(clean) or not torch.equal(file_clean[known], clean[known]):
                raise ValueError(
                    f"{self.noisy_labels_file} was written for other data: its clean labels "
                    f"({len(file_clean)}) do not match this data set's training pool "
                    f"({len(clean)})."
                )
            return noise_from_labels(file_clean, noisy, self.num_classes), file_clean
        if splits.train_noisy_labels is not None or self.noise_spec is None:
            given = splits.train_noisy_labels
            noisy = given.long() if given is not None else clean
            return noise_from_labels(clean, noisy, self.num_classes), clean
        return self.noise_spec.draw(clean, self.num_classes), clean

    def _noise_source(self) -> str:
        if self.noisy_labels_file:
            return f"labels from {Path(self.noisy_labels_file).name}"
        if self.noise_spec is None:
            return "the data's own labels"
        return self.noise_spec.describe()

    # ------------------------------------------------------------ Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if stage == "predict" and self.prediction_only():
            return  # new unlabelled inputs need no training pool
        name = type(self).__name__
        splits = self.load_splits()
        check_split_labels(splits, self.num_classes, name)
        check_split_inputs(splits, name)
        self.noise, clean = self._draw_noise(splits)
        noisy = self.noise.noisy_labels
        train_tf, eval_tf = self.train_transform(), self.eval_transform()
        if self.num_folds:
            train_idx, val_idx = fold_split(len(clean), self.num_folds, self.fold, self.seed)
            self.val_set = NoisyLabelDataset(splits.train_inputs, noisy, clean, val_idx, eval_tf)
        elif splits.val_inputs is None:
            train_idx, val_idx = validation_split(len(clean), self.val_fraction, self.seed)
            self.val_set = NoisyLabelDataset(splits.train_inputs, noisy, clean, val_idx, eval_tf)
        else:
            train_idx = torch.arange(len(clean))
            val_labels = splits.val_labels.long()
            self.val_set = NoisyLabelDataset(
                splits.val_inputs, val_labels, val_labels, torch.arange(len(val_labels)), eval_tf
            )
        self.train_set = NoisyLabelDataset(splits.train_inputs, noisy, clean, train_idx, train_tf)
        if splits.test_inputs is not None:
            test_labels = splits.test_labels.long()
            self.test_set = NoisyLabelDataset(
                splits.test_inputs, test_labels, test_labels, torch.arange(len(test_labels)),
                eval_tf,
            )  # fmt: skip
        if splits.class_names is not None:
            self.class_names = list(splits.class_names)
        val_ids = (
            splits.train_ids if splits.val_inputs is None or self.num_folds else splits.val_ids
        )
        self._example_ids = {"train": splits.train_ids, "val": val_ids, "test": splits.test_ids}
        if self.save_noisy_labels_to is not None:
            save_noisy_labels(self.save_noisy_labels_to, clean, noisy)
        self._report_noise()

    def _report_noise(self) -> None:
        """Print the realised noise; log it to the loggers when fitting."""
        assert self.noise is not None and self.val_set is not None
        val_kind = "clean" if self.val_set.noisy_labels is self.val_set.clean_labels else "noisy"
        if self.num_folds:
            val_kind = f"held-out fold {self.fold} of {self.num_folds}, noisy"
        test = f"clean test {len(self.test_set)}" if self.test_set is not None else "no test set"
        rank_zero_info(
            f"{type(self).__name__}: {self.noise.describe(self._noise_source())} (train "
            f"{len(self.train_set)}, {val_kind} val {len(self.val_set)}, {test})."
        )
        trainer = getattr(self, "trainer", None)
        if is_fitting(trainer):
            for logger in trainer.loggers:
                logger.log_metrics({"noise/realised_rate": self.noise.realised_rate}, step=0)

    def _loader(self, dataset: NoisyLabelDataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before asking for loaders.")
        sampler = self.train_sampler(dataset) if train else None
        workers = self.loader_workers(dataset)
        if train and self._resume_from is not None:
            self._resuming.enter_context(
                resume.resume_sampler(sampler, self._resume_from, self.batch_size)
            )
            self._resume_from = None
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self._to_gpu(),  # then Lightning copies batches with non_blocking=True
        )

    def loader_workers(self, dataset: NoisyLabelDataset) -> int:
        """The loaders' worker processes: ``num_workers``, or the default it documents."""
        if self.num_workers is None and isinstance(dataset.inputs, Tensor):
            return 0
        return self.file_workers()

    def file_workers(self) -> int:
        """Worker processes for data read from files: ``num_workers``, or one per CPU core but
        one (at most 8)."""
        if self.num_workers is not None:
            return self.num_workers
        return max(0, min(8, (os.cpu_count() or 1) - 1))

    def on_rank_zero(self, compute: Callable[[], T]) -> T:
        """``compute()`` run by global rank 0 only, its result (or its error) sent to every rank:
        for work done once per run, like checking a million image files. Without a trainer, or
        with one process, it simply runs here.

        Example:
            >>> from ln_lightning import DigitsDataModule
            >>> DigitsDataModule().on_rank_zero(lambda: "checked once")
            'checked once'
        """
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.world_size == 1:
            return compute()
        result: Any = None
        if trainer.is_global_zero:
            try:
                result = (compute(), None)
            except Exception as error:  # every rank raises it, none waits forever
                result = (None, error)
        value, error = trainer.strategy.broadcast(result, src=0)
        if error is not None:
            raise error
        return value

    def _to_gpu(self) -> bool:
        trainer = getattr(self, "trainer", None)
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Check a batch's labels while it is still on the CPU: the losses skip that check for
        labels on an accelerator (reading them back would stall the device every step)."""
        trainer = getattr(self, "trainer", None)
        if isinstance(batch, NoisySample) and not (trainer is not None and trainer.predicting):
            check_labels(batch.target, self.num_classes, what="the batch's labels", values=True)
            check_labels(
                batch.clean_target, self.num_classes, what="the batch's clean labels",
                allow_unknown=True, values=True,
            )  # fmt: skip
        return batch

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.split("test"), train=False)

    def predict_dataloader(self) -> DataLoader:
        """The unlabelled inputs if the data module has some (:meth:`unlabelled_predict_set`),
        else the ``predict_split`` split; in a fixed order, with the evaluation transform."""
        return self._loader(self.split(self.prediction_split(), eval_transform=True), train=False)

    def prediction_split(self) -> str:
        """The split ``predict_dataloader`` reads: ``"predict"`` (unlabelled) or
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
        """A name (file path) for each example of ``split``, indexed by ``NoisySample.index``;
        ``None`` when the examples have none (then their index is their name)."""
        return self._example_ids.get(split)

    def prediction_only(self) -> bool:
        """Whether this data module holds nothing but unlabelled inputs to predict (built from a
        checkpoint's settings, without the training data); ``False`` by default."""
        return False

    def inference_settings(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this data module's evaluation transform and
        classes without its training data, as plain data. Every checkpoint records them, so
        ``ln-fit predict --ckpt_path ...`` and ``NoisyLabelClassifier.predict_images`` need no
        data flags. Empty by default (a data set that builds itself)."""
        return {}

    def has_labels(self, split: str) -> bool:
        """Whether ``split`` comes with labels (all but the unlabelled ``"predict"`` inputs)."""
        return split != "predict"

    def knows_clean_labels(self, split: str) -> bool:
        """Whether any example of ``split`` has a known true label. Your own images without a
        ``clean_label`` column have none: no clean-label metric is logged for them (it would
        read 0.0)."""
        if not self.has_labels(split):
            return False
        dataset = self.split(split)
        return bool((dataset.clean_labels[dataset.indices] != UNKNOWN).any())

    # ------------------------------------------------------------ resuming
    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: how far into its epoch training was
        (:func:`ln_lightning.resume.training_position_state`)."""
        return resume.training_position_state(self.trainer)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the training position; the next training loader continues from it."""
        self._resume_from = resume.training_position_from_state(state_dict)

    def teardown(self, stage: str) -> None:
        self._resuming.close()
