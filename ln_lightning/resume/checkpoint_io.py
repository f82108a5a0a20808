"""Checkpoint files: read without running code, every unreadable one named in one line, and
written whole.

A checkpoint is a pickle, and unpickling can run any code the file holds. Every checkpoint this
library writes holds plain data only (tensors, numbers, strings, lists and dicts; the model's
hyper-parameters as class paths and arguments), so every read here is
``torch.load(weights_only=True)``, which refuses anything else. A file that needs more (an old
checkpoint, another project's) loads only when the caller says it trusts it:
``--weights_only false`` on ``ln-fit``, ``weights_only=False`` in Python.

Every fault gets one line that names the file and what is wrong with it (:class:`CheckpointError`):
missing, empty, cut short, not a checkpoint, a checkpoint of another program, a checkpoint of a
newer version of this library, or code inside. :class:`SafeCheckpointIO` is the trainer's side
of it (``ln-fit`` installs it): reads as above, and writes through
:func:`~ln_lightning.files.atomic_write`, so a kill during a save leaves the previous file.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from typing_extensions import override

from ln_lightning.files import atomic_write
from ln_lightning.lightning_internals import load_checkpoint, migrate_checkpoint
from ln_lightning.resume.record import CHECKPOINT_FORMAT, RECORD_KEY, library_version

__all__ = [
    "TRUST_HINT",
    "CheckpointError",
    "SafeCheckpointIO",
    "check_checkpoint_contents",
    "checkpoint_file_fault",
    "read_checkpoint",
    "read_record",
    "use_safe_checkpoint_io",
]

#: What to do with a checkpoint that needs full unpickling, and what it risks.
TRUST_HINT = (
    "If you trust whoever made the file, load it with --weights_only false (ln-fit) or "
    "weights_only=False (Python): unpickling runs whatever code the file holds."
)
_ZIP = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
_PICKLE = b"\x80"  # the legacy format: a bare pickle


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line naming the file and why.

    Example:
        >>> try:
        ...     read_checkpoint("shared/model.ckpt")
        ... except CheckpointError as error:
        ...     print(error)
        checkpoint shared/model.ckpt does not exist.
    """


def _is_remote(path: str | Path) -> bool:
    return "://" in str(path)


def checkpoint_file_fault(path: str | Path) -> str | None:
    """What is wrong with a local checkpoint file before reading it, or ``None``.

    Cheap: reads the first bytes and, for a zip archive (PyTorch's format), its directory at the
    end, which a file cut short has lost.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "notes.ckpt"
        >>> _ = path.write_text("epoch 3 was good")
        >>> checkpoint_file_fault(path)
        "is not a checkpoint but a text file (it starts with 'epoch 3 was good')"
    """
    path = Path(path)
    if not path.exists():
        others = sorted(p.name for p in path.parent.glob("*.ckpt")) if path.parent.is_dir() else []
        there = f" (that folder holds {', '.join(others[:5])})" if others else ""
        return f"does not exist{there}"
    if path.is_dir():
        return "is a folder, not a checkpoint file"
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes): a copy or a write that never finished"
    with path.open("rb") as handle:
        head = handle.read(64)
    if head.startswith(_ZIP):
        if not zipfile.is_zipfile(path):
            return (
                f"is cut short ({size:,} bytes; the end of the archive is missing): a copy or "
                "a write that did not finish. Copy it again, or use an earlier checkpoint"
            )
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if not any(name.rsplit("/", 1)[-1] == "data.pkl" for name in names):
            return "is a zip archive but not a PyTorch checkpoint (it holds no data.pkl)"
        return None
    if head.startswith(_PICKLE):
        return None
    text = _text(head)
    if text is None:
        return f"is not a PyTorch checkpoint (it starts with the bytes {head[:8].hex(' ')})"
    return f"is not a checkpoint but a text file (it starts with {text.splitlines()[0][:40]!r})"


