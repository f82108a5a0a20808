"""Kill an ``ln-fit`` run mid-epoch (SIGKILL) and resume it with ``--ckpt_path last``.

The resumed run must repeat exactly what an uninterrupted run does from the checkpoint on: the
same noisy labels, the same batches in the same order, the same weights and the same metrics
(training aggregates of the interrupted epoch included, LN's annealed min_scale, which changes
every step, and SGN's EMA teacher, updated after every step).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EPOCHS, BATCHES = 3, 11  # digits: 1,293 training examples in batches of 128
# (checkpoint every n steps or None: at epoch ends; signal sent after this step; the signal;
#  the step of the checkpoint the resumed run starts from)
SCHEDULES = {
    "killed_mid_epoch": (4, 15, "SIGKILL", 12),
    "killed_after_epoch_end": (None, 13, "SIGKILL", 11),
    "ctrl_c": (None, 15, "SIGINT", 15),  # LastCheckpoint saves at the signal's step
    "sigterm": (None, 15, "SIGTERM", 15),
}
# The loss of each run: LN's min_scale follows the training time step by step (annealed), and
# SGN's EMA teacher (its weights and batch-norm statistics) and shift do too.
LN_ANNEALED = ("--model.loss.anneal_epochs=2",)
SGN = ("--config", "zoo/configs/losses/sgn.yaml", "--model.loss.alpha=0.5",
       "--model.loss.ema_decay=0.9")  # fmt: skip
#: The evaluating average of the weights (the own-data configs'), one update a step.
AVERAGED = (*LN_ANNEALED, "--model.weight_average_decay=0.9")
#: fixture parameter -> (schedule, loss arguments)
CASES = {**{name: (name, LN_ANNEALED) for name in SCHEDULES}, "sgn": ("killed_mid_epoch", SGN),
         "weight_average": ("killed_mid_epoch", AVERAGED)}  # fmt: skip


def ln_fit(
    out: Path,
    name: str,
    *extra: str,
    every: int | None,
    kill_at: int | None = None,
    signal_name: str = "SIGKILL",
    loss: tuple[str, ...] = LN_ANNEALED,
) -> subprocess.Popen:
    """``ln-fit fit --config cli.yaml`` with the shipped checkpoint callbacks (the monitored
    best checkpoint, and the ``last.ckpt`` that ``ln-fit`` keeps), plus a step recorder; with
    ``every``, mid-epoch checkpoints as docs/performance.md tells a user to ask for them."""
    recorder = [
        "--trainer.callbacks+=tests.resume_probe.StepRecorder",
        f"--trainer.callbacks.path={out / f'steps_{name}.jsonl'}",
        f"--trainer.callbacks.signal_name={signal_name}",
    ]
    if kill_at is not None:
        recorder.append(f"--trainer.callbacks.kill_at_step={kill_at}")
    if every is not None:
        recorder += [
            "--trainer.callbacks+=ln_lightning.resume.LastCheckpoint",
            f"--trainer.callbacks.every_n_train_steps={every}",
        ]
    command = [sys.executable, "-m", "ln_lightning.cli", "fit", "--config", "cli.yaml",
               f"--trainer.max_epochs={EPOCHS}", "--trainer.accelerator=cpu",
               "--trainer.enable_progress_bar=false", "--test_after_fit=true",
               *loss,
               f"--trainer.logger.init_args.save_dir={out / 'logs'}",
               f"--trainer.logger.init_args.name={name}", *recorder, *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def last_checkpoint(out: Path, name: str) -> Path:
    """The newest run's ``last.ckpt`` of an experiment."""
    return sorted(out.glob(f"logs/{name}/version_*/checkpoints/last.ckpt"))[-1]


def finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=600)
    return process.returncode, output


