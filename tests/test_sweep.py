"""``ln-fit-sweep``: spec checks, run composition, tables, resuming and the grid search."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from ln_lightning.cli import run_cli
from ln_lightning.sweep import (
    best_point,
    grid_points,
    last_value,
    load_spec,
    main,
    markdown_table,
    mean_std,
    nested,
    slug,
    zoo_path,
)
from tests.helpers import quick

ROOT = Path(__file__).resolve().parents[1]


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_runs_compose_row_method_and_cell_arguments(tmp_path):
    spec = load_spec(
        write_spec(
            tmp_path / "t.yaml",
            {
                "seeds": [3, 4],
                "methods": {"CE": "--config zoo/configs/losses/ce.yaml", "LN": ""},
                "settings": {
                    "Digits asym 40%": {
                        "args": "--config cli.yaml --trainer.max_epochs=2",
                        "paper": {"LN": 90.0},
                        "method_args": {"CE": "--data.init_args.batch_size=64"},
                    },
                    "Plain": "--config cli.yaml",
                },
            },
        )
    )
    runs = spec.runs(tmp_path / "out")
    assert [(r.setting, r.method, r.seed) for r in runs[:4]] == [
        ("Digits asym 40%", "CE", 3), ("Digits asym 40%", "CE", 4),
        ("Digits asym 40%", "LN", 3), ("Digits asym 40%", "LN", 4),
    ]  # fmt: skip
    ce = runs[0]
    assert ce.args[:3] == ("--config", "cli.yaml", "--trainer.max_epochs=2")
    assert ce.args[-1] == "--data.init_args.batch_size=64"
    assert Path(ce.args[4]).parts[-3:] == ("configs", "losses", "ce.yaml")
    assert ce.run_dir == tmp_path / "out" / "digits_asym_40" / "ce" / "seed3"
    command = ce.command(["--trainer.fast_dev_run=1"])
    assert "--seed_everything=3" in command and "--data.init_args.seed=3" in command
    assert command[-1] == "--trainer.fast_dev_run=1"
    assert len(spec.runs(tmp_path, settings=["Plain"], methods=["LN"], seeds=[0])) == 1
    with pytest.raises(ValueError, match="Unknown setting"):
        spec.runs(tmp_path, settings=["CIFAR"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"settings": {"a": "--x"}}, "missing \\['methods'\\]"),
        ({"methods": {"CE": ""}, "settings": {"a": {"paper": {"GCE": 1.0}}}}, "not methods"),
        ({"methods": {"CE": ""}, "settings": {"a": {"arg": "--x"}}}, "unknown keys \\['arg'\\]"),
        ({"methods": {"CE": ""}, "settings": {"a": ""}, "search": {"LN": {"k": [1]}}}, "unknown"),
        ({"methods": {"CE": ""}, "settings": {"a": ""}, "search": {"CE": {"k": []}}}, "non-empty"),
        ({"methods": {"CE": ""}, "settings": {"a": ""}, "search": "nope.yaml"}, "not found"),
    ],
)
def test_bad_specs_say_what_is_wrong(tmp_path, spec, message):
    with pytest.raises(ValueError, match=message):
        load_spec(write_spec(tmp_path / "bad.yaml", spec))


def test_shared_grids_file_and_zoo_paths_resolve_outside_the_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no zoo/ folder here: the installed package is used
    resolved = zoo_path("zoo/tables/paper_synthetic.yaml")
    assert resolved.is_file() and resolved.is_absolute()
    assert zoo_path("not/zoo/x.yaml") == Path("not/zoo/x.yaml")
    spec = load_spec("zoo/tables/paper_synthetic.yaml")
    assert spec.search["LN"]["model.init_args.loss.init_args.min_scale"] == [0.1, 0.5, 1.0]
    assert set(spec.search) <= set(spec.methods)
    run = spec.runs(tmp_path, settings=["CIFAR-10 asym 40%"], methods=["LN"], seeds=[0])[0]
    assert all(Path(a).is_file() for a in run.args if a.endswith(".yaml"))


def test_table_layout_and_selection_helpers(tmp_path):
    spec = load_spec(
        write_spec(
            tmp_path / "t.yaml",
            {"methods": {"CE": "", "LN": ""}, "settings": {"S": {"paper": {"LN": 96.54}}}},
        )
    )
    rows = [
        {"setting": "S", "method": "CE", "seed": 0, "test_acc": 0.80, "val_acc_noisy": 0.7},
        {"setting": "S", "method": "CE", "seed": 1, "test_acc": 0.82, "val_acc_noisy": 0.7},
        {"setting": "S", "method": "LN", "seed": 0, "test_acc": 0.90, "val_acc_noisy": 0.8},
        {"setting": "S", "method": "LN", "seed": 1, "test_acc": None, "val_acc_noisy": None},
    ]
    table = markdown_table(spec, rows).splitlines()
    assert table[0] == "| setting | CE | LN |"
    assert table[2] == "| S | 81.00 ± 1.41 | **90.00 ± 0.00** (paper 96.54) [n=1] |"
    assert mean_std([]) == "-" and slug("CIFAR-10N worst") == "cifar_10n_worst"

    grid = {"a.t": [0.5, 1.0], "a.l": [0.1, 1.0]}
    points = list(grid_points(grid))
    assert points[1] == {"a.t": 0.5, "a.l": 1.0} and len(points) == 4
    values = [0.5, 0.9, 0.9, None]
    scored = [(p, [{"val_acc_noisy": v}]) for p, v in zip(points, values, strict=True)]
    assert best_point(scored) == points[1]  # highest noisy val; ties keep the first
    assert nested({"a.t": 0.5, "a.l": 1.0, "b": 2}) == {"a": {"t": 0.5, "l": 1.0}, "b": 2}


@pytest.mark.slow  # a dozen ln-fit runs; the default run has ln-fit-sweep folds (test_own_data)
def test_sweep_runs_resumes_and_searches(tmp_path, monkeypatch, capsys):
    """End to end on digits: two 1-epoch runs, a resumed no-op, and a two-point search."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    quick_args = f"--config {ROOT / 'cli.yaml'} " + " ".join(quick(test_batches=1))
    spec = write_spec(
        tmp_path / "tiny.yaml",
        {
            "title": "tiny",
            "seeds": [0],
            "methods": {"CE": "--config zoo/configs/losses/ce.yaml", "LN": ""},
            "settings": {"Digits": {"args": quick_args, "paper": {"LN": 85.0}}},
            "search": {"LN": {"model.init_args.loss.init_args.min_scale": [0.5, 1.0]}},
        },
    )
    out = tmp_path / "out"
    main(["run", str(spec), "--out", str(out), "--jobs", "2"])
    printed = capsys.readouterr().out
    assert "| Digits |" in printed and "(paper 85.00)" in printed
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["method"], r["paper"]) for r in rows] == [("CE", ""), ("LN", "85.0")]
    for row in rows:  # the table reads each run's own test accuracy
        run_metrics = Path(row["run_dir"]) / "metrics.csv"
        assert float(row["test_acc"]) == pytest.approx(last_value(run_metrics, "test/acc"))
    metrics = out / "digits" / "ln" / "seed0" / "metrics.csv"
    assert "ln_lightning.cli fit" in (metrics.parent / "command.txt").read_text()
    stamp = metrics.stat().st_mtime_ns

    main(["run", str(spec), "--out", str(out)])  # everything finished: nothing re-runs
    assert "cached" in capsys.readouterr().out
    assert metrics.stat().st_mtime_ns == stamp

    # A run cut off before its test continues from its last checkpoint, earlier rows kept.
    metrics.write_text(metrics.read_text().replace("test/acc", "old/acc"))  # as if cut off
    (metrics.parent / "finished").unlink()  # (a cut-off process never writes it)
    main(["run", str(spec), "--out", str(out), "--method", "LN"])
    assert "resume" in capsys.readouterr().out
    assert "--ckpt_path" in (metrics.parent / "command.txt").read_text()
    earlier = metrics.parent / "metrics.part1.csv"
    # The continued run starts from the final weights (last.ckpt), so it tests them again.
    assert last_value(metrics, "test/acc") == last_value(earlier, "old/acc")

    main(["search", str(spec), "--out", str(out), "--setting", "Digits", "--method", "LN"])
    printed = capsys.readouterr().out
    assert printed.count("min_scale=") == 2 and "**selected**" in printed
    best = out / "digits" / "ln" / "search" / "best.yaml"
    value = yaml.safe_load(best.read_text())["model"]["init_args"]["loss"]["init_args"]
    assert value["min_scale"] in (0.5, 1.0)
    cli = run_cli(["--config", "cli.yaml", "--config", str(best)], run=False)
    assert cli.model.loss.min_scale == value["min_scale"]


