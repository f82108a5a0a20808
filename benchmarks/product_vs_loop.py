"""ln-fit against a plain PyTorch loop: the same model, optimiser, data and epochs, side by side.

Three workloads, each run as a user runs it (a fresh process, wall time from start to exit):

* ``small-images``: the small-image recipe of docs/data.md on ``--images`` Fashion-MNIST
  pictures written as PNG files with a labels CSV and a clean test folder of ``--test-images``
  (``ln-fit fit --config zoo/configs/own/images.yaml --config zoo/configs/losses/ce.yaml
  --data.labels_file labels.csv --data.test_root test --model.backbone lenet5 --data.image_size
  28 --data.augment false --data.crop_pct 1.0 --data.batch_size 256``), ``--epochs`` epochs;
  the plain loop decodes the PNG files once, trains LeNet-5 with Adam and evaluates
  ``--plain-evaluation`` held-out pictures (Fashion-MNIST's 10,000 test images, as the issue
  that asked for this benchmark measured it) after every epoch;
* ``main-job``: ``ln-fit fit --config cli.yaml`` (the digits, ``small_cnn``, LN, ``--digits-epochs``
  epochs); the plain loop trains the same network and loss and evaluates the noisy validation
  split after every epoch;
* ``arrays``: the same Fashion-MNIST pictures as an ``.npz`` file, ``ln-fit fit --config
  zoo/configs/own/arrays.yaml`` with LeNet-5 and cross-entropy.

For ln-fit it separates where the time goes (``phases.PhaseTimer``): start-up (imports, data
set-up), the training steps, validation, epoch ends (checkpoints), the label-issue pass and its
files, and the two tests, and prints the import time of ``ln-fit`` alone. Run it on a quiet
machine; the plain loops run with PyTorch's default threads, ln-fit as it ships:

    python benchmarks/product_vs_loop.py                         # about 5 minutes on 2 cores
    python benchmarks/product_vs_loop.py --images 2000 --epochs 2 --digits-epochs 20
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")
#: workload -> the wall-time ratio ln-fit must stay within (issue targets)
TARGETS = {"small-images": 1.3, "main-job": 1.5, "arrays": None}
PHASES = ("start-up", "training", "validation", "epoch ends", "label issues", "test")


# ---------------------------------------------------------------------- data
def pictures(count: int, test: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``count`` training and ``test`` held-out pictures (28x28 uint8) with labels:
    Fashion-MNIST from Debian's package when installed, else synthetic ones of the same size."""
    if (FASHION / "train-images-idx3-ubyte.gz").is_file():
        from ln_lightning.data.mnist import read_idx

        x = read_idx(FASHION / "train-images-idx3-ubyte.gz").numpy()
        y = read_idx(FASHION / "train-labels-idx1-ubyte.gz").numpy()
        xt = read_idx(FASHION / "t10k-images-idx3-ubyte.gz").numpy()
        yt = read_idx(FASHION / "t10k-labels-idx1-ubyte.gz").numpy()
        return x[:count], y[:count], xt[:test], yt[:test]
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, count + test)
    images = rng.integers(0, 60, (count + test, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i, 2 * label : 2 * label + 8, 4:24] += 150
    return images[:count], labels[:count], images[count:], labels[count:]


def write_pngs(folder: Path, images: np.ndarray, labels: np.ndarray, test: bool) -> None:
    """PNG files: a labels CSV for the training pool, class folders for the test set."""
    from PIL import Image

    rows = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = folder / (f"{label}/{i:05d}.png" if test else f"images/{i:05d}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        rows.append((path.relative_to(folder), int(label)))
    if not test:
        with (folder / "labels.csv").open("w", newline="") as handle:
            csv.writer(handle).writerows([("path", "label"), *rows])


# ---------------------------------------------------------------------- the plain loops
def plain(workload: str, folder: Path, epochs: int) -> None:
    """The plain PyTorch loop of ``workload`` (run in its own process)."""
    import timm
    import torch

    import zoo  # noqa: F401  (LeNet-5 and small_cnn in timm's registry)

    torch.manual_seed(0)
    if workload == "main-job":
        from ln_lightning import DigitsDataModule, LogisticNormalLoss

        data = DigitsDataModule(noise_type="asymmetric", noise_rate=0.4)
        data.setup()

        def arrays(split):
            dataset = data.split(split)
            return dataset.inputs[dataset.indices], dataset.noisy_labels[dataset.indices]

        (x, y), (xe, ye) = arrays("train"), arrays("val")
        net, loss, batch = timm.create_model("small_cnn", num_classes=0), LogisticNormalLoss(), 128
        loss.setup(10)
        heads = torch.nn.ModuleDict(
            {n: torch.nn.Linear(128, w) for n, w in loss.head_shapes(10).items()}
        )
    else:
        from PIL import Image

        if workload == "arrays":
            stored = np.load(folder / "data.npz")
            x, y = torch.from_numpy(stored["inputs"]), torch.from_numpy(stored["labels"])
            xe, ye = (
                torch.from_numpy(stored["test_inputs"]),
                torch.from_numpy(stored["test_labels"]),
            )
        else:  # read the PNG files once; evaluate on the held-out pictures every epoch
            rows = list(csv.reader((folder / "labels.csv").open()))[1:]
            x = torch.tensor(np.stack([np.asarray(Image.open(folder / p)) for p, _ in rows]))
            y = torch.tensor([int(label) for _, label in rows])
            held_out = np.load(folder / "evaluation.npz")
            xe, ye = torch.from_numpy(held_out["inputs"]), torch.from_numpy(held_out["labels"])
        x, xe = (t.float().div(255).sub(0.5).div(0.5) for t in (x, xe))
        x, xe = (t if t.ndim == 4 else t.unsqueeze(1) for t in (x, xe))
        net, batch = (
            timm.create_model("lenet5", num_classes=0),
            256 if workload != "arrays" else 128,
        )
        loss = torch.nn.CrossEntropyLoss()
        heads = torch.nn.ModuleDict({"logits": torch.nn.Linear(84, 10)})
    parameters = [*net.parameters(), *heads.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=1e-3)

    def outputs(inputs):
        features = net(inputs)
        return {name: head(features) for name, head in heads.items()}

    def compute(out, labels):
        return loss(out, labels) if workload == "main-job" else loss(out["logits"], labels)

    from timing import process_age

    seconds = {"start-up": process_age(), "training": 0.0, "evaluation": 0.0}
    for _ in range(epochs):
        began = time.perf_counter()
        net.train()
        order = torch.randperm(len(x))
        for start in range(0, len(x), batch):
            rows = order[start : start + batch]
            value = compute(outputs(x[rows]), y[rows])
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
        seconds["training"] += time.perf_counter() - began
        began = time.perf_counter()
        net.eval()
        with torch.no_grad():
            out = outputs(xe)
            probs = loss.predict_proba(out) if workload == "main-job" else out["logits"]
            accuracy = float((probs.argmax(1) == ye).float().mean())
        seconds["evaluation"] += time.perf_counter() - began
    print(json.dumps({"accuracy": accuracy, "phases": seconds}))


# ---------------------------------------------------------------------- ln-fit
def ln_fit_args(workload: str, folder: Path, epochs: int) -> list[str]:
    quiet = [
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        f"--trainer.max_epochs={epochs}", f"--trainer.logger.init_args.save_dir={folder / 'runs'}",
    ]  # fmt: skip
    if workload == "main-job":
        return ["--config", str(ROOT / "cli.yaml"), *quiet]
    if workload == "arrays":
        return ["--config", str(ROOT / "zoo/configs/own/arrays.yaml"), "--config",
                str(ROOT / "zoo/configs/losses/ce.yaml"), f"--data.path={folder / 'data.npz'}",
                "--model.backbone=lenet5", *quiet]  # fmt: skip
    return ["--config", str(ROOT / "zoo/configs/own/images.yaml"), "--config",
            str(ROOT / "zoo/configs/losses/ce.yaml"), f"--data.labels_file={folder / 'labels.csv'}",
            f"--data.test_root={folder / 'test'}", "--model.backbone=lenet5",
            "--data.image_size=28", "--data.augment=false", "--data.crop_pct=1.0",
            "--data.batch_size=256", *quiet]  # fmt: skip


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall and CPU seconds of a child process, and what it printed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, result.stdout


def run(workload: str, folder: Path, epochs: int, threads: int | None) -> dict:
    """The plain loop, then ln-fit, of one workload."""
    env = dict(os.environ)  # PyTorch's own thread settings for the plain loop
    for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS"):
        env.pop(key, None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    plain_wall, plain_cpu, printed = timed(
        [sys.executable, __file__, "--plain", workload, "--folder", str(folder),
         "--epochs", str(epochs)], env,
    )  # fmt: skip
    phases = folder / f"phases_{workload}.json"
    command = [
        sys.executable, "-m", "ln_lightning.cli", "fit", *ln_fit_args(workload, folder, epochs),
        "--trainer.callbacks+=phases.PhaseTimer", f"--trainer.callbacks.path={phases}",
    ]  # fmt: skip
    fit_env = {**env, "PYTHONPATH": os.pathsep.join([str(ROOT / "benchmarks"), str(ROOT)])}
    fit_wall, fit_cpu, _ = timed(command, fit_env)
    return {
        "workload": workload, "epochs": epochs, "plain_wall": plain_wall, "plain_cpu": plain_cpu,
        "fit_wall": fit_wall, "fit_cpu": fit_cpu, "ratio": fit_wall / plain_wall,
        "phases": json.loads(phases.read_text()),
        "plain_phases": json.loads(printed.strip().splitlines()[-1])["phases"],
    }  # fmt: skip


def why(row: dict, imports: float) -> dict[str, float]:
    """ln-fit's extra wall seconds over the plain loop of ``row`` by phase, largest first.

    They add up to ``fit_wall - plain_wall``: what neither side's phases cover (the pause between
    ln-fit's two tests, interpreter exit) is "the rest".
    """
    fit, plain = row["phases"], row["plain_phases"]
    named = ("start-up", "training", "validation", "epoch ends", "label issues", "test")
    extra = {
        f"start-up (importing ln-fit alone: {imports:.1f} s)": fit["start-up"] - plain["start-up"],
        "training epochs": fit["training"] - plain["training"],
        "validation and the two tests beside the loop's evaluation": (
            fit["validation"] + fit.get("test", 0.0) - plain["evaluation"]
        ),
        "epoch ends (checkpoints, logging)": fit.get("epoch ends", 0.0),
        "the label-issue pass and its files": fit.get("label issues", 0.0),
        "the rest (between the two tests, exit)": (
            (row["fit_wall"] - sum(fit.get(p, 0.0) for p in named))
            - (row["plain_wall"] - sum(plain.values()))
        ),
    }
    return dict(sorted(extra.items(), key=lambda item: -item[1]))


def import_seconds() -> float:
    """Wall seconds of ``import ln_lightning.cli`` in a fresh interpreter (median of 3)."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import ln_lightning.cli"], check=True)
        times.append(time.perf_counter() - start)
    return sorted(times)[1]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--test-images", type=int, default=2_000, help="ln-fit's test folder")
    parser.add_argument(
        "--plain-evaluation", type=int, default=10_000,
        help="pictures the plain small-image loop evaluates after every epoch",
    )  # fmt: skip
    parser.add_argument("--epochs", type=int, default=20, help="small-images and arrays")
    parser.add_argument("--digits-epochs", type=int, default=200, help="the main job")
    parser.add_argument("--workloads", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    parser.add_argument(
        "--threads", type=int, help="OMP_NUM_THREADS of both sides (default: PyTorch's own)"
    )
    parser.add_argument("--plain", choices=list(TARGETS), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plain:
        epochs = args.epochs
        plain(args.plain, args.folder, epochs)
        return []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        x, y, xt, yt = pictures(args.images, max(args.test_images, args.plain_evaluation))
        write_pngs(folder, x, y, test=False)
        write_pngs(folder / "test", xt[: args.test_images], yt[: args.test_images], test=True)
        evaluation = slice(0, args.plain_evaluation)
        np.savez(folder / "evaluation.npz", inputs=xt[evaluation], labels=yt[evaluation])
        xt, yt = xt[: args.test_images], yt[: args.test_images]
        np.savez(folder / "data.npz", inputs=x[:, None], labels=y,
                 test_inputs=xt[:, None], test_labels=yt)  # fmt: skip
        for workload in args.workloads:
            epochs = args.digits_epochs if workload == "main-job" else args.epochs
            rows.append(run(workload, folder, epochs, args.threads))
        imports = import_seconds()
    threads = f"{args.threads} thread(s) each" if args.threads else "PyTorch's threads"
    print(f"\nln-fit against a plain PyTorch loop ({os.cpu_count()} cores, {threads}; "
          f"{args.images:,} + {args.test_images:,} pictures):\n")  # fmt: skip
    print("| workload | epochs | plain loop (s) | ln-fit (s) | ratio | target | "
          + " | ".join(PHASES) + " |")  # fmt: skip
    print("| --- " * (6 + len(PHASES)) + "|")
    for row in rows:
        target = TARGETS[row["workload"]]
        verdict = (
            "-" if target is None else f"{target}x {'met' if row['ratio'] <= target else 'missed'}"
        )
        phases = " | ".join(f"{row['phases'].get(p, 0.0):.1f}" for p in PHASES)
        print(f"| {row['workload']} | {row['epochs']} | {row['plain_wall']:.1f} | "
              f"{row['fit_wall']:.1f} | {row['ratio']:.2f} | {verdict} | {phases} |")  # fmt: skip
    print(f"\nImporting ln_lightning.cli alone takes {imports:.1f} s (part of start-up).")
    print("The plain loops' own phases (s): " + "; ".join(
        f"{row['workload']}: " + ", ".join(f"{k} {v:.1f}" for k, v in row["plain_phases"].items())
        for row in rows))  # fmt: skip
    for row in rows:
        target = TARGETS[row["workload"]]
        if target is not None and row["ratio"] > target:
            over = row["fit_wall"] - target * row["plain_wall"]
            extra = row["fit_wall"] - row["plain_wall"]
            parts = ", ".join(f"{k} {v:+.1f} s" for k, v in why(row, imports).items())
            print(f"{row['workload']} missed {target}x by {over:.1f} s. Its {extra:.1f} s "
                  f"over the plain loop: {parts}.")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
