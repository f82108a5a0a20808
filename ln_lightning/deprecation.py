"""Names that moved keep working for one release, with a warning that says where they went."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["moved", "moved_names"]


def moved(old: str, new: str, stacklevel: int = 3) -> None:
    """Warn that ``old`` (a module or ``module.name``) is now ``new`` and goes in the next
    release (a ``DeprecationWarning``).

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     moved("ln_lightning.gallery", "ln_lightning.label_issues.gallery")
        >>> str(caught[0].message).split(";")[0]
        'ln_lightning.gallery moved to ln_lightning.label_issues.gallery'
    """
    warnings.warn(
        f"{old} moved to {new}; the old name goes in the next release.",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def moved_names(module: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for names that moved: ``names`` maps each old name to the
    module that now defines it; reading one warns (:func:`moved`) and returns the object.

    Example:
        >>> __getattr__ = moved_names("old_home", {"Path": "pathlib"})
        >>> import warnings
        >>> with warnings.catch_warnings(record=True):
        ...     __getattr__("Path").__name__
        'Path'
    """

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        moved(f"{module}.{name}", f"{names[name]}.{name}")
        return getattr(importlib.import_module(names[name]), name)

    return __getattr__
