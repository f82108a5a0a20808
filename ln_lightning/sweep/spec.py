"""A table spec (settings x methods x seeds), the ``ln-fit fit`` runs it makes, and what each
run reports (its ``metrics.csv``). The format is in the package docstring."""

from __future__ import annotations

import csv
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ln_lightning.metrics import MODEL_SELECTION, SELECTED_TEST, TEST, metric_name
from zoo.paths import resolve_config_args, zoo_path

__all__ = [
    "FINAL_ACC",
    "FINISHED",
    "RESULTS",
    "Run",
    "TableSpec",
    "last_value",
    "load_spec",
    "slug",
]

#: The clean test accuracy of the final weights.
FINAL_ACC = metric_name(TEST, "acc")
#: The file a run's folder gets when its ``ln-fit`` process has exited cleanly (its wall time).
FINISHED = "finished"
#: What each run reports: column name -> the logged metric it is read from (its last value).
RESULTS = {
    "test_acc": FINAL_ACC,  # the paper's number: the final weights
    "selected_acc": metric_name(SELECTED_TEST, "acc"),  # the best val/acc_noisy checkpoint
    "test_nll": metric_name(TEST, "nll"),
    "test_ece": metric_name(TEST, "ece"),
    "selected_nll": metric_name(SELECTED_TEST, "nll"),
    "selected_ece": metric_name(SELECTED_TEST, "ece"),
    "val_acc_noisy": MODEL_SELECTION,
    "realised_noise": "noise/realised_rate",
}


@dataclass(frozen=True)
class Run:
    """One ``ln-fit fit`` process: its arguments, its seed and its output directory.

    Example:
        >>> from pathlib import Path
        >>> run = Run("Digits", "LN", 1, ("--config", "cli.yaml"), Path("runs/digits/ln/seed1"))
        >>> [arg for arg in run.command() if "seed" in arg][:2]
        ['--seed_everything=1', '--data.init_args.seed=1']
        >>> run.finished()
        False
    """

    setting: str
    method: str
    seed: int
    args: tuple[str, ...]
    run_dir: Path

    def command(self, extra: Sequence[str] = ()) -> list[str]:
        """The ``ln-fit`` command line (as ``python -m ln_lightning.cli``)."""
        return [
            sys.executable, "-m", "ln_lightning.cli", "fit", *self.args,
            f"--seed_everything={self.seed}", f"--data.init_args.seed={self.seed}",
            "--test_after_fit=true",
            "--trainer.logger.class_path=lightning.pytorch.loggers.CSVLogger",
            f"--trainer.logger.init_args.save_dir={self.run_dir.parent}",
            "--trainer.logger.init_args.name=",
            f"--trainer.logger.init_args.version={self.run_dir.name}",
            "--trainer.enable_progress_bar=false",
            *extra,
        ]  # fmt: skip

    @property
    def metrics_csv(self) -> Path:
        return self.run_dir / "metrics.csv"

    def finished(self) -> bool:
        """Whether the run has ended (then it is not run again): its ``ln-fit`` process exited
        cleanly, or (runs of earlier versions) its metrics hold the test evaluation."""
        if (self.run_dir / FINISHED).exists():
            return True
        return self.metrics_csv.exists() and last_value(self.metrics_csv, FINAL_ACC) is not None


