"""Checkpoints: nothing runs from a file, every unreadable file is one line, saves are whole.

The malicious checkpoint is the one a user could be sent: a real ``last.ckpt`` of the main job
with one more object whose ``__reduce__`` runs a shell command that creates a marker file.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import zipfile
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.plugins.io import AsyncCheckpointIO

import ln_lightning.files as files
from ln_lightning import NoisyLabelClassifier
from ln_lightning.cli import main, run_cli
from ln_lightning.data import DigitsDataModule
from ln_lightning.resume import (
    RECORD_KEY,
    CheckpointError,
    SafeCheckpointIO,
    read_checkpoint,
    read_record,
    use_safe_checkpoint_io,
)
from tests.helpers import CONFIG, LOSSES, QUICK, quick, quick_trainer


class Payload:
    """Runs ``touch <marker>`` when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A folder with ``runs/digits/version_0`` of a short main job (``last.ckpt`` and the
    best checkpoint)."""
    folder = tmp_path_factory.mktemp("main_job")
    here, argv = Path.cwd(), sys.argv
    os.chdir(folder)
    sys.argv = ["ln-fit"]
    try:
        run_cli(["fit", "--config", CONFIG, *quick(epochs=2), "--test_after_fit=false"])
    finally:
        os.chdir(here)
        sys.argv = argv
    return folder


@pytest.fixture
def last(run: Path) -> Path:
    return run / "runs/digits/version_0/checkpoints/last.ckpt"


@pytest.fixture
def evil(tmp_path: Path, last: Path) -> tuple[Path, Path]:
    """(the malicious checkpoint, the marker its payload would create)."""
    marker = tmp_path / "marker"
    checkpoint = torch.load(last, weights_only=True)
    checkpoint["payload"] = Payload(marker)
    torch.save(checkpoint, tmp_path / "evil.ckpt")
    return tmp_path / "evil.ckpt", marker


def ln_fit(monkeypatch, capsys, cwd: Path, *args: str) -> tuple[object, str]:
    """``ln-fit ARGS`` in-process in ``cwd``: its exit code and what it wrote to stderr."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["ln-fit", *args])
    monkeypatch.delenv("LN_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


def the_error(code: object, stderr: str) -> str:
    """The one ``ln-fit: error:`` line of a failed command (and that there is no traceback)."""
    message = str(code)
    assert message.startswith("ln-fit: error: "), stderr[-3000:]
    assert "Traceback" not in stderr and "Traceback" not in message
    first, *rest = message.splitlines()
    assert rest == ["(LN_TRACEBACK=1 shows the traceback.)"], message
    return first


# ------------------------------------------------------------------ code in a checkpoint
EVERY_COMMAND = {
    "predict from the checkpoint alone": ["predict"],
    "predict": ["predict", "--config", CONFIG],
    "test": ["test", "--config", CONFIG],
    "validate": ["validate", "--config", CONFIG],
    "fit, continued": ["fit", "--config", CONFIG, *QUICK],
}


@pytest.mark.parametrize("command", EVERY_COMMAND.values(), ids=EVERY_COMMAND)
def test_every_command_refuses_a_checkpoint_that_runs_code(
    monkeypatch, capsys, tmp_path, evil, command
):
    checkpoint, marker = evil
    line = the_error(
        *ln_fit(monkeypatch, capsys, tmp_path, *command, "--ckpt_path", str(checkpoint))
    )
    assert f"refused to load {checkpoint}: it holds posix.system" in line
    assert "--weights_only false" in line
    assert not marker.exists()


def test_ckpt_path_last_refuses_it_too(monkeypatch, capsys, tmp_path, evil):
    checkpoint, marker = evil
    target = tmp_path / "runs/digits/version_0/checkpoints/last.ckpt"
    target.parent.mkdir(parents=True)
    shutil.copy(checkpoint, target)
    code, err = ln_fit(
        monkeypatch, capsys, tmp_path, "fit", "--config", CONFIG, *QUICK, "--ckpt_path", "last"
    )
    assert "refused to load" in the_error(code, err) and not marker.exists()


def test_load_from_checkpoint_and_read_record_refuse_it(evil):
    checkpoint, marker = evil
    for read in (NoisyLabelClassifier.load_from_checkpoint, read_record, read_checkpoint):
        with pytest.raises(CheckpointError, match=r"refused to load .*posix\.system"):
            read(checkpoint)
    assert not marker.exists()


def test_the_option_that_trusts_a_file_does_what_it_says(evil):
    """``weights_only=False`` unpickles everything: the payload runs (hence the warning)."""
    checkpoint, marker = evil
    model = NoisyLabelClassifier.load_from_checkpoint(checkpoint, weights_only=False)
    assert marker.exists() and model.num_classes == 10


def test_ln_fit_trusts_a_file_only_when_told(monkeypatch, capsys, tmp_path, evil):
    checkpoint, marker = evil
    monkeypatch.chdir(tmp_path)
    args = ["test", "--config", CONFIG, *QUICK, "--trainer.limit_test_batches=1"]
    run_cli([*args, "--ckpt_path", str(checkpoint), "--weights_only", "false"])
    assert marker.exists()


# ------------------------------------------------------------------ every unreadable file
def _plain_state_dict(path: Path, last: Path) -> None:
    torch.save(torch.load(last, weights_only=True)["state_dict"], path)


def _other_lightning_model(path: Path, last: Path) -> None:
    checkpoint = torch.load(last, weights_only=True)
    del checkpoint[RECORD_KEY]
    checkpoint["hyper_parameters"] = {"_class_path": "their_project.Model", "hidden": 64}
    torch.save(checkpoint, path)


def _newer_format(path: Path, last: Path) -> None:
    checkpoint = torch.load(last, weights_only=True)
    checkpoint[RECORD_KEY].update(format=99, version="9.0.0")
    torch.save(checkpoint, path)


def _zip_of_files(path: Path, last: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a model")


FAULTS = {
    # name: (how the file is made, what the line says)
    "missing": (
        lambda p, last: shutil.copy(last, p.parent / "last.ckpt"),  # beside it, not it
        r"does not exist \(that folder holds last\.ckpt\)",
    ),
    "empty": (lambda p, last: p.write_bytes(b""), r"is empty \(0 bytes\)"),
    "truncated": (
        lambda p, last: p.write_bytes(last.read_bytes()[:20_000]),
        r"is cut short \(20,000 bytes; the end of the archive is missing\)",
    ),
    "text": (
        lambda p, last: p.write_text("epoch=3 val=0.91\n"),
        r"is not a checkpoint but a text file \(it starts with 'epoch=3 val=0.91'\)",
    ),
    "binary": (lambda p, last: p.write_bytes(bytes(range(7, 200))), r"is not a PyTorch checkpoint"),
    "zip": (_zip_of_files, r"is a zip archive but not a PyTorch checkpoint"),
    "weights of another program": (
        _plain_state_dict,
        r"is not a checkpoint of ln-lightning but a dict",
    ),
    "another program's model": (
        _other_lightning_model,
        r"is a Lightning checkpoint of another program's model \(their_project\.Model\)",
    ),
    "a newer version": (
        _newer_format,
        r"was written by ln-lightning 9\.0\.0 \(checkpoint format 99\); .* upgrade it",
    ),
}


def make_fault(name: str, folder: Path, last: Path) -> Path:
    path = folder / f"{name.replace(' ', '_')}.ckpt"
    make, _ = FAULTS[name]
    make(path, last)
    return path


@pytest.mark.parametrize("fault", FAULTS)
def test_every_unreadable_checkpoint_is_named_with_what_is_wrong(tmp_path, last, fault):
    path = make_fault(fault, tmp_path, last)
    for read in (read_checkpoint, NoisyLabelClassifier.load_from_checkpoint):
        with pytest.raises(CheckpointError) as caught:
            read(path)
        message = str(caught.value)
        assert str(path) in message and "\n" not in message
        assert re.search(FAULTS[fault][1], message), message


@pytest.mark.parametrize("fault", FAULTS)
def test_ln_fit_test_says_it_in_one_line(monkeypatch, capsys, tmp_path, last, fault):
    path = make_fault(fault, tmp_path, last)
    code, err = ln_fit(monkeypatch, capsys, tmp_path, "test", "--config", CONFIG, *QUICK,
                       "--ckpt_path", str(path))  # fmt: skip
    line = the_error(code, err)
    assert str(path) in line and re.search(FAULTS[fault][1], line), line


@pytest.mark.parametrize("fault", ["truncated", "text"])
@pytest.mark.parametrize("command", ["predict", "fit"])
def test_predict_and_fit_say_it_in_one_line(monkeypatch, capsys, tmp_path, last, fault, command):
    """The issue's cases: a checkpoint cut short by a copy, and a text file given as one."""
    path = make_fault(fault, tmp_path, last)
    args = [command, "--ckpt_path", str(path)]
    if command == "fit":
        args += ["--config", CONFIG, *QUICK]
    line = the_error(*ln_fit(monkeypatch, capsys, tmp_path, *args))
    assert str(path) in line and re.search(FAULTS[fault][1], line), line


@pytest.fixture
def experiment(tmp_path: Path, run: Path) -> Path:
    """A copy of the main job's experiment folder (``runs/digits/version_0``)."""
    shutil.copytree(run / "runs", tmp_path / "runs")
    return tmp_path / "runs/digits"


def test_ckpt_path_last_names_the_newest_readable_checkpoint_of_that_run(
    monkeypatch, capsys, tmp_path, experiment
):
    """The newest ``last.ckpt`` was cut short by a copy: the run says so, and names the newest
    checkpoint of that run that can be read (its best-epoch checkpoint) instead of silently
    continuing from an older state."""
    newest = experiment / "version_1/checkpoints"
    newest.mkdir(parents=True)
    good = next((experiment / "version_0/checkpoints").glob("best-*.ckpt"))
    shutil.copy(good, newest / good.name)
    (newest / "last.ckpt").write_bytes(good.read_bytes()[:20_000])
    code, err = ln_fit(monkeypatch, capsys, tmp_path, "fit", "--config", CONFIG, *QUICK,
                       "--ckpt_path", "last")  # fmt: skip
    line = the_error(code, err)
    newest = "runs/digits/version_1/checkpoints"
    assert f"the newest last.ckpt is unreadable: checkpoint {newest}/last.ckpt is cut short" in line
    assert (
        f"The newest readable checkpoint of that run is {newest}/{good.name}: continue from it "
        f"with --ckpt_path {newest}/{good.name}."
    ) in line


def test_ckpt_path_last_with_nothing_readable_says_to_start_afresh(
    monkeypatch, capsys, tmp_path, experiment
):
    for path in experiment.rglob("*.ckpt"):
        path.write_text("")
    line = the_error(*ln_fit(monkeypatch, capsys, tmp_path, "fit", "--config", CONFIG, *QUICK,
                             "--ckpt_path", "last"))  # fmt: skip
    assert "is empty (0 bytes)" in line and "leave --ckpt_path out to start afresh" in line


def test_weights_of_another_shape_are_one_sentence(tmp_path, last):
    model = NoisyLabelClassifier(
        num_classes=10, input_shape=(1, 8, 8), backbone_kwargs={"width": 16}
    )  # half the channels of the checkpoint's small_cnn
    expected = (
        r"do not fit this model: network\.backbone\.\S+ is \(32, 1, 3, 3\) there and "
        r"\(16, 1, 3, 3\) here"
    )
    with pytest.raises(ValueError, match=expected):
        quick_trainer(tmp_path).validate(model, datamodule=DigitsDataModule(), ckpt_path=last)


# ------------------------------------------------------------------ what checkpoints hold
@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_writes_checkpoints_of_plain_data(tmp_path, loss):
    """What the library writes loads with ``weights_only=True`` (and nothing else is needed)."""
    trainer = quick_trainer(tmp_path, limit_train_batches=1, limit_val_batches=0)
    model = NoisyLabelClassifier(num_classes=10, input_shape=(1, 8, 8), loss=LOSSES[loss]())
    trainer.fit(model, datamodule=DigitsDataModule())
    trainer.save_checkpoint(tmp_path / "a.ckpt")
    assert read_record(tmp_path / "a.ckpt")["format"] == 2
    restored = NoisyLabelClassifier.load_from_checkpoint(tmp_path / "a.ckpt")
    assert type(restored.loss) is type(model.loss)


# ------------------------------------------------------------------ saves are whole
def test_a_save_killed_before_its_rename_leaves_the_previous_checkpoint(
    tmp_path, last, monkeypatch
):
    target = tmp_path / "last.ckpt"
    shutil.copy(last, target)
    before = target.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        SafeCheckpointIO().save_checkpoint({"state_dict": {}}, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_ln_fit_uses_it_and_keeps_a_checkpoint_io_of_your_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = run_cli(["--config", CONFIG], run=False)
    assert type(cli.trainer.strategy.checkpoint_io) is SafeCheckpointIO
    trainer = pl.Trainer(plugins=[AsyncCheckpointIO()], logger=False)
    assert not use_safe_checkpoint_io(trainer)
    assert isinstance(trainer.strategy.checkpoint_io, AsyncCheckpointIO)
