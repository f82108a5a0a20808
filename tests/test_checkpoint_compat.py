"""Checkpoints written before the model was split into parts (format 1) keep working: they load,
test, predict and continue; and the names that moved keep an alias for one release."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from ln_lightning import NoisyLabelClassifier, ShiftedGaussianNoise
from ln_lightning.cli import run_cli
from ln_lightning.model.checkpoints import FORMAT_1_PREFIXES
from ln_lightning.resume import read_record
from tests.helpers import CONFIG, quick

FIXTURES = Path(__file__).parent / "fixtures"
LN, SGN = FIXTURES / "format1_ln.ckpt", FIXTURES / "format1_sgn.ckpt"
SMALL = ["--model.backbone_kwargs", '{"width": 4}']  # the fixtures' backbone


def old_state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def test_the_fixtures_are_format_1():
    for path in (LN, SGN):
        assert read_record(path)["format"] == 1
        assert any(key.startswith("backbone.") for key in old_state(path))


@pytest.mark.parametrize("path", [LN, SGN], ids=["ln", "sgn"])
def test_a_format_1_checkpoint_loads_with_its_weights_under_the_new_names(path):
    model = NoisyLabelClassifier.load_from_checkpoint(path)
    state = model.state_dict()
    for key, value in old_state(path).items():
        old = next((p for p in FORMAT_1_PREFIXES if key.startswith(p)), None)
        new = FORMAT_1_PREFIXES[old] + key[len(old) :] if old else key
        torch.testing.assert_close(state[new], value, rtol=0, atol=0, msg=key)
    if path == SGN:
        assert isinstance(model.loss, ShiftedGaussianNoise) and model.teacher is not None


def test_a_format_1_checkpoint_tests_predicts_and_continues(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["--config", CONFIG, *SMALL, "--trainer.logger=false"]
    tested = run_cli(["test", *common, *quick(), "--ckpt_path", str(LN)])
    assert 0.0 <= tested.trainer.callback_metrics["test/acc"] <= 1.0
    run_cli(["predict", *common, "--ckpt_path", str(LN)])
    rows = (tmp_path / "predictions_test.csv").read_text().splitlines()
    assert len(rows) == 361  # a header and the 360 test digits
    continued = run_cli(
        ["fit", *common, *quick(epochs=2), "--test_after_fit=false", "--ckpt_path", str(LN)]
    )
    assert continued.trainer.current_epoch == 2  # the old run's epoch 1, then one more


# ------------------------------------------------------------------ moved names
MOVED = {
    "ln_lightning.resume.lightning": ("is_fitting", "ln_lightning.lightning_internals"),
    "ln_lightning.gallery": ("write_gallery", "ln_lightning.label_issues.gallery"),
}
MOVED_ATTRIBUTES = {
    ("ln_lightning.analysis", "mislabel_scores"): "ln_lightning.label_issues",
    ("ln_lightning.analysis", "detection_metrics"): "ln_lightning.label_issues",
    ("ln_lightning.module", "ema_teacher"): "ln_lightning.model.network",
    ("ln_lightning.module", "check_checkpoint_heads"): "ln_lightning.model.checkpoints",
    ("ln_lightning.module", "non_finite_loss_message"): "ln_lightning.model.step_checks",
}


@pytest.mark.parametrize("old", MOVED)
def test_a_moved_module_warns_once_and_gives_the_same_objects(old):
    """Imported afresh (a new process), the old module warns that it moved."""
    name, new = MOVED[old]
    probe = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        f"try:\n    import {old}\nexcept DeprecationWarning as w:\n    print(w)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert f"{old} moved to {new}" in result.stdout, result.stderr[-2000:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)


@pytest.mark.parametrize(("old", "name"), MOVED_ATTRIBUTES, ids=lambda v: str(v))
def test_a_moved_name_warns_and_is_the_same_object(old, name):
    with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} moved to"):
        value = getattr(importlib.import_module(old), name)
    assert value is getattr(importlib.import_module(MOVED_ATTRIBUTES[old, name]), name)


def test_no_file_of_the_package_is_over_400_lines():
    root = Path(__file__).resolve().parents[1] / "ln_lightning"
    long = {
        str(p.relative_to(root)): n
        for p in root.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long, long
