"""ln-lightning: train classifiers that stay accurate when their labels are wrong.

The names below are imported on first use (PEP 562), so ``import ln_lightning.losses.functional``
loads torch alone and ``ln-fit`` can configure the process before torch starts. Besides the few
named here, every registered method (``ln_lightning.CrossEntropy``, ...) and data module
(``ln_lightning.DigitsDataModule``, ...) is exported under its class name, from the registry
(:mod:`ln_lightning.registry`): a new loss needs nothing in this file.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

__version__ = "0.1.0"

#: Public names that are not registered methods or data modules -> their defining module.
_EXPORTS = {
    "LinearHeads": "ln_lightning.heads",
    "NoiseSpec": "ln_lightning.noise",
    "NoisyLabelClassifier": "ln_lightning.module",
    "NoisyLabelDataModule": "ln_lightning.data.base",
    "NoisyLabelLoss": "ln_lightning.losses.base",
    "NoisySample": "ln_lightning.data.dataset",
    "list_datamodules": "ln_lightning.registry",
    "list_methods": "ln_lightning.registry",
    "list_strategies": "ln_lightning.registry",
    "TrainingStrategy": "ln_lightning.strategies.base",
}


def _public_names() -> list[str]:
    from ln_lightning.registry import class_names

    return sorted(
        {
            *_EXPORTS,
            *class_names("method"),
            *class_names("strategy"),
            *class_names("datamodule"),
            "__version__",
        }
    )


def __getattr__(name: str) -> Any:
    if name == "__all__":  # computed on first use: the registry is filled by importing
        globals()["__all__"] = value = _public_names()
        return value
    if name.startswith("__"):
        raise AttributeError(f"module 'ln_lightning' has no attribute {name!r}")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif importlib.util.find_spec(f"{__name__}.{name}") is not None:
        # a submodule (``from ln_lightning import outputs``): imported alone, not through the
        # registry, which imports every module and would meet the one importing this
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        from ln_lightning.registry import find_class

        value = find_class(name)
        if value is None:
            raise AttributeError(f"module 'ln_lightning' has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_public_names()})
