"""How long ``label_issues.html`` and ``label_issues.png`` take to write, and how big the page is.

Two kinds of data, each with ``--rows`` scored examples of which about a quarter are flagged:
image files on disk (linked from the page: nothing decoded) and 28 x 28 images in memory
(drawn as embedded PNG thumbnails, as for Fashion-MNIST or your own arrays). The contact sheet
decodes its 24 images. Probabilities are random; only sizes matter here.

    python benchmarks/gallery_speed.py [--rows 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ln_lightning.data.synthetic import write_image_files
from ln_lightning.label_issues import IssueTable, find_label_issues
from ln_lightning.label_issues.gallery import example_image, write_contact_sheet, write_gallery


def scored(rows: int, classes: int = 10) -> tuple[IssueTable, object]:
    generator = torch.Generator().manual_seed(0)
    given = torch.randint(0, classes, (rows,), generator=generator)
    logits = 3 * torch.nn.functional.one_hot(given, classes)
    wrong = torch.rand(rows, generator=generator) < 0.25  # a quarter look like another class
    logits[wrong] = logits[wrong].roll(1, dims=1)
    probs = (logits + torch.randn(rows, classes, generator=generator)).softmax(1)
    table = IssueTable(
        index=torch.arange(rows), split=["train"] * rows, given=given,
        clean=torch.full((rows,), -1), probs=probs, score=1 - probs[torch.arange(rows), given],
    )  # fmt: skip
    return table, find_label_issues(probs, given)


def timed(step, *args, repeats: int) -> float:
    """Median wall time of ``step(*args)``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="scored examples")
    parser.add_argument("--repeats", type=int, default=3, help="median of this many")
    args = parser.parse_args(argv)
    table, issues = scored(args.rows)
    names = [f"class{k}" for k in range(10)]
    flagged = int(issues.is_issue.sum())
    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (args.rows, 28, 28)))
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        files, _, _ = write_image_files(folder / "images", per_class=8, rgb=True)
        table.paths = [str(files[i % len(files)]) for i in range(args.rows)]
        kinds = {
            "image files (linked)": lambda i: Path(table.paths[i]),
            "28 x 28 in memory (embedded)": lambda i: example_image(pixels[i]),
        }
        print(f"CPU, torch threads {torch.get_num_threads()}, median of {args.repeats}; "
              f"{args.rows:,} examples, {flagged:,} flagged\n")  # fmt: skip
        print("| data | page (s) | page (MB) | contact sheet of 24 (s) |")
        print("| --- | --- | --- | --- |")
        for kind, images in kinds.items():
            page = folder / f"{len(kind)}.html"
            page_s = timed(
                write_gallery, *(table, issues, names, page, images), repeats=args.repeats
            )
            sheet = folder / f"{len(kind)}.png"
            sheet_s = timed(
                write_contact_sheet, *(table, issues, names, sheet, images), repeats=args.repeats
            )
            size = page.stat().st_size / 2**20
            print(f"| {kind} | {page_s:.2f} | {size:.2f} | {sheet_s:.2f} |")


if __name__ == "__main__":
    main()
