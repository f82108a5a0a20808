"""``ln-fit``: the LightningCLI of the library (subcommands fit, validate, test, predict)."""

from __future__ import annotations

import os

# Idle OpenMP threads spin briefly (10,000 turns of libgomp, which PyTorch's wheels use) before
# they sleep. Measured on the digits, 2 cores (benchmarks/wait_policy.py, docs/performance.md):
# on a quiet machine a step takes 31% less time than with sleeping threads (PASSIVE) and as
# long as with libgomp's long default spin; on one busy with two other jobs 20% more than
# PASSIVE, where the default takes 60% more. Read when torch loads, hence before any import of
# torch; a setting of the user's is kept.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import gc
import inspect
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException
from typing_extensions import override

import zoo  # noqa: F401  (registers the zoo's backbones in timm)
from ln_lightning.callbacks import MislabelReport, PredictionWriter
from ln_lightning.cli.callbacks import EmptyRunCleanup, LoggerSaveConfigCallback
from ln_lightning.cli.checkpoint_args import settings_from_checkpoint
from ln_lightning.cli.errors import explain, optimizer_error, parse_error_message
from ln_lightning.cli.quiet import quiet_libraries
from ln_lightning.data.base import NoisyLabelDataModule
from ln_lightning.files import check_writable
from ln_lightning.lightning_internals import LOCAL_LOGGERS, config_with_checkpoint_hyperparameters
from ln_lightning.metrics import SELECTED_TEST
from ln_lightning.module import NoisyLabelClassifier
from ln_lightning.outputs import run_dir
from ln_lightning.resume import (
    LastCheckpoint,
    find_last_checkpoint,
    last_checkpoint_callback,
    read_checkpoint,
    run_record,
    selected_checkpoint,
    use_safe_checkpoint_io,
)
from zoo.paths import resolve_config_args

__all__ = [
    "EmptyRunCleanup",
    "LNArgumentParser",
    "LNLightningCLI",
    "LoggerSaveConfigCallback",
    "check_output_folders",
    "main",
    "quiet_libraries",
    "run_cli",
    "settings_from_checkpoint",
]


