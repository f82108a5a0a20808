"""Every shipped table spec, and through them every config, builds and trains on stand-in data.

Each table row (a data set's ``base.yaml`` plus a setting file) is combined with each method of
its table exactly as ``ln-fit-sweep`` would run it. Every combination must parse and build the
model and data module; every row trains one step with its own loss, and every method trains one
step on the embedded default. The data are tiny files in the real on-disk formats
(``tests/formats.py``), so the file readers the configs name are exercised too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from ln_lightning.cli import run_cli
from ln_lightning.data.synthetic import (
    write_cifar10,
    write_cifar10n,
    write_cifar100,
    write_cifar100n,
    write_clothing1m,
    write_mnist,
)
from ln_lightning.sweep import load_spec

ROOT = Path(__file__).resolve().parents[1]
TABLES = sorted(p for p in (ROOT / "zoo" / "tables").glob("*.yaml") if p.stem != "paper_grids")
FILE_BASED = ["--data.init_args.download=false", "--data.init_args.data_dir={data}"]
# Config folder -> (writer of stand-in files in the real format, arguments pointing at them).
STAND_INS: dict[str, tuple[Callable[[Path], object] | None, list[str]]] = {
    "two_moons": (None, ["--data.init_args.num_train=40", "--data.init_args.num_test=10"]),
    "circles": (None, ["--data.init_args.num_train=40", "--data.init_args.num_test=10"]),
    "digits": (None, []),
    "mnist": (write_mnist, FILE_BASED),
    "fashion_mnist": (write_mnist, FILE_BASED),
    "cifar10": (write_cifar10, FILE_BASED),
    "cifar100": (write_cifar100, FILE_BASED),
    "cifar10n": (write_cifar10n, FILE_BASED),
    "cifar100n": (write_cifar100n, FILE_BASED),
    "clothing1m": (
        write_clothing1m,
        [
            "--data.init_args.data_dir={data}",
            "--data.init_args.per_class=1",
            "--data.init_args.num_workers=0",
            "--model.init_args.pretrained=false",  # no ImageNet download here
        ],
    ),
}


def data_folder(args: tuple[str, ...]) -> str:
    """The zoo config folder a row's arguments use (``digits`` for ``cli.yaml``)."""
    for arg in args:
        parts = Path(arg.split("=", 1)[-1]).parts
        if "configs" in parts and parts[-1] == "base.yaml":
            return parts[parts.index("configs") + 1]
    return "digits"


def combinations() -> list[tuple[str, str, str, tuple[str, ...]]]:
    """(table, setting, method, args) for every cell of every shipped table, deduplicated."""
    seen, cells = set(), []
    for path in TABLES:
        spec = load_spec(path)
        for run in spec.runs(Path("unused"), seeds=[0]):
            if run.args not in seen:
                seen.add(run.args)
                cells.append((path.stem, run.setting, run.method, run.args))
    return cells


CELLS = combinations()


def covering(cells: list, key: Callable[[tuple], set]) -> set[int]:
    """Indices of a small subset of ``cells`` whose ``key`` sets together cover every item."""
    wanted, chosen = set().union(*(key(c) for c in cells)), set()
    while wanted:
        best = max(range(len(cells)), key=lambda i: len(key(cells[i]) & wanted))
        chosen.add(best)
        wanted -= key(cells[best])
    return chosen


def config_files(cell: tuple) -> set[str]:
    return {arg.split("=", 1)[-1] for arg in cell[3] if arg.endswith(".yaml")} | {cell[2]}


def default_or_slow(cells: list, key: Callable[[tuple], set]) -> list:
    """Every cell as a test; those beyond a subset covering every config file and method (the
    default run) are marked ``slow`` (``pytest -m slow``)."""
    quick = covering(cells, key)
    return [
        pytest.param(*cell, id=f"{cell[0]}:{cell[1]}:{cell[2]}",
                     marks=() if i in quick else pytest.mark.slow)
        for i, cell in enumerate(cells)
    ]  # fmt: skip


