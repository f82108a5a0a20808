"""Finding wrong labels in your own images: one run of the own-data default (forward correction
or Co-teaching, chosen by the run), Forward alone or LN vs CE vs cleanlab's 5-fold procedure.

Real Fashion-MNIST (the IDX files, e.g. Debian's ``dataset-fashion-mnist``) is written out as a
folder of PNG files with a ``labels.csv`` per noise kind (40% symmetric, 40% asymmetric with the
project's map; ``clean_label`` kept so detection can be scored) and a clean ``test.csv``. Then,
all through the ``ln-fit`` command line a user types (``zoo/configs/own/images.yaml``, LeNet-5 on
28x28, Adam 1e-3, batch 256, the same epochs for every run, no augmentation):

1. **Forward or Co-teaching, one run**: the own-data configs as they ship since stop 48
   (``ForwardOrCoTeaching``: a peer network for the first 0.1 of the epochs, then forward
   correction or Co-teaching by the ``T`` estimated then; ``"Forward or Co-teaching, decision
   0.2"``, ``"..., forget rate 0.35"`` and ``"..., percentile 97"`` its probes). **Forward**
   (``forward.yaml``: the loss alone, the own-data configs' method from stop 39 to 47; ``T`` at
   the reference's 97th percentile, ``"Forward, percentile 99"`` a more confident anchor;
   evaluated, as every run of the own configs since stop 46, with the moving average of its
   weights, ``weight_average_decay``; ``"Forward, no weight average"`` and ``"CE, no weight
   average"`` with the last step's weights, the recipe until stop 46; ``"Forward, true T"``
   given the labels' realised ``T`` from the first step, ``transition_matrix: data``, the bound
   on what a better estimate can give):
   ``label_issues.csv`` of the run (in-sample scores, ``1 - p(given)``); **LN** on request
   (``--methods LN``: annealed and isotropic, ``zoo/configs/losses/ln_isotropic.yaml``, the
   own-data configs' loss until stop 39);
2. **CE, one run**: the same with cross-entropy (and, on request, **SGN** or **Forward LN**, the
   transition-aware LN: ``zoo/configs/losses/<name>.yaml``; ``"Forward, whole warm-up"``, without
   ``warmup_patience`` (``forward.yaml`` before stop 41); the training strategies **ELR**,
   **SOP**, **Co-teaching** and **DivideMix**, ``zoo/configs/strategies/``;
   ``"DivideMix, unlabelled weight 25"``, the reference's weight for heavy symmetric noise
   (``dividemix_unlabelled_25.yaml``, ``dividemix.yaml`` until stop 44); **LN + ELR** and
   **LN + Co-teaching**: LN inside them);
3. **cleanlab, 5-fold CE**: ``ln-fit-sweep folds --num-folds 5`` with CE (out-of-sample
   probabilities), then cleanlab's ``find_label_issues`` on them (its default, confident
   learning ranked by self-confidence);
4. **retrained**: the default, Forward and LN (those asked for) again on their own
   ``cleaned_labels.csv`` (flagged images removed) and on their ``relabeled_labels.csv``
   (confident suggestions taken, the doubtful flags dropped), and CE on cleanlab's cleaned
   labels.
5. **the ceiling** (``--methods "CE on the true labels"``): CE on the true labels of the same
   pictures, the accuracy a noisy-label method aims at (nothing to find: the detection columns
   are ``-``); and ``"Forward on the true labels"``, the own-data default until stop 47 on
   labels that are all right.

It prints (and writes as JSON) per noise kind: AUROC of the ranking score, precision and recall
among the top N (N = the true number of wrong labels), the flags' precision and recall, the wall
time and the compute (core-seconds: one thread per run, the folds' times summed), and the clean
test accuracy of the first and the retrained models.

    python benchmarks/label_issues.py --out runs/label_issues --jobs 2            # ~1 h, resumes
    python benchmarks/label_issues.py --out /tmp/li --epochs 1 --limit 600        # a smoke test
    python benchmarks/label_issues.py --methods Forward LN CE --no-retrain --seed 1 # one run each
    python benchmarks/label_issues.py --out runs/li_full --methods LN --ln-args \
        "--model.loss.covariance full"                                             # another LN
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image

from ln_lightning.data.mnist import FILES, read_idx
from ln_lightning.label_issues import (
    LabelIssues,
    detection_metrics,
    read_label_issues,
    write_cleaned_labels,
    write_label_issues,
)
from ln_lightning.metrics import MODEL_SELECTION, SELECTION_MONITOR
from ln_lightning.noise import FASHION_MNIST_ASYMMETRIC_MAP, inject_noise
from ln_lightning.sweep import last_value

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
         "Ankle boot")  # fmt: skip
SOURCES = ("/usr/share/datasets/fashion-mnist", "data", "data/FashionMNIST/raw")
#: The own-data configs' method as they ship (since stop 48 forward correction or Co-teaching,
#: ``ForwardOrCoTeaching``; Forward alone until then): the first row of every table.
DEFAULT = "Forward or Co-teaching"
#: ``ln-fit-sweep folds`` prints ``done     <fold dir> (<seconds> s)`` per fold.
CLEANLAB = "cleanlab 5-fold CE"
#: CE trained on the true labels of the same pictures: the ceiling a noisy-label method aims at.
CLEAN = "CE on the true labels"
#: The runs on the true labels (nothing to find, so no detection columns): the ceiling, and the
#: own-data defaults (Forward until stop 47, then Forward or Co-teaching) on clean labels, what
#: they cost a user whose labels are right.
ON_TRUE_LABELS = {
    CLEAN: ("ce_true", "CE"),
    "Forward on the true labels": ("forward_true", "Forward"),
    f"{DEFAULT} on the true labels": ("forward_or_coteaching_true", DEFAULT),
}
#: Methods retrained on their own cleaned and relabeled labels, with their own loss.
RETRAINED = (DEFAULT, "Forward", "LN")  # the default, and the defaults before
#: The training strategies (``zoo/configs/strategies/<name>.yaml``, cross-entropy inside) by
#: their name here -> the name of their config and run folder.
STRATEGIES = {"ELR": "elr", "SOP": "sop", "Co-teaching": "coteaching", "DivideMix": "dividemix"}
#: LN inside a strategy: LN (``ln_isotropic.yaml``), the strategy's defaults on top
#: (``--model.strategy <class>``); LN's likelihood is the small-loss criterion of Co-teaching.
LN_INSIDE = {"LN + ELR": ("ln_elr", "ELR"), "LN + Co-teaching": ("ln_coteaching", "CoTeaching")}
#: LN as the own-data configs had it until stop 39 (annealed, isotropic).
LN_CONFIG = str(ROOT / "zoo/configs/losses/ln_isotropic.yaml")
#: Losses with a config of their own (``zoo/configs/losses/<name>.yaml``) by their name here.
LOSS_CONFIGS = {"Forward": "forward", "SGN": "sgn", "Forward LN": "forward_ln"}
#: A method with arguments of its own: name -> (run folder, the method, its extra arguments).
VARIANTS = {
    "Forward, whole warm-up": (  # forward.yaml before stop 41
        "forward_whole_warmup", "Forward",
        ("--config", str(ROOT / "zoo/configs/losses/forward_whole_warmup.yaml")),
    ),
    "Forward, percentile 99": (  # T from a more confident anchor: better at 20 epochs only
        "forward_percentile_99", "Forward", ("--model.loss.init_args.percentile=99",),
    ),
    "Forward, no weight average": (  # the own configs until stop 46: the final weights evaluate
        "forward_no_average", "Forward", ("--model.weight_average_decay=null",),
    ),
    "CE, no weight average": ("ce_no_average", "CE", ("--model.weight_average_decay=null",)),
    "Forward, warm-up 0.2": (  # a shorter CE warm-up: less time to fit the wrong labels
        "forward_warmup_02", "Forward", ("--model.loss.init_args.warmup_fraction=0.2",),
    ),
    "Forward, true T": (  # the realised T of the labels (the data module's), no warm-up
        "forward_true_t", "Forward", ("--model.loss.init_args.transition_matrix=data",),
    ),
    "Co-teaching, forget rate 0.35": (  # the share of wrong labels under symmetric 40% noise
        "coteaching_forget_035", "Co-teaching", ("--model.strategy.init_args.forget_rate=0.35",),
    ),
    "Co-teaching, forget rate 0.37": (  # what Forward's log estimates on the symmetric labels
        "coteaching_forget_037", "Co-teaching", ("--model.strategy.init_args.forget_rate=0.37",),
    ),
    "Forward + Co-teaching, forget rate 0.35": (  # the own config's Forward as the criterion
        "forward_coteaching_035", "Forward",
        ("--model.strategy=ln_lightning.CoTeaching", "--model.strategy.init_args.forget_rate=0.35"),
    ),
    "Forward + Co-teaching, forget rate 0.16": (  # the share of wrong labels, class-dependent
        "forward_coteaching_016", "Forward",
        ("--model.strategy=ln_lightning.CoTeaching", "--model.strategy.init_args.forget_rate=0.16"),
    ),
    "Forward or Co-teaching, decision 0.2": (  # a later decision: a closer estimate of the share
        "forward_or_coteaching_decision_02", DEFAULT,
        ("--model.strategy.init_args.decision_fraction=0.2",),
    ),
    "Forward or Co-teaching, forget rate 0.35": (  # the true share, whatever T estimates
        "forward_or_coteaching_forget_035", DEFAULT,
        ("--model.strategy.init_args.forget_rate=0.35",),
    ),
    "Forward or Co-teaching, percentile 97": (  # the decision's T with the loss's filter
        "forward_or_coteaching_percentile_97", DEFAULT,
        ("--model.strategy.init_args.percentile=97",),
    ),
    "DivideMix, unlabelled weight 25": (  # dividemix.yaml until stop 44
        "dividemix_unlabelled_25", "DivideMix",
        ("--config", str(ROOT / "zoo/configs/strategies/dividemix_unlabelled_25.yaml")),
    ),
}  # fmt: skip
METHODS = (DEFAULT, "LN", "CE", *LOSS_CONFIGS, *VARIANTS,
           *STRATEGIES, *LN_INSIDE, CLEANLAB, *ON_TRUE_LABELS)  # fmt: skip
FOLD_TIME = re.compile(r"^done\s+.+ \((\d+(?:\.\d+)?) s\)$", re.MULTILINE)


def find_idx(directories: list[str]) -> dict[str, Path]:
    for directory in directories:
        found = {}
        for key, name in FILES.items():
            for candidate in (Path(directory) / name, Path(directory) / f"{name}.gz"):
                if candidate.is_file():
                    found[key] = candidate
        if len(found) == len(FILES):
            return found
    raise SystemExit(
        f"Fashion-MNIST IDX files not found in {directories}: apt-get install "
        "dataset-fashion-mnist, or pass --source with torchvision's download folder."
    )


def write_folder(out: Path, source: list[str], limit: int | None, seed: int) -> dict[str, Path]:
    """PNG files of the training and test images; ``labels_<noise>.csv`` and ``test.csv``."""
    files = find_idx(source)
    images = {split: read_idx(files[f"{split}_images"]) for split in ("train", "test")}
    labels = {split: read_idx(files[f"{split}_labels"]).long() for split in ("train", "test")}
    if limit:  # a subset, for smoke tests
        sizes = {"train": limit, "test": max(50, limit // 4)}
        images = {split: images[split][: sizes[split]] for split in images}
        labels = {split: labels[split][: sizes[split]] for split in labels}
    written = {}
    for split in ("train", "test"):
        folder = out / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        marker = folder / f".complete-{len(images[split])}"
        if not marker.exists():
            for i, pixels in enumerate(images[split].numpy()):
                Image.fromarray(pixels).save(folder / f"{i:05d}.png")
            marker.touch()
    test = out / "test.csv"
    rows = [f"images/test/{i:05d}.png,{NAMES[y]}" for i, y in enumerate(labels["test"].tolist())]
    test.write_text("path,label\n" + "\n".join(rows) + "\n")
    written["test"] = test
    clean = labels["train"]
    for kind, class_map in (("symmetric", None), ("asymmetric", FASHION_MNIST_ASYMMETRIC_MAP)):
        noise = inject_noise(clean, 10, kind, 0.4, class_map, seed)
        path = out / f"labels_{kind}.csv"
        pairs = zip(noise.noisy_labels.tolist(), clean.tolist(), strict=True)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label", "clean_label"])
            for i, (noisy, true) in enumerate(pairs):
                writer.writerow([f"images/train/{i:05d}.png", NAMES[noisy], NAMES[true]])
        written[kind] = path
        print(f"{path}: {kind} 40% -> {noise.realised_rate:.1%} of {len(clean)} labels wrong")
    return written


def fit_args(
    labels: Path, test: Path, epochs: int, loss: str, seed: int = 0, ln_args: str = ""
) -> list[str]:
    """The user's command: the own-images config with its loss replaced by LN
    (``ln_isotropic.yaml``, plus ``ln_args``), CE, SGN or Forward LN (``forward_ln.yaml``), or
    Forward, the config's own loss (its CE warm-up 0.4 of the run, then ``T`` estimated), or a
    strategy's
    config
    (ELR, SOP, Co-teaching: ``zoo/configs/strategies/<name>.yaml``) is added; a variant
    (:data:`VARIANTS`) is its method's command with its own arguments after."""
    args = [
        "--config", str(ROOT / "zoo/configs/own/images.yaml"), f"--seed_everything={seed}",
        f"--data.labels_file={labels}", f"--data.test_labels_file={test}",
        "--data.image_size=28", "--data.augment=false", "--data.crop_pct=1.0",
        "--data.batch_size=256", "--model.backbone=lenet5", f"--trainer.max_epochs={epochs}",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
    ]  # fmt: skip
    if loss in VARIANTS:
        _, method, extra = VARIANTS[loss]
        return [*fit_args(labels, test, epochs, method, seed, ln_args), *extra]
    if loss == DEFAULT:  # the config as it is
        pass
    elif loss == "CE":  # the loss alone, as the zoo's loss configs have it
        args += ["--model.strategy=null", "--model.loss=ln_lightning.CrossEntropy"]
    elif loss in LOSS_CONFIGS:
        args += ["--config", str(ROOT / f"zoo/configs/losses/{LOSS_CONFIGS[loss]}.yaml")]
    elif loss in STRATEGIES:
        args += ["--config", str(ROOT / f"zoo/configs/strategies/{STRATEGIES[loss]}.yaml")]
    elif loss in LN_INSIDE:
        strategy = f"--model.strategy=ln_lightning.{LN_INSIDE[loss][1]}"
        args += ["--config", LN_CONFIG, strategy, *shlex.split(ln_args)]
    else:  # LN
        args += ["--config", LN_CONFIG, *shlex.split(ln_args)]
    return args


