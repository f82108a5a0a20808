"""Timing shared by the benchmark scripts (run them from the repository root)."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def interleaved_medians(
    steps: dict[str, Callable[[], object]], repeats: int, warmup: int, device: str | torch.device
) -> dict[str, float]:
    """Median seconds of each step over ``repeats`` rounds after ``warmup`` untimed ones.

    Every round runs each step once, so drift of a shared machine hits all of them alike; CUDA
    is synchronised around each step.
    """
    cuda = torch.device(device).type == "cuda"
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(warmup + repeats):
        for name, step in steps.items():
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            step()
            if cuda:
                torch.cuda.synchronize()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def process_age() -> float:
    """Seconds since this process started (Linux's /proc): start-up includes the interpreter."""
    ticks = os.sysconf("SC_CLK_TCK")
    started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - started