class LNArgumentParser(LightningArgumentParser):
    """jsonargparse's parser with one-line errors and no abbreviated options.

    ``--model.loss.temprature 0.5`` gives ``--model.loss.temprature: LogisticNormalLoss has no
    option 'temprature'. Did you mean --model.loss.temperature?`` instead of jsonargparse's
    nested report after the whole usage; ``LN_TRACEBACK=1`` restores the full report.

    Example:
        >>> parser = LNArgumentParser(prog="demo")
        >>> _ = parser.add_argument("--epochs", type=int, default=1)
        >>> parser.parse_args(["--epochs", "3"]).epochs
        3
        >>> parser.parse_args(["--epoch", "3"])  # no abbreviations; a one-line error
        Traceback (most recent call last):
            ...
        SystemExit: 2
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # --trainer.max_epoch must not mean max_epochs
        super().__init__(*args, **kwargs)

    @override
    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error or os.environ.get("LN_TRACEBACK"):
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        options = [o for action in parser._actions for o in action.option_strings]
        prog = parser.prog.replace(" [options]", "")
        sys.stderr.write(
            f"ln-fit: error: {parse_error_message(message, options)}\n"
            f"({prog} --help lists every option; LN_TRACEBACK=1 shows the full report.)\n"
        )
        sys.exit(2)


class LNLightningCLI(LightningCLI):
    """LightningCLI with the data module's shape linked into the model and test-after-fit.

    Without a config the model is a :class:`NoisyLabelClassifier` with its defaults (LN loss,
    ``small_cnn``) on :class:`DigitsDataModule` without injected noise.

    ``data.num_classes`` and ``data.input_shape`` are linked into the model, so they are set
    once, by the data module. ``--test_after_fit true`` evaluates the final weights on the clean
    test split when ``fit`` ends (``test/*``), and the checkpoint a monitored ``ModelCheckpoint``
    selected (the best ``val/acc_noisy`` in the shipped configs) as ``test_selected/*``.

    Example:
        >>> from ln_lightning.cli import run_cli
        >>> cli = run_cli(["--trainer.logger=false", "--data.noise_type=symmetric"], run=False)
        >>> type(cli.model).__name__, type(cli.datamodule).__name__, cli.model.input_shape
        ('NoisyLabelClassifier', 'DigitsDataModule', (1, 8, 8))
    """

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Without a config: LN on the digits, no injected noise. The noise is set here, not left
        # to the class defaults, because jsonargparse carries same-named arguments of the default
        # class over to a class chosen with --data (its issue #460): the default's must be
        # harmless for every other data module (your own images, arrays).
        parser.set_defaults(
            {
                "model": {"class_path": "ln_lightning.NoisyLabelClassifier"},
                "data": {
                    "class_path": "ln_lightning.DigitsDataModule",
                    "init_args": {"noise_type": "none", "noise_rate": 0.0},
                },
            }
        )
        parser.link_arguments(
            "data.num_classes", "model.init_args.num_classes", apply_on="instantiate"
        )
        parser.link_arguments(
            "data.input_shape", "model.init_args.input_shape", apply_on="instantiate"
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="After `fit`, evaluate the final weights (test/*) and the checkpoint selected by "
            "the monitored ModelCheckpoint (test_selected/*) on the clean test split.",
        )

    @override
    def _parse_ckpt_path(self) -> None:
        """The model's hyper-parameters from ``--ckpt_path``, the file read safely.

        LightningCLI (2.6.6) reads them here with a ``torch.load`` of its own, which ignores
        ``--weights_only`` and prints a raw traceback for a bad file. Read instead with
        :func:`~ln_lightning.resume.read_checkpoint`: plain data only unless
        ``--weights_only false`` is given, and one line naming the file for every fault.
        """
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        settings = self.config[subcommand]
        path = settings.get("ckpt_path")
        if not path or not Path(path).is_file():  # last, best, remote or missing: the trainer's
            return
        checkpoint = read_checkpoint(path, weights_only=settings.get("weights_only"), mmap=True)
        self.config = config_with_checkpoint_hyperparameters(
            self.parser, self.config, subcommand, checkpoint
        )

    @override
    def before_instantiate_classes(self) -> None:
        """``test``/``predict``/``validate`` on a checkpoint log beside that checkpoint's run."""
        subcommand = str(self.subcommand)
        if subcommand not in ("test", "predict", "validate"):
            return
        config = self.config[subcommand]
        checkpoint = config.get("ckpt_path")
        if not checkpoint or not Path(checkpoint).is_file():
            return
        logger = config.trainer.get("logger")
        # Loggers that write into a local folder write beside the checkpoint's run instead of
        # starting a new version.
        if getattr(logger, "class_path", None) not in LOCAL_LOGGERS:
            return
        checkpoint = Path(checkpoint)
        run = (
            checkpoint.parent.parent
            if checkpoint.parent.name == "checkpoints"
            else checkpoint.parent
        )
        logger.init_args.save_dir = str(run)
        logger.init_args.name = ""
        logger.init_args.version = f"{subcommand}/{checkpoint.stem}"

    def check_instantiated(self) -> None:
        """Arguments that only fail once built: linked shapes, the optimizer's arguments."""
        config = self.config.get(str(self.subcommand), self.config)
        model_args = config.get("model", {}).get("init_args", {}) if config.get("model") else {}
        defaults = inspect.signature(type(self.model)).parameters
        for key in ("num_classes", "input_shape"):  # linked from the data module
            given, linked = model_args.get(key), getattr(self.datamodule, key, None)
            default = defaults[key].default if key in defaults else None
            if given is None or linked is None or given == default:
                continue
            if (tuple(given) if isinstance(given, list | tuple) else given) != linked:
                raise ValueError(
                    f"model.init_args.{key}={given} disagrees with the data module "
                    f"({type(self.datamodule).__name__}: {key}={linked}). ln-fit sets it from the "
                    "data module: leave it out, or choose another --data."
                )
        factory = getattr(self.model, "optimizer_factory", None)
        if factory is not None:  # bad optimizer arguments fail here, not after the data loads
            try:
                factory([torch.nn.Parameter(torch.zeros(1))])
            except (ValueError, TypeError) as error:
                raise ValueError(optimizer_error(factory, error)) from None

    @override
    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        """The trainer, with the callbacks every run has unless its config brings its own: a
        :class:`MislabelReport` (``label_issues.csv`` after fit) and, when checkpointing is on,
        a :class:`LastCheckpoint`.

        Runs after the model and data module are built, so their arguments are checked first.
        """
        self.check_instantiated()
        trainer = super().instantiate_trainer(**kwargs)
        use_safe_checkpoint_io(trainer)
        check_output_folders(trainer)
        if not any(isinstance(c, MislabelReport) for c in trainer.callbacks):
            trainer.callbacks.insert(0, MislabelReport())
        trainer.callbacks.insert(0, EmptyRunCleanup())  # checkpoint callbacks stay last
        for logger in trainer.loggers:  # W&B looks for the git repository from its save_dir: a
            save_dir = getattr(logger, "save_dir", None)  # missing one warns and loses git info
            if isinstance(save_dir, str) and "://" not in save_dir:
                Path(save_dir).mkdir(parents=True, exist_ok=True)
        if trainer.checkpoint_callbacks and last_checkpoint_callback(trainer) is None:
            trainer.callbacks.append(LastCheckpoint())  # checkpoint callbacks stay last
        return trainer

    def before_fit(self) -> None:
        if self.config_init["fit"].get("ckpt_path") != "last":
            return
        found = find_last_checkpoint(
            self.trainer,
            run_record(self.model, self.datamodule),
            self.config_init["fit"].get("weights_only"),
        )
        if found is not None:
            rank_zero_info(f"Resuming from {found} (--ckpt_path last)")
            self.config_init["fit"]["ckpt_path"] = str(found)

    def after_fit(self) -> None:
        if not self.config.fit.get("test_after_fit") or self.trainer.interrupted:
            return
        if not self.datamodule.has_test_set:
            rank_zero_info(self.datamodule.no_test_set_message())
            return
        self.trainer.test(self.model, datamodule=self.datamodule)
        selected = selected_checkpoint(self.trainer)
        if selected is not None:
            rank_zero_info(
                f"Checkpoint selected by {selected.monitor} ({selected.mode}): "
                f"{selected.best_model_path}; its clean test metrics are {SELECTED_TEST}/*"
            )
            with self.model.test_metrics_prefix(SELECTED_TEST):
                self.trainer.test(
                    self.model, datamodule=self.datamodule, ckpt_path=selected.best_model_path
                )


def check_output_folders(trainer: pl.Trainer) -> None:
    """Fail now, before any data loads or any epoch runs, when the run's folder or a checkpoint
    folder cannot be written (read-only, no permission, a file in the way): one line naming it.
    Only local folders are checked (a remote ``save_dir`` is the logger's business)."""
    folders = {run_dir(trainer): "the run's files"}
    for callback in trainer.checkpoint_callbacks:
        if callback.dirpath:
            folders.setdefault(Path(callback.dirpath), "the checkpoints")
    for folder, what in folders.items():
        if "://" not in str(folder):
            check_writable(folder, what)


def _on_terminal() -> bool:
    """Whether both output streams are terminals (``--trainer.enable_progress_bar true`` shows
    the bar anyway)."""
    return all(stream is not None and stream.isatty() for stream in (sys.stdout, sys.stderr))


def run_cli(args: list[str] | None = None, run: bool = True) -> LNLightningCLI:
    """Build (and by default run) the CLI; ``args`` as on the command line, ``sys.argv`` if None.

    ``--config zoo/...`` paths resolve inside the installed ``zoo`` package when the current
    folder has no ``zoo/`` (:func:`zoo.paths.resolve_config_args`).
    """
    if args is None:
        sys.argv[1:] = settings_from_checkpoint(resolve_config_args(sys.argv[1:]))
    else:
        args = settings_from_checkpoint(resolve_config_args(list(args)))
    return LNLightningCLI(
        NoisyLabelClassifier,
        NoisyLabelDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_callback=LoggerSaveConfigCallback,
        save_config_kwargs={"overwrite": True},
        # A progress bar only on a terminal: redirected to a file it leaves fragments of itself.
        trainer_defaults={"callbacks": [PredictionWriter()], "enable_progress_bar": _on_terminal()},
        parser_class=LNArgumentParser,
        parser_kwargs={"description": "ln-fit: train classifiers on noisy labels (LN likelihood)."},
        args=args,
        run=run,
    )


def main() -> None:
    """Entry point of the ``ln-fit`` console script."""
    # The objects of the imported libraries (torch, Lightning, timm: millions) live as long as
    # the process: frozen, no garbage collection walks them again, during the run or at exit,
    # where the interpreter's last collection took 1.3 s (benchmarks/product_vs_loop.py). Only
    # the collector skips them; they are released and every exit handler runs as usual.
    gc.freeze()
    with quiet_libraries():
        try:
            run_cli()
        except SIGTERMException:  # Lightning stops quietly; a terminated run must not look finished
            sys.exit(128 + signal.SIGTERM)
        except (ValueError, OSError, KeyError, FloatingPointError) as error:
            if os.environ.get("LN_TRACEBACK"):
                raise
            sys.exit(f"ln-fit: error: {explain(error)}\n(LN_TRACEBACK=1 shows the traceback.)")
