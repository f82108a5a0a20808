"""Fixtures every test shares."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator

import pytest

# Under pytest-xdist (``-n auto`` in pyproject.toml) each worker gets its share of the cores, for
# itself and for the ``ln-fit`` processes its tests start: N workers with every core each would
# oversubscribe the machine and run slower than one process.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _cli_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    """``sys.argv`` as if ``ln-fit`` were called bare: tests give LightningCLI its ``args``
    explicitly, and pytest's own arguments in ``sys.argv`` would make it warn on every call."""
    monkeypatch.setattr(sys, "argv", ["ln-fit"])


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def lightning_log() -> Iterator[list[str]]:
    """The messages Lightning's loggers (``rank_zero_info``, ...) emit during the test.

    Lightning's logger stops propagating to the root logger when it is imported before any
    handler exists, which ``caplog`` then misses; this listens on it directly.
    """
    collector = _Collector()
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    for logger in loggers:
        logger.addHandler(collector)
    try:
        yield collector.messages
    finally:
        for logger in loggers:
            logger.removeHandler(collector)
