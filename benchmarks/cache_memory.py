"""The memory of decoded images under DDP: what each process holds with ``--data.cache``.

Writes ``--images`` grey 28x28 PNG files (Fashion-MNIST from Debian's package when installed)
with a labels CSV, then runs ``ln-fit fit`` on them for one epoch with ``--devices`` CPU
processes (DDP, gloo, one thread each), once with ``--data.cache memory`` and once with
``--data.cache none``, and prints each process's resident memory at the start of training
(``VmRSS``) and its peak (``VmHWM``). Every process decodes and holds its own copy of the
training pool, so the difference between the two runs is the decoded size once per process:

    python benchmarks/cache_memory.py                     # 20,000 pictures, 2 processes
    python benchmarks/cache_memory.py --images 2000 --devices 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

ROOT = Path(__file__).resolve().parents[1]


def resident_megabytes() -> dict[str, float]:
    """This process's resident memory now (``VmRSS``) and at its peak (``VmHWM``), in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


class MemoryProbe(Callback):
    """Writes ``<folder>/rank<R>.json``: the resident memory at the start of training."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {**resident_megabytes(), "cached": trainer.datamodule.cached}
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def run(folder: Path, cache: str, devices: int) -> list[dict]:
    """One epoch of ``ln-fit`` on ``devices`` processes; each rank's record."""
    probe = folder / f"probe_{cache}"
    command = [
        sys.executable, "-m", "ln_lightning.cli", "fit",
        "--config", str(ROOT / "zoo/configs/own/images.yaml"),
        "--config", str(ROOT / "zoo/configs/losses/ce.yaml"),
        f"--data.labels_file={folder / 'labels.csv'}", "--model.backbone=lenet5",
        "--data.image_size=28", "--data.augment=false", "--data.crop_pct=1.0",
        "--data.batch_size=256", f"--data.cache={cache}", "--trainer.max_epochs=1",
        "--trainer.accelerator=cpu", "--trainer.strategy=ddp", f"--trainer.devices={devices}",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        f"--trainer.logger.init_args.save_dir={folder / 'runs'}", "--test_after_fit=false",
        "--trainer.callbacks+=cache_memory.MemoryProbe",
        f"--trainer.callbacks.folder={probe}",
    ]  # fmt: skip
    path = os.pathsep.join([str(ROOT / "benchmarks"), str(ROOT)])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ln-fit failed:\n{result.stderr[-3000:]}")
    return [json.loads((probe / f"rank{r}.json").read_text()) for r in range(devices)]


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--devices", type=int, default=2, help="DDP processes (CPU)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from product_vs_loop import pictures, write_pngs

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        x, y, _, _ = pictures(args.images, 0)
        write_pngs(folder, x, y, test=False)
        table = {cache: run(folder, cache, args.devices) for cache in ("memory", "none")}
    decoded = args.images * 28 * 28 / 2**20
    print(f"\nResident memory of each DDP process ({args.devices} CPU processes, one thread "
          f"each; {args.images:,} 28x28 pictures, {decoded:.1f} MiB decoded):\n")  # fmt: skip
    print("| rank | cache memory: at training start (MiB) | peak | cache none: at training "
          "start (MiB) | peak | difference at start |")  # fmt: skip
    print("| --- " * 6 + "|")
    for rank, (cached, files) in enumerate(zip(table["memory"], table["none"], strict=True)):
        print(f"| {rank} | {cached['VmRSS']:.0f} | {cached['VmHWM']:.0f} | {files['VmRSS']:.0f} "
              f"| {files['VmHWM']:.0f} | {cached['VmRSS'] - files['VmRSS']:+.0f} |")  # fmt: skip
    return table


if __name__ == "__main__":
    main()