def cli_args(args: tuple[str, ...], tmp_path: Path, steps: bool) -> list[str]:
    folder = data_folder(args)
    writer, extra = STAND_INS[folder]
    data = tmp_path / "data"
    if writer is not None and not data.exists():
        data.mkdir()
        writer(data)
    run = [
        "--data.init_args.batch_size=4",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    if steps:
        run += ["--trainer.fast_dev_run=1"]
    return [*args, *(e.format(data=data) for e in extra), *run]


def declared_loss(args: tuple[str, ...]) -> tuple[str, dict]:
    """Class name and init_args of the loss the last config naming one declares, with the
    cell's own ``--model.loss.init_args.<name> <value>`` after it."""
    import yaml

    name, init_args = "ln_lightning.LogisticNormalLoss", {}
    prefix = "--model.loss.init_args."
    for i, arg in enumerate(args):
        path = Path(arg.split("=", 1)[-1])
        if path.suffix == ".yaml" and path.is_file():
            config = yaml.safe_load(path.read_text()) or {}
            loss = config.get("model", {}).get("init_args", {}).get("loss")
            if loss:
                name, init_args = loss["class_path"], dict(loss.get("init_args", {}))
        elif arg.startswith(prefix):
            key, _, value = arg[len(prefix) :].partition("=")
            init_args[key] = yaml.safe_load(value if value else args[i + 1])
    return name.rsplit(".", 1)[-1], init_args


def test_the_tables_cover_every_shipped_config():
    used = {
        Path(arg.split("=", 1)[-1]).resolve()
        for *_, args in CELLS
        for arg in args
        if arg.endswith(".yaml")
    }
    shipped = {p.resolve() for p in (ROOT / "zoo" / "configs").rglob("*.yaml")}
    own = set((ROOT / "zoo" / "configs" / "own").glob("*.yaml"))  # tests/test_own_data.py
    # LN as the own-data configs had it: built on them by tests/test_loss_configs.py
    own.add(ROOT / "zoo" / "configs" / "losses" / "ln_isotropic.yaml")
    assert shipped - own - used == set(), "configs no table runs (so no test builds them)"
    assert {p.stem for p in TABLES} >= {"cpu", "digits", "paper_synthetic", "paper_real_noise"}


@pytest.mark.parametrize(
    ("table", "setting", "method", "args"), default_or_slow(CELLS, config_files)
)
def test_every_cell_builds(table, setting, method, args, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    cli = run_cli(cli_args(args, tmp_path, steps=False), run=False)
    model, data = cli.model, cli.datamodule
    name, init_args = declared_loss(args)
    assert type(model.loss).__name__ == name
    # What the method's file says is what is built (nothing carried over from the setting's LN).
    built = cli.config.model.init_args.loss.init_args
    assert {key: built[key] for key in init_args} == init_args
    assert model.num_classes == data.num_classes
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    outputs = model.training_outputs(batch.input)  # with the EMA teacher's, where one is asked
    for name, width in model.loss.head_shapes(model.num_classes).items():
        if width:
            assert outputs[name].shape == (len(batch.input), width)
    loss = model.loss.per_example(outputs, batch.target)
    assert loss.shape == (len(batch.input),) and torch.isfinite(loss).all()


# Every row with its own loss (LN), and every method on the embedded default.
STEP_CELLS = [c for c in CELLS if c[2] == "LN" or data_folder(c[3]) == "digits"]
# The default run leaves to -m slow the methods other default tests train from the CLI
# (tests/test_loss_configs.py, tests/strategies/), Clothing1M's ResNet-50 at 224 px and the
# 100-class twins of CIFAR-10 and CIFAR-10N (their configs are built by test_every_cell_builds).
TRAINED_ELSEWHERE = {"SGN", "Forward", "SOP", "Co-teaching", "DivideMix"}


def step_key(cell: tuple) -> set[str]:
    return ({data_folder(cell[3])} - {"clothing1m", "cifar100", "cifar100n"}) | (
        {cell[2]} - TRAINED_ELSEWHERE
    )


@pytest.mark.parametrize(
    ("table", "setting", "method", "args"), default_or_slow(STEP_CELLS, step_key)
)
def test_one_training_step(table, setting, method, args, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    cli = run_cli(["fit", *cli_args(args, tmp_path, steps=True), "--test_after_fit=false"])
    # one batch: one step, or one per optimiser of a strategy that optimises by hand (SOP)
    steps = 1 if cli.model.automatic_optimization else len(cli.trainer.optimizers)
    assert cli.trainer.state.finished and cli.trainer.global_step == steps
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    # the cell's config composes: data shape linked into the model, heads its loss asks for
    model, data = cli.model, cli.datamodule
    assert (model.num_classes, model.input_shape) == (data.num_classes, tuple(data.input_shape))
    heads = {name: layer.out_features for name, layer in model.heads.heads.items()}
    assert heads == model.loss.head_shapes(model.num_classes)
    (result,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    predictions = cli.trainer.predict(cli.model, datamodule=cli.datamodule)  # the same batch
    probs = torch.cat([p["probs"] for p in predictions])
    labels = torch.cat([p["clean"] for p in predictions])
    assert result["test/acc"] == pytest.approx(float((probs.argmax(1) == labels).float().mean()))
