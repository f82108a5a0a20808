"""Losses for learning with noisy labels: pure functions in ``functional`` and module wrappers."""

from ln_lightning.losses import functional
from ln_lightning.losses.base import LossReport, NoisyLabelLoss, TrainingContext, teacher_key
from ln_lightning.losses.forward import ForwardCorrection
from ln_lightning.losses.heteroscedastic import (
    Heteroscedastic,
    HeteroscedasticLowRank,
    HeteroscedasticTemperature,
)
from ln_lightning.losses.logistic_normal import LogisticNormalLoss
from ln_lightning.losses.shifted_gaussian import ShiftedGaussianNoise
from ln_lightning.losses.softmax import (
    CrossEntropy,
    GeneralizedCrossEntropy,
    LabelSmoothing,
    NoiseAgainstNoise,
    SoftmaxLoss,
)

__all__ = [
    "CrossEntropy",
    "ForwardCorrection",
    "GeneralizedCrossEntropy",
    "Heteroscedastic",
    "HeteroscedasticLowRank",
    "HeteroscedasticTemperature",
    "LabelSmoothing",
    "LogisticNormalLoss",
    "LossReport",
    "NoiseAgainstNoise",
    "NoisyLabelLoss",
    "ShiftedGaussianNoise",
    "SoftmaxLoss",
    "TrainingContext",
    "functional",
    "teacher_key",
]