def run(command: list[str], log: Path) -> float:
    """Run a command with one thread; its wall time in seconds.

    The time is kept beside the log (``<log>.seconds``): a command that already finished there is
    not run again, so an interrupted benchmark resumes where it stopped.
    """
    done = log.with_suffix(".seconds")
    if done.is_file():
        return float(done.read_text())
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    with log.open("w") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    if result.returncode:
        raise SystemExit(f"failed ({result.returncode}): {shlex.join(command)}; see {log}")
    seconds = time.perf_counter() - start
    done.write_text(f"{seconds:.1f}")
    return seconds


def ln_fit(args: list[str], save_dir: Path, name: str) -> tuple[str, list[str]]:
    """``(name, command)`` of an ``ln-fit fit`` run logging to ``save_dir/name/version_0``."""
    command = [
        sys.executable, "-m", "ln_lightning.cli", "fit", *args,
        f"--trainer.logger.init_args.save_dir={save_dir}",
        f"--trainer.logger.init_args.name={name}", "--trainer.logger.init_args.version=0",
    ]  # fmt: skip
    return name, command


def run_many(named: list[tuple[str, list[str]]], out: Path, jobs: int) -> dict[str, float]:
    """Run named commands ``jobs`` at a time; their wall times by name."""
    with ThreadPoolExecutor(jobs) as pool:
        times = pool.map(lambda item: run(item[1], out / f"{item[0]}.log"), named)
        return dict(zip([name for name, _ in named], times, strict=True))