def steps(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def metrics(out: Path, name: str) -> dict[tuple[int, str], float]:
    """``(step, key) -> value`` of every value a run logged, over all its versions."""
    values = {}
    for path in sorted(out.glob(f"logs/{name}/*/metrics.csv")):
        for row in csv.DictReader(path.open()):
            for key, value in row.items():
                if key not in ("step", "epoch") and value:
                    values[int(row["step"]), key] = float(value)
    return values


# Every schedule (mid-epoch SIGKILL, Ctrl-C, SIGTERM, ...) and SGN with -m slow: each is two
# ln-fit processes; the default run continues runs in-process (test_cli, test_run_outputs).
@pytest.fixture(
    scope="module",
    params=[pytest.param(name, marks=pytest.mark.slow) for name in CASES],
)
def runs(request, tmp_path_factory):
    schedule, loss = CASES[request.param]
    every, kill_at, signal_name, _ = SCHEDULES[schedule]
    out = tmp_path_factory.mktemp(request.param)
    whole = ln_fit(out, "whole", every=every, loss=loss)
    killed = ln_fit(
        out, "resumed", every=every, kill_at=kill_at, signal_name=signal_name, loss=loss
    )
    (code, log), (killed_code, killed_log) = finish(whole), finish(killed)
    assert code == 0, log[-3000:]
    if signal_name == "SIGKILL":
        assert killed_code == -9, killed_log[-3000:]  # no clean shutdown, no final checkpoint
    else:
        assert killed_code != 0 and "Interrupted: saved" in killed_log, killed_log[-3000:]
        assert "test/acc" not in killed_log  # an interrupted fit is not tested
    killed_steps = steps(out / "steps_resumed.jsonl")
    last = torch.load(last_checkpoint(out, "resumed"), weights_only=False)
    (out / "checkpoint_step").write_text(str(last["global_step"]))
    code, resumed_log = finish(
        ln_fit(out, "resumed", "--ckpt_path", "last", every=every, loss=loss)
    )
    assert code == 0, resumed_log[-3000:]
    resumed_steps = steps(out / "steps_resumed.jsonl")[len(killed_steps) :]
    whole_steps = steps(out / "steps_whole.jsonl")
    return schedule, out, whole_steps, killed_steps, resumed_steps, resumed_log


def test_the_killed_run_stopped_mid_epoch_after_its_last_checkpoint(runs):
    schedule, out, _, killed, resumed, _ = runs
    _, kill_at, _, checkpoint_step = SCHEDULES[schedule]
    assert [s["step"] for s in killed] == list(range(1, kill_at + 1))
    assert 0 < killed[-1]["batch_idx"] < BATCHES - 1  # mid-epoch
    assert int((out / "checkpoint_step").read_text()) == checkpoint_step
    assert resumed[0]["step"] == checkpoint_step + 1  # the steps after it are done again


def test_resumed_run_trains_on_the_same_batches_and_noisy_labels(runs):
    _, _, whole, killed, resumed, log = runs
    assert len(whole) == EPOCHS * BATCHES
    assert killed == whole[: len(killed)]
    start = resumed[0]["step"] - 1
    assert resumed == whole[start:]  # same steps, epochs, batch indices, examples, noisy labels
    assert "your dataloader is not resumable" not in log


def test_resumed_run_ends_with_the_same_weights_and_metrics(runs):
    schedule, out, *_ = runs
    whole = torch.load(last_checkpoint(out, "whole"), weights_only=False)
    resumed = torch.load(last_checkpoint(out, "resumed"), weights_only=False)
    assert last_checkpoint(out, "resumed").parts[-3] == "version_1"  # the continued run's
    assert whole["global_step"] == resumed["global_step"] > SCHEDULES[schedule][1]
    for key, value in whole["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)
    if out.name.startswith("sgn"):  # the teacher is in the weights compared, one update a step
        assert whole["state_dict"]["network.teacher.n_averaged"] == whole["global_step"] + 1
    if out.name.startswith("weight_average"):  # likewise the average, which evaluates
        assert whole["state_dict"]["network.average.n_averaged"] == whole["global_step"] + 1
    expected, got = metrics(out, "whole"), metrics(out, "resumed")
    resumed_epoch = SCHEDULES[schedule][1] // BATCHES
    for (step, key), value in expected.items():
        if step >= resumed_epoch * BATCHES:  # everything logged from the interrupted epoch on
            assert got.get((step, key)) == pytest.approx(value, abs=1e-6), (step, key)
    assert any(key == "train/loss" for _, key in got)
    assert any(key.startswith("test/") for _, key in got)
