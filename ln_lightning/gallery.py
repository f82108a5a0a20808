"""Deprecated: moved to :mod:`ln_lightning.label_issues.gallery`. This alias goes in the next
release.

Example:
    >>> import warnings
    >>> with warnings.catch_warnings(record=True):
    ...     from ln_lightning.gallery import write_gallery
    >>> write_gallery.__module__
    'ln_lightning.label_issues.gallery'
"""

from ln_lightning.deprecation import moved
from ln_lightning.label_issues.gallery import *  # noqa: F403
from ln_lightning.label_issues.gallery import __all__  # noqa: F401

moved("ln_lightning.gallery", "ln_lightning.label_issues.gallery")
