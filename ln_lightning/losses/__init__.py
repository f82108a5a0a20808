"""Losses for learning with noisy labels: pure functions in ``functional`` and module wrappers."""

from ln_lightning.losses import functional
from ln_lightning.losses.base import NoisyLabelLoss
from ln_lightning.losses.cross_entropy import CrossEntropy
from ln_lightning.losses.logistic_normal import LogisticNormalLoss

__all__ = ["CrossEntropy", "LogisticNormalLoss", "NoisyLabelLoss", "functional"]
