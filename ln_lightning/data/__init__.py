"""Data modules with synthetic label noise and (input, noisy label, clean label, index) batches."""

from ln_lightning.data.base import NoisyLabelDataModule
from ln_lightning.data.dataset import NoisyLabelDataset, NoisySample
from ln_lightning.data.digits import DigitsDataModule

__all__ = ["DigitsDataModule", "NoisyLabelDataModule", "NoisyLabelDataset", "NoisySample"]
