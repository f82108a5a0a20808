"""Files written whole or not at all (``atomic_write``), and folders checked before a run."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

import ln_lightning.files as files
from ln_lightning import label_issues
from ln_lightning.files import (
    TEMPORARY_SUFFIX,
    WriteError,
    atomic_copy,
    atomic_write,
    check_writable,
)

OLD = b"index,label\n0,cat\n1,dog\n"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(TEMPORARY_SUFFIX))


@pytest.fixture
def old_file(tmp_path: Path) -> Path:
    path = tmp_path / "cleaned_labels.csv"
    path.write_bytes(OLD)
    return path


def test_a_write_replaces_the_file_whole_in_text_and_bytes(tmp_path):
    path = tmp_path / "deep" / "er" / "labels.csv"  # folders are made
    with atomic_write(path, newline="") as handle:
        handle.write("path,label\r\n")
    assert path.read_bytes() == b"path,label\r\n"
    with atomic_write(path, "wb") as handle:
        handle.write(b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert leftovers(path.parent) == []


def test_the_new_file_gets_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "a.csv") as handle:
            handle.write("x")
    finally:
        os.umask(mask)
    assert (tmp_path / "a.csv").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0o600


def test_a_crash_between_the_write_and_the_rename_leaves_the_old_file(old_file, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # what a crash at that instant looks like from inside

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt), atomic_write(old_file, "wb") as handle:
        handle.write(b"index,label\n0,cat\n")  # shorter: it would still parse
    assert old_file.read_bytes() == OLD
    assert leftovers(old_file.parent) == []


def test_a_process_killed_between_the_write_and_the_rename_leaves_the_old_file(old_file):
    """A real SIGKILL: no clean-up runs, the old file is byte-identical and only the hidden
    temporary file (written whole) is left beside it."""
    script = (
        "import os, signal, ln_lightning.files as f\n"
        "f.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
        f"with f.atomic_write({str(old_file)!r}, 'wb') as h:\n"
        "    h.write(b'index,label\\n0,cat\\n')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == -9, result.stderr.decode()[-2000:]
    assert old_file.read_bytes() == OLD
    (temporary,) = leftovers(old_file.parent)
    assert temporary.startswith(f".{old_file.name}.")


@pytest.mark.parametrize("where", ["write", "fsync"])
@pytest.mark.parametrize("existed", [True, False], ids=["over an old file", "a new file"])
def test_a_full_disk_gives_one_line_and_leaves_no_partial_file(
    tmp_path, monkeypatch, where, existed
):
    path = tmp_path / "label_issues.csv"
    if existed:
        path.write_bytes(OLD)
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if where == "fsync":  # a network file system reports it when the data is flushed

        def fsync(descriptor):
            raise full

        monkeypatch.setattr(files.os, "fsync", fsync)
    with pytest.raises(WriteError) as caught, atomic_write(path) as handle:
        handle.write("rank,index\n1,7\n")
        if where == "write":
            raise full
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "no space left" in message
    assert ("unchanged" if existed else "nothing was written") in message
    assert (path.read_bytes() == OLD) if existed else not path.exists()
    assert leftovers(tmp_path) == []


def test_a_library_writer_on_a_full_disk_leaves_no_partial_file(tmp_path, monkeypatch):
    """``write_cleaned_labels`` (what ``--data.labels_file`` reads back) through the helper."""
    table = label_issues.IssueTable(
        index=torch.arange(4), split=["train"] * 4, given=torch.tensor([0, 1, 0, 1]),
        clean=torch.full((4,), -1), probs=torch.tensor([[0.9, 0.1]] * 4),
        score=torch.rand(4), paths=[f"/data/{i}.png" for i in range(4)],
    )  # fmt: skip
    issues = label_issues.find_label_issues(table.probs, table.given)
    path = tmp_path / "cleaned_labels.csv"
    label_issues.write_cleaned_labels(table, issues, ["cat", "dog"], path)
    before = path.read_bytes()
    writes = 0
    original = files.os.fdopen

    def fdopen(*args, **kwargs):
        handle = original(*args, **kwargs)

        def write(data):  # the disk fills up at the first write
            nonlocal writes
            writes += 1
            raise OSError(errno.ENOSPC, "No space left on device")

        handle.write = write
        return handle

    monkeypatch.setattr(files.os, "fdopen", fdopen)
    with pytest.raises(WriteError, match="no space left"):
        label_issues.write_cleaned_labels(table, issues, ["cat", "dog"], path, "relabel")
    assert writes >= 1 and path.read_bytes() == before and leftovers(tmp_path) == []


def test_an_error_inside_the_block_is_not_relabelled_and_removes_the_temporary_file(old_file):
    with pytest.raises(ValueError, match="bad row"), atomic_write(old_file) as handle:
        handle.write("x")
        raise ValueError("bad row")
    assert old_file.read_bytes() == OLD and leftovers(old_file.parent) == []


def test_a_folder_that_cannot_be_made_is_one_line(tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(WriteError) as caught, atomic_write(blocker / "x" / "a.csv") as handle:
        handle.write("never")
    assert "\n" not in str(caught.value) and "a.csv" in str(caught.value)


def test_atomic_copy_copies_whole(tmp_path, old_file):
    target = atomic_copy(old_file, tmp_path / "copy" / "best.ckpt")
    assert target.read_bytes() == OLD and leftovers(target.parent) == []


def test_bad_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode must be"), atomic_write(tmp_path / "a", "a"):
        pass


# ------------------------------------------------------------------ folders, before the run
def test_check_writable_creates_nothing(tmp_path):
    check_writable(tmp_path / "runs" / "digits" / "version_0")
    assert list(tmp_path.iterdir()) == []


def test_check_writable_names_a_file_in_the_way(tmp_path):
    (tmp_path / "runs").write_text("")
    with pytest.raises(WriteError, match=r"runs is a file, not a folder"):
        check_writable(tmp_path / "runs" / "digits", "the checkpoints")


def test_check_writable_names_a_folder_without_permission(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(WriteError) as caught:
        check_writable(tmp_path / "new" / "runs")
    message = str(caught.value)
    assert "\n" not in message and "no permission" in message
    assert f"its nearest existing folder, {tmp_path}" in message


def _unwritable_folder() -> Path | None:
    """A folder this process really cannot write: a read-only one for a normal user; as root
    (who may write anywhere), /sys, which refuses new files even to root."""
    for folder in (Path("/sys"),):
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError:
            return folder
    return None


@pytest.fixture
def unwritable(tmp_path) -> Path:
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)
        return
    folder = _unwritable_folder()
    if folder is None:
        pytest.skip("no folder here refuses writes to root")
    yield folder


def test_check_writable_refuses_a_real_unwritable_folder(unwritable):
    with pytest.raises(WriteError, match="cannot write the run's files"):
        check_writable(unwritable / "ln-runs")
