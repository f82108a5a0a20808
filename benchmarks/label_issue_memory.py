"""Peak memory of the label-issue pass at large K: the top classes kept batch by batch vs all
N x K probabilities held.

Random logits (``--examples`` x K, in batches of ``--batch-size``, seeded) stand in for a
model's outputs; each configuration runs in a fresh process, which reports its peak resident
memory (``ru_maxrss``) above what it held after the imports, its seconds and the files it
wrote:

* ``stream``: what ``MislabelReport`` does beyond ``prob_columns`` classes: each batch's
  softmax reduced to ``p(given)`` and the top ``--top-classes`` classes
  (``TopClasses.from_probs``), confident learning on those (``find_label_issues``),
  ``label_issues.csv`` with top-k columns (the kept columns allocated once, as the callback
  does); ``stream + pred_probs``: also ``pred_probs.npy``
  written row by row in float16 (``PredProbsFile``);
* ``hold``: the probabilities concatenated into one N x K array and confident learning run on
  it (what the pass did before). Run only when N x K x 4 bytes is under ``--hold-limit-gb``;
  otherwise its size is printed.

    python benchmarks/label_issue_memory.py                      # K = 1,000 and 21,843
    python benchmarks/label_issue_memory.py --classes 1000 --examples 10000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("stream", "stream + pred_probs", "hold")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run(mode: str, examples: int, classes: int, batch_size: int, top_classes: int) -> dict:
    """One configuration, in this process (the parent starts a fresh one for each)."""
    import torch

    from ln_lightning import label_issues as li

    torch.set_num_threads(1)
    base = peak_mb()
    generator = torch.Generator().manual_seed(0)
    scratch = tempfile.TemporaryDirectory()  # removed when the process ends
    folder = Path(scratch.name)
    names = [f"class_{k}" for k in range(classes)]
    start = time.perf_counter()
    held, given = [], torch.zeros(examples, dtype=torch.long)
    top = li.TopClasses.empty(examples, classes, top_classes)
    file = None
    if mode == "stream + pred_probs":
        file = li.PredProbsFile(
            folder / "pred_probs.npy", torch.arange(examples), classes, "float16"
        )
    for first in range(0, examples, batch_size):
        rows = min(batch_size, examples - first)
        probs = torch.softmax(torch.randn(rows, classes, generator=generator) * 4, 1)
        labels = torch.randint(0, classes, (rows,), generator=generator)
        given[first : first + rows] = labels
        if mode == "hold":
            held.append(probs)
        else:
            top.put(first, li.TopClasses.from_probs(probs, labels, top_classes))
        if file is not None:
            file.write(torch.arange(first, first + rows), probs)
    if file is not None:
        file.close()
    probs = torch.cat(held) if mode == "hold" else top
    del held
    issues = li.find_label_issues(probs, given)
    if mode != "hold":
        table = li.IssueTable(
            index=torch.arange(examples), split=["train"] * examples, given=given,
            clean=torch.full((examples,), -1), probs=probs, score=1 - probs.given_prob,
        )  # fmt: skip
        li.write_label_issues(table, issues, names, folder / "label_issues.csv")
    sizes = {path.name: path.stat().st_size / 2**20 for path in folder.iterdir()}
    return {
        "peak_mb": peak_mb() - base,
        "seconds": time.perf_counter() - start,
        "csv_mb": sizes.get("label_issues.csv", 0.0),
        "pred_probs_mb": sizes.get("pred_probs.npy", 0.0),
        "flagged": int(issues.is_issue.sum()),
        "undecided": issues.undecided,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[1000, 21_843])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--top-classes", type=int, default=5)
    parser.add_argument("--hold-limit-gb", type=float, default=4.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # one configuration, in a fresh process
        mode, classes = args.child.split(":")
        found = run(mode, args.examples, int(classes), args.batch_size, args.top_classes)
        print(json.dumps(found))
        return
    print(
        f"Label-issue pass, {args.examples} examples of random logits, batches of "
        f"{args.batch_size}, top {args.top_classes} classes, one thread; peak memory above the "
        "imports"
    )
    print(
        "| K | mode | peak MB | seconds | label_issues.csv MB | pred_probs.npy MB | flagged | "
        "undecided |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for classes in args.classes:
        for mode in MODES:
            held_gb = args.examples * classes * 4 / 2**30
            if mode == "hold" and held_gb > args.hold_limit_gb:
                print(f"| {classes} | {mode} | not run: {held_gb:.1f} GB of probabilities "
                      "alone | | | | | |")  # fmt: skip
                continue
            command = [sys.executable, __file__, "--child", f"{mode}:{classes}",
                       "--examples", str(args.examples), "--batch-size", str(args.batch_size),
                       "--top-classes", str(args.top_classes)]  # fmt: skip
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            found = json.loads(result.stdout.strip().splitlines()[-1])
            print(
                f"| {classes} | {mode} | {found['peak_mb']:.0f} | {found['seconds']:.1f} | "
                f"{found['csv_mb']:.1f} | {found['pred_probs_mb']:.0f} | {found['flagged']} | "
                f"{found['undecided']} |"
            )


if __name__ == "__main__":
    main()