def scored(issues_csv: Path, score_key: str = "score") -> dict[str, float]:
    """Detection of the ranking score and of the flags against the known true labels."""
    with issues_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    noisy = torch.tensor([r["is_noisy"] == "1" for r in rows])
    score = torch.tensor([float(r[score_key]) for r in rows])
    flags = torch.tensor([r["is_issue"] == "1" for r in rows])
    found = detection_metrics(score, noisy)
    hits = int((flags & noisy).sum())
    return {
        "auroc": found["auroc"],
        "precision_at_n": found["precision_at_n"],  # = recall at n
        "flagged": int(flags.sum()),
        "flag_precision": hits / max(1, int(flags.sum())),
        "flag_recall": hits / int(noisy.sum()),
        "wrong": int(noisy.sum()),
    }


def accuracies(metrics_csv: Path) -> dict[str, float | None]:
    """A run's clean test accuracy (final weights), the best noisy validation accuracy (all a
    user can see) of the epochs selection may pick (``val/acc_noisy_after_warmup``: not a
    warm-up's; ``val/acc_noisy`` in runs that predate it) and the clean test accuracy of the
    checkpoint it selects."""
    best = None
    with metrics_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    key = SELECTION_MONITOR if rows and SELECTION_MONITOR in rows[0] else MODEL_SELECTION
    for row in rows:
        if row.get(key) and not math.isnan(float(row[key])):
            best = max(best or 0.0, float(row[key]))
    return {
        "test_acc": last_value(metrics_csv, "test/acc"),
        "val_acc_noisy": best,
        "test_selected_acc": last_value(metrics_csv, "test_selected/acc"),
    }


