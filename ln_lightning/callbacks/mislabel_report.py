"""After training: which labels look wrong (``label_issues.csv``, ``label_issues.html``) and
cleaned labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from ln_lightning import label_issues
from ln_lightning.callbacks._common import require_datamodule
from ln_lightning.files import WriteError, check_writable
from ln_lightning.label_issues import gallery, report
from ln_lightning.labels import UNKNOWN
from ln_lightning.metrics import VAL, metric_name
from ln_lightning.outputs import log_metrics, run_dir

__all__ = ["MislabelReport"]


class MislabelReport(Callback):
    """After training, find the labelled examples whose label looks wrong, and clean the labels.

    Scores every labelled example of the training pool (the training and the validation split;
    with k-fold data, ``--data.num_folds``, only the held-out fold, scored out of sample) and
    writes into the run directory:

    * ``label_issues.csv``: one row per example, most suspicious first: ``rank``, ``index``,
      ``path`` (for files), ``split``, ``given_label``, ``suggested_label``, ``score``,
      ``is_issue``, ``clean_label`` and ``is_noisy`` (where the truth is known), ``caution``
      and the class probabilities (:func:`ln_lightning.label_issues.write_label_issues`);
    * ``cleaned_labels.csv``: the labels with the flagged ones removed (or relabelled), in the
      format a new run reads (``--data.labels_file`` for files, ``--data.noisy_labels_file``
      otherwise), for retraining or for a person to review;
    * ``relabeled_labels.csv``: the labels with the model as the reviewer: a flagged example
      whose suggested class has at least ``relabel_confidence`` probability takes it, the other
      flagged ones are left out (``doubtful="drop"``) or keep their label (``"keep"``); in the
      format of the page's ``reviewed_labels.csv``, which a new run reads as it is
      (:func:`ln_lightning.label_issues.write_relabeled_labels`);
    * ``near_duplicates.csv``: pairs of examples whose backbone features and input thumbnails
      are near-identical (``duplicate_similarity``) but whose labels differ, most similar
      first, also shown side by side on the page (:mod:`ln_lightning.label_issues.duplicates`);
    * ``label_issues.html``: the flagged examples with their pictures, most suspicious first,
      filters by given and suggested class, a per-class summary and the caution, in one
      self-contained page (:func:`ln_lightning.label_issues.gallery.write_gallery`), and
      ``label_issues.png``, a contact sheet of the first ``contact_sheet`` of them;
    * ``pred_probs.npy`` and ``labels.npy``: the predicted probabilities and the given labels
      in the order of ``index``, for cleanlab (``find_label_issues(labels, pred_probs)``,
      ``Datalab``; :func:`ln_lightning.label_issues.write_cleanlab_inputs`), and
      ``classes.txt``, the class names of its columns;

    and prints ``N of M labels look wrong`` with the thresholds used, followed by ``Do not trust
    these flags yet: ...`` when the model is near chance on the noisy validation split, was
    still improving at the last epoch, or a class has too few examples
    (:func:`ln_lightning.label_issues.cautions`; also the ``caution`` column). Which labels are
    flagged is decided by confident learning on the predicted probabilities (per-class
    thresholds, no tuning; :mod:`ln_lightning.label_issues`); ``score`` only orders them.
    Where clean labels are known (synthetic noise, CIFAR-N, a ``clean_label`` column) it logs
    how well the score ranks the corrupted labels (``mislabel/auroc``,
    ``mislabel/average_precision``, ``mislabel/precision_at_n``) and how right the flags are
    (``mislabel/flag_precision``, ``mislabel/flag_recall``). With a ``WandbLogger`` the
    ``top_k`` most suspicious flagged examples are logged as a table (``mislabel/flagged``) with
    their images and labels, and their images with ``given -> suggested (score)`` captions as
    ``mislabel/flagged_images`` (W&B keeps no images inside tables of offline runs, its issue
    #4611). ``ln-fit`` adds this callback to every run.

    Large label sets: the pass keeps of each example only ``p(given label)`` and its most
    probable classes, batch by batch (memory O(N k) instead of O(N K)). Up to ``prob_columns``
    classes it keeps them all (the verdict is exact and the CSV has a ``p_<class>`` column per
    class); beyond, the ``top_classes`` most probable (the CSV then has ``p_given``,
    ``top1_label``, ``top1_p``, ...; the summary says for how many rows a class beyond them
    could have changed the verdict), and ``pred_probs.npy`` (N x K numbers: 87 GB in float32
    at a million images and K = 21,843) is written only when asked for, ``float16`` halving
    it, row by row as the pass goes (docs/performance.md has the memory measured).

    A network that has memorised the noise is confident about the wrong labels too, so a score
    taken only at the end of training finds fewer of them (CE on digits: AUROC 0.64-0.70 at the
    end vs 0.85-0.88 averaged over training; docs/analysis.md). ``every_n_epochs`` averages the
    score over the epochs (one extra inference pass each time).

    Args:
        score: The ranking score, see :func:`ln_lightning.analysis.mislabel_scores` (``auto``:
            ``1 - p(given label)``, the best measured for LN and CE alike).
        every_n_epochs: Also score every n-th epoch and rank by the mean; ``0``: the end only.
        top_k: Rows of the W&B table (0: none).
        cleaning: ``remove`` (default) leaves flagged examples out of ``cleaned_labels.csv``;
            ``relabel`` gives them the suggested label (data without files: always relabel).
        relabel_confidence: The probability of its suggested class at which a flagged example
            is relabelled in ``relabeled_labels.csv``, in (0, 1].
        doubtful: What ``relabeled_labels.csv`` does with the flagged examples below it:
            ``drop`` or ``keep``.
        duplicate_similarity: Two labelled examples whose signatures (backbone features and
            input thumbnail, :func:`ln_lightning.label_issues.signature`) have at least this
            cosine similarity and whose labels differ go to ``near_duplicates.csv`` and the
            page; ``None``: no search (it costs one more inference pass).
        duplicate_neighbours: The most similar examples looked at per example.
        file_name: Name of the label-issue file inside the run directory (the page and the
            sheet take its stem).
        gallery: Write ``label_issues.html``.
        contact_sheet: Examples in ``label_issues.png`` (0: no sheet).
        prob_columns: Up to this many classes every probability is kept and written as a
            column; beyond, only the ``top_classes`` most probable of each example.
        top_classes: Classes kept per example beyond ``prob_columns`` classes.
        pred_probs: ``pred_probs.npy`` as ``float32``, ``float16`` or ``none``; ``auto``:
            ``float32`` up to ``prob_columns`` classes, else none.

    Example:
        >>> import tempfile, lightning.pytorch as pl
        >>> from pathlib import Path
        >>> from ln_lightning import DigitsDataModule, NoisyLabelClassifier
        >>> folder = Path(tempfile.mkdtemp())
        >>> trainer = pl.Trainer(
        ...     max_epochs=1, limit_train_batches=2, limit_val_batches=1, default_root_dir=folder,
        ...     logger=False, enable_checkpointing=False, enable_progress_bar=False,
        ...     enable_model_summary=False, callbacks=[MislabelReport(top_k=5)],
        ... )
        >>> data = DigitsDataModule(noise_type="symmetric", noise_rate=0.4)
        >>> trainer.fit(NoisyLabelClassifier(input_shape=(1, 8, 8)), datamodule=data)
        >>> sorted(path.name for path in folder.glob("*.*"))  # doctest: +NORMALIZE_WHITESPACE
        ['classes.txt', 'cleaned_labels.csv', 'label_issues.csv', 'label_issues.html',
         'label_issues.png', 'labels.npy', 'near_duplicates.csv', 'pred_probs.npy',
         'relabeled_labels.csv']
    """

    def __init__(
        self,
        score: str = "auto",
        every_n_epochs: int = 0,
        top_k: int = 50,
        cleaning: str = "remove",
        relabel_confidence: float = 0.5,
        doubtful: str = "drop",
        duplicate_similarity: float | None = 0.999,
        duplicate_neighbours: int = 5,
        file_name: str = "label_issues.csv",
        gallery: bool = True,
        contact_sheet: int = 24,
        prob_columns: int = label_issues.PROB_COLUMNS,
        top_classes: int = label_issues.TOP_CLASSES,
        pred_probs: str = "auto",
    ) -> None:
        if score not in label_issues.SCORES:
            raise ValueError(f"score must be one of {label_issues.SCORES}; got {score!r}.")
        if min(top_k, every_n_epochs, contact_sheet, prob_columns) < 0 or top_classes < 1:
            raise ValueError(
                "top_k, every_n_epochs, contact_sheet and prob_columns must be >= 0 and "
                f"top_classes >= 1; got {top_k}, {every_n_epochs}, {contact_sheet}, "
                f"{prob_columns} and {top_classes}."
            )
        if cleaning not in label_issues.CLEANING:
            raise ValueError(f"cleaning must be one of {label_issues.CLEANING}; got {cleaning!r}.")
        if pred_probs not in label_issues.PRED_PROBS:
            raise ValueError(
                f"pred_probs must be one of {label_issues.PRED_PROBS}; got {pred_probs!r}."
            )
        self.score, self.every_n_epochs, self.top_k = score, every_n_epochs, top_k
        self.cleaning, self.file_name = cleaning, file_name
        self.relabeling = label_issues.Relabeling(relabel_confidence, doubtful)
        self.duplicates = (
            None
            if duplicate_similarity is None
            else label_issues.DuplicateSearch(duplicate_similarity, duplicate_neighbours)
        )
        self.gallery, self.contact_sheet = gallery, contact_sheet
        self.prob_columns, self.top_classes, self.pred_probs = prob_columns, top_classes, pred_probs
        self.metrics: dict[str, float] = {}
        self.issues: label_issues.LabelIssues | None = None
        self._history: list[torch.Tensor] = []
        self.val_accuracy: list[float] = []  # val/acc_noisy after each validation, for cautions

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"val_accuracy": list(self.val_accuracy)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.val_accuracy = list(state_dict.get("val_accuracy", []))

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Before training: a run folder that cannot be written fails now, not after the
        last epoch."""
        if stage == "fit" and trainer.is_global_zero:
            check_writable(run_dir(trainer), "label_issues.csv and the other label-issue files")

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(metric_name(VAL, "acc_noisy"))
        if value is not None and not trainer.sanity_checking:
            self.val_accuracy.append(float(value))

    @staticmethod
    def _splits(datamodule: Any) -> tuple[str, ...]:
        """The labelled splits of the training pool: the held-out fold of a k-fold run, else
        the training split and the validation split when it was cut from the pool."""
        if datamodule.num_folds:
            return ("val",)
        from_pool = datamodule.split("val").inputs is datamodule.split("train").inputs
        return ("train", "val") if from_pool else ("train",)

    def _pass(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, pred_probs: Path | None = None
    ) -> tuple[Any, label_issues.IssueTable]:
        """One inference pass over the scored splits (:func:`report.score_splits`), keeping of
        each example its score, uncertainty and top classes (every class up to
        ``prob_columns`` classes), and writing ``pred_probs`` rows as they come."""
        datamodule = require_datamodule(trainer, self)
        splits = self._splits(datamodule)
        num_classes = int(datamodule.num_classes)
        keep = num_classes if num_classes <= self.prob_columns else self.top_classes
        dtype = self._pred_probs_dtype(num_classes)
        file = None
        if pred_probs is not None and dtype is not None:
            indices = torch.cat([datamodule.split(name).indices for name in splits])
            file = label_issues.PredProbsFile(pred_probs, indices, num_classes, dtype)
        table = report.score_splits(pl_module, datamodule, splits, keep, self.score, file)
        return datamodule, table

    def _pred_probs_dtype(self, num_classes: int) -> str | None:
        """What ``pred_probs.npy`` is written as (``None``: not written)."""
        if self.pred_probs == "auto":
            return "float32" if num_classes <= self.prob_columns else None
        return None if self.pred_probs == "none" else self.pred_probs

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if self.every_n_epochs and epoch % self.every_n_epochs == 0 and trainer.is_global_zero:
            self._history.append(self._pass(trainer, pl_module)[1].score)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        try:
            self._report(trainer, pl_module)
        except WriteError as error:  # a full disk: say that the training itself is kept
            raise WriteError(
                f"{error} The trained model is in the run's checkpoints: once that is fixed, "
                "ln-fit fit ... --ckpt_path last writes these files again without training."
            ) from error

    def _report(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The pass, the files, the summary line, the logged detection metrics, W&B's rows."""
        folder = run_dir(trainer)
        datamodule, table = self._pass(trainer, pl_module, folder / "pred_probs.npy")
        scores = table.score
        if self._history:
            scores = table.score = torch.stack([*self._history, scores]).mean(0)
        names = list(datamodule.class_names or [str(k) for k in range(table.probs.num_classes)])
        overall, by_class = label_issues.cautions(table.given, names, self.val_accuracy)
        table.caution = label_issues.caution_rows(table.given, overall, by_class)
        images = report.image_source(datamodule, table)
        duplicates = None
        if self.duplicates is not None and len(table.index) > 1:
            duplicates = report.find_near_duplicates(pl_module, datamodule, table, self.duplicates)
        written = report.write_report(
            table, names, folder, images=images,
            title=f"Labels that look wrong: {type(datamodule).__name__}",
            file_name=self.file_name, page=self.gallery, contact_sheet=self.contact_sheet,
            cleaned=not datamodule.num_folds,  # a fold alone does not cover the pool
            cleaning=self.cleaning, relabeling=self.relabeling, duplicates=duplicates,
        )  # fmt: skip
        self.issues = written.issues
        rank_zero_info(written.message)
        self.metrics = report.detection(table, self.issues, scores)
        if self.metrics:
            log_metrics(trainer, self.metrics)
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if wandb_loggers and self.top_k:
            columns, rows, shown = self._wandb_rows(table, names, images)
            for logger in wandb_loggers:
                logger.log_table(key="mislabel/flagged", columns=columns, data=rows)
                if shown:  # offline runs drop the images inside tables (wandb issue #4611)
                    logger.log_image(
                        key="mislabel/flagged_images", images=[image for image, _ in shown],
                        caption=[caption for _, caption in shown], step=trainer.global_step,
                    )  # fmt: skip

    def _wandb_rows(
        self, table: label_issues.IssueTable, names: list, images: gallery.ImageSource
    ) -> tuple[list[str], list[list[Any]], list[tuple[Any, str]]]:
        """The W&B table of the ``top_k`` flagged rows, and their pictures with captions."""
        import wandb

        columns = ["index", "input", "given_label", "suggested_label", "score", "clean_label"]
        rows, shown = [], []
        for i in gallery.flagged_order(table, self.issues)[: self.top_k]:
            picture = images(i)
            picture = str(picture) if isinstance(picture, Path) else picture
            given, suggested = names[int(table.given[i])], names[int(self.issues.suggested[i])]
            clean = int(table.clean[i])
            rows.append(
                [
                    int(table.index[i]), wandb.Image(picture) if picture is not None else None,
                    given, suggested, float(table.score[i]),
                    names[clean] if clean != UNKNOWN else "",
                ]
            )  # fmt: skip
            if picture is not None:
                shown.append((picture, f"{given} -> {suggested} ({float(table.score[i]):.2f})"))
        return columns, rows, shown
