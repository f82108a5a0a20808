"""Analysis callbacks end to end through ``ln-fit``: files, logged metrics, W&B offline runs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ln_lightning.cli import run_cli
from ln_lightning.data.synthetic import write_cifar10n
from ln_lightning.sweep import last_value
from tests.helpers import quick

ROOT = Path(__file__).resolve().parents[1]
QUICK = [
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.accelerator=cpu",
    "--test_after_fit=false",
]


def fit(tmp_path: Path, *args: str):
    return run_cli(
        ["fit", "--config", str(ROOT / "cli.yaml"), *QUICK, *args,
         f"--trainer.logger.init_args.save_dir={tmp_path}"]
    )  # fmt: skip


def test_ln_run_writes_residual_histograms_and_logs_its_config(tmp_path, monkeypatch):
    from ln_lightning.model import passes

    calls = []
    predict = passes.predict_split
    monkeypatch.setattr(
        passes,
        "predict_split",
        lambda m, batches: calls.append(batches) or predict(m, batches),
    )
    cli = fit(
        tmp_path,
        "--trainer.max_epochs=3",
        "--trainer.callbacks+=ln_lightning.callbacks.ResidualHistogram",
        "--trainer.callbacks+=ln_lightning.callbacks.MislabelReport",
    )
    run = Path(cli.trainer.log_dir)
    assert (run / "figures" / "analysis_residual_histograms.png").stat().st_size > 10_000
    assert (run / "label_issues.csv").is_file()
    # One pass over the training split, shared by the two callbacks; one over the validation split
    # (the label-issue report checks every labelled example).
    assert sorted(len(batches.dataset) for batches in calls) == [144, 1293]
    # Memorisation curves and the full config reach the logger.
    train = cli.datamodule.train_set
    share = float(
        train.noisy_labels[train.indices].ne(train.clean_labels[train.indices]).float().mean()
    )
    logged = {key: last_value(run / "metrics.csv", f"train/{key}") for key in
              ("acc_noisy", "acc_uncorrupted", "acc_corrupted_vs_noisy")}  # fmt: skip
    expected = (1 - share) * logged["acc_uncorrupted"] + share * logged["acc_corrupted_vs_noisy"]
    assert logged["acc_noisy"] == pytest.approx(expected, abs=1e-5)  # the last epoch's split
    hparams = yaml.unsafe_load((run / "hparams.yaml").read_text())  # our own file
    assert hparams["data"]["init_args"]["noise_rate"] == 0.4
    assert hparams["model"]["init_args"]["loss"]["class_path"].endswith("LogisticNormalLoss")


def test_mislabel_report_finds_the_wrong_labels(tmp_path):
    """CE before it memorises the noise (10 epochs) ranks the corrupted labels first."""
    cli = fit(
        tmp_path,
        "--config", str(ROOT / "zoo/configs/losses/ce.yaml"),
        "--trainer.max_epochs=10",
        "--trainer.callbacks+=ln_lightning.callbacks.MislabelReport",
        "--trainer.callbacks.every_n_epochs=5",
    )  # fmt: skip
    run = Path(cli.trainer.log_dir)
    with (run / "label_issues.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    train, val = cli.datamodule.train_set, cli.datamodule.val_set
    assert len(rows) == len(train) + len(val) == 1437  # every labelled example of the pool
    assert {int(r["index"]) for r in rows if r["split"] == "train"} == set(train.indices.tolist())
    assert {int(r["index"]) for r in rows if r["split"] == "val"} == set(val.indices.tolist())
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    auroc = last_value(run / "metrics.csv", "mislabel/auroc")
    assert auroc is not None and auroc > 0.8  # chance is 0.5
    top = rows[: int(0.1 * len(rows))]
    # 21% of the labels are corrupted, but over half of the top 10%.
    assert sum(r["given_label"] != r["clean_label"] for r in top) / len(top) > 0.5
    # The flags: mostly right, and the cleaned labels (digits have no files: the
    # noisy_labels_file format) hold fewer wrong labels when a new run reads them back.
    flagged = [r for r in rows if r["is_issue"] == "1"]
    precision = sum(r["is_noisy"] == "1" for r in flagged) / len(flagged)
    assert precision == pytest.approx(last_value(run / "metrics.csv", "mislabel/flag_precision"))
    assert precision > 0.5
    again = fit(
        tmp_path / "again", *quick(train_batches=1),
        f"--data.init_args.noisy_labels_file={run / 'cleaned_labels.csv'}",
    )  # fmt: skip
    changed = again.datamodule.noise.noisy_labels != cli.datamodule.noise.noisy_labels
    assert int(changed.sum()) == len(flagged)  # every flagged label relabelled, nothing else
    assert again.datamodule.noise.realised_rate < cli.datamodule.noise.realised_rate
    # relabeled_labels.csv: confident suggestions taken, the doubtful flags left out of both splits
    with (run / "relabeled_labels.csv").open() as handle:
        decided = [r["decision"] for r in csv.DictReader(handle)]
    assert decided.count("accept") + decided.count("drop") == len(flagged) > decided.count("drop")
    relabeled = fit(
        tmp_path / "relabeled", *quick(train_batches=1),
        f"--data.init_args.noisy_labels_file={run / 'relabeled_labels.csv'}",
    )  # fmt: skip
    data = relabeled.datamodule
    assert len(data.train_set) + len(data.val_set) == 1437 - decided.count("drop")
    kept = torch.cat([data.train_set.indices, data.val_set.indices])
    wrong = data.noise.is_corrupted[kept].float().mean()
    assert float(wrong) < cli.datamodule.noise.realised_rate


def test_a_weak_model_says_its_flags_cannot_be_trusted(tmp_path, lightning_log):
    """Two one-batch epochs at a tiny learning rate: near chance, the flags are noise."""
    cli = fit(
        tmp_path, *quick(epochs=2, train_batches=1),
        "--model.optimizer.lr=1e-6",
    )  # fmt: skip
    report = next(c for c in cli.trainer.callbacks if type(c).__name__ == "MislabelReport")
    assert len(report.val_accuracy) == 2 and max(report.val_accuracy) < 0.3  # 10 classes
    line = next(m for m in lightning_log if "labels look wrong" in m)
    assert "Do not trust these flags yet: the model is near chance" in line
    with (Path(cli.trainer.log_dir) / "label_issues.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert all(r["caution"].startswith("the model is near chance") for r in rows)


def test_decision_boundary_on_two_moons(tmp_path):
    cli = run_cli(
        ["fit", "--config", str(ROOT / "zoo/configs/two_moons/base.yaml"),
         "--config", str(ROOT / "zoo/configs/two_moons/sym40.yaml"), *QUICK,
         "--trainer.max_epochs=3", "--data.init_args.num_train=100",
         "--model.init_args.backbone_kwargs={hidden: [16]}",
         "--trainer.callbacks+=ln_lightning.callbacks.DecisionBoundaryPlot",
         "--trainer.callbacks.resolution=30",
         f"--trainer.logger.init_args.save_dir={tmp_path}"]
    )  # fmt: skip
    path = Path(cli.trainer.log_dir) / "figures" / "analysis_decision_boundary.png"
    assert path.stat().st_size > 5_000


def test_annotator_nll_on_cifar10n_files(tmp_path):
    write_cifar10n(tmp_path)
    cli = run_cli(
        ["fit", "--config", str(ROOT / "zoo/configs/cifar10n/base.yaml"),
         "--config", str(ROOT / "zoo/configs/cifar10n/worst.yaml"), *QUICK,
         f"--data.init_args.data_dir={tmp_path}", "--data.init_args.download=false",
         "--data.init_args.batch_size=16", "--trainer.max_epochs=1",
         "--model.init_args.backbone=small_cnn",
         "--trainer.callbacks+=ln_lightning.callbacks.AnnotatorNLL",
         f"--trainer.logger.init_args.save_dir={tmp_path}"]
    )  # fmt: skip
    from ln_lightning.analysis import annotator_nll

    callback = next(c for c in cli.trainer.callbacks if type(c).__name__ == "AnnotatorNLL")
    predictions = cli.model.split_predictions(datamodule=cli.datamodule)
    labels = cli.datamodule.annotator_labels
    assert labels.shape == (100, 3)
    expected = float(annotator_nll(predictions.probs, labels[predictions.indices]))
    assert callback.value == pytest.approx(expected, rel=1e-5)
    logged = last_value(Path(cli.trainer.log_dir) / "metrics.csv", "train/annotator_nll")
    assert logged == pytest.approx(expected, rel=1e-5)


def test_annotator_nll_needs_several_annotators(tmp_path):
    with pytest.raises(ValueError, match="annotator_labels"):
        fit(tmp_path, *quick(train_batches=1),
            "--trainer.callbacks+=ln_lightning.callbacks.AnnotatorNLL")  # fmt: skip


def test_bad_callback_arguments_are_refused():
    from ln_lightning.callbacks import AnnotatorNLL, MislabelReport, ResidualHistogram

    with pytest.raises(ValueError, match="score must be one of"):
        MislabelReport(score="entropy")
    with pytest.raises(ValueError, match=r"doubtful must be one of \('drop', 'keep'\)"):
        MislabelReport(doubtful="ignore")
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\]; got 1.5"):
        MislabelReport(relabel_confidence=1.5)
    with pytest.raises(ValueError, match="bins"):
        ResidualHistogram(bins=1)
    with pytest.raises(ValueError, match="every_n_epochs"):
        AnnotatorNLL(every_n_epochs=-1)


def wandb_records(run: Path) -> list[dict]:
    """The records of an offline W&B run, through the documented ``wandb leet inspect --json``."""
    log = next(run.glob("*.wandb"))
    wandb_cli = Path(sys.executable).parent / "wandb"
    result = subprocess.run(
        [str(wandb_cli), "leet", "inspect", "--json", str(log)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_the_loggers_save_dir_exists_before_wandb_starts(tmp_path, monkeypatch):
    """W&B finds the git repository from its save_dir; a missing one printed "git root runs does
    not exist" and lost the commit."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    save_dir = tmp_path / "new" / "runs"
    run_cli(
        ["--config", str(ROOT / "cli.yaml"), *QUICK[:3],
         "--trainer.logger=lightning.pytorch.loggers.WandbLogger",
         f"--trainer.logger.save_dir={save_dir}", "--trainer.logger.offline=true"],
        run=False,
    )  # fmt: skip
    assert save_dir.is_dir()


