"""End-to-end runs of the ``ln-fit`` CLI on the embedded digits data."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from ln_lightning import CrossEntropy, LogisticNormalLoss, NoisyLabelClassifier
from ln_lightning.cli import run_cli
from ln_lightning.data import TwoMoonsDataModule
from tests.helpers import CONFIG, QUICK, ln_fit, quick


@pytest.mark.slow  # the same path, through the README's commands: tests/test_run_outputs.py
def test_default_config_fits_tests_and_writes_a_checkpoint(tmp_path):
    result = ln_fit("fit", "--config", CONFIG, *QUICK, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "realised noise rate" in output
    assert "test/acc" in output  # test_after_fit printed the clean test accuracy
    checkpoints = sorted(tmp_path.glob("runs/digits/version_0/checkpoints/*.ckpt"))
    assert {p.name for p in checkpoints} >= {"last.ckpt"}
    assert (tmp_path / "runs/digits/version_0/config.yaml").exists()

    # the checkpoint evaluates through the CLI ...
    result = ln_fit("test", "--config", CONFIG, "--ckpt_path", str(checkpoints[-1]), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test/acc" in result.stdout + result.stderr
    # ... and rebuilds in Python from its saved config alone, loss included.
    model = NoisyLabelClassifier.load_from_checkpoint(checkpoints[-1])
    assert isinstance(model.loss, LogisticNormalLoss)
    assert model.predict_proba(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize(
    ("override", "check"),
    [
        (["--model.loss", "ln_lightning.CrossEntropy"], lambda m: isinstance(m.loss, CrossEntropy)),
        (["--model.loss", "CrossEntropy"], lambda m: isinstance(m.loss, CrossEntropy)),
        (
            ["--model.loss.temperature=0.5", "--model.loss.min_scale=0.1"],
            lambda m: (m.loss.temperature, m.loss.min_scale) == (0.5, 0.1),
        ),
        (
            ["--model.loss.covariance=diagonal"],
            lambda m: m.heads.heads["scale"].out_features == 10,
        ),
        pytest.param(  # a ResNet-18 on 8x8 digits: 15 s, with -m slow
            ["--model.backbone=resnet18"],
            lambda m: type(m.backbone).__name__ == "ResNet",
            marks=pytest.mark.slow,
        ),
        (
            [
                "--model.optimizer=SGD",
                "--model.optimizer.lr=0.01",
                "--model.optimizer.momentum=0.9",
            ],
            lambda m: isinstance(m.trainer.optimizers[0], torch.optim.SGD),
        ),
    ],
)
def test_switching_from_the_command_line(tmp_path, override, check):
    cli = run_cli(
        [
            "fit", "--config", CONFIG, *QUICK, *override, "--test_after_fit=false",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
        ]
    )  # fmt: skip
    assert check(cli.model)
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])


@pytest.mark.slow  # the same messages in-process: tests/test_errors.py
def test_config_errors_fail_before_training(tmp_path):
    result = ln_fit("fit", "--config", CONFIG, "--model.loss.min_scal=0.1", cwd=tmp_path)
    assert result.returncode != 0
    assert "min_scal" in result.stderr
    result = ln_fit("fit", "--config", CONFIG, "--model.loss.min_scale=-1", cwd=tmp_path)
    assert result.returncode != 0
    assert "min_scale must be a finite number > 0" in result.stderr
    assert not list(tmp_path.rglob("*.ckpt"))


def test_defaults_without_a_config(tmp_path):
    """`ln-fit fit` alone trains LN on the digits; data flags work without a config too."""
    cli = run_cli(
        [
            "fit", *QUICK, "--data.noise_type=symmetric", "--data.noise_rate=0.6",
            f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false",
        ]
    )  # fmt: skip
    assert type(cli.datamodule).__name__ == "DigitsDataModule"
    assert isinstance(cli.model.loss, LogisticNormalLoss)
    assert cli.datamodule.noise_spec.noise_type == "symmetric"
    assert 0.45 < cli.datamodule.noise.realised_rate < 0.62


def test_other_data_modules_by_class_path(tmp_path):
    """The toy sets through the CLI: data module and backbone chosen by name."""
    cli = run_cli(
        [
            "fit", "--config", CONFIG, *QUICK, "--data", "ln_lightning.data.TwoMoonsDataModule",
            "--data.num_train=200", "--data.noise_type=symmetric", "--model.backbone=mlp_2x2000",
            "--test_after_fit=true",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
        ]
    )  # fmt: skip
    assert cli.model.input_shape == (2,) and cli.model.num_classes == 2
    assert cli.model.heads.heads["mean"].in_features == 2000
    with (Path(cli.trainer.log_dir) / "metrics.csv").open() as handle:
        logged = {key for row in csv.DictReader(handle) for key, value in row.items() if value}
    assert {"test/acc", "test_selected/acc"} <= logged  # final weights and selected checkpoint
    with pytest.raises(ValueError, match="without a built-in map needs one given"):
        TwoMoonsDataModule(noise_type="asymmetric")


@pytest.mark.slow  # two runs; the resume itself is also in tests/test_resume.py
def test_ckpt_path_last_resumes_the_previous_run_of_the_experiment(tmp_path):
    """A new run logs to a new version; ``--ckpt_path last`` still finds the previous one."""
    args = ["fit", "--config", CONFIG, *quick(train_batches=3), "--test_after_fit=false",
            f"--trainer.logger.init_args.save_dir={tmp_path}"]  # fmt: skip
    first = run_cli(args)
    last = Path(first.trainer.log_dir) / "checkpoints" / "last.ckpt"
    assert last.exists() and first.trainer.global_step == 3
    second = run_cli([*args, "--trainer.max_epochs=2", "--ckpt_path", "last"])
    assert Path(second.trainer.log_dir) != Path(first.trainer.log_dir)
    assert second.trainer.ckpt_path == str(last)
    assert second.trainer.global_step == 6
    with (Path(second.trainer.log_dir) / "metrics.csv").open() as handle:
        epochs = {row["epoch"] for row in csv.DictReader(handle) if row["epoch"]}
    assert epochs == {"1"}  # one more epoch, not two
    # With nothing to resume, `last` starts afresh (Lightning warns).
    fresh = run_cli([*args[:-1], f"--trainer.logger.init_args.save_dir={tmp_path / 'new'}",
                     "--ckpt_path", "last"])  # fmt: skip
    assert fresh.trainer.ckpt_path is None and fresh.trainer.global_step == 3


@pytest.mark.slow  # compiling the backbone takes 20-30 s on the CPU
def test_compile_from_the_command_line(tmp_path):
    cli = run_cli(
        ["fit", "--config", CONFIG, *QUICK, "--model.compile=true", "--test_after_fit=false",
         f"--trainer.logger.init_args.save_dir={tmp_path}"]
    )  # fmt: skip
    assert cli.model.hparams.compile is True
    inputs = torch.randn(4, *cli.model.input_shape)
    with torch.no_grad():  # the compiled call computes what the eager forward does
        torch.testing.assert_close(cli.model.backbone(inputs), cli.model.backbone.forward(inputs))
    # nn.Module.compile() compiles in place: checkpoints keep the plain module's names
    saved = torch.load(next(tmp_path.rglob("last.ckpt")), weights_only=False)["state_dict"]
    assert set(saved) == set(cli.model.state_dict()) and not any("_orig_mod" in k for k in saved)


def test_the_librarys_own_warnings_read_as_one_line_without_the_source_file():
    import warnings

    import ln_lightning
    from ln_lightning.cli import quiet_libraries

    ours = str(Path(ln_lightning.__file__).parent / "data" / "image_folder.py")
    before = warnings.formatwarning
    with quiet_libraries():
        mine = warnings.formatwarning("the class 'Bag' differs", UserWarning, ours, 203)
        theirs = warnings.formatwarning("deprecated", UserWarning, "/lib/torch/x.py", 7)
    assert mine == "ln-fit: warning: the class 'Bag' differs\n"
    assert theirs.startswith("/lib/torch/x.py:7: UserWarning: deprecated")
    assert warnings.formatwarning is before  # only while ln-fit runs


def test_the_progress_bar_shows_on_a_terminal_only(monkeypatch):
    """Redirected to a file, a progress bar leaves fragments of itself in the log."""
    from ln_lightning.cli import run_cli

    args = ["--config", CONFIG, "--trainer.accelerator=cpu"]
    assert run_cli(args, run=False).trainer.progress_bar_callback is None  # pytest captures
    forced = run_cli([*args, "--trainer.enable_progress_bar=true"], run=False)
    assert forced.trainer.progress_bar_callback is not None
    monkeypatch.setattr("ln_lightning.cli._on_terminal", lambda: True)
    assert run_cli(args, run=False).trainer.progress_bar_callback is not None