def wrong_labels(labels_csv: Path) -> int:
    """How many rows of a ``path,label,clean_label`` file have a wrong label."""
    return file_quality(labels_csv)[1]


def file_quality(labels_csv: Path) -> tuple[int, int]:
    """``(kept, wrong)``: the rows a run trains on (those not decided ``drop``) of a labels
    file with ``clean_label`` (the benchmark's, ``cleaned_labels.csv``,
    ``relabeled_labels.csv``) and how many of them carry a wrong label."""
    with labels_csv.open() as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("decision") != "drop"]
    return len(rows), sum(row["label"] != row["clean_label"] for row in rows)


def true_labels_file(labels_csv: Path, path: Path) -> Path:
    """``labels_csv`` with every label replaced by its true one (``path,label``); ``path`` in
    the same folder (the image paths are relative to it)."""
    with labels_csv.open() as handle:
        rows = [(row["path"], row["clean_label"]) for row in csv.DictReader(handle)]
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([("path", "label"), *rows])
    return path


def cleanlab_issues(merged: Path, out: Path) -> Path:
    """cleanlab's ``find_label_issues`` on the merged out-of-sample probabilities, written as
    ``ln-fit`` writes its own (``label_issues.csv`` ranked by self-confidence, the score the
    merged file already holds, and ``cleaned_labels.csv``)."""
    from cleanlab.filter import find_label_issues as cleanlab_find_label_issues

    table, names = read_label_issues(merged)
    ranked = cleanlab_find_label_issues(
        table.given.numpy(), table.probs.dense().numpy(), return_indices_ranked_by="self_confidence"
    )
    flags = torch.zeros(len(table.given), dtype=torch.bool)
    flags[torch.as_tensor(ranked, dtype=torch.long)] = True
    # cleanlab suggests no label and keeps its thresholds to itself
    most_probable = table.probs.classes[:, 0]
    issues = LabelIssues(flags, most_probable, torch.full((len(names),), float("nan")))
    write_cleaned_labels(table, issues, names, out / "cleanlab_cleaned_labels.csv")
    return write_label_issues(table, issues, names, out / "cleanlab_issues.csv")


