"""Base LightningDataModule: noise injection, the noisy validation split and the loaders."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader

from ln_lightning.data.dataset import NoisyLabelDataset
from ln_lightning.noise import (
    NOISE_TYPES,
    NoiseResult,
    expected_transition_matrix,
    inject_noise,
)


class NoisyLabelDataModule(pl.LightningDataModule):
    """Train / noisy validation / clean test splits with synthetic label noise.

    Subclasses only say where the data comes from (:meth:`load_arrays`) and set
    :attr:`num_classes`, :attr:`input_shape` and, for asymmetric noise, :attr:`default_class_map`.

    Noise is injected into the whole training pool from ``seed``; the validation split
    (``val_fraction`` of the pool, drawn from the same seed) is therefore noisy too, as in the
    paper; the test set stays clean. Batches are :class:`NoisySample` tuples
    ``(input, noisy label, clean label, index)``.

    Args:
        noise_type: ``none``, ``symmetric`` or ``asymmetric``.
        noise_rate: Corruption probability in [0, 1).
        class_map: Source -> target class for asymmetric noise; the data set's own map if ``None``.
        val_fraction: Fraction of the training pool held out as the noisy validation split.
        batch_size: Batch size of every loader.
        num_workers: DataLoader worker processes.
        seed: Seed of the noise and of the validation split (not of the model).
    """

    num_classes: int
    input_shape: tuple[int, ...]
    default_class_map: Mapping[int, int] | None = None

    def __init__(
        self,
        noise_type: str = "asymmetric",
        noise_rate: float = 0.4,
        class_map: dict[int, int] | None = None,
        val_fraction: float = 0.1,
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
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
        self.save_hyperparameters()
        self.noise_type = noise_type
        self.noise_rate = noise_rate
        self.class_map = class_map
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.noise: NoiseResult | None = None
        self.train_set: NoisyLabelDataset | None = None
        self.val_set: NoisyLabelDataset | None = None
        self.test_set: NoisyLabelDataset | None = None

    @property
    def transition_matrix(self) -> Tensor:
        """The true ``K x K`` transition matrix of the configured noise (its design, not a fit).

        ``ForwardCorrection(transition_matrix="data")`` reads it; the realised matrix of the
        drawn labels is ``self.noise.transition_matrix`` after ``setup``.
        """
        return expected_transition_matrix(
            self.num_classes, self.noise_type, self.noise_rate, self._class_map()
        )

    def _class_map(self) -> Mapping[int, int] | None:
        return self.class_map if self.class_map is not None else self.default_class_map

    @abstractmethod
    def load_arrays(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(train_inputs, train_labels, test_inputs, test_labels)`` with clean labels."""

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_x, train_y, test_x, test_y = self.load_arrays()
        self.noise = inject_noise(
            train_y,
            self.num_classes,
            self.noise_type,
            self.noise_rate,
            self._class_map(),
            self.seed,
        )
        generator = torch.Generator().manual_seed(self.seed + 1)
        order = torch.randperm(len(train_y), generator=generator)
        num_val = max(1, round(self.val_fraction * len(train_y)))
        val_idx, train_idx = order[:num_val].sort().values, order[num_val:].sort().values
        noisy = self.noise.noisy_labels
        self.train_set = NoisyLabelDataset(train_x, noisy, train_y, train_idx)
        self.val_set = NoisyLabelDataset(train_x, noisy, train_y, val_idx)
        self.test_set = NoisyLabelDataset(test_x, test_y, test_y, torch.arange(len(test_y)))
        self._report_noise()

    def _report_noise(self) -> None:
        assert self.noise is not None
        rate = self.noise.realised_rate
        rank_zero_info(
            f"{type(self).__name__}: {self.noise_type} noise at rate {self.noise_rate} "
            f"-> realised noise rate {rate:.2%} of {len(self.noise.noisy_labels)} training-pool "
            f"labels (train {len(self.train_set)}, noisy val {len(self.val_set)}, "
            f"clean test {len(self.test_set)})."
        )
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            for logger in trainer.loggers:
                logger.log_metrics(
                    {"noise/realised_rate": rate, "noise/rate": self.noise_rate}, step=0
                )

    def _loader(self, dataset: NoisyLabelDataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before asking for loaders.")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)
