"""ln-lightning: Logistic-Normal likelihoods for heteroscedastic label noise, for Lightning."""

from ln_lightning.data import DigitsDataModule, NoisyLabelDataModule, NoisySample
from ln_lightning.heads import LinearHeads
from ln_lightning.losses import CrossEntropy, LogisticNormalLoss, NoisyLabelLoss
from ln_lightning.module import NoisyLabelClassifier

__version__ = "0.1.0"

__all__ = [
    "CrossEntropy",
    "DigitsDataModule",
    "LinearHeads",
    "LogisticNormalLoss",
    "NoisyLabelClassifier",
    "NoisyLabelDataModule",
    "NoisyLabelLoss",
    "NoisySample",
    "__version__",
]
