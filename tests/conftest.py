"""Fixtures every test shares."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def _cli_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    """``sys.argv`` as if ``ln-fit`` were called bare: tests give LightningCLI its ``args``
    explicitly, and pytest's own arguments in ``sys.argv`` would make it warn on every call."""
    monkeypatch.setattr(sys, "argv", ["ln-fit"])
