"""Finding a run's ``last.ckpt``: in a run folder (``ln-fit-sweep``) and across the versions
of an experiment (``--ckpt_path last``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info

from ln_lightning.resume.checkpoint_io import CheckpointError, read_record
from ln_lightning.resume.last_checkpoint import LastCheckpoint
from ln_lightning.resume.record import record_mismatch

__all__ = [
    "find_last_checkpoint",
    "last_checkpoint_candidates",
    "last_checkpoint_of_run",
    "newest_readable_checkpoint",
]


def last_checkpoint_of_run(run: str | Path) -> Path | None:
    """The ``last.ckpt`` a run directory holds (``<run>/checkpoints/last.ckpt``), if any.

    ``ln-fit-sweep`` continues a run cut off before its end from here.
    """
    path = Path(run) / "checkpoints" / f"{LastCheckpoint.CHECKPOINT_NAME_LAST}.ckpt"
    return path if path.is_file() else None


def last_checkpoint_candidates(trainer: pl.Trainer) -> list[Path]:
    """Every ``last*.ckpt`` an earlier run of this experiment wrote, newest first.

    A new ``ln-fit`` run gets a new logger version, hence a new checkpoint directory, so
    Lightning's own ``ckpt_path="last"`` finds nothing there. This looks in every version of the
    same experiment (``<save_dir>/<name>/*/checkpoints/``), or in the ``dirpath`` given to the
    trainer's :class:`LastCheckpoint` or ``ModelCheckpoint``.
    """
    given = [Path(c.dirpath) for c in trainer.checkpoint_callbacks if c.dirpath]
    if given:
        candidates = [path for folder in given for path in folder.glob("last*.ckpt")]
    elif trainer.logger is not None:
        save_dir = trainer.logger.save_dir or trainer.default_root_dir
        experiment = Path(save_dir) / str(trainer.logger.name or "")
        candidates = list(experiment.glob("*/checkpoints/last*.ckpt"))
    else:
        candidates = list(Path(trainer.default_root_dir).glob("**/checkpoints/last*.ckpt"))
    return sorted(set(candidates), key=lambda path: path.stat().st_mtime, reverse=True)


def find_last_checkpoint(
    trainer: pl.Trainer, expected: dict[str, Any], weights_only: bool | None = True
) -> Path | None:
    """The newest ``last.ckpt`` of an earlier run of *this* run (``--ckpt_path last``).

    Checkpoints of the same experiment whose run record differs from ``expected`` in backbone,
    loss class, data module or number of classes (:func:`record_mismatch`) are passed over.

    Args:
        trainer: The trainer about to fit (its logger and checkpoint callbacks say where to look).
        expected: :func:`run_record` of the model and data module about to be fitted.
        weights_only: ``False`` reads checkpoints that need full unpickling (trusted files only).

    Returns:
        The checkpoint, or ``None`` when the experiment has none (a fresh start).

    Raises:
        ValueError: When there are checkpoints but none of this run, naming the newest and the
            first key that differs.
        CheckpointError: When a ``last.ckpt`` newer than any of this run cannot be read (a run
            cannot tell whether it was its own): naming it, what is wrong, and the newest
            readable checkpoint of that run to continue from instead.
    """
    candidates = last_checkpoint_candidates(trainer)
    skipped = []
    for number, path in enumerate(candidates):
        try:
            mismatch = record_mismatch(read_record(path, weights_only), expected)
        except CheckpointError as error:
            instead = newest_readable_checkpoint(path, candidates[number + 1 :], expected)
            advice = (
                f"The newest readable checkpoint of that run is {instead}: continue from it with "
                f"--ckpt_path {instead}."
                if instead is not None
                else "No other checkpoint of that run is readable: leave --ckpt_path out to "
                "start afresh."
            )
            raise CheckpointError(
                f"--ckpt_path last: the newest last.ckpt is unreadable: {error} {advice}"
            ) from None
        if mismatch is None:
            for other, why in skipped:
                rank_zero_info(f"--ckpt_path last: passed over {other} ({why}).")
            return path
        skipped.append((path, mismatch))
    if skipped:
        path, why = skipped[0]
        raise ValueError(
            f"--ckpt_path last: no checkpoint of this experiment belongs to this run; the newest, "
            f"{path}, differs in {why}. Continue a particular run with --ckpt_path <file>, or "
            "leave --ckpt_path out to start afresh."
        )
    return None


def newest_readable_checkpoint(
    unreadable: Path, older: list[Path], expected: dict[str, Any]
) -> Path | None:
    """The newest checkpoint of ``unreadable``'s run that can be read and continued: another
    file of its folder (a best-by-metric checkpoint) or an earlier version's ``last.ckpt``."""
    siblings = [p for p in unreadable.parent.glob("*.ckpt") if p != unreadable]
    for path in sorted({*siblings, *older}, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            if record_mismatch(read_record(path), expected) is None:
                return path
        except CheckpointError:
            continue
    return None
