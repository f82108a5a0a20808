"""How long a training step takes under each OpenMP wait policy, on a quiet and on a busy CPU.

PyTorch's CPU kernels run on an OpenMP thread pool (libgomp in PyTorch's pip wheels). Between
two parallel regions its idle threads spin for ``GOMP_SPINCOUNT`` turns, then sleep; libgomp's
default spins long, ``OMP_WAIT_POLICY=PASSIVE`` not at all. Spinning wins when the cores are
free (a sleeping thread wakes late for the next small kernel) and loses when other processes
want them. This trains the main job's model (the digits, ``small_cnn``, LN, batch 128) for
``--epochs`` epochs without validation, in a fresh process per setting (the policy is read when
torch loads), once on a quiet machine and once beside ``--busy`` processes that spin on the
CPU, and prints the milliseconds per training step. Run it on an otherwise quiet machine:

    python benchmarks/wait_policy.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

#: setting name -> the environment it runs under (beside the inherited one, without both keys)
SETTINGS = {
    "PASSIVE (sleep at once)": {"OMP_WAIT_POLICY": "PASSIVE"},
    "GOMP_SPINCOUNT=10000 (ln-fit's)": {"GOMP_SPINCOUNT": "10000"},
    "libgomp's default (spin long)": {},
}


def child(epochs: int) -> None:
    """Train and print ``{"ms_per_step": ...}`` (this process's policy is the one to measure)."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Callback

    from ln_lightning import DigitsDataModule, NoisyLabelClassifier

    class Clock(Callback):
        def __init__(self) -> None:
            self.seconds, self.steps = 0.0, 0

        def on_train_batch_start(self, *args) -> None:
            self.start = time.perf_counter()

        def on_train_batch_end(self, *args) -> None:
            self.seconds += time.perf_counter() - self.start
            self.steps += 1

    pl.seed_everything(0, verbose=False)
    clock = Clock()
    trainer = pl.Trainer(
        max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, callbacks=[clock], accelerator="cpu",
    )  # fmt: skip
    data = DigitsDataModule(noise_type="asymmetric", noise_rate=0.4)
    trainer.fit(NoisyLabelClassifier(input_shape=(1, 8, 8)), datamodule=data)
    print(json.dumps({"ms_per_step": 1000 * clock.seconds / clock.steps}))


def measure(setting: dict[str, str], epochs: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    command = [sys.executable, __file__, "--child", "--epochs", str(epochs)]
    result = subprocess.run(
        command, env={**env, **setting}, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])["ms_per_step"]


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--busy", type=int, default=2, help="CPU-spinning processes beside")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.epochs)
        return {}
    table: dict[str, dict[str, float]] = {name: {} for name in SETTINGS}
    for machine in ("quiet", "busy"):
        burners = []
        if machine == "busy":
            spin = [sys.executable, "-c", "while True: pass"]
            burners = [subprocess.Popen(spin) for _ in range(args.busy)]
        try:
            for name, setting in SETTINGS.items():
                table[name][machine] = measure(setting, args.epochs)
        finally:
            for burner in burners:
                burner.kill()
    threads = os.cpu_count()
    print(f"\nms per training step, digits, {args.epochs} epochs, {threads} cores "
          f"(busy: {args.busy} spinning processes beside):\n")  # fmt: skip
    print("| OpenMP setting | quiet | busy |")
    print("| --- | --- | --- |")
    for name, row in table.items():
        print(f"| {name} | {row['quiet']:.1f} | {row['busy']:.1f} |")
    return table


if __name__ == "__main__":
    main()
