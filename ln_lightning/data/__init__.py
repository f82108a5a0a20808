"""Data modules with label noise and (input, noisy label, clean label, index) batches.

Every module of this package is imported here, and each data module in it registers itself
(:func:`ln_lightning.registry.register_datamodule`); they are exported under their class names.
"""

from ln_lightning.data.base import NoisyLabelDataModule
from ln_lightning.data.clothing1m import ClassBalancedSampler
from ln_lightning.data.dataset import NoisyLabelDataset, NoisySample, unpack_batch
from ln_lightning.data.splits import DataSplits
from ln_lightning.registry import import_package as _import_package

_REGISTERED = _import_package(__name__, __path__, "datamodule")
globals().update(_REGISTERED)

__all__ = [
    "ClassBalancedSampler",
    "DataSplits",
    "NoisyLabelDataModule",
    "NoisyLabelDataset",
    "NoisySample",
    "unpack_batch",
]
__all__ += sorted(_REGISTERED)  # the registered data modules
