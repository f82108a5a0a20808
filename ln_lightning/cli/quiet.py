"""What the libraries print on every run that is not the user's business, hidden while
``ln-fit`` runs."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

from ln_lightning.lightning_internals import QUIET_WARNINGS, RANK_ZERO_LOGGERS

__all__ = ["quiet_libraries"]


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Hide what the libraries print on every run that is not the user's business.

    Lightning's advertisements ("Tip: ... try installing litlogger / litmodels"), the source
    file and line in front of this library's own warnings (they are for the user), a
    deprecation warning that Lightning 2.6's own pytree helper triggers in torch 2.14 and
    ModelCheckpoint's note on a moved checkpoint directory (``lightning_internals.QUIET_WARNINGS``).
    Only while ``ln-fit`` runs: importing the library changes no filter.
    """

    def not_a_tip(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")

    library_format = warnings.formatwarning

    def user_facing(message: Any, category: type, filename: str, lineno: int, line: Any = None):
        # The library's own warnings speak to the user ("your labels look like ..."): one line,
        # without the source file and line number Python puts in front.
        if f"{os.sep}ln_lightning{os.sep}" in str(filename):
            return f"ln-fit: warning: {message}\n"
        return library_format(message, category, filename, lineno, line)

    loggers = [logging.getLogger(name) for name in RANK_ZERO_LOGGERS]
    warnings.formatwarning = user_facing
    with warnings.catch_warnings():
        for message in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        for logger in loggers:
            logger.addFilter(not_a_tip)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeFilter(not_a_tip)
            warnings.formatwarning = library_format