@dataclass
class TableSpec:
    """A parsed table spec (see the module docstring for the format).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "table.yaml"
        >>> _ = path.write_text(
        ...     "{seeds: [0, 1], methods: {CE: --config ce.yaml, LN: ''}, "
        ...     "settings: {Digits: --config cli.yaml}}"
        ... )
        >>> spec = load_spec(path)
        >>> [(run.method, run.seed) for run in spec.runs(Path("runs/table"))]
        [('CE', 0), ('CE', 1), ('LN', 0), ('LN', 1)]
    """

    title: str
    seeds: list[int]
    methods: dict[str, str]
    settings: dict[str, dict[str, Any]]
    search: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    path: Path | None = None

    def runs(
        self,
        out: Path,
        settings: Sequence[str] | None = None,
        methods: Sequence[str] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Run]:
        """Every run of the table (or of the chosen rows, columns and seeds), row by row."""
        chosen_settings = self._choose("setting", settings, list(self.settings))
        chosen_methods = self._choose("method", methods, list(self.methods))
        runs = []
        for setting in chosen_settings:
            row = self.settings[setting]
            for method in chosen_methods:
                args = [*shlex.split(row.get("args", "")), *shlex.split(self.methods[method])]
                args += shlex.split((row.get("method_args") or {}).get(method, ""))
                args = resolve_config_args(args)
                for seed in seeds if seeds is not None else self.seeds:
                    run_dir = out / slug(setting) / slug(method) / f"seed{seed}"
                    runs.append(Run(setting, method, seed, tuple(args), run_dir))
        return runs

    @staticmethod
    def _choose(kind: str, chosen: Sequence[str] | None, known: list[str]) -> list[str]:
        if not chosen:
            return known
        unknown = [name for name in chosen if name not in known]
        if unknown:
            raise ValueError(f"Unknown {kind}(s) {unknown}; the spec has {known}.")
        return list(chosen)


def slug(name: str) -> str:
    """A directory name for a setting or method: ``"MNIST asym 40%"`` -> ``"mnist_asym_40"``."""
    return re.sub(r"[^a-z0-9.]+", "_", name.lower()).strip("_") or "_"


def load_spec(path: str | Path) -> TableSpec:
    """Read and check a table spec.

    Raises:
        ValueError: If a required key is missing, a paper number names an unknown method, or a
            search grid is empty.
    """
    path = zoo_path(path)
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a table spec is a YAML mapping; got {type(raw).__name__}.")
    missing = [key for key in ("methods", "settings") if not raw.get(key)]
    if missing:
        raise ValueError(f"{path}: missing {missing}; see `ln-fit-sweep --help` for the format.")
    methods = {str(k): str(v or "") for k, v in raw["methods"].items()}
    settings = {}
    for name, row in raw["settings"].items():
        row = {"args": row} if isinstance(row, str) else dict(row or {})
        unknown = set(row) - {"args", "paper", "method_args"}
        if unknown:
            raise ValueError(
                f"{path}: setting {name!r} has unknown keys {sorted(unknown)}; "
                "allowed: args, paper, method_args."
            )
        for key in ("paper", "method_args"):
            strays = set(row.get(key) or {}) - set(methods)
            if strays:
                raise ValueError(
                    f"{path}: setting {name!r} {key} names {sorted(strays)}, which are not "
                    f"methods of this table {sorted(methods)}."
                )
        settings[str(name)] = row
    search = raw.get("search") or {}
    if isinstance(search, str):  # grids shared between specs live in their own file
        search_path = zoo_path(search)
        if not search_path.is_file():
            raise ValueError(f"{path}: search grids file {search!r} not found.")
        search = yaml.safe_load(search_path.read_text()) or {}
        search = {method: grid for method, grid in search.items() if method in methods}
    for method, grid in search.items():
        if method not in methods:
            raise ValueError(f"{path}: search grid for unknown method {method!r}.")
        if not grid or not all(isinstance(v, list) and v for v in grid.values()):
            raise ValueError(
                f"{path}: search grid for {method!r} must map each CLI key to a non-empty list."
            )
    return TableSpec(
        title=str(raw.get("title", path.stem)),
        seeds=[int(s) for s in raw.get("seeds", [0, 1, 2])],
        methods=methods,
        settings=settings,
        search=search,
        path=path,
    )


def last_value(metrics_csv: Path, key: str) -> float | None:
    """The last non-empty value of column ``key`` in a Lightning ``CSVLogger`` metrics file."""
    value = None
    with metrics_csv.open() as handle:
        for row in csv.DictReader(handle):
            if row.get(key):
                value = float(row[key])
    return value
