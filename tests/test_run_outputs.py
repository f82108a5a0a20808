"""What a run leaves for its user: ``last.ckpt``, test results and predictions beside the run.

Everything here goes through the README's commands (``ln-fit fit/test/predict`` with cli.yaml
and its own checkpoint callbacks), as a user would type them.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ln_lightning import NoisyLabelClassifier
from ln_lightning.cli import run_cli
from tests.helpers import CONFIG, ln_fit, quick


def ln_fit_ok(*args: str, cwd: Path) -> str:
    """``ln-fit ARGS`` without a progress bar; its output, after checking it succeeded."""
    result = ln_fit(*args, "--trainer.enable_progress_bar=false", cwd=cwd)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return output


def last_values(path: Path) -> dict[str, float]:
    values = {}
    with path.open() as handle:
        for row in csv.DictReader(handle):
            values.update({key: float(value) for key, value in row.items() if value})
    return values


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, str]:
    """The README's main run, short (3 epochs of 4 batches), with a learning rate raised 30-fold
    every epoch, so the noisy validation accuracy peaks before the last epoch."""
    cwd = tmp_path_factory.mktemp("readme")
    output = ln_fit_ok(
        "fit", "--config", CONFIG, *quick(epochs=3, train_batches=4, val_batches=None),
        "--model.lr_scheduler=StepLR", "--model.lr_scheduler.step_size=1",
        "--model.lr_scheduler.gamma=30", cwd=cwd,
    )  # fmt: skip
    return cwd, output


# The subprocess runs below are -m slow (the default run stays under 5 minutes): in-process,
# test_cli and test_own_data fit, test, predict and continue runs in the default run.
@pytest.mark.slow
def test_last_ckpt_is_the_final_state_and_the_best_one_stays_apart(fitted):
    cwd, output = fitted
    checkpoints = cwd / "runs/digits/version_0/checkpoints"
    (best,) = checkpoints.glob("best-epoch=*.ckpt")
    assert {p.name for p in checkpoints.iterdir()} == {best.name, "last.ckpt"}
    last = torch.load(checkpoints / "last.ckpt", weights_only=False)
    assert (last["epoch"], last["global_step"]) == (2, 12)  # the final epoch, not the best
    best = torch.load(best, weights_only=False)
    assert best["epoch"] < 2 and best["global_step"] < 12
    # Nothing a user need not read: no advertisement, no library deprecation warning.
    assert "Tip:" not in output and "LeafSpec" not in output


@pytest.mark.slow
def test_ln_fit_test_on_last_ckpt_reproduces_the_fit_and_writes_beside_the_run(fitted):
    cwd, _ = fitted
    run = cwd / "runs/digits/version_0"
    output = ln_fit_ok(
        "test", "--config", CONFIG, "--ckpt_path", str(run / "checkpoints/last.ckpt"), cwd=cwd
    )
    assert "dirpath has changed" not in output  # Lightning's note on moved checkpoints: noise
    fit, test = last_values(run / "metrics.csv"), last_values(run / "test/last/metrics.csv")
    for key in ("test/acc", "test/nll", "test/ece", "test/brier"):
        assert test[key] == fit[key], key  # exactly: the same weights
    assert fit["test_selected/nll"] != fit["test/nll"]  # the selected checkpoint is another state
    assert [p.name for p in (cwd / "runs/digits").iterdir()] == ["version_0"]  # no new versions


@pytest.mark.slow
def test_ln_fit_predict_writes_a_predictions_file(fitted):
    cwd, _ = fitted
    run = cwd / "runs/digits/version_0"
    last = run / "checkpoints/last.ckpt"
    output = ln_fit_ok("predict", "--config", CONFIG, "--ckpt_path", str(last), cwd=cwd)
    path = run / "predict/last/predictions_test.csv"
    assert f"Predictions: {path} (360 rows)" in output
    assert "dirpath has changed" not in output
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    classes = [f"p_{k}" for k in range(10)]
    assert list(rows[0]) == [
        "index", "predicted", "predicted_index", "confidence", "given_label", "clean_label",
        "uncertainty", *classes,
    ]  # fmt: skip
    probs = torch.tensor([[float(row[c]) for c in classes] for row in rows])
    torch.testing.assert_close(probs.sum(1), torch.ones(len(rows)), atol=1e-4, rtol=0)
    predicted = torch.tensor([int(row["predicted_index"]) for row in rows])
    assert torch.equal(predicted, probs.argmax(1))
    assert all(row["given_label"] == row["clean_label"] for row in rows)  # the clean test split
    assert min(float(row["uncertainty"]) for row in rows) >= 1.0  # >= lambda = min_scale
    # The same probabilities as the model's own, in the data set's order.
    model = NoisyLabelClassifier.load_from_checkpoint(last).eval()
    data = run_cli(["--config", CONFIG, "--trainer.logger=false"], run=False).datamodule
    data.setup()
    inputs = torch.stack([data.test_set[i].input for i in range(len(data.test_set))])
    with torch.no_grad():
        torch.testing.assert_close(probs, model.predict_proba(inputs), atol=2e-6, rtol=0)

    ln_fit_ok("predict", "--config", CONFIG, "--ckpt_path", str(last), "--data.predict_split=val",
           cwd=cwd)  # fmt: skip
    with (run / "predict/last/predictions_val.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["index"]) for row in rows] == data.val_set.indices.tolist()  # pool indices
    noisy = data.val_set.noisy_labels[data.val_set.indices]
    assert [row["given_label"] for row in rows] == [str(int(y)) for y in noisy]
    assert any(row["given_label"] != row["clean_label"] for row in rows)  # the split is noisy
    assert [p.name for p in (cwd / "runs/digits").iterdir()] == ["version_0"]


@pytest.mark.slow  # three runs
def test_ckpt_path_last_continues_only_a_run_of_this_kind(tmp_path):
    args = ["fit", "--config", CONFIG, *quick(), "--test_after_fit=false",
            f"--trainer.logger.init_args.save_dir={tmp_path}"]  # fmt: skip
    run_cli(args)  # LN: version_0
    run_cli([*args, "--trainer.max_epochs=1", "--model.loss=ln_lightning.CrossEntropy"])  # newer
    resumed = run_cli([*args, "--trainer.max_epochs=2", "--ckpt_path=last"])
    assert resumed.trainer.ckpt_path == str(tmp_path / "digits/version_0/checkpoints/last.ckpt")
    assert resumed.trainer.global_step == 4  # one more epoch of the LN run, not of CE's
    newest = tmp_path / "digits/version_2/checkpoints/last.ckpt"
    expected = (
        rf"--ckpt_path last: no checkpoint of this experiment belongs to this run; the newest, "
        rf"{newest}, differs in backbone small_cnn \(checkpoint\) != resnet18 \(this run\)"
    )
    with pytest.raises(ValueError, match=expected):
        run_cli([*args, "--trainer.max_epochs=2", "--model.backbone=resnet18", "--ckpt_path=last"])


def test_a_continued_run_keeps_the_best_checkpoint_from_before(tmp_path):
    """``--ckpt_path last`` logs into a new version; the best-by-noisy-validation record and file
    come along, so a worse epoch after the interruption is not taken for the best."""
    args = ["fit", "--config", CONFIG, "--test_after_fit=false",
            "--trainer.enable_progress_bar=false", "--model.lr_scheduler=StepLR",
            "--model.lr_scheduler.step_size=1", "--model.lr_scheduler.gamma=5",
            f"--trainer.logger.init_args.save_dir={tmp_path}"]  # fmt: skip
    # The learning rate grows 5-fold every epoch: noisy validation accuracy peaks early.
    run_cli([*args, "--trainer.max_epochs=3"])
    run_cli([*args, "--trainer.max_epochs=6", "--ckpt_path=last"])
    first, second = tmp_path / "digits/version_0", tmp_path / "digits/version_1"
    scores = {}
    for run in (first, second):
        with (run / "metrics.csv").open() as handle:
            for row in csv.DictReader(handle):
                if row.get("val/acc_noisy"):
                    scores[int(row["epoch"])] = float(row["val/acc_noisy"])
    assert sorted(scores) == [0, 1, 2, 3, 4, 5]
    best = max(scores, key=lambda epoch: (scores[epoch], -epoch))  # ties keep the earlier
    assert best < 3 and max(scores[e] for e in (3, 4, 5)) < scores[best], scores
    (kept,) = second.glob("checkpoints/best-epoch=*.ckpt")
    assert kept.name == f"best-epoch={best:03d}.ckpt"
    assert torch.load(kept, weights_only=False)["epoch"] == best
    assert len(list(first.glob("checkpoints/best-epoch=*.ckpt"))) == 1  # the first run keeps it


@pytest.mark.slow  # two fresh interpreters and an ln-fit process
def test_importing_the_package_loads_no_torch_and_ln_fit_lets_idle_threads_spin_briefly():
    probe = (
        "import os, sys; import ln_lightning; print('torch' in sys.modules); "
        "import ln_lightning.cli; print(os.environ.get('GOMP_SPINCOUNT'), "
        "os.environ.get('OMP_WAIT_POLICY'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert result.stdout.split() == ["False", "10000", "None"], result.stderr[-2000:]
    result = subprocess.run(
        [sys.executable, "-c", probe], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.stdout.split() == ["False", "None", "ACTIVE"]  # the user's choice is kept
