"""Data modules with label noise and (input, noisy label, clean label, index) batches.

Every module of this package is imported here, and each data module in it registers itself
(:func:`ln_lightning.registry.register_datamodule`); they are exported under their class names.
"""

import importlib as _importlib
import pkgutil as _pkgutil

from ln_lightning.data.base import NoisyLabelDataModule
from ln_lightning.data.clothing1m import ClassBalancedSampler
from ln_lightning.data.dataset import NoisyLabelDataset, NoisySample, unpack_batch
from ln_lightning.data.splits import DataSplits
from ln_lightning.registry import class_names as _class_names
from ln_lightning.registry import registered as _registered

for _module in _pkgutil.iter_modules(__path__):
    _importlib.import_module(f"{__name__}.{_module.name}")
globals().update({entry.cls.__name__: entry.cls for entry in _registered("datamodule")})

__all__ = [
    "ClassBalancedSampler",
    "DataSplits",
    "NoisyLabelDataModule",
    "NoisyLabelDataset",
    "NoisySample",
    "unpack_batch",
]
__all__ += _class_names("datamodule")  # the registered data modules