def benchmark(
    kind: str,
    labels: Path,
    test: Path,
    out: Path,
    epochs: int,
    jobs: int,
    methods: list[str],
    retrain: bool = True,
    seed: int = 0,
    ln_args: str = "",
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"noise": kind, "wrong": wrong_labels(labels)}
    single = {DEFAULT: "forward_or_coteaching", "LN": "ln", "CE": "ce", **LOSS_CONFIGS,
              **STRATEGIES}  # fmt: skip
    single.update({name: folder for name, (folder, _) in LN_INSIDE.items()})
    single.update({name: folder for name, (folder, _, _) in VARIANTS.items()})
    commands = [
        ln_fit(fit_args(labels, test, epochs, m, seed, ln_args), out, single[m])
        for m in single
        if m in methods
    ]
    on_true_labels = {m: ON_TRUE_LABELS[m] for m in ON_TRUE_LABELS if m in methods}
    if on_true_labels:
        true_labels = true_labels_file(labels, labels.parent / "true_labels.csv")  # same paths
    for name, loss in on_true_labels.values():
        commands.append(ln_fit(fit_args(true_labels, test, epochs, loss, seed), out, name))
    seconds = run_many(commands, out, jobs)
    for method, (name, _) in on_true_labels.items():  # nothing to find: accuracy and compute
        metrics = out / name / "version_0" / "metrics.csv"
        result[method] = {**accuracies(metrics), "seconds": round(seconds[name], 1),
                          "core_seconds": round(seconds[name], 1)}  # fmt: skip
    issues = {m: out / f"{single[m]}/version_0/label_issues.csv" for m in single if m in methods}
    # one thread per run: compute is the sum of the runs' times (the folds run side by side)
    times = {m: seconds[single[m]] for m in issues}
    compute = dict(times)
    if CLEANLAB in methods:
        folds = [
            sys.executable, "-m", "ln_lightning.sweep", "folds", "--num-folds", "5",
            "--jobs", str(jobs), "--out", str(out / "folds"), "--",
            *fit_args(labels, test, epochs, "CE", seed),
        ]  # fmt: skip
        fold_seconds = run(folds, out / "folds.log")
        start = time.perf_counter()
        issues[CLEANLAB] = cleanlab_issues(out / "folds" / "label_issues.csv", out)
        cleanlab_seconds = time.perf_counter() - start
        times[CLEANLAB] = fold_seconds + cleanlab_seconds
        folds_log = (out / "folds.log").read_text()
        compute[CLEANLAB] = sum(float(t) for t in FOLD_TIME.findall(folds_log))
        compute[CLEANLAB] += cleanlab_seconds
    for method, path in issues.items():
        result[method] = {
            **scored(path),
            "seconds": round(times[method], 1),
            "core_seconds": round(compute[method], 1),
        }
        if method in single:
            metrics = out / single[method] / "version_0/metrics.csv"
            result[method].update(accuracies(metrics))
    if not retrain:
        return result
    retrains = [  # (method, result key, run name, labels file, loss): each on its own files
        (method, f"{key}_test_acc", f"{single[method]}_{key}",
         out / f"{single[method]}/version_0/{file}_labels.csv", method)
        for method in RETRAINED
        for key, file in (("retrained", "cleaned"), ("relabeled", "relabeled"))
    ]  # fmt: skip
    retrains.append(
        (CLEANLAB, "retrained_test_acc", "ce_retrained", out / "cleanlab_cleaned_labels.csv", "CE")
    )
    chosen = [r for r in retrains if r[0] in methods]
    run_many(
        [ln_fit(fit_args(labels_file, test, epochs, loss, seed, ln_args), out, name)
         for _, _, name, labels_file, loss in chosen],
        out,
        jobs,
    )  # fmt: skip
    for method, key, name, labels_file, _ in chosen:
        metrics = out / name / "version_0" / "metrics.csv"
        result[method][key] = last_value(metrics, "test/acc")
        kept, wrong = file_quality(labels_file)  # what the retrain learnt from
        result[method][key.replace("test_acc", "kept")] = kept
        result[method][key.replace("test_acc", "wrong")] = wrong
    return result


