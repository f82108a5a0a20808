"""Deprecated: moved to :mod:`ln_lightning.label_issues.gallery`. This alias goes in the next
release.

Example:
    >>> import warnings
    >>> with warnings.catch_warnings(record=True):
    ...     from ln_lightning.gallery import write_gallery
    >>> write_gallery.__module__
    'ln_lightning.label_issues.gallery'
"""

import warnings

from ln_lightning.label_issues.gallery import *  # noqa: F403
from ln_lightning.label_issues.gallery import __all__  # noqa: F401

warnings.warn(
    "ln_lightning.gallery moved to ln_lightning.label_issues.gallery; the old name goes in the "
    "next release.",
    DeprecationWarning,
    stacklevel=2,
)
