"""How fast each loss learns: clean test accuracy per epoch, CE vs LN variants, on Fashion-MNIST.

The paper's MNIST recipe in a plain PyTorch loop (fast on the CPU, same losses, model and hooks
as ``ln-fit``): LeNet-5 from the zoo (``--backbone lenet5_ref`` for the reference code's), Adam
1e-3, batch 256, the 54,000 training images of ``FashionMNISTDataModule`` (Debian's
``dataset-fashion-mnist`` or a download folder) with its noise and its noisy validation split,
the clean test set. After every epoch it records the accuracy on the *noisy* validation split
(the only model-selection signal a user has) and on the clean test set. Each run is a JSON file
under ``--out``; finished runs are skipped, so a sweep resumes, and a 100-epoch run also gives
the 20-epoch table (its first 20 epochs are exactly a 20-epoch run). It prints, per setting and
method (mean ± std over seeds): test accuracy after chosen epochs, of the final weights, and of
the epoch with the best noisy validation accuracy (early stopping), and draws the curves to
``<out>/learning_speed.png``.

Methods are ``NAME=SPEC``: ``ce`` (cross-entropy) or the keyword arguments of
``LogisticNormalLoss`` as JSON, where ``"cell": true`` starts from the setting's paper
[tau, lambda] (zoo/configs/fashion_mnist/): asym40 [0.5, 0.5], sym60 [0.5, 0.1].

    python benchmarks/learning_speed.py --epochs 20 --train-size 20000 --jobs 2
    python benchmarks/learning_speed.py --epochs 100 --seeds 0 1 2 --jobs 2

A 100-epoch run on all 54,000 images took about 10 minutes at one thread with nothing else
running (20 minutes when two share two cores); the default is 5 methods x 2 settings per seed.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SETTINGS = {
    "asym40": ("asymmetric", 0.4, {"temperature": 0.5, "min_scale": 0.5}),
    "sym60": ("symmetric", 0.6, {"temperature": 0.5, "min_scale": 0.1}),
}
METHODS = {
    "CE": "ce",
    "LN": '{"cell": true}',
    "LN annealed": '{"cell": true, "anneal_epochs": 10}',
    "LN [1, 1]": '{"temperature": 1.0, "min_scale": 1.0}',
    "LN [1, 1] annealed": '{"temperature": 1.0, "min_scale": 1.0, "anneal_epochs": 10}',
}
BATCH_SIZE, EVAL_BATCH = 256, 2000


def loss_kwargs(spec: str, setting: str) -> dict | None:
    """``None`` for cross-entropy, else the LN keyword arguments of a method spec."""
    if spec.strip() == "ce":
        return None
    kwargs = json.loads(spec)
    if not isinstance(kwargs, dict):
        raise ValueError(f"a method is 'ce' or a JSON object of LN arguments; got {spec!r}")
    return {**SETTINGS[setting][2], **kwargs} if kwargs.pop("cell", False) else kwargs


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_")


def train(
    setting: str,
    spec: str,
    seed: int,
    epochs: int,
    train_size: int,
    data_dir: str,
    backbone: str = "lenet5",
):
    """One run; returns ``[(epoch, noisy val acc %, clean test acc %), ...]``."""
    import torch

    import zoo  # noqa: F401  (registers lenet5 in timm)
    from ln_lightning import CrossEntropy, LogisticNormalLoss, NoisyLabelClassifier
    from ln_lightning.data import FashionMNISTDataModule
    from ln_lightning.losses.base import TrainingContext

    noise_type, noise_rate, _ = SETTINGS[setting]
    data = FashionMNISTDataModule(
        data_dir=data_dir, noise_type=noise_type, noise_rate=noise_rate, seed=seed
    )
    data.setup("fit")
    data.setup("test")

    def tensors(split):
        return split.inputs[split.indices], split.noisy_labels[split.indices]

    x_train, y_train = tensors(data.train_set)
    if train_size:
        x_train, y_train = x_train[:train_size], y_train[:train_size]
    x_val, y_val = tensors(data.val_set)
    x_test, y_test = (
        data.test_set.inputs[data.test_set.indices],
        data.test_set.clean_labels[data.test_set.indices],
    )
    torch.manual_seed(seed)
    kwargs = loss_kwargs(spec, setting)
    loss = CrossEntropy() if kwargs is None else LogisticNormalLoss(**kwargs)
    model = NoisyLabelClassifier(backbone, loss=loss, num_classes=10, input_shape=(1, 28, 28))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = math.ceil(len(x_train) / BATCH_SIZE)

    def context(epoch: int, batch: int) -> TrainingContext:
        return TrainingContext(epoch, lambda: None, lambda: None, epoch + batch / batches)

    def accuracy(x, y) -> float:
        model.eval()
        with torch.no_grad():
            probs = [
                model.predict_proba(x[i : i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)
            ]
        model.train()
        return (torch.cat(probs).argmax(1) == y).float().mean().item() * 100

    order = torch.Generator().manual_seed(seed)
    rows = []
    loss.on_fit_start(context(0, 0))
    for epoch in range(epochs):
        loss.on_train_epoch_start(context(epoch, 0))
        permutation = torch.randperm(len(x_train), generator=order)
        for batch in range(batches):
            index = permutation[batch * BATCH_SIZE : (batch + 1) * BATCH_SIZE]
            loss.on_train_batch_start(context(epoch, batch))
            value = loss(model(x_train[index]), y_train[index])
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
        rows.append((epoch + 1, accuracy(x_val, y_val), accuracy(x_test, y_test)))
    return rows


def run_file(
    out: Path, setting: str, method: str, seed: int, epochs: int, backbone: str = "lenet5"
) -> Path:
    model = "" if backbone == "lenet5" else f"{slug(backbone)}_"
    return out / "runs" / f"{model}{setting}_{slug(method)}_{seed}_{epochs}.json"


def finished_run(
    out: Path, setting: str, method: str, seed: int, epochs: int, backbone: str = "lenet5"
) -> Path | None:
    """A finished run of at least ``epochs`` epochs. Adam at a constant learning rate and a
    schedule in absolute epochs make the first ``epochs`` epochs of a longer run exactly an
    ``epochs``-epoch run, so a 100-epoch sweep also answers for 20 epochs."""
    want = run_file(out, setting, method, seed, epochs, backbone)
    if want.exists():
        return want
    prefix = want.name[: -len(f"{epochs}.json")]
    longer = sorted(
        (int(p.stem.rsplit("_", 1)[1]), p)
        for p in want.parent.glob(f"{glob.escape(prefix)}*.json")
        if p.stem.rsplit("_", 1)[1].isdigit() and int(p.stem.rsplit("_", 1)[1]) >= epochs
    )
    return longer[0][1] if longer else None


def run_one(args: argparse.Namespace, setting: str, method: str, seed: int) -> Path:
    """Train in a child process with one thread (two runs share two cores fairly)."""
    found = finished_run(args.out, setting, method, seed, args.epochs, args.backbone)
    if found is not None:
        return found
    path = run_file(args.out, setting, method, seed, args.epochs, args.backbone)
    payload = [setting, args.methods[method], seed, args.epochs, args.train_size, args.data_dir,
               args.backbone]  # fmt: skip
    command = [sys.executable, __file__, "--child", json.dumps([*payload, str(path)])]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "OMP_WAIT_POLICY": "PASSIVE"}
    start = time.time()
    subprocess.run(command, env=env, check=True)
    print(f"done {setting} {method} seed {seed} ({time.time() - start:.0f} s)", flush=True)
    return path


def child(payload: str) -> None:
    import torch

    setting, spec, seed, epochs, train_size, data_dir, backbone, path = json.loads(payload)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    start = time.time()
    rows = train(setting, spec, seed, epochs, train_size, data_dir, backbone)
    record = {"setting": setting, "spec": spec, "seed": seed, "epochs": epochs,
              "train_size": train_size, "seconds": time.time() - start, "rows": rows}  # fmt: skip
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record))


def summary(rows: list[list[float]], at: list[int]) -> dict[str, float]:
    """Test accuracy after each epoch in ``at``, of the final epoch and of the best noisy-val
    epoch (the first of ties, as a checkpoint callback keeps it)."""
    values = {f"ep {e}": rows[e - 1][2] for e in at if e <= len(rows)}
    values["final"] = rows[-1][2]
    best = max(range(len(rows)), key=lambda i: (rows[i][1], -i))
    values["selected"] = rows[best][2]
    values["selected epoch"] = rows[best][0]
    return values


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def report(args: argparse.Namespace) -> str:
    at = [e for e in args.report_epochs if e < args.epochs]
    columns = [f"ep {e}" for e in at] + ["final", "selected", "selected epoch"]
    lines = [
        f"Fashion-MNIST, {args.backbone}, {args.epochs} epochs, "
        f"{args.train_size or 54000} training images, seeds {args.seeds}: clean test accuracy "
        "(%); 'selected' is the epoch with the best noisy validation accuracy",
        "",
        "| setting | method | " + " | ".join(columns) + " |",
        "| --- | --- | " + " | ".join("---" for _ in columns) + " |",
    ]
    curves = {}
    for setting in args.settings:
        for method in args.methods:
            runs = []
            for seed in args.seeds:
                path = finished_run(args.out, setting, method, seed, args.epochs, args.backbone)
                if path is not None:
                    runs.append(json.loads(path.read_text())["rows"][: args.epochs])
            if not runs:
                continue
            per_seed = [summary(rows, at) for rows in runs]
            cells = []
            for column in columns:
                values = [s[column] for s in per_seed]
                cells.append(
                    "/".join(str(int(v)) for v in values)
                    if column == "selected epoch"
                    else mean_std(values)
                )
            lines.append(f"| {setting} | {method} | " + " | ".join(cells) + " |")
            curves[setting, method] = [
                statistics.mean(rows[i][2] for rows in runs) for i in range(len(runs[0]))
            ]
    draw(curves, args.out / "learning_speed.png")
    return "\n".join(lines)


def draw(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = sorted({s for s, _ in curves})
    if not settings:
        return
    figure, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings), 4), squeeze=False)
    for axis, setting in zip(axes[0], settings, strict=True):
        for (s, method), curve in curves.items():
            if s == setting:
                axis.plot(range(1, len(curve) + 1), curve, label=method)
        axis.set(title=f"Fashion-MNIST {setting}", xlabel="epoch", ylabel="clean test accuracy (%)")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def parse_method(text: str) -> tuple[str, str]:
    name, _, spec = text.partition("=")
    if not spec:
        raise argparse.ArgumentTypeError(f"a method is NAME=KWARGS (JSON or ce); got {text!r}")
    return name, spec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path("runs/learning_speed"))
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--methods", nargs="+", type=parse_method, default=None,
                        help="NAME=KWARGS; default: " + ", ".join(METHODS))  # fmt: skip
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--train-size", type=int, default=0, help="0: all 54,000")
    parser.add_argument("--report-epochs", nargs="+", type=int, default=[1, 5, 10, 20])
    parser.add_argument("--data-dir", default="data", help="else Debian's package is used")
    parser.add_argument("--backbone", default="lenet5", help="e.g. lenet5_ref (the paper's code)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="per run")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return
    args.methods = dict(args.methods) if args.methods else dict(METHODS)
    for setting in args.settings:  # fail early on a bad spec
        for spec in args.methods.values():
            loss_kwargs(spec, setting)
    jobs = [(s, m, seed) for seed in args.seeds for s in args.settings for m in args.methods]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda job: run_one(args, *job), jobs))
    print(report(args))
    print(f"\nfigure: {args.out / 'learning_speed.png'}")


if __name__ == "__main__":
    main()