def test_cli_errors_are_sentences(tmp_path, capsys):
    with pytest.raises(SystemExit, match="cannot read the table spec"):
        main(["run", str(tmp_path / "missing.yaml")])
    spec = write_spec(tmp_path / "s.yaml", {"methods": {"CE": ""}, "settings": {"a": ""}})
    with pytest.raises(SystemExit, match="no search grid for 'CE'"):
        main(["search", str(spec), "--setting", "a", "--method", "CE"])
    with pytest.raises(SystemExit, match="Unknown method"):
        main(["run", str(spec), "--method", "LN", "--dry-run"])


def test_parallel_runs_get_their_own_gpu_and_threads(tmp_path, monkeypatch):
    from ln_lightning.sweep import runner as sweep

    seen = []

    def fake_run(run, extra, env, log):
        seen.append(
            (run.seed, env.get("CUDA_VISIBLE_DEVICES"), env["OMP_NUM_THREADS"], tuple(extra))
        )
        run.run_dir.mkdir(parents=True)
        run.metrics_csv.write_text(f"epoch,test/acc,val/acc_noisy\n0,0.{run.seed + 1},0.5\n")
        return 1.0

    monkeypatch.setattr(sweep, "run_once", fake_run)
    monkeypatch.setattr(sweep.os, "cpu_count", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    spec = load_spec(
        write_spec(tmp_path / "s.yaml", {"methods": {"CE": ""}, "settings": {"a": "--x"}})
    )
    runs = spec.runs(tmp_path / "out", seeds=[0, 1, 2, 3])
    rows = sweep.run_all(runs, jobs=2, extra=["--e"], gpus=["4", "5"])
    assert [r["test_acc"] for r in rows] == [0.1, 0.2, 0.3, 0.4]  # in run order
    assert {gpu for _, gpu, _, _ in seen} <= {"4", "5"}
    assert {threads for _, _, threads, _ in seen} == {"4"}
    assert all(extra == ("--e",) for *_, extra in seen)
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        sweep.run_all(runs, jobs=0)
    # a thread count the user set (e.g. to leave a core to other work) is kept
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    seen.clear()
    sweep.run_all(spec.runs(tmp_path / "again", seeds=[0, 1]), jobs=2)
    assert {threads for _, _, threads, _ in seen} == {"1"}


def test_search_over_two_keys_draws_the_sensitivity_heat_map(tmp_path, monkeypatch, capsys):
    """Fig. 5: a two-key grid (tau x lambda) gives a heat map of noisy val and clean test."""
    from ln_lightning.sweep import runner as sweep

    def fake_run_all(runs, *args, **kwargs):
        rows = []
        for run in runs:
            tau = float(run.args[-2].rsplit("=", 1)[1])
            lam = float(run.args[-1].rsplit("=", 1)[1])
            rows.append({"val_acc_noisy": 0.5 + tau / 10 + lam / 100, "test_acc": 0.6})
        return rows

    monkeypatch.setattr(sweep, "run_all", fake_run_all)
    spec = write_spec(
        tmp_path / "s.yaml",
        {
            "methods": {"LN": ""},
            "settings": {"a": "--config cli.yaml"},
            "search": {"LN": {"m.temperature": [0.5, 1.0], "m.min_scale": [0.1, 0.5, 1.0]}},
        },
    )
    main(["search", str(spec), "--out", str(tmp_path / "out"), "--setting", "a", "--method", "LN"])
    search = tmp_path / "out" / "a" / "ln" / "search"
    assert (search / "heatmap.png").stat().st_size > 10_000
    best = yaml.safe_load((search / "best.yaml").read_text())
    assert best == {"m": {"temperature": 1.0, "min_scale": 1.0}}
    assert "temperature=1.0,min_scale=1.0 **selected**" in capsys.readouterr().out


def test_merged_folds_keep_each_folds_cautions_and_judge_class_sizes_again(tmp_path):
    import csv

    import torch

    from ln_lightning.label_issues import (
        IssueTable,
        caution_rows,
        cautions,
        find_label_issues,
        write_label_issues,
    )
    from ln_lightning.sweep import merge_fold_issues

    names = ["cat", "dog", "owl"]
    paths = []
    for fold, history in enumerate(([0.30, 0.35], [0.90, 0.90])):  # fold 0 near chance
        given = torch.tensor([0] * 20 + [1] * 20 + [2] * 6)  # 6 owls per fold, 12 in all
        probs = torch.softmax(torch.randn(46, 3, generator=torch.Generator().manual_seed(fold)), 1)
        table = IssueTable(
            index=torch.arange(46) + 46 * fold, split=["val"] * 46, given=given,
            clean=torch.full((46,), -1), probs=probs, score=1 - probs.max(1).values,
            caution=caution_rows(given, *cautions(given, names, history)),
        )  # fmt: skip
        assert "only 6 labelled examples of 'owl'" in table.caution[-1]
        issues = find_label_issues(probs, given)
        paths.append(write_label_issues(table, issues, names, tmp_path / f"f{fold}.csv"))
    text = merge_fold_issues(paths, tmp_path / "merged")
    assert (tmp_path / "merged" / "label_issues.html").is_file() and "to look at them" in text
    probs = np.load(tmp_path / "merged" / "pred_probs.npy")  # out of sample, by index
    assert probs.shape == (92, 3) and np.load(tmp_path / "merged" / "labels.npy").shape == (92,)
    assert "Do not trust these flags yet: the model is near chance" in text
    assert "only 6" not in text  # 12 owls over both folds: judged on the merged table
    with (tmp_path / "merged" / "label_issues.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    near = [r for r in rows if r["caution"].startswith("the model is near chance")]
    assert len(near) == 46 and {int(r["index"]) for r in near} == set(range(46))
    assert all(r["caution"] == "" for r in rows if int(r["index"]) >= 46)


def test_merged_folds_with_top_classes_merge_their_pred_probs_files_by_index(tmp_path):
    import torch

    from ln_lightning.label_issues import (
        IssueTable,
        PredProbsFile,
        TopClasses,
        find_label_issues,
        write_label_issues,
    )
    from ln_lightning.sweep import merge_fold_issues

    names = [f"c{k}" for k in range(8)]
    generator = torch.Generator().manual_seed(0)
    pool = torch.randperm(60, generator=generator)
    probs = torch.softmax(torch.randn(60, 8, generator=generator) * 3, 1)
    given = torch.randint(0, 8, (60,), generator=generator)
    paths = []
    for fold, rows in enumerate((pool[:30], pool[30:])):  # each fold: its held-out indices
        top = TopClasses.from_probs(probs[rows], given[rows], k=3 if fold else 2)
        table = IssueTable(
            index=rows, split=["val"] * 30, given=given[rows], clean=torch.full((30,), -1),
            probs=top, score=1 - top.given_prob,
        )  # fmt: skip
        folder = tmp_path / f"fold{fold}"
        paths.append(write_label_issues(table, find_label_issues(top, given[rows]), names,
                                        folder / "label_issues.csv"))  # fmt: skip
        with PredProbsFile(folder / "pred_probs.npy", rows, 8, "float16") as file:
            file.write(rows, probs[rows])
    text = merge_fold_issues(paths, tmp_path / "merged")
    assert re.search(r"\d+ of 60 labels look wrong", text)
    merged = np.load(tmp_path / "merged" / "pred_probs.npy")
    assert merged.dtype == np.float16 and merged.shape == (60, 8)
    np.testing.assert_allclose(merged, probs.numpy(), atol=1e-3)  # row i is index i
    assert (tmp_path / "merged" / "classes.txt").read_text().split() == names
    with (tmp_path / "merged" / "label_issues.csv").open() as handle:
        header = handle.readline().strip().split(",")
    assert header[-5:] == ["p_given", "top1_label", "top1_p", "top2_label", "top2_p"]
    assert "top3_p" not in header  # the fewest classes any fold kept
