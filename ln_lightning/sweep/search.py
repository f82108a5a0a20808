"""Grid search: every point of a method's grid on one setting, selected by noisy validation
accuracy (no clean label used), written as a config to pass with ``--config``."""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
from collections.abc import Iterator, Sequence
from typing import Any

import yaml

from ln_lightning.files import atomic_write, save_figure
from ln_lightning.sweep import runner
from ln_lightning.sweep.report import mean_std
from ln_lightning.sweep.spec import Run, TableSpec, slug

__all__ = ["best_point", "grid_points", "nested", "point_name", "search"]


def grid_points(grid: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """Every combination of a search grid, in order (the first key varies slowest)."""
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        yield dict(zip(keys, values, strict=True))


def point_name(point: dict[str, Any]) -> str:
    return ",".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in point.items())


def best_point(results: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]]) -> dict[str, Any]:
    """The grid point with the highest mean noisy validation accuracy (ties: the first)."""

    def score(item: tuple[dict[str, Any], list[dict[str, Any]]]) -> float:
        values = [r["val_acc_noisy"] for r in item[1] if r["val_acc_noisy"] is not None]
        return statistics.mean(values) if values else -math.inf

    return max(results, key=score)[0]


def nested(point: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b.c": 1}`` -> ``{"a": {"b": {"c": 1}}}`` (a config ``ln-fit --config`` reads)."""
    tree: dict[str, Any] = {}
    for key, value in point.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def search(args: argparse.Namespace, spec: TableSpec) -> None:
    """``ln-fit-sweep search``: run the grid, print its table, write ``best.yaml`` (and the
    heat map of Fig. 5 for a two-key grid)."""
    if args.method not in spec.search:
        raise SystemExit(
            f"The spec has no search grid for {args.method!r}; grids: {sorted(spec.search)}."
        )
    if args.setting not in spec.settings:
        raise SystemExit(f"Unknown setting {args.setting!r}; the spec has {list(spec.settings)}.")
    seeds = args.seeds or spec.seeds[:1]
    base = spec.runs(args.out, [args.setting], [args.method], [0])[0]
    search_dir = base.run_dir.parent / "search"
    runs, points = [], list(grid_points(spec.search[args.method]))
    for point in points:
        overrides = tuple(f"--{key}={value}" for key, value in point.items())
        for seed in seeds:
            run_dir = search_dir / slug(point_name(point)) / f"seed{seed}"
            runs.append(Run(args.setting, args.method, seed, base.args + overrides, run_dir))
    rows = runner.run_or_print(runs, args)
    if rows is None:
        return
    results = [(p, rows[i * len(seeds) : (i + 1) * len(seeds)]) for i, p in enumerate(points)]
    best = best_point(results)
    lines = [
        "| grid point | noisy val acc (%) | clean test acc (%) |",
        "| --- | --- | --- |",
    ]
    for point, mine in results:
        mark = " **selected**" if point == best else ""
        lines.append(
            f"| {point_name(point)}{mark} | {mean_std([r['val_acc_noisy'] for r in mine])} | "
            f"{mean_std([r['test_acc'] for r in mine])} |"
        )
    table = "\n".join(lines)
    search_dir.mkdir(parents=True, exist_ok=True)
    keys = list(spec.search[args.method])
    if len(keys) == 2:  # the sensitivity grid of Fig. 5
        from ln_lightning.analysis import plot_grid_heatmap

        cells = [
            {**point, "noisy val acc (%)": r["val_acc_noisy"], "clean test acc (%)": r["test_acc"]}
            for point, mine in results
            for r in mine
        ]
        figure = plot_grid_heatmap(
            cells, keys[1], keys[0], ["noisy val acc (%)", "clean test acc (%)"]
        )
        save_figure(figure, search_dir / "heatmap.png")
        print(f"Heat map: {search_dir / 'heatmap.png'}")
    best_file = search_dir / "best.yaml"
    with atomic_write(best_file) as handle:  # a config later runs are given
        handle.write(
            f"# {args.method} on {args.setting}: best of {len(points)} grid points by noisy "
            f"validation accuracy (seeds {seeds}).\n"
            + yaml.safe_dump(nested(best), sort_keys=False)
        )
    print(f"\n## {args.method} on {args.setting}: grid search\n\n{table}\n")
    print("Selected by noisy validation accuracy; the clean test column is for information only.")
    print(f"Best point written as a config: {best_file}")
