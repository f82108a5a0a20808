"""Files written whole or not at all, and folders checked before a run needs them.

Every file the library writes for later use (``label_issues.csv``, ``cleaned_labels.csv``,
``pred_probs.npy``, checkpoints, ...) goes through :func:`atomic_write`: a process killed, or a
disk that fills up, while it writes leaves the previous file as it was, never a shorter file
that still parses. :func:`check_writable` finds a folder that cannot be written before
training, not after it. Standard library only: every layer may use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "TEMPORARY_SUFFIX",
    "WriteError",
    "atomic_copy",
    "atomic_write",
    "check_writable",
    "save_figure",
]

#: The suffix of the hidden temporary file (``.<name>.<random>.tmp``) a write goes to first; a
#: process killed mid-write can leave one behind, which is safe to delete.
TEMPORARY_SUFFIX = ".tmp"
#: Where the files of a run can be sent instead, for the messages below.
ELSEWHERE = "--trainer.default_root_dir or the logger's save_dir"


class WriteError(OSError):
    """A file or folder could not be written; the message is one line that names it, says why
    and what to do.

    Example:
        >>> try:
        ...     check_writable("/dev/null/runs", "the checkpoints")
        ... except WriteError as error:
        ...     print(error)
        cannot write the checkpoints to /dev/null/runs: /dev/null is a file, not a folder.
    """


def reason(error: OSError) -> str:
    """Why an ``OSError`` stopped a write, in words a user acts on."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"no space left on the device ({error.strerror}): free some, or write the run "
            f"elsewhere ({ELSEWHERE})"
        )
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to write there: change its permissions or use {ELSEWHERE}"
    if error.errno == errno.EROFS:
        return f"the file system is read-only: use {ELSEWHERE}"
    return error.strerror or str(error) or type(error).__name__


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


@contextlib.contextmanager
def atomic_write(
    path: str | Path, mode: str = "w", *, encoding: str = "utf-8", newline: str | None = None
) -> Iterator[IO[Any]]:
    """Write ``path`` whole or not at all.

    The block writes into a hidden temporary file in the same folder
    (``.<name>.<random>.tmp``), which is flushed, fsynced and renamed over ``path`` when the
    block ends (a rename within a folder is atomic), and the folder is fsynced so the rename
    survives a power cut. If the block raises, or the disk fills up, the temporary file is
    removed and ``path`` keeps what it held. A process killed before the rename leaves ``path``
    untouched and, at worst, the temporary file.

    Args:
        path: The file to write (its folder is created).
        mode: ``"w"`` (text) or ``"wb"`` (bytes); ``"w+b"`` for writers that seek and read.
        encoding: Of a text file.
        newline: As for :func:`open` (``""`` for the ``csv`` module).

    Raises:
        WriteError: The file could not be written (full disk, no permission, ...); one line.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "labels.csv"
        >>> with atomic_write(path, newline="") as handle:
        ...     _ = handle.write("path,label\\n")
        >>> path.read_text()
        'path,label\\n'
        >>> with atomic_write(path) as handle:  # a failure half-way leaves the old file
        ...     _ = handle.write("half")
        ...     raise RuntimeError("killed")
        Traceback (most recent call last):
            ...
        RuntimeError: killed
        >>> path.read_text(), sorted(p.name for p in path.parent.iterdir())
        ('path,label\\n', ['labels.csv'])
    """
    if mode not in ("w", "wb", "w+b"):
        raise ValueError(f"mode must be 'w', 'wb' or 'w+b'; got {mode!r}.")
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # os.open with 0o666 honours the umask (mkstemp would make the file private).
        descriptor = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666)
    except OSError as error:
        raise WriteError(f"cannot write {path}: {reason(error)}.") from error
    try:
        text = {} if "b" in mode else {"encoding": encoding, "newline": newline}
        with os.fdopen(descriptor, mode, **text) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            kept = "its previous content is unchanged" if path.exists() else "nothing was written"
            raise WriteError(f"could not write {path}: {reason(error)}; {kept}.") from error
        raise
    _fsync_folder(path.parent)


def atomic_copy(source: str | Path, target: str | Path) -> Path:
    """Copy ``source`` to ``target`` whole or not at all (:func:`atomic_write`)."""
    with open(source, "rb") as read, atomic_write(target, "wb") as write:
        shutil.copyfileobj(read, write, length=1 << 20)
    return Path(target)


def save_figure(figure: Any, path: str | Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure as a PNG file, whole or not at all (:func:`atomic_write`)."""
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=dpi)
    return Path(path)


def check_writable(folder: str | Path, what: str = "the run's files") -> None:
    """Raise :class:`WriteError` now when ``folder`` cannot be created or written to.

    Creates nothing that lasts: a temporary file is made and removed in ``folder``, or in its
    nearest existing parent when it does not exist yet (which is then where it would be
    created). Run before training, so a read-only or full place is found before the first
    epoch instead of after the last.

    Args:
        folder: Where files will be written.
        what: What goes there, for the message (``"the checkpoints"``).

    Example:
        >>> import tempfile
        >>> check_writable(tempfile.mkdtemp())  # fine: nothing happens
        >>> check_writable("/dev/null/runs")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ln_lightning.files.WriteError: cannot write ... /dev/null is a file, not a folder.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise WriteError(f"cannot write {what} to {folder}: {existing} is a file, not a folder.")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".ln-write-check-"):
            pass
    except OSError as error:
        where = "" if existing == folder else f" (its nearest existing folder, {existing})"
        raise WriteError(f"cannot write {what} to {folder}{where}: {reason(error)}.") from error
