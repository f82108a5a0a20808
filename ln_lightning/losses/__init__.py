"""Losses for learning with noisy labels: pure functions in ``functional`` and module wrappers.

Every module of this package is imported here, and each method in it registers itself
(:func:`ln_lightning.registry.register_method`); the methods are exported under their class
names. A new loss needs its file here, nothing in this file.
"""

import importlib as _importlib
import pkgutil as _pkgutil

from ln_lightning.losses import functional
from ln_lightning.losses.base import LossReport, NoisyLabelLoss, TrainingContext, teacher_key
from ln_lightning.losses.softmax import SoftmaxLoss
from ln_lightning.registry import class_names as _class_names
from ln_lightning.registry import registered as _registered

for _module in _pkgutil.iter_modules(__path__):
    _importlib.import_module(f"{__name__}.{_module.name}")
globals().update({entry.cls.__name__: entry.cls for entry in _registered("method")})

__all__ = [
    "LossReport",
    "NoisyLabelLoss",
    "SoftmaxLoss",
    "TrainingContext",
    "functional",
    "teacher_key",
]
__all__ += _class_names("method")  # the registered methods
