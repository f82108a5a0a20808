"""A callback the kill-anywhere test adds to ``ln-fit``: SIGKILL the process at a given point.

Points (``point``, ``nth``):

* ``step``: right after optimiser step ``nth`` (mid-epoch);
* ``write:<name>``: during the ``nth`` write of a file named ``<name>`` (``last.ckpt``,
  ``label_issues.csv``, ...; a prefix such as ``best-epoch`` matches too), after its first bytes
  reached the temporary file;
* ``rename:<name>``: the same file written whole, just before the rename that puts it in place;
* ``pass``: during the label-issue pass after training, at the ``nth`` forward call;
* ``test``: after the ``nth`` batch of the test after fit.

Every write of the library goes through ``ln_lightning.files.atomic_write``; the probe wraps
the ``os`` calls that module makes, so it kills inside the real write, not a copy of it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

import ln_lightning.files as files


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class _Handle:
    """A file object that kills the process after its first write."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def write(self, data: Any) -> int:
        written = self._handle.write(data)
        self._handle.flush()
        die()
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _Handle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._handle.__exit__(*exc)


class KillAt(Callback):
    """SIGKILL this ``ln-fit`` process at ``point`` (see the module's docstring)."""

    def __init__(self, point: str, nth: int = 1) -> None:
        self.point, self.nth = point, nth
        self.seen = 0
        kind, _, name = point.partition(":")
        if kind == "write":
            self._patch_open(name)
        elif kind == "rename":
            self._patch_rename(name)

    def _count(self) -> bool:
        self.seen += 1
        return self.seen == self.nth

    @staticmethod
    def _target(temporary: str) -> str:
        """``last.ckpt`` from ``.last.ckpt.1a2b3c4d.tmp``."""
        return Path(temporary).name[1:].rsplit(".", 2)[0]

    def _patch_open(self, name: str) -> None:
        fdopen = os.fdopen

        def probe(descriptor: int, *args: Any, **kwargs: Any) -> Any:
            handle = fdopen(descriptor, *args, **kwargs)
            target = self._target(os.readlink(f"/proc/self/fd/{descriptor}"))
            if target.startswith(name) and self._count():
                return _Handle(handle)
            return handle

        files.os.fdopen = probe  # the os module as ln_lightning.files calls it

    def _patch_rename(self, name: str) -> None:
        replace = os.replace

        def probe(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
            if Path(target).name.startswith(name) and self._count():
                die()
            replace(source, target, *args, **kwargs)

        files.os.replace = probe

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        if self.point == "step" and trainer.global_step == self.nth:
            die()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.point != "pass":
            return
        forward = pl_module.forward

        def probe(*args: Any, **kwargs: Any) -> Any:
            if self._count():
                die()
            return forward(*args, **kwargs)

        pl_module.forward = probe  # the label-issue pass runs next, in on_fit_end

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        if self.point == "test" and self._count():
            die()
