"""Losses for learning with noisy labels: pure functions in ``functional`` and module wrappers.

Every module of this package is imported here, and each method in it registers itself
(:func:`ln_lightning.registry.register_method`); the methods are exported under their class
names. A new loss needs its file here, nothing in this file.
"""

from ln_lightning.losses import functional
from ln_lightning.losses.base import LossReport, NoisyLabelLoss, TrainingContext, teacher_key
from ln_lightning.losses.softmax import SoftmaxLoss
from ln_lightning.registry import import_package as _import_package

_REGISTERED = _import_package(__name__, __path__, "method")
globals().update(_REGISTERED)

__all__ = [
    "LossReport",
    "NoisyLabelLoss",
    "SoftmaxLoss",
    "TrainingContext",
    "functional",
    "teacher_key",
]
__all__ += sorted(_REGISTERED)  # the registered methods
