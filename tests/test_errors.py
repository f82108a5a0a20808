"""Bad input fails early with a sentence that says what is wrong and what to do.

Each case is what a user would type or pass; the assertions pin the part of the message that
names the problem and the way out. ``ln-fit`` prints one line instead of a traceback.
"""

from __future__ import annotations

import ast
import errno
import math
import os
import re
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

import ln_lightning.files as files
from ln_lightning import CrossEntropy, LogisticNormalLoss, NoisyLabelClassifier, losses
from ln_lightning.cli import main
from ln_lightning.data import ArrayDataModule, DigitsDataModule
from ln_lightning.resume import RECORD_KEY
from tests.helpers import CONFIG, QUICK, quick_trainer

ROOT = Path(__file__).resolve().parents[1]


def ln_fit_error(monkeypatch, capsys, tmp_path, *args: str) -> tuple[object, str]:
    """Run ``ln-fit fit --config cli.yaml ARGS`` in-process; its exit code and stderr."""
    monkeypatch.chdir(tmp_path)
    argv = ["ln-fit", "fit", "--config", CONFIG, *QUICK, "--trainer.logger=false", *args]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.delenv("LN_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert not list(tmp_path.rglob("*.ckpt"))  # failed before training
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model.loss.temprature=0.5"],
            r"--model\.loss\.temprature: LogisticNormalLoss has no option 'temprature'\. "
            r"Did you mean --model\.loss\.temperature\?",
        ),
        (["--model.loss.min_scal=0.1"], r"Did you mean --model\.loss\.min_scale\?"),
        (["--data.noise_rat=0.3"], r"DigitsDataModule has no option .*--data\.noise_rate\?"),
        (["--data.batch_size=abc"], r"--data\.batch_size: expected int, got 'abc'"),
        (
            ["--trainer.max_epoch=3"],  # no silent abbreviation of --trainer.max_epochs
            r"unknown option --trainer\.max_epoch .*Did you mean --trainer\.max_epochs\?",
        ),
        (
            ["--config", str(ROOT / "zoo/configs/losses/gcee.yaml")],
            r"the config file .*gcee\.yaml does not exist\. Did you mean .*losses/gce\.yaml\?",
        ),
        (
            ["--model.loss=ln_lightning.Crossentropy"],
            r"no class ln_lightning\.Crossentropy\. Did you mean ln_lightning\.CrossEntropy\?",
        ),
        (
            ["--model.optimizer.lr=-0.001"],
            r"--model\.optimizer\.lr=-0\.001: Adam rejects it: Invalid learning rate: -0\.001",
        ),
        (["--model.loss.min_scale=-1"], r"model\.loss: min_scale must be a finite number > 0"),
        (["--data.noise_rate=1.5"], r"data: noise_rate must lie in \[0, 1\); got 1\.5"),
        (["--model.backbone=resnet_nope"], "model: backbone 'resnet_nope' is not a timm model"),
        (["--model.backbone=lenet5"], r"cannot take inputs of shape \(1, 8, 8\).*lenet5 for 28x28"),
        (["--model.init_args.num_classes=5"], "num_classes=5 disagrees with the data module"),
        (
            ["--data=ln_lightning.data.MNISTDataModule", "--data.data_dir=nowhere"],
            "cannot find train-images-idx3-ubyte.*--data.download true",
        ),
        (
            ["--data=ln_lightning.data.CIFAR10NDataModule", "--data.data_dir=nowhere"],
            "missing .*data_batch_1.*--data.download true",
        ),
        (
            ["--data=ln_lightning.data.Clothing1MDataModule", "--data.data_dir=nowhere"],
            r"noisy_label_kv\.txt.*cannot be downloaded automatically",
        ),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else None,
)
def test_ln_fit_reports_bad_configs_in_one_sentence(monkeypatch, capsys, tmp_path, args, message):
    code, err = ln_fit_error(monkeypatch, capsys, tmp_path, *args)
    text = err if code == 2 else str(code)  # parse errors: stderr, exit 2; others: sys.exit(text)
    assert code != 0
    assert re.search(message, text, re.DOTALL), text[-2000:]
    assert text.startswith("ln-fit: error: ") and "Traceback" not in text + err
    if code == 2:  # option and file errors: the sentence, and where to read more
        assert len(text.strip().splitlines()) == 2, text


def test_the_traceback_is_there_when_asked_for(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys, "argv", ["ln-fit", "fit", *QUICK, "--trainer.logger=false", "--data.noise_rate=1.5"]
    )
    monkeypatch.setenv("LN_TRACEBACK", "1")
    with pytest.raises(ValueError, match="noise_rate"):
        main()