def table(results: list[dict]) -> str:
    lines = [
        "| noise | method | AUROC | precision = recall at N | flagged | flag precision "
        "| flag recall | wall time (s) | compute (core-s) | test acc | retrained test acc "
        "| relabeled test acc | best noisy val acc |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        for method in [m for m in METHODS if m in result]:
            r = result[method]
            acc = f"{100 * r['test_acc']:.2f}" if r.get("test_acc") is not None else "-"
            again, relabeled = (
                f"{100 * r[key]:.2f}" if r.get(key) is not None else "-"
                for key in ("retrained_test_acc", "relabeled_test_acc")
            )
            val = r.get("val_acc_noisy")
            val = f"{100 * val:.2f}" if val is not None else "-"
            found = (
                f"{r['auroc']:.3f} | {r['precision_at_n']:.3f} | {r['flagged']} | "
                f"{r['flag_precision']:.3f} | {r['flag_recall']:.3f}"
                if "auroc" in r
                else "- | - | - | - | -"  # trained on the true labels: nothing to find
            )
            lines.append(
                f"| {result['noise']} 40% (N = {result['wrong']}) | {method} | {found} | "
                f"{r['seconds']:.0f} | {r['core_seconds']:.0f} | {acc} | {again} | {relabeled} "
                f"| {val} |"
            )
    return "\n".join(lines)


def _percent(values: list[float]) -> str:
    """``mean ± std`` in percent (std over seeds, ``ddof=1``; the value alone for one seed)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * statistics.stdev(values):.2f}"


def summary(by_seed: dict[int, list[dict]]) -> str:
    """The methods over seeds, per noise kind: clean test accuracy of the final weights and of
    the checkpoint noisy validation selects, the best noisy validation accuracy, AUROC, and the
    compute against one CE run; the true-label ceiling beside them, and the method a user would
    pick with what they have (the highest noisy validation accuracy)."""
    lines = []
    kinds = [result["noise"] for result in next(iter(by_seed.values()))]
    for kind in kinds:
        runs = [next(r for r in results if r["noise"] == kind) for results in by_seed.values()]
        methods = [m for m in METHODS if all(m in run for run in runs)]
        ce = statistics.fmean(run["CE"]["core_seconds"] for run in runs) if "CE" in methods else 0
        lines += [
            f"\n{kind} 40%, {len(runs)} seed(s) ({', '.join(map(str, by_seed))})\n",
            "| method | test acc (final) | test acc (selected) | best noisy val acc | AUROC "
            "| compute (core-s) | x CE | retrained on cleaned | retrained on relabeled |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        picked: dict[str, float] = {}
        for method in methods:
            rows = [run[method] for run in runs]

            def column(key: str, rows: list[dict] = rows) -> str:
                values = [r[key] for r in rows if r.get(key) is not None]
                return _percent(values) if len(values) == len(rows) else "-"

            auroc = (
                f"{statistics.fmean(r['auroc'] for r in rows):.3f}" if "auroc" in rows[0] else "-"
            )
            compute = statistics.fmean(r["core_seconds"] for r in rows)
            ratio = f"{compute / ce:.2f}" if ce else "-"
            lines.append(
                f"| {method} | {column('test_acc')} | {column('test_selected_acc')} | "
                f"{column('val_acc_noisy')} | {auroc} | {compute:.0f} | {ratio} | "
                f"{column('retrained_test_acc')} | {column('relabeled_test_acc')} |"
            )
            values = [r.get("val_acc_noisy") for r in rows]
            if method not in ON_TRUE_LABELS and None not in values:
                picked[method] = statistics.fmean(values)
        for method in methods:
            for key, file in (("retrained", "cleaned"), ("relabeled", "relabeled")):
                rows = [run[method] for run in runs if f"{key}_kept" in run[method]]
                if rows:
                    kept = statistics.fmean(r[f"{key}_kept"] for r in rows)
                    wrong = statistics.fmean(r[f"{key}_wrong"] / r[f"{key}_kept"] for r in rows)
                    lines.append(
                        f"\n{method}'s {file} labels: {kept:.0f} examples kept, "
                        f"{100 * wrong:.1f}% of them wrong (mean of {len(rows)} seed(s))."
                    )
        if picked:
            best = max(picked, key=picked.get)
            lines.append(f"\nNoisy validation picks: {best} ({100 * picked[best]:.2f}).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/label_issues"))
    parser.add_argument("--source", nargs="+", default=list(SOURCES), help="IDX file folders")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--noise", nargs="+", default=["symmetric", "asymmetric"])
    parser.add_argument("--limit", type=int, help="only the first N training images (smoke tests)")
    parser.add_argument("--seed", type=int, default=0, help="of the noise and of the runs")
    parser.add_argument(
        "--seeds", type=int, nargs="+",
        help="several seeds in one command (each in <out>/seed<S>), then a summary over them",
    )  # fmt: skip
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=[DEFAULT, "CE", CLEANLAB],
        help="default: Forward (the own-data default), CE and cleanlab (LN, SGN, the strategies "
        "and the true-label ceiling on request)",
    )  # fmt: skip
    parser.add_argument("--no-retrain", action="store_true", help="skip the retrained models")
    parser.add_argument("--ln-args", default="", help="appended to the LN runs' ln-fit arguments")
    args = parser.parse_args(argv)
    if CLEANLAB in args.methods:
        try:
            import cleanlab  # noqa: F401
        except ImportError:
            parser.error('the cleanlab comparison needs cleanlab: pip install -e ".[cleanlab]"')
    by_seed = {}
    for seed in args.seeds or [args.seed]:
        out = args.out / f"seed{seed}" if args.seeds else args.out
        files = write_folder(out, args.source, args.limit, seed)
        results = [
            benchmark(kind, files[kind], files["test"], out / kind, args.epochs, args.jobs,
                      args.methods, retrain=not args.no_retrain, seed=seed,
                      ln_args=args.ln_args)
            for kind in args.noise
        ]  # fmt: skip
        (out / "results.json").write_text(json.dumps(results, indent=2))
        print(table(results))
        by_seed[seed] = results
    print(summary(by_seed))


if __name__ == "__main__":
    main()
