"""From what a data set loads to the three splits: the training pool's noisy labels (drawn,
read from a file or the data's own) and the train / noisy validation / clean test datasets."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ln_lightning.data.dataset import NoisyLabelDataset
from ln_lightning.data.reviewed import reviewed_rows
from ln_lightning.data.splits import DataSplits, fold_split, validation_split
from ln_lightning.labels import UNKNOWN
from ln_lightning.noise import NoiseResult, NoiseSpec, load_noisy_labels, noise_from_labels

__all__ = [
    "PoolSplits",
    "check_settings",
    "describe_splits",
    "noise_source",
    "pool_noise",
    "pool_splits",
    "read_pool_labels",
]


#: The splits ``predict_split`` can name.
PREDICT_SPLITS = ("test", "val", "train")


def check_settings(
    val_fraction: float,
    batch_size: int,
    num_workers: int | None,
    predict_split: str,
    num_folds: int,
    fold: int,
) -> None:
    """Raise ``ValueError`` on a data module's settings out of range, naming the setting."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1); got {val_fraction!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size!r}.")
    if num_workers is not None and num_workers < 0:
        raise ValueError(f"num_workers must be >= 0 or None; got {num_workers!r}.")
    if predict_split not in PREDICT_SPLITS:
        raise ValueError(f"predict_split must be one of {PREDICT_SPLITS}; got {predict_split!r}.")
    if num_folds and (num_folds < 2 or not 0 <= fold < num_folds):
        raise ValueError(
            f"num_folds must be >= 2 and fold in [0, num_folds); got num_folds={num_folds}, "
            f"fold={fold}."
        )


def read_pool_labels(path: str | Path) -> tuple[Tensor, Tensor, Tensor]:
    """``(clean_labels, noisy_labels, dropped)`` of an ``index,clean_label,noisy_label`` file
    (:func:`~ln_lightning.noise.save_noisy_labels`); a reviewed one (``given_label`` and
    ``decision`` columns too, written by ``label_issues.html`` for data without file paths)
    marks its examples decided ``drop`` in ``dropped``, each fault named by its line.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "reviewed_labels.csv"
        >>> _ = path.write_text("index,clean_label,noisy_label,given_label,decision\\n"
        ...                     "0,0,1,0,relabel\\n1,1,1,1,\\n2,-1,0,0,drop\\n")
        >>> [t.tolist() for t in read_pool_labels(path)]
        [[0, 1, -1], [1, 1, 0], [False, False, True]]
    """
    path = Path(path)
    header = path.read_text().partition("\n")[0].strip() if path.is_file() else ""
    if "decision" not in header.split(","):
        clean, noisy = load_noisy_labels(path)
        return clean, noisy, torch.zeros(len(clean), dtype=torch.bool)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept = {line for line, _ in reviewed_rows(rows, path, "index", "noisy_label")}
    try:
        values = torch.tensor(
            [[int(row[c]) for c in ("index", "clean_label", "noisy_label")] for row in rows]
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"{path}: the columns index, clean_label and noisy_label must hold integers ({error})."
        ) from None
    if not torch.equal(values[:, 0], torch.arange(len(values))):
        raise ValueError(f"{path}: indices must run 0, 1, 2, ... without gaps.")
    dropped = torch.tensor([line not in kept for line in range(2, len(rows) + 2)])
    return values[:, 1].clone(), values[:, 2].clone(), dropped


def pool_noise(
    splits: DataSplits, spec: NoiseSpec | None, noisy_labels_file: str | None, num_classes: int
) -> tuple[NoiseResult, Tensor, Tensor | None]:
    """The pool's noisy labels, its true labels (``-1`` where unknown) and the examples a
    reviewed file drops (``None`` without a file): read from ``noisy_labels_file``
    (:func:`read_pool_labels`), the data's own (``spec`` ``None`` or ``train_noisy_labels``),
    or drawn from ``spec``.

    Example:
        >>> import torch
        >>> splits = DataSplits(torch.zeros(6, 2), torch.tensor([0, 1, 0, 1, 0, 1]),
        ...                     torch.zeros(2, 2), torch.tensor([0, 1]))
        >>> noise, clean, _ = pool_noise(splits, NoiseSpec("symmetric", 0.5, seed=0), None, 2)
        >>> noise.noisy_labels.shape, clean.tolist()
        (torch.Size([6]), [0, 1, 0, 1, 0, 1])
    """
    clean = splits.train_labels.long()
    if noisy_labels_file is not None:
        file_clean, noisy, dropped = read_pool_labels(noisy_labels_file)
        # The file's clean labels must agree with the data's where the data knows them; where
        # it does not (your own data), the file's are taken.
        known = clean != UNKNOWN
        if len(file_clean) != len(clean) or not torch.equal(file_clean[known], clean[known]):
            raise ValueError(
                f"{noisy_labels_file} was written for other data: its clean labels "
                f"({len(file_clean)}) do not match this data set's training pool ({len(clean)})."
            )
        return noise_from_labels(file_clean, noisy, num_classes), file_clean, dropped
    if splits.train_noisy_labels is not None or spec is None:
        given = splits.train_noisy_labels
        noisy = given.long() if given is not None else clean
        return noise_from_labels(clean, noisy, num_classes), clean, None
    return spec.draw(clean, num_classes), clean, None


