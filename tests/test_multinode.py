"""Two ``torchrun`` "nodes" over 127.0.0.1, as docs/performance.md launches them on a cluster.

Each node is a separate ``torchrun --nnodes 2 --node_rank R`` with one CPU process
(``--trainer.num_nodes 2 --trainer.devices 1``); both write to one folder, the shared file
system of a cluster. ``slow``: two trainings and a resume.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
BATCH = 128
STEP = 3  # the step checkpoint the one-node run continues from


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fit_args(out: Path, probe: str) -> list[str]:
    return [
        "fit", "--config", "cli.yaml", "--trainer.accelerator=cpu", "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        f"--trainer.logger.init_args.save_dir={out / 'logs'}",
        "--trainer.callbacks+=tests.ddp_probe.RankProbe",
        f"--trainer.callbacks.out_dir={out / probe}",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    out = tmp_path_factory.mktemp("nodes")
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    nodes = []
    for node in (0, 1):
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={node}",
            "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}",
            "-m", "ln_lightning.cli", *fit_args(out, "probe"), "--trainer.num_nodes=2",
            "--trainer.devices=1", "--trainer.strategy=ddp",
            "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
            f"--trainer.callbacks.dirpath={out / 'steps'}",
            f"--trainer.callbacks.every_n_train_steps={STEP}", "--trainer.callbacks.save_top_k=-1",
        ]  # fmt: skip
        log = (out / f"node{node}.log").open("w")
        nodes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log))
    for node, process in enumerate(nodes):
        code = process.wait(timeout=600)
        assert code == 0, (out / f"node{node}.log").read_text()[-4000:]
    return out


def test_both_nodes_train_on_the_same_noisy_labels(two_nodes):
    ranks = [json.loads((two_nodes / "probe" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["noisy_labels"] == ranks[1]["noisy_labels"]
    first, second = set(ranks[0]["seen"]["0"]), set(ranks[1]["seen"]["0"])
    assert len(first | second) == 1293 and len(first & second) <= 1  # one epoch, split


def test_one_label_issues_file_with_every_example_once(two_nodes):
    (found,) = two_nodes.rglob("label_issues.csv")  # rank 0 wrote it, node 1 nothing
    with found.open() as handle:
        indices = [int(row["index"]) for row in csv.DictReader(handle)]
    assert sorted(indices) == list(range(1437))  # the training pool: train and noisy val
    assert [p.name for p in (two_nodes / "logs" / "digits").iterdir()] == ["version_0"]


def test_a_step_checkpoint_continues_on_one_node_with_the_examples_left(two_nodes):
    checkpoint = two_nodes / "steps" / f"epoch=0-step={STEP}.ckpt"
    position = torch.load(checkpoint, weights_only=False)["DigitsDataModule"]["train_position"]
    assert position == {"epoch": 0, "batches": STEP, "epoch_done": False, "world_size": 2}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "ln_lightning.cli", *fit_args(two_nodes, "resumed"),
               f"--ckpt_path={checkpoint}"]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [json.loads((two_nodes / "probe" / f"rank{r}.json").read_text()) for r in (0, 1)]
    trained = {i for rank in ranks for i in rank["seen"]["0"][: STEP * BATCH]}
    resumed = json.loads((two_nodes / "resumed" / "rank0.json").read_text())["seen"]["0"]
    assert trained.isdisjoint(resumed) and len(resumed) == len(set(resumed))
    assert trained | set(resumed) == set(ranks[0]["seen"]["0"]) | set(ranks[1]["seen"]["0"])
    # The step count goes on: 3 steps on two nodes, then the 525 examples left in batches of 128.
    last = two_nodes / "logs" / "digits" / "version_1" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == STEP + -(-525 // BATCH)
