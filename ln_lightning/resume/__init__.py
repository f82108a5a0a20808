"""Continuing a run: what a checkpoint holds, which checkpoint is "last", and interrupts.

One home for exact resume, one file per concern:

* ``position.py``: **the training position** (:class:`TrainingPosition`), how far into its
  epoch training was, saved by the data module so the resumable sampler skips what was trained;
* ``epoch_metrics.py``: **the epoch's training metrics**, saved with the model, summed over DDP
  ranks;
* ``last_checkpoint.py``: **``last.ckpt``** (:class:`LastCheckpoint`), the newest state of the
  run, after every epoch, every n steps if asked, and at Ctrl-C or SIGTERM;
* ``record.py``: **which run a checkpoint belongs to** (the run record every checkpoint
  carries) and the loss it was trained with;
* ``checkpoint_io.py``: **checkpoint files**, read without running code (``weights_only``)
  with every unreadable file named in one line, and written whole (:class:`SafeCheckpointIO`);
* ``lookup.py``: ``--ckpt_path last`` (:func:`find_last_checkpoint`) and a run folder's
  ``last.ckpt``.

The reads of Lightning internals these need live in :mod:`ln_lightning.lightning_internals`
(``lightning.py`` here is its deprecated alias).
"""

from ln_lightning.resume.checkpoint_io import (
    CheckpointError,
    SafeCheckpointIO,
    read_checkpoint,
    read_record,
    use_safe_checkpoint_io,
)
from ln_lightning.resume.epoch_metrics import restore_epoch_metrics, save_epoch_metrics
from ln_lightning.resume.last_checkpoint import (
    LastCheckpoint,
    carry_best_checkpoints,
    last_checkpoint_callback,
    newest_checkpoint_path,
    selected_checkpoint,
)
from ln_lightning.resume.lookup import (
    find_last_checkpoint,
    last_checkpoint_candidates,
    last_checkpoint_of_run,
)
from ln_lightning.resume.position import (
    TrainingPosition,
    resume_sampler,
    training_position,
    training_position_from_state,
    training_position_state,
)
from ln_lightning.resume.record import (
    RECORD_KEY,
    RUN_KEYS,
    built_from_record,
    check_loaded_record,
    class_path,
    record_mismatch,
    run_record,
    wrong_loss_message,
)

__all__ = [
    "RECORD_KEY",
    "RUN_KEYS",
    "CheckpointError",
    "LastCheckpoint",
    "SafeCheckpointIO",
    "TrainingPosition",
    "built_from_record",
    "carry_best_checkpoints",
    "check_loaded_record",
    "class_path",
    "find_last_checkpoint",
    "last_checkpoint_callback",
    "last_checkpoint_candidates",
    "last_checkpoint_of_run",
    "newest_checkpoint_path",
    "read_checkpoint",
    "read_record",
    "record_mismatch",
    "restore_epoch_metrics",
    "resume_sampler",
    "run_record",
    "save_epoch_metrics",
    "selected_checkpoint",
    "training_position",
    "training_position_from_state",
    "training_position_state",
    "use_safe_checkpoint_io",
    "wrong_loss_message",
]
