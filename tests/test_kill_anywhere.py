"""SIGKILL an ``ln-fit`` run anywhere; ``--ckpt_path last`` ends where a run never killed ends.

Ten points of the main job (3 epochs on the digits): mid-epoch, during and just before the
rename of checkpoint writes, during the label-issue pass and during the writes of its files
and of the gallery (``tests/kill_probe.py`` kills inside the library's own writes). After each
kill:

* no file is half-written: every output the killed run left equals the uninterrupted run's,
  and every checkpoint it left can be read;
* ``ln-fit fit ... --ckpt_path last`` continues, and its ``label_issues.csv``,
  ``cleaned_labels.csv`` and test metrics equal the uninterrupted run's.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ln_lightning.resume import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3  # digits: 11 training batches of 128 per epoch
#: case -> (point, nth): see tests/kill_probe.py
POINTS = {
    "first epoch, before any checkpoint": ("step", 5),
    "second epoch": ("step", 16),
    "writing the best checkpoint": ("write:best-epoch", 1),
    "writing last.ckpt": ("write:last.ckpt", 1),
    "last.ckpt written, not yet renamed": ("rename:last.ckpt", 2),
    "label-issue pass": ("pass", 2),
    "writing pred_probs.npy": ("write:pred_probs.npy", 1),
    "writing label_issues.csv": ("write:label_issues.csv", 1),
    "cleaned_labels.csv written, not yet renamed": ("rename:cleaned_labels.csv", 1),
    "writing the gallery": ("write:label_issues.html", 1),
}
#: What a run leaves for later use, compared byte for byte.
OUTPUTS = ("label_issues.csv", "cleaned_labels.csv", "classes.txt", "labels.npy",
           "pred_probs.npy", "label_issues.html", "label_issues.png")  # fmt: skip


def ln_fit(out: Path, name: str, *extra: str) -> subprocess.CompletedProcess:
    """``ln-fit fit --config cli.yaml`` for 3 epochs into ``out/logs/<name>``, one thread."""
    command = [sys.executable, "-m", "ln_lightning.cli", "fit", "--config", "cli.yaml",
               f"--trainer.max_epochs={EPOCHS}", "--trainer.accelerator=cpu",
               "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
               f"--trainer.logger.init_args.save_dir={out / 'logs'}",
               f"--trainer.logger.init_args.name={name}", *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def logged_test_metrics(run: Path) -> dict[str, float]:
    """The ``test/*`` and ``test_selected/*`` values a run folder logged."""
    values = {}
    for row in csv.DictReader((run / "metrics.csv").open()):
        values |= {k: float(v) for k, v in row.items() if k.startswith("test") and v}
    return values


def kill_and_continue(out: Path, case: str) -> tuple[str, Path, Path]:
    """The killed run's folder and the continued run's, after checking both exit as they
    should."""
    name = "case_" + "".join(c if c.isalnum() else "_" for c in case)
    point, nth = POINTS[case]
    probe = ["--trainer.callbacks+=tests.kill_probe.KillAt", f"--trainer.callbacks.point={point}",
             f"--trainer.callbacks.nth={nth}"]  # fmt: skip
    killed = ln_fit(out, name, *probe)
    assert killed.returncode == -9, (
        f"{case}: not killed\n{killed.stdout[-2000:]}{killed.stderr[-3000:]}"
    )
    continued = ln_fit(out, name, "--ckpt_path", "last")
    assert continued.returncode == 0, f"{case}:\n{continued.stderr[-3000:]}"
    versions = sorted((out / "logs" / name).glob("version_*"), key=lambda p: int(p.name[8:]))
    return case, versions[0], versions[-1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, list[tuple[str, Path, Path]]]:
    out = tmp_path_factory.mktemp("kill_anywhere")
    with ThreadPoolExecutor(max_workers=2) as pool:  # two cores, one thread each
        whole = pool.submit(ln_fit, out, "whole")
        cases = list(pool.map(lambda case: kill_and_continue(out, case), POINTS))
    assert whole.result().returncode == 0, whole.result().stderr[-3000:]
    return out / "logs/whole/version_0", cases


def written(folder: Path, name: str) -> bytes:
    """A file of a run; the page names its run's folder (its review's storage key): masked."""
    return (folder / name).read_bytes().replace(str(folder.resolve()).encode(), b"<run folder>")


@pytest.mark.slow
def test_a_killed_run_leaves_no_half_written_file(runs):
    reference, cases = runs
    for case, killed, _ in cases:
        for name in OUTPUTS:
            if (killed / name).exists():
                assert written(killed, name) == written(reference, name), (case, name)
        for checkpoint in (killed / "checkpoints").glob("*.ckpt"):
            read_checkpoint(checkpoint)  # raises on a file cut short


@pytest.mark.slow
def test_the_killed_points_are_where_they_are_said_to_be(runs):
    """Each kill happened at its point: the files written before it exist, those after do not."""
    _, cases = runs
    left = {case: killed for case, killed, _ in cases}
    assert not (left["second epoch"] / "label_issues.csv").exists()
    assert (left["second epoch"] / "checkpoints/last.ckpt").exists()
    assert not (left["writing last.ckpt"] / "checkpoints/last.ckpt").exists()
    assert not (left["label-issue pass"] / "pred_probs.npy").exists()
    assert (left["writing label_issues.csv"] / "pred_probs.npy").exists()
    assert not (left["writing label_issues.csv"] / "label_issues.csv").exists()
    assert not (left["cleaned_labels.csv written, not yet renamed"] / "cleaned_labels.csv").exists()
    assert (left["writing the gallery"] / "label_issues.csv").exists()
    assert not (left["writing the gallery"] / "label_issues.html").exists()


@pytest.mark.slow
def test_continuing_ends_where_an_uninterrupted_run_ends(runs):
    reference, cases = runs
    expected = logged_test_metrics(reference)
    assert {"test/acc", "test_selected/acc"} <= set(expected)
    for case, _, continued in cases:
        for name in ("label_issues.csv", "cleaned_labels.csv"):
            assert (continued / name).read_bytes() == (reference / name).read_bytes(), (case, name)
        assert logged_test_metrics(continued) == expected, case
