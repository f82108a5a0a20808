"""ln-lightning: Logistic-Normal likelihoods for heteroscedastic label noise, for Lightning."""

from ln_lightning.data import DigitsDataModule, NoisyLabelDataModule, NoisySample
from ln_lightning.heads import LinearHeads
from ln_lightning.losses import (
    CrossEntropy,
    ForwardCorrection,
    GeneralizedCrossEntropy,
    Heteroscedastic,
    HeteroscedasticLowRank,
    HeteroscedasticTemperature,
    LabelSmoothing,
    LogisticNormalLoss,
    NoiseAgainstNoise,
    NoisyLabelLoss,
)
from ln_lightning.module import NoisyLabelClassifier

__version__ = "0.1.0"

__all__ = [
    "CrossEntropy",
    "DigitsDataModule",
    "ForwardCorrection",
    "GeneralizedCrossEntropy",
    "Heteroscedastic",
    "HeteroscedasticLowRank",
    "HeteroscedasticTemperature",
    "LabelSmoothing",
    "LinearHeads",
    "LogisticNormalLoss",
    "NoiseAgainstNoise",
    "NoisyLabelClassifier",
    "NoisyLabelDataModule",
    "NoisyLabelLoss",
    "NoisySample",
    "__version__",
]
