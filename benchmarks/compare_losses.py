"""Run ``ln-fit fit`` for several named CLI variants x seeds and print a table of results.

Each variant is ``NAME=CLI ARGS`` applied on top of the config; every run uses
``--seed_everything S --data.seed S`` for its seed, so the noise draw, the validation split and
the initialisation all change with the seed. The table gives mean ± std over seeds of the clean
test accuracy of the final weights (``test/acc``) and of the noisy validation accuracy at the end
of training (``val/acc_noisy``, the paper's model-selection metric), plus the wall time per run.

Example (the comparison quoted in the README)::

    python benchmarks/compare_losses.py --config cli.yaml --seeds 0 1 2 \\
        --variant "LN=--model.loss ln_lightning.LogisticNormalLoss" \\
        --variant "CE=--model.loss ln_lightning.CrossEntropy"

Runs that already have a ``metrics.csv`` with ``test/acc`` under ``--out`` are not re-run.
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def last_value(metrics_csv: Path, key: str) -> float | None:
    """The last non-empty value of column ``key`` in a Lightning ``CSVLogger`` metrics file."""
    value = None
    with metrics_csv.open() as handle:
        for row in csv.DictReader(handle):
            if row.get(key):
                value = float(row[key])
    return value


def run_one(config: str, name: str, args: str, seed: int, out: Path, threads: int) -> dict:
    run_dir = out / name / f"seed{seed}"
    metrics = run_dir / "metrics.csv"
    seconds = float("nan")
    if not (metrics.exists() and last_value(metrics, "test/acc") is not None):
        command = [
            "ln-fit", "fit", "--config", config, *shlex.split(args),
            f"--seed_everything={seed}", f"--data.init_args.seed={seed}",
            "--test_after_fit=true",
            "--trainer.logger.class_path=lightning.pytorch.loggers.CSVLogger",
            f"--trainer.logger.init_args.save_dir={out / name}",
            "--trainer.logger.init_args.name=",
            f"--trainer.logger.init_args.version=seed{seed}",
            "--trainer.enable_progress_bar=false",
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        start = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
            raise RuntimeError(f"run {name} seed {seed} failed: {shlex.join(command)}")
    return {
        "name": name,
        "seed": seed,
        "test_acc": last_value(metrics, "test/acc"),
        "val_acc_noisy": last_value(metrics, "val/acc_noisy"),
        "seconds": seconds,
    }


def summarise(values: list[float]) -> str:
    values = [100 * v for v in values if v is not None]
    if not values:
        return "n/a"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="cli.yaml")
    parser.add_argument("--variant", action="append", required=True, help="NAME=CLI ARGS")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    parser.add_argument("--csv", type=Path, help="also write the per-run results here")
    args = parser.parse_args(argv)

    variants = [v.split("=", 1) if "=" in v else (v, "") for v in args.variant]
    jobs = [(name, cli, seed) for name, cli in variants for seed in args.seeds]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda j: run_one(args.config, *j, args.out, threads), jobs))

    print("| variant | clean test acc (%) | noisy val acc (%) | s / run | CLI |")
    print("| --- | --- | --- | --- | --- |")
    for name, cli in variants:
        mine = [r for r in rows if r["name"] == name]
        times = [r["seconds"] for r in mine if r["seconds"] == r["seconds"]]
        secs = f"{statistics.mean(times):.0f}" if times else "cached"
        print(
            f"| {name} | {summarise([r['test_acc'] for r in mine])} | "
            f"{summarise([r['val_acc_noisy'] for r in mine])} | {secs} | `{cli}` |"
        )
    print(f"\nseeds: {args.seeds}; config: {args.config}")
    if args.csv:
        with args.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return rows


if __name__ == "__main__":
    main()
