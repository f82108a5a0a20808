"""Running :class:`~ln_lightning.sweep.spec.Run` s: one ``ln-fit`` process each, in parallel,
skipping finished runs and continuing interrupted ones from their ``last.ckpt``."""

from __future__ import annotations

import argparse
import math
import os
import queue
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ln_lightning.files import atomic_write
from ln_lightning.resume import last_checkpoint_of_run
from ln_lightning.sweep.spec import FINISHED, RESULTS, Run, last_value

__all__ = ["run_all", "run_once", "run_or_print", "run_results", "run_seconds"]


def run_results(run: Run) -> dict[str, float | None]:
    """The :data:`RESULTS` of a run, read from its ``metrics.csv`` (``None`` where missing)."""
    if not run.metrics_csv.exists():
        return dict.fromkeys(RESULTS)
    return {column: last_value(run.metrics_csv, key) for column, key in RESULTS.items()}


def run_seconds(run: Run) -> float | None:
    """The wall time a finished run took, as its ``finished`` file records it (for runs of
    earlier sweeps: from its command file, written at the start, to its log's last write)."""
    marker = run.run_dir / FINISHED
    if marker.exists():
        try:
            return float(marker.read_text().split()[0])
        except (ValueError, IndexError):
            return None
    started, log = run.run_dir / "command.txt", run.run_dir / "stdout.log"
    if started.exists() and log.exists() and run.finished():
        return log.stat().st_mtime - started.stat().st_mtime
    return None


def run_once(run: Run, extra: Sequence[str], env: dict[str, str], log: Callable) -> float:
    """Run ``run`` unless finished; returns the wall time in seconds (nan when skipped)."""
    if run.finished():
        log(f"cached   {run.run_dir}")
        return math.nan
    run.run_dir.mkdir(parents=True, exist_ok=True)
    command = run.command(extra)
    last = last_checkpoint_of_run(run.run_dir)
    if last is not None:  # cut off earlier: continue from its last checkpoint
        command += ["--ckpt_path", str(last)]
        if run.metrics_csv.exists():  # CSVLogger starts the file afresh: keep the earlier rows
            parts = len(list(run.run_dir.glob("metrics.part*.csv")))
            run.metrics_csv.rename(run.run_dir / f"metrics.part{parts + 1}.csv")
        log(f"resume   {run.run_dir} from {last}")
    else:
        log(f"start    {run.run_dir}")
    (run.run_dir / "command.txt").write_text(shlex.join(command) + "\n")
    start = time.perf_counter()
    with (run.run_dir / "stdout.log").open("w") as stdout:
        result = subprocess.run(command, env=env, stdout=stdout, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        tail = (run.run_dir / "stdout.log").read_text()[-3000:]
        raise RuntimeError(
            f"{run.setting} / {run.method} / seed {run.seed} failed (exit {result.returncode}); "
            f"log: {run.run_dir / 'stdout.log'}\n{tail}\ncommand: {shlex.join(command)}"
        )
    with atomic_write(run.run_dir / FINISHED) as handle:  # the mark that skips the run later
        handle.write(f"{seconds:.1f} s\n")
    log(f"done     {run.run_dir} ({seconds:.0f} s)")
    return seconds


def run_all(
    runs: Sequence[Run],
    jobs: int = 1,
    extra: Sequence[str] = (),
    gpus: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run ``runs`` in ``jobs`` parallel processes and collect their results.

    Args:
        runs: From :meth:`TableSpec.runs`; finished ones are skipped.
        jobs: Processes at a time. Each gets ``cpu_count // jobs`` threads (``OMP_NUM_THREADS``),
            or the ``OMP_NUM_THREADS`` the sweep was started with (e.g. 1 beside other work).
        extra: Arguments appended to every ``ln-fit`` command (e.g. ``--trainer.max_epochs=5``).
        gpus: GPU ids handed out round-robin, one per process (``CUDA_VISIBLE_DEVICES``).
        log: Progress printer.

    Returns:
        One row per run: setting, method, seed, the :data:`RESULTS` of the run, seconds (the
        wall time of its ``ln-fit`` process, also for runs of earlier sweeps where recorded),
        run_dir.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1; got {jobs}.")
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(jobs):
        slots.put(slot)
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // jobs))

    def work(run: Run) -> dict[str, Any]:
        slot = slots.get()
        try:
            env = {**os.environ, "OMP_NUM_THREADS": threads}
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = str(gpus[slot % len(gpus)])
            seconds = run_once(run, extra, env, log)
        finally:
            slots.put(slot)
        return {
            "setting": run.setting,
            "method": run.method,
            "seed": run.seed,
            **run_results(run),
            "seconds": seconds if not math.isnan(seconds) else run_seconds(run),
            "run_dir": str(run.run_dir),
        }

    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(work, runs))


def run_or_print(runs: Sequence[Run], options: argparse.Namespace) -> list[dict[str, Any]] | None:
    """Run ``runs`` with the command line's ``--jobs``, ``--extra`` and ``--gpus``; with
    ``--dry-run`` only print their commands (and return ``None``)."""
    if options.dry_run:
        for run in runs:
            print(shlex.join(run.command(options.extra)))
        return None
    return run_all(runs, options.jobs, options.extra, options.gpus)