def _text(head: bytes) -> str | None:
    """``head`` as text if it reads as UTF-8 text (a character cut at its end allowed)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 3:
            return None
        text = head[: error.start].decode("utf-8")
    printable = text.strip() and all(c.isprintable() or c in "\t\r\n" for c in text)
    return text.strip() if printable else None


def _unsafe_globals(path: str | Path, error: Exception) -> list[str]:
    """The names of the objects a file would have to build by running code."""
    finder = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)  # torch 2.6+
    if finder is not None and not _is_remote(path):
        try:
            return list(finder(str(path)))
        except Exception:
            pass
    return sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(error))))


def check_checkpoint_contents(checkpoint: Any, path: str | Path) -> None:
    """Raise :class:`CheckpointError` unless ``checkpoint`` is one this library can continue:
    a Lightning checkpoint of a :class:`~ln_lightning.NoisyLabelClassifier` in a format this
    version reads.
    """
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        what = (
            f"a dict of {len(checkpoint)} entries such as {next(iter(checkpoint))!r}"
            if isinstance(checkpoint, dict) and checkpoint
            else f"a {type(checkpoint).__name__}"
        )
        raise CheckpointError(
            f"{path} is not a checkpoint of ln-lightning but {what}, from another program. For "
            "the weights of a timm backbone use --model.pretrained_file; for ln-fit's own, "
            "give a .ckpt from a run's checkpoints/ folder."
        )
    record = checkpoint.get(RECORD_KEY)
    hyperparameters = checkpoint.get("hyper_parameters") or {}
    if record is None and not {"backbone", "loss"} <= set(hyperparameters):
        model = hyperparameters.get("_class_path") or checkpoint.get("hparams_name") or "unknown"
        raise CheckpointError(
            f"{path} is a Lightning checkpoint of another program's model ({model}), not of "
            "ln-lightning's NoisyLabelClassifier."
        )
    written = (record or {}).get("format", 1)
    if written > CHECKPOINT_FORMAT:
        version = (record or {}).get("version", "a newer version")
        raise CheckpointError(
            f"{path} was written by ln-lightning {version} (checkpoint format {written}); this "
            f"is ln-lightning {library_version()}, which reads format {CHECKPOINT_FORMAT} and "
            "older: upgrade it (pip install -U ln-lightning)."
        )


def _load(path: str | Path, map_location: Any, weights_only: bool, mmap: bool, legacy: bool) -> Any:
    mappable = False  # only a local file in the zip format can be memory-mapped
    if mmap and not _is_remote(path):
        with Path(path).open("rb") as handle:
            mappable = handle.read(len(_ZIP)) == _ZIP
    if mappable:
        return torch.load(path, map_location=map_location, weights_only=weights_only, mmap=True)
    return load_checkpoint(path, map_location, weights_only, legacy)


def read_checkpoint(
    path: str | Path,
    map_location: Any = "cpu",
    weights_only: bool | None = True,
    contents: bool = True,
    mmap: bool = False,
    migrate: bool = True,
) -> dict[str, Any]:
    """A checkpoint file, read without running code unless asked to.

    Args:
        path: A local file or a remote URL (``s3://...``; read by Lightning through fsspec).
        map_location: As for :func:`torch.load`.
        weights_only: ``True`` (or ``None``): plain data only; ``False``: full unpickling, for
            a file you trust (it runs whatever code the file holds).
        contents: Also check that it is a checkpoint of this library
            (:func:`check_checkpoint_contents`).
        mmap: Memory-map the tensors (cheap reads of the record of a large file).
        migrate: Bring a checkpoint of an older Lightning to the current layout (``False``
            where the caller does it: the trainer).

    Raises:
        CheckpointError: One line naming the file and what is wrong with it.

    Example:
        >>> read_checkpoint("runs/none/last.ckpt")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ln_lightning...CheckpointError: checkpoint runs/none/last.ckpt does not exist.
    """
    if not _is_remote(path):
        fault = checkpoint_file_fault(path)
        if fault is not None:
            raise CheckpointError(f"checkpoint {path} {fault}.")
    safe = weights_only is not False
    try:
        checkpoint = _load(path, map_location, safe, mmap, legacy=migrate)
    except pickle.UnpicklingError as error:
        if safe and "weights only" in str(error).lower():
            names = ", ".join(_unsafe_globals(path, error)) or "objects"
            raise CheckpointError(
                f"refused to load {path}: it holds {names}, which loading would have to run as "
                f"code (a checkpoint of ln-lightning holds plain data only). {TRUST_HINT}"
            ) from None
        raise CheckpointError(f"checkpoint {path} is damaged ({_first_line(error)}).") from None
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, AttributeError) as error:
        raise CheckpointError(
            f"checkpoint {path} could not be read ({type(error).__name__}: "
            f"{_first_line(error)}): it may be damaged; copy it again, or use an earlier one."
        ) from None
    if contents:
        check_checkpoint_contents(checkpoint, path)
    return migrate_checkpoint(checkpoint, path) if migrate else checkpoint


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:200]


def read_record(path: str | Path, weights_only: bool | None = True) -> dict[str, Any]:
    """The run record of a checkpoint file; for older checkpoints, what its hyper-parameters say.

    Memory-maps the file, so reading a large checkpoint costs little.

    Raises:
        CheckpointError: The file is unreadable or not a checkpoint of this library.
    """
    checkpoint = read_checkpoint(path, weights_only=weights_only, mmap=True)
    record = checkpoint.get(RECORD_KEY)
    if record is not None:
        return record
    hparams = checkpoint.get("hyper_parameters") or {}
    loss = hparams.get("loss")
    return {
        "backbone": hparams.get("backbone") if isinstance(hparams.get("backbone"), str) else None,
        "loss": loss if isinstance(loss, dict) else None,
        "num_classes": hparams.get("num_classes"),
        "datamodule": None,
    }


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, reading safely and writing whole.

    * **Reads** with :func:`read_checkpoint`: ``weights_only=True`` unless the call says
      ``False`` (``ln-fit ... --weights_only false``), and one line naming the file for every
      fault.
    * **Writes** a local checkpoint through :func:`~ln_lightning.files.atomic_write` (a temporary
      file in the same folder, fsynced, renamed): a process killed, or a disk that fills up,
      during a save leaves the previous checkpoint as it was. (Lightning's own save goes
      through the system's temporary folder and, when that is another file system, copies
      the file into place, which a kill can cut short.) Remote paths are Lightning's.

    ``ln-fit`` puts it on the trainer's strategy unless a config brings its own checkpoint IO.
    In Python: ``pl.Trainer(plugins=[SafeCheckpointIO()])``.

    Example:
        >>> import lightning.pytorch as pl
        >>> trainer = pl.Trainer(plugins=[SafeCheckpointIO()], logger=False)
        >>> type(trainer.strategy.checkpoint_io).__name__
        'SafeCheckpointIO'
    """

    @override
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        if storage_options is not None or _is_remote(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        with atomic_write(path, "wb") as handle:
            torch.save(checkpoint, handle)

    @override
    def load_checkpoint(
        self,
        path: str | Path,
        map_location: Callable | Any = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        return read_checkpoint(path, map_location, weights_only, migrate=False)


def use_safe_checkpoint_io(trainer: pl.Trainer) -> bool:
    """Give ``trainer`` a :class:`SafeCheckpointIO` unless it was given a checkpoint IO of its
    own (a plugin in its config); ``True`` if it now has one."""
    strategy = trainer.strategy
    if type(strategy.checkpoint_io) is TorchCheckpointIO:
        strategy.checkpoint_io = SafeCheckpointIO()
    return isinstance(strategy.checkpoint_io, SafeCheckpointIO)
