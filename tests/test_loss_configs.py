"""Every shipped loss config switches only the loss, and every loss trains from the CLI."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import yaml

from ln_lightning import ForwardCorrection, LogisticNormalLoss, NoisyLabelLoss
from ln_lightning.cli import run_cli
from ln_lightning.data.synthetic import write_image_files
from ln_lightning.registry import registered
from tests.helpers import QUICK, quick

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "zoo/configs/losses").glob("*.yaml"))
METHODS = {entry.name: entry for entry in registered("method")}
# LN annealed; and isotropic (the former own default); Forward without warmup_patience
VARIANTS = {"ln_annealed", "ln_isotropic", "forward_whole_warmup"}


def test_every_method_ships_a_config():
    assert {path.stem for path in CONFIGS} == set(METHODS) | VARIANTS
    for entry in METHODS.values():  # and the config names the registered class
        config = yaml.safe_load((ROOT / entry.config).read_text())
        loss = config["model"]["init_args"]["loss"]["class_path"]
        assert loss.rsplit(".", 1)[-1] == entry.cls.__name__, (entry.name, loss)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_switches_the_loss_alone(path):
    config = yaml.safe_load(path.read_text())
    assert list(config) == ["model"]
    assert list(config["model"]) == ["init_args"]
    # the loss alone: an own-data config's strategy (ForwardOrCoTeaching) is dropped
    assert config["model"]["init_args"] == {
        "strategy": None,
        "loss": config["model"]["init_args"]["loss"],
    }
    assert set(config["model"]["init_args"]["loss"]) <= {"class_path", "init_args"}


def epoch_losses(metrics_csv: Path) -> list[float]:
    with metrics_csv.open() as handle:
        return [float(row["train/loss"]) for row in csv.DictReader(handle) if row.get("train/loss")]


# CE, LN, SGN and transition-aware LN in the default run; every other loss config with -m slow
# (each is also one training step in the default run's table cells, tests/test_configs.py).
DEFAULT_LOSSES = ("ce", "ln", "sgn", "forward_ln")


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=() if p.stem in DEFAULT_LOSSES else pytest.mark.slow) for p in CONFIGS],
    ids=lambda p: p.stem,
)
def test_every_loss_trains_from_the_cli(path, tmp_path):
    # One epoch of Forward's CE warm-up, or of LN's annealing (its loss is not comparable
    # across values of lambda): compare the epochs after it.
    extra = {
        "forward": ["--model.loss.warmup_epochs=1"],
        "forward_whole_warmup": ["--model.loss.warmup_epochs=1"],
        "forward_ln": ["--model.loss.warmup_epochs=1", "--model.loss.anneal_epochs=1"],
        "ln_annealed": ["--model.loss.anneal_epochs=1"],
    }.get(path.stem, [])
    cli = run_cli(
        [
            "fit", "--config", str(ROOT / "cli.yaml"), "--config", str(path), *extra,
            *quick(epochs=5, train_batches=4), "--test_after_fit=false",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--model.optimizer.lr=0.003",
        ]
    )  # fmt: skip
    loss = cli.model.loss
    assert isinstance(loss, NoisyLabelLoss)
    wanted = yaml.safe_load(path.read_text())["model"]["init_args"]["loss"]["class_path"]
    assert f"{type(loss).__module__.split('.')[0]}.{type(loss).__name__}" == wanted
    heads = {name: layer.out_features for name, layer in cli.model.heads.heads.items()}
    assert heads == loss.head_shapes(10)
    losses = epoch_losses(next(tmp_path.rglob("metrics.csv")))
    assert len(losses) == 5 and all(map(torch.isfinite, torch.tensor(losses)))
    start = 1 if extra else 0
    assert losses[-1] < losses[start], losses
    if path.stem.startswith("forward"):
        assert bool(loss.transition_ready)
        (written,) = tmp_path.rglob("transition_matrix.csv")  # the estimate of T, K x K
        rows = [[float(v) for v in line.split(",")] for line in written.read_text().split()]
        torch.testing.assert_close(torch.tensor(rows), loss.transition_matrix, atol=1e-5, rtol=0)


def quick_forward(tmp_path: Path, *extra: str):
    return run_cli(
        [
            "fit", "--config", str(ROOT / "cli.yaml"),
            "--config", str(ROOT / "zoo/configs/losses/forward.yaml"),
            *QUICK, "--test_after_fit=false", f"--trainer.logger.init_args.save_dir={tmp_path}",
            *extra,
        ]
    )  # fmt: skip


def test_forward_takes_the_true_matrix_from_the_data_module(tmp_path):
    cli = quick_forward(tmp_path, "--model.loss.transition_matrix=data")
    loss = cli.model.loss
    assert bool(loss.transition_ready)
    torch.testing.assert_close(loss.transition_matrix, cli.datamodule.true_transition_matrix())
    assert loss.transition_matrix[7, 1] == pytest.approx(0.4)


def test_forward_takes_a_matrix_from_the_command_line(tmp_path):
    matrix = (0.91 * torch.eye(10) + 0.009).tolist()
    cli = quick_forward(tmp_path, f"--model.loss.transition_matrix={matrix}")
    torch.testing.assert_close(cli.model.loss.transition_matrix, torch.tensor(matrix))


def test_forward_warms_up_for_a_share_of_the_run_and_says_so(tmp_path, lightning_log):
    cli = quick_forward(tmp_path, *quick(epochs=5, train_batches=2))  # 0.4 of 5: 2 CE epochs
    loss = cli.model.loss
    assert loss.warmup == 2 and bool(loss.transition_ready)
    assert any(
        "cross-entropy for the first 2 of 5 epochs, 0.4 of the run" in m for m in lightning_log
    )
    assert any("transition matrix (estimated after 2 CE epochs)" in m for m in lightning_log)
    # The CE epochs are never the selected checkpoint: the monitored accuracy is NaN for them.
    with open(Path(cli.trainer.log_dir) / "metrics.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["val/acc_noisy"]]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3, 4]
    monitored = [float(r["val/acc_noisy_after_warmup"]) for r in rows]
    assert all(math.isnan(v) for v in monitored[:2])
    assert monitored[2:] == [float(r["val/acc_noisy"]) for r in rows[2:]]
    (best,) = [c for c in cli.trainer.checkpoint_callbacks if c.monitor]
    assert best.monitor == "val/acc_noisy_after_warmup"
    assert int(best.best_model_path.split("epoch=")[1][:3]) >= 2
    assert float(best.best_model_score) == max(monitored[2:])


def test_forward_says_when_its_warmup_leaves_the_run_plain_cross_entropy(tmp_path, lightning_log):
    cli = quick_forward(tmp_path, "--model.loss.init_args.warmup_epochs=3", *quick(epochs=3))
    assert not bool(cli.model.loss.transition_ready)  # never estimated: the run was CE
    # forward.yaml's patience (5) cannot fire in 3 epochs: the log says both
    (said,) = [m for m in lightning_log if "is not shorter than the run" in m]
    assert "T is estimated only if the noisy validation accuracy stops improving" in said
    assert "warm-up (3 epochs) is not shorter than the run (3 epochs)" in said
    assert "--model.loss.init_args.warmup_epochs" in said


def test_ln_isotropic_on_an_own_data_config_is_the_ln_it_had(tmp_path):
    # The own-data configs train with forward correction (inside ForwardOrCoTeaching since stop
    # 48); ln_isotropic.yaml on top gives back exactly the LN they had (nothing of Forward's
    # settings, nor the strategy, left over).
    write_image_files(tmp_path / "photos", 2)
    own = ["--config", str(ROOT / "zoo/configs/own/images.yaml"), "--trainer.logger=false",
           f"--data.root={tmp_path / 'photos'}"]  # fmt: skip
    shipped = run_cli(own, run=False).model
    default = shipped.loss
    assert isinstance(default, ForwardCorrection)
    assert type(shipped.strategy).__name__ == "ForwardOrCoTeaching"  # since stop 48
    alone = run_cli([*own, "--config", str(ROOT / "zoo/configs/losses/forward.yaml")], run=False)
    assert alone.model.strategy is None  # a loss config: the loss alone
    assert (default.warmup_fraction, default.percentile) == (0.4, 97.0)
    assert (
        default.config()
        == run_cli(
            [*own, "--config", str(ROOT / "zoo/configs/losses/forward.yaml")], run=False
        ).model.loss.config()
    )  # the own configs' loss is forward.yaml's: warm-up with patience 5
    assert default.warmup_patience == 5
    whole_warmup = str(ROOT / "zoo/configs/losses/forward_whole_warmup.yaml")
    whole = run_cli([*own, "--config", whole_warmup], run=False).model.loss
    assert whole.warmup_patience is None and "warmup_best_epoch" not in whole.state_dict()
    forward_ln = str(ROOT / "zoo/configs/losses/forward_ln.yaml")
    assert run_cli([*own, "--config", forward_ln], run=False).model.loss.warmup_patience is None
    ln_config = str(ROOT / "zoo/configs/losses/ln_isotropic.yaml")
    ln_model = run_cli([*own, "--config", ln_config], run=False).model
    assert ln_model.strategy is None  # LN alone, not refused by the default's strategy
    ln = ln_model.loss
    assert (
        ln.config()
        == LogisticNormalLoss(
            temperature=1.0, min_scale=1.0, covariance="isotropic", anneal_epochs=10
        ).config()
    )


def test_forward_warmup_ends_when_noisy_validation_accuracy_stops_improving(
    tmp_path, lightning_log
):
    # lr 0: only batch-norm statistics move, so the validation accuracy soon stops improving
    # and, with patience 1, T is estimated before the warm-up's 7 epochs are over.
    cli = quick_forward(
        tmp_path, *quick(epochs=8, train_batches=2), "--model.optimizer.lr=0",
        "--model.loss.init_args.warmup_epochs=7", "--model.loss.init_args.warmup_patience=1",
    )  # fmt: skip
    loss = cli.model.loss
    with open(Path(cli.trainer.log_dir) / "metrics.csv") as handle:
        accuracy = [float(r["val/acc_noisy"]) for r in csv.DictReader(handle) if r["val/acc_noisy"]]
    patience, cap = 1, 7

    def first_best(epochs: int) -> int:
        return max(range(epochs), key=lambda epoch: (accuracy[epoch], -epoch))

    estimated = next(
        (e for e in range(1, cap) if e - 1 - first_best(e) >= patience), cap
    )  # the rule, replayed on the logged accuracies
    assert estimated < cap and bool(loss.transition_ready)
    assert int(loss.warmup_best_epoch) == first_best(estimated)
    assert float(loss.warmup_best_accuracy) == pytest.approx(accuracy[first_best(estimated)])
    (said,) = [m for m in lightning_log if "transition matrix (estimated after" in m]
    assert f"estimated after {estimated} CE epochs, 1 epoch after its best noisy" in said
    # the buffers travel in the checkpoints written after each validation
    saved = torch.load(next(tmp_path.rglob("last.ckpt")), weights_only=False)["state_dict"]
    assert int(saved["loss.warmup_best_epoch"]) == first_best(estimated)
