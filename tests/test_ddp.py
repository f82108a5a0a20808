"""DDP with two CPU processes (gloo) through ``ln-fit``: same noise, synced metrics, shards.

Every test here is ``slow`` (two-process runs; ``pytest -m slow``), to keep the default run
under 5 minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ln_lightning import NoisyLabelClassifier

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run_ddp(out: Path, *extra: str) -> tuple[Path, list[dict], str]:
    """``ln-fit`` on two CPU processes; each rank's probe record and the output."""
    command = [
        sys.executable, "-m", "ln_lightning.cli", "fit", "--config", "cli.yaml",
        "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
        "--trainer.max_epochs=2", "--trainer.enable_progress_bar=false",
        f"--trainer.logger.init_args.save_dir={out / 'logs'}",
        "--trainer.callbacks+=tests.ddp_probe.RankProbe",
        f"--trainer.callbacks.out_dir={out / 'probe'}",
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        f"--trainer.callbacks.dirpath={out / 'steps'}",
        "--trainer.callbacks.every_n_train_steps=3", "--trainer.callbacks.save_top_k=-1", *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [json.loads((out / "probe" / f"rank{r}.json").read_text()) for r in (0, 1)]
    return out, ranks, result.stdout + result.stderr


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    return run_ddp(tmp_path_factory.mktemp("ddp"))


def test_the_ema_teacher_is_the_same_on_both_ranks(tmp_path):
    out, (rank0, rank1), _ = run_ddp(tmp_path, "--config", "zoo/configs/losses/sgn.yaml")
    assert rank0["teacher"] is not None and rank0["teacher"] == rank1["teacher"]
    assert rank0["metrics"]["val/acc_noisy_teacher"] == rank1["metrics"]["val/acc_noisy_teacher"]
    (checkpoint,) = out.glob("logs/digits/*/checkpoints/last.ckpt")
    state = torch.load(checkpoint, weights_only=False)
    assert state["state_dict"]["network.teacher.n_averaged"] == state["global_step"] + 1


def test_the_evaluating_average_is_the_same_on_both_ranks(tmp_path):
    out, (rank0, rank1), _ = run_ddp(tmp_path, "--model.weight_average_decay=0.9")
    assert rank0["network"] == rank1["network"]  # the average's parameters are the network's
    assert rank0["metrics"]["val/acc_noisy"] == rank1["metrics"]["val/acc_noisy"]
    (checkpoint,) = out.glob("logs/digits/*/checkpoints/last.ckpt")
    state = torch.load(checkpoint, weights_only=False)
    assert state["state_dict"]["network.average.n_averaged"] == state["global_step"] + 1
    average = {k for k in state["state_dict"] if k.startswith("network.average.module.")}
    assert average and all(state["state_dict"][k].isfinite().all() for k in average)


def test_both_ranks_train_on_the_same_noisy_labels_and_report_the_same_metrics(ddp_run):
    _, (rank0, rank1), log = ddp_run
    assert rank0["world_size"] == rank1["world_size"] == 2
    assert rank0["noisy_labels"] == rank1["noisy_labels"]
    assert rank0["metrics"].keys() == rank1["metrics"].keys()
    for key, value in rank0["metrics"].items():
        assert rank1["metrics"][key] == pytest.approx(value, rel=1e-6), key
    assert "sync_dist=True" not in log  # every epoch-level value is reduced across ranks


def test_each_epoch_is_split_between_the_ranks(ddp_run):
    _, (rank0, rank1), _ = ddp_run
    for epoch in ("0", "1"):
        first, second = set(rank0["seen"][epoch]), set(rank1["seen"][epoch])
        assert len(first | second) == 1293  # the whole digits training split
        assert len(first & second) <= 1  # DistributedSampler pads an odd split by one


def test_a_ddp_checkpoint_loads_in_one_process(ddp_run):
    out, _, _ = ddp_run
    (checkpoint,) = out.glob("logs/digits/*/checkpoints/last.ckpt")
    model = NoisyLabelClassifier.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    probs = model.predict_proba(torch.randn(4, 1, 8, 8))
    torch.testing.assert_close(probs.sum(1), torch.ones(4))


def test_a_mid_epoch_ddp_checkpoint_holds_both_ranks_running_metrics(ddp_run):
    """Rank 0 writes the checkpoint; the epoch's running sums in it cover both ranks' batches."""
    out, _, _ = ddp_run
    checkpoint = torch.load(out / "steps" / "epoch=0-step=3.ckpt", weights_only=False)
    assert checkpoint["DigitsDataModule"]["train_position"] == {
        "epoch": 0, "batches": 3, "epoch_done": False, "world_size": 2
    }  # fmt: skip
    state = checkpoint["state_dict"]
    assert (
        state["train_metrics.loss_mean.weight"] == 2 * 3 * 128
    )  # examples, 3 batches on each rank
    noisy = "train_metrics.accuracies.noisy"
    counts = state[f"{noisy}.tp"] + state[f"{noisy}.fn"]
    assert counts.sum() == 2 * 3 * 128