def noise_source(spec: NoiseSpec | None, noisy_labels_file: str | None) -> str:
    """Where the pool's noisy labels come from, in words."""
    if noisy_labels_file:
        return f"labels from {Path(noisy_labels_file).name}"
    if spec is None:
        return "the data's own labels"
    return spec.describe()


@dataclass
class PoolSplits:
    """The three datasets and the names of their examples (``None`` where they have none).

    Example:
        >>> import torch
        >>> splits = DataSplits(torch.zeros(10, 2), torch.arange(10) % 2, None, None)
        >>> pool = pool_splits(splits, splits.train_labels, splits.train_labels, (None, None),
        ...                    val_fraction=0.2, seed=0)
        >>> len(pool.train), len(pool.val), pool.test
        (8, 2, None)
    """

    train: NoisyLabelDataset
    val: NoisyLabelDataset
    test: NoisyLabelDataset | None
    example_ids: dict[str, Sequence[str] | None]


def pool_splits(
    splits: DataSplits,
    noisy: Tensor,
    clean: Tensor,
    transforms: tuple,
    val_fraction: float,
    seed: int,
    num_folds: int = 0,
    fold: int = 0,
    dropped: Tensor | None = None,
) -> PoolSplits:
    """Train and noisy validation datasets over the pool (a held-out fold, a ``val_fraction``
    cut from ``seed``, or the data's own validation set), and the clean test dataset;
    ``transforms`` is ``(train, eval)``. Examples marked in ``dropped`` (a reviewed labels
    file's drops) are in neither; the cut is made before, so the others keep their split."""
    train_tf, eval_tf = transforms
    inputs = splits.train_inputs
    if num_folds:
        train_idx, val_idx = fold_split(len(clean), num_folds, fold, seed)
        val = NoisyLabelDataset(inputs, noisy, clean, val_idx, eval_tf)
    elif splits.val_inputs is None:
        train_idx, val_idx = validation_split(len(clean), val_fraction, seed)
        val = NoisyLabelDataset(inputs, noisy, clean, val_idx, eval_tf)
    else:
        train_idx = torch.arange(len(clean))
        labels = splits.val_labels.long()
        val = NoisyLabelDataset(splits.val_inputs, labels, labels, torch.arange(len(labels)),
                                eval_tf)  # fmt: skip
    if dropped is not None and bool(dropped.any()):
        train_idx = train_idx[~dropped[train_idx]]
        if splits.val_inputs is None or num_folds:
            val = NoisyLabelDataset(inputs, noisy, clean, val_idx[~dropped[val_idx]], eval_tf)
    test = None
    if splits.test_inputs is not None:
        labels = splits.test_labels.long()
        test = NoisyLabelDataset(splits.test_inputs, labels, labels, torch.arange(len(labels)),
                                 eval_tf)  # fmt: skip
    val_ids = splits.train_ids if splits.val_inputs is None or num_folds else splits.val_ids
    return PoolSplits(
        NoisyLabelDataset(inputs, noisy, clean, train_idx, train_tf), val, test,
        {"train": splits.train_ids, "val": val_ids, "test": splits.test_ids},
    )  # fmt: skip


def describe_splits(
    train: NoisyLabelDataset, val: NoisyLabelDataset, test: NoisyLabelDataset | None, held_out: str
) -> str:
    """``(train 1293, noisy val 144, clean test 360)``; ``held_out`` names a k-fold run's
    validation fold."""
    kind = "clean" if val.noisy_labels is val.clean_labels else "noisy"
    if held_out:
        kind = f"{held_out}noisy"
    tested = f"clean test {len(test)}" if test is not None else "no test set"
    return f"(train {len(train)}, {kind} val {len(val)}, {tested})"
