"""ln-lightning: Logistic-Normal likelihoods for heteroscedastic label noise, for Lightning.

The names below are imported on first use (PEP 562), so ``import ln_lightning.losses.functional``
loads torch alone and ``ln-fit`` can configure the process before torch starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "CrossEntropy": "ln_lightning.losses",
    "ForwardCorrection": "ln_lightning.losses",
    "GeneralizedCrossEntropy": "ln_lightning.losses",
    "Heteroscedastic": "ln_lightning.losses",
    "HeteroscedasticLowRank": "ln_lightning.losses",
    "HeteroscedasticTemperature": "ln_lightning.losses",
    "LabelSmoothing": "ln_lightning.losses",
    "LogisticNormalLoss": "ln_lightning.losses",
    "NoiseAgainstNoise": "ln_lightning.losses",
    "NoisyLabelLoss": "ln_lightning.losses",
    "ShiftedGaussianNoise": "ln_lightning.losses",
    "DigitsDataModule": "ln_lightning.data",
    "NoisyLabelDataModule": "ln_lightning.data",
    "NoisySample": "ln_lightning.data",
    "NoiseSpec": "ln_lightning.noise",
    "LinearHeads": "ln_lightning.heads",
    "NoisyLabelClassifier": "ln_lightning.module",
}

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
    "NoiseSpec",
    "NoisyLabelClassifier",
    "NoisyLabelDataModule",
    "NoisyLabelLoss",
    "NoisySample",
    "ShiftedGaussianNoise",
    "__version__",
]

if TYPE_CHECKING:  # the defining modules, for type checkers and editors
    from ln_lightning.data.base import NoisyLabelDataModule
    from ln_lightning.data.dataset import NoisySample
    from ln_lightning.data.digits import DigitsDataModule
    from ln_lightning.heads import LinearHeads
    from ln_lightning.losses.base import NoisyLabelLoss
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
    )
    from ln_lightning.module import NoisyLabelClassifier
    from ln_lightning.noise import NoiseSpec


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ln_lightning' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