def folder_of(save_dir: Path, run: Path) -> Path:
    """The run folder of an offline W&B run: ``<save_dir>/<project>/<run id>``."""
    return save_dir / "ln-tests" / run.name.rsplit("-", 1)[-1]


@pytest.mark.slow  # a W&B run and its files: 15 s
def test_wandb_offline_run_records_config_metrics_noise_and_figures(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    cli = run_cli(
        ["fit", "--config", str(ROOT / "cli.yaml"), *QUICK, "--trainer.max_epochs=2",
         "--trainer.logger=lightning.pytorch.loggers.WandbLogger",
         f"--trainer.logger.save_dir={tmp_path}", "--trainer.logger.offline=true",
         "--trainer.logger.project=ln-tests",
         "--trainer.callbacks+=ln_lightning.callbacks.ResidualHistogram",
         "--trainer.callbacks+=ln_lightning.callbacks.MislabelReport",
         "--trainer.callbacks.top_k=5"]
    )  # fmt: skip
    import wandb

    wandb.finish()
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    records = wandb_records(run)
    configs = [r["config"]["update"] for r in records if r["type"] == "config"]
    full = next(c for c in configs if "data" in c)  # the whole ln-fit config
    assert full["data"]["init_args"]["noise_rate"] == 0.4
    assert full["model"]["init_args"]["backbone"] == "small_cnn"
    assert full["trainer"]["max_epochs"] == 2
    history: dict = {}
    for record in records:
        if record["type"] == "history":
            history.update(record["history"]["item"])
    for key in ("train/acc_noisy", "val/acc_noisy", "train/acc_corrupted_vs_noisy",
                "noise/realised_rate", "mislabel/auroc"):  # fmt: skip
        assert key in history, key
    assert history["noise/realised_rate"] == pytest.approx(cli.datamodule.noise.realised_rate)
    images = list((run / "files" / "media" / "images").rglob("*.png"))
    assert any("residual_histograms" in p.name for p in images)
    (table_file,) = (run / "files" / "media" / "table").rglob("*.table.json")
    assert "flagged" in table_file.name  # mislabel/flagged: the flagged labels, with images
    table = json.loads(table_file.read_text())
    assert table["columns"] == [
        "index", "input", "given_label", "suggested_label", "score", "clean_label",
    ]  # fmt: skip
    with (folder_of(tmp_path, run) / "label_issues.csv").open() as handle:
        flagged = [r for r in csv.DictReader(handle) if r["is_issue"] == "1"][:5]
    assert [row[0] for row in table["data"]] == [int(r["index"]) for r in flagged]
    assert [row[2:4] for row in table["data"]] == [
        [r["given_label"], r["suggested_label"]] for r in flagged
    ]
    # Offline, W&B keeps "Image" for the pictures of a table (its issue #4611): the pictures
    # come again, captioned with the labels, as mislabel/flagged_images.
    shown = next(r["history"]["item"] for r in records if r["type"] == "history"
                 and "mislabel/flagged_images.captions" in r["history"]["item"])  # fmt: skip
    captions = shown["mislabel/flagged_images.captions"]
    assert [c.split(" (")[0] for c in captions] == [
        f"{r['given_label']} -> {r['suggested_label']}" for r in flagged
    ]
    assert all((run / "files" / f).is_file() for f in shown["mislabel/flagged_images.filenames"])
    # The run's own files sit beside its checkpoints, not in the shared save_dir.
    folder = folder_of(tmp_path, run)
    assert (folder / "label_issues.csv").is_file() and (folder / "checkpoints").is_dir()
    # config.yaml too: in the shared save_dir every W&B run would overwrite the last one's.
    assert (folder / "config.yaml").is_file() and not (tmp_path / "config.yaml").exists()


@pytest.mark.slow  # a 30-class run
def test_beyond_prob_columns_the_report_keeps_the_top_classes_and_pred_probs_on_request(tmp_path):
    import numpy as np

    cli = fit(
        tmp_path, *quick(epochs=2),
        "--trainer.callbacks+=ln_lightning.callbacks.MislabelReport",
        "--trainer.callbacks.prob_columns=5", "--trainer.callbacks.top_classes=3",
        "--trainer.callbacks.pred_probs=float16",
    )  # fmt: skip
    run = Path(cli.trainer.log_dir)
    with (run / "label_issues.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1437 and "p_0" not in rows[0] and "top3_label" in rows[0]
    assert (run / "classes.txt").read_text().split() == [str(k) for k in range(10)]
    written = np.load(run / "pred_probs.npy")
    assert written.dtype == np.float16 and written.shape == (1437, 10)
    # The rows are the model's probabilities, by index; each row's top classes are its largest.
    model = cli.model
    model.eval()
    expected = model.split_predictions("train", cli.datamodule)
    order = expected.indices
    np.testing.assert_allclose(written[order.numpy()], expected.probs.numpy(), atol=2e-3)
    for row in rows[:50]:
        probs = written[int(row["index"])].astype(float)
        assert int(row["top1_label"]) == int(probs.argmax())
        assert float(row["p_given"]) == pytest.approx(probs[int(row["given_label"])], abs=2e-3)
    # The verdict equals the one over all ten classes, but for the rows counted undecided.
    from ln_lightning.label_issues import find_label_issues

    report = next(c for c in cli.trainer.callbacks if type(c).__name__ == "MislabelReport")
    val = model.split_predictions("val", cli.datamodule)
    every = torch.cat([expected.indices, val.indices]).argsort()
    full = find_label_issues(
        torch.cat([expected.probs, val.probs])[every], torch.cat([expected.given, val.given])[every]
    )
    flags = torch.zeros(1437, dtype=torch.long)
    for row in rows:
        flags[int(row["index"])] = int(row["is_issue"])
    assert int((full.is_issue.long() != flags).sum()) <= report.issues.undecided
    # Asked for nothing beyond prob_columns: no N x K file.
    again = fit(
        tmp_path / "again", *quick(epochs=1, train_batches=1),
        "--trainer.callbacks+=ln_lightning.callbacks.MislabelReport",
        "--trainer.callbacks.prob_columns=5",
    )  # fmt: skip
    folder = Path(again.trainer.log_dir)
    assert (folder / "label_issues.csv").is_file() and not (folder / "pred_probs.npy").exists()
    assert (folder / "labels.npy").is_file()


def test_mislabel_report_finds_an_unwritable_run_folder_before_training(tmp_path):
    """In a Trainer of your own (no ln-fit), the report's folder is checked at set-up: a
    blocked folder fails before the first step, not after the last epoch."""
    from ln_lightning import DigitsDataModule, NoisyLabelClassifier
    from ln_lightning.callbacks import MislabelReport
    from ln_lightning.files import WriteError
    from tests.helpers import quick_trainer

    (tmp_path / "blocked").write_text("a file where the run folder should be")
    trainer = quick_trainer(tmp_path / "blocked" / "run", callbacks=[MislabelReport()])
    model = NoisyLabelClassifier(num_classes=10, input_shape=(1, 8, 8))
    with pytest.raises(WriteError, match=r"cannot write label_issues\.csv .*blocked is a file"):
        trainer.fit(model, datamodule=DigitsDataModule())
    assert trainer.global_step == 0