# ----------------------------------------------------------------------------- output files
def ln_fit_run_error(monkeypatch, capsys, tmp_path, *args: str) -> str:
    """``ln-fit fit --config cli.yaml`` (with its CSV logger) that must fail: its one line."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["ln-fit", "fit", "--config", CONFIG, *QUICK, *args])
    monkeypatch.delenv("LN_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main()
    text = str(exit_info.value.code)
    assert text.startswith("ln-fit: error: ") and "Traceback" not in text, text[-2000:]
    assert len(text.splitlines()) == 2, text  # the line, and where the traceback is
    return text.splitlines()[0]


def test_a_run_folder_blocked_by_a_file_fails_before_anything_runs(monkeypatch, capsys, tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    line = ln_fit_run_error(
        monkeypatch, capsys, tmp_path, "--trainer.logger.init_args.save_dir=runs/here"
    )
    assert "cannot write the run's files to runs/here/digits/version_0" in line
    assert "runs is a file, not a folder" in line
    assert "Epoch" not in capsys.readouterr().out  # no training started


def test_a_run_folder_without_permission_fails_before_anything_runs(monkeypatch, capsys, tmp_path):
    from tests.test_files import _unwritable_folder

    folder = _unwritable_folder() if os.geteuid() == 0 else None
    if folder is None:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o500)
        if os.access(folder, os.W_OK):
            pytest.skip("this user may write into any folder, and no folder refuses it")
    line = ln_fit_run_error(
        monkeypatch, capsys, tmp_path, f"--trainer.logger.init_args.save_dir={folder}/ln-runs"
    )
    assert f"cannot write the run's files to {folder}/ln-runs/digits/version_0" in line
    assert "no permission to write there" in line and "save_dir" in line


def test_a_full_disk_at_the_end_of_training_is_one_line_and_no_partial_file(
    monkeypatch, capsys, tmp_path
):
    """The disk fills up as label_issues.csv is flushed: one line, no label_issues.csv (not
    a shorter one), no temporary file; the checkpoints are there to continue from."""
    fsync = files.os.fsync

    def full(descriptor: int) -> None:
        if "label_issues.csv" in os.readlink(f"/proc/self/fd/{descriptor}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(descriptor)

    monkeypatch.setattr(files.os, "fsync", full)
    line = ln_fit_run_error(monkeypatch, capsys, tmp_path)
    assert re.search(
        r"could not write runs/digits/version_0/label_issues\.csv: no space left", line
    )
    assert "nothing was written. The trained model is in the run's checkpoints" in line
    assert line.endswith("--ckpt_path last writes these files again without training.")
    run = tmp_path / "runs/digits/version_0"
    assert not (run / "label_issues.csv").exists() and (run / "checkpoints/last.ckpt").is_file()
    assert not list(run.rglob("*.tmp"))


# ----------------------------------------------------------------------------- data
def arrays(n: int = 60):
    x, y = torch.randn(n, 5), torch.arange(n) % 3
    return x, y


def test_nan_or_inf_inputs_are_named_with_their_indices():
    x, y = arrays()
    x[7, 2], x[40, 0] = math.nan, math.inf
    data = ArrayDataModule.from_arrays(x, y, x[:10].abs(), y[:10], noise_type="symmetric")
    expected = r"2 of 60 training inputs contain NaN or inf \(indices \[7, 40\]\)"
    with pytest.raises(ValueError, match=expected):
        data.setup()


def test_labels_outside_the_classes_and_empty_splits():
    x, y = arrays()
    wrong = y.clone().index_fill_(0, torch.tensor([3]), 5)
    with pytest.raises(ValueError, match=r"training labels must lie in \[0, 3\); got .*\[0, 5\]"):
        ArrayDataModule.from_arrays(x, wrong, x, y, num_classes=3, noise_type="symmetric").setup()
    with pytest.raises(ValueError, match="the test split is empty"):
        ArrayDataModule.from_arrays(x, y, x[:0], y[:0], noise_type="symmetric").setup()
    with pytest.raises(ValueError, match=r"training pool \(1 examples\) is too small"):
        ArrayDataModule.from_arrays(x[:1], y[:1], x, y, num_classes=3,
                                         noise_type="symmetric").setup()  # fmt: skip


# ----------------------------------------------------------------------------- numerics
class PoisonAt(Callback):
    """Make the model's output NaN from a given global step on (a diverged model)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                pl_module.heads.heads["mean"].bias.fill_(math.nan)


