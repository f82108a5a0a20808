"""Data modules with label noise and (input, noisy label, clean label, index) batches."""

from ln_lightning.data.arrays import ArrayDataModule
from ln_lightning.data.base import NoisyLabelDataModule
from ln_lightning.data.cifar import (
    CIFAR10DataModule,
    CIFAR10NDataModule,
    CIFAR100DataModule,
    CIFAR100NDataModule,
)
from ln_lightning.data.clothing1m import ClassBalancedSampler, Clothing1MDataModule
from ln_lightning.data.dataset import NoisyLabelDataset, NoisySample, unpack_batch
from ln_lightning.data.digits import DigitsDataModule
from ln_lightning.data.huggingface import HFImageDataModule
from ln_lightning.data.image_folder import ImageFolderDataModule
from ln_lightning.data.mnist import FashionMNISTDataModule, MNISTDataModule
from ln_lightning.data.splits import DataSplits
from ln_lightning.data.toy import CirclesDataModule, TwoMoonsDataModule

__all__ = [
    "ArrayDataModule",
    "CIFAR10DataModule",
    "CIFAR10NDataModule",
    "CIFAR100DataModule",
    "CIFAR100NDataModule",
    "CirclesDataModule",
    "ClassBalancedSampler",
    "Clothing1MDataModule",
    "DataSplits",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "HFImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "NoisyLabelDataModule",
    "NoisyLabelDataset",
    "NoisySample",
    "TwoMoonsDataModule",
    "unpack_batch",
]
