"""Deprecated: moved to :mod:`ln_lightning.lightning_internals` (every read of Lightning
internals, in one low-level home). This alias goes in the next release.

Example:
    >>> import warnings
    >>> with warnings.catch_warnings(record=True):
    ...     from ln_lightning.resume.lightning import is_fitting
    >>> is_fitting(None)
    False
"""

from ln_lightning.deprecation import moved
from ln_lightning.lightning_internals import *  # noqa: F403
from ln_lightning.lightning_internals import __all__  # noqa: F401

moved("ln_lightning.resume.lightning", "ln_lightning.lightning_internals")