def test_a_nan_loss_stops_with_the_step_and_the_examples_and_keeps_the_last_checkpoint(tmp_path):
    data = DigitsDataModule(batch_size=64)
    model = NoisyLabelClassifier(backbone="small_cnn", num_classes=10, input_shape=(1, 8, 8))
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=2)
    trainer = quick_trainer(
        tmp_path, max_epochs=3, callbacks=[checkpoint, PoisonAt(step=4)], enable_checkpointing=True
    )
    with pytest.raises(FloatingPointError) as info:
        trainer.fit(model, datamodule=data)
    message = str(info.value)
    assert "the training loss is nan at epoch 1, global step 4, batch 1" in message
    assert "training stops before this step updates the weights" in message
    assert str(tmp_path / "last.ckpt") in message and "--ckpt_path last" in message
    indices = ast.literal_eval(message.split("(data-set indices): ")[1].split(". ")[0])
    assert len(indices) == 64 and set(indices) <= set(data.train_set.indices.tolist())
    assert "Their inputs are finite: lower the learning rate" in message
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 4  # the last good state, not the poisoned step
    weights = [v for v in saved["state_dict"].values() if v.is_floating_point()]
    assert all(torch.isfinite(v).all() for v in weights)


def _fitted_checkpoint(tmp_path: Path, loss, name: str) -> Path:
    trainer = quick_trainer(tmp_path, limit_train_batches=1, limit_val_batches=0)
    model = NoisyLabelClassifier(num_classes=10, input_shape=(1, 8, 8), loss=loss)
    trainer.fit(model, datamodule=DigitsDataModule())
    trainer.save_checkpoint(tmp_path / name)
    return tmp_path / name


def _validate(tmp_path: Path, model, checkpoint: Path) -> None:
    pl.Trainer(logger=False, default_root_dir=tmp_path, enable_progress_bar=False).validate(
        model, datamodule=DigitsDataModule(), ckpt_path=checkpoint
    )


@pytest.mark.parametrize("trained_with", ["CrossEntropy", "Heteroscedastic"])
def test_a_checkpoint_of_another_loss_says_so(tmp_path, trained_with):
    """Het has LN's head names (mean, scale): only the recorded loss class tells them apart."""
    checkpoint = _fitted_checkpoint(tmp_path, getattr(losses, trained_with)(), "other.ckpt")
    ln = NoisyLabelClassifier(num_classes=10, input_shape=(1, 8, 8), loss=LogisticNormalLoss())
    expected = (
        rf"other\.ckpt was trained with the loss ln_lightning\.losses\.\w+\.{trained_with} but "
        r"this model's loss is ln_lightning\.losses\.logistic_normal\.LogisticNormalLoss\. Use "
    )
    with pytest.raises(ValueError, match=expected):
        _validate(tmp_path, ln, checkpoint)
    # In Python the loss is rebuilt from the checkpoint's record, arguments included.
    restored = NoisyLabelClassifier.load_from_checkpoint(checkpoint)
    assert type(restored.loss).__name__ == trained_with


def test_a_checkpoint_without_the_record_is_still_checked_by_its_heads(tmp_path):
    checkpoint = _fitted_checkpoint(tmp_path, CrossEntropy(), "ce.ckpt")
    saved = torch.load(checkpoint, weights_only=False)
    del saved[RECORD_KEY]  # as written before checkpoints carried the run record
    torch.save(saved, checkpoint)
    ln = NoisyLabelClassifier(num_classes=10, input_shape=(1, 8, 8), loss=LogisticNormalLoss())
    expected = r"heads \['logits'\]\) but .* LogisticNormalLoss, which builds \['mean', 'scale'\]"
    with pytest.raises(ValueError, match=expected):
        _validate(tmp_path, ln, checkpoint)


def test_other_loss_arguments_warn_and_apply(tmp_path):
    checkpoint = _fitted_checkpoint(tmp_path, LogisticNormalLoss(temperature=0.5), "ln.ckpt")
    model = NoisyLabelClassifier(num_classes=10, input_shape=(1, 8, 8), loss=LogisticNormalLoss())
    with pytest.warns(UserWarning, match=r"other loss arguments \(temperature=0\.5 -> 1\.0\)"):
        _validate(tmp_path, model, checkpoint)


def test_load_from_checkpoint_reads_the_file_once(tmp_path, monkeypatch):
    """The loss comes from the run record of the checkpoint Lightning loads: one read."""
    checkpoint = _fitted_checkpoint(tmp_path, LogisticNormalLoss(temperature=0.5), "ln.ckpt")
    reads = []
    load = torch.load
    monkeypatch.setattr(
        torch, "load", lambda *args, **kwargs: reads.append(args) or load(*args, **kwargs)
    )
    restored = NoisyLabelClassifier.load_from_checkpoint(checkpoint)
    assert len(reads) == 1 and restored.loss.temperature == 0.5
    saved = load(checkpoint, weights_only=False)["state_dict"]
    assert all(torch.equal(saved[k], v) for k, v in restored.state_dict().items() if k in saved)
