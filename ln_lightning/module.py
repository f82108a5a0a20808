"""The LightningModule: a backbone, the heads its loss asks for, and noise-aware metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

from ln_lightning import outputs, resume
from ln_lightning.backbones import build_backbone, feature_dim
from ln_lightning.data.dataset import unpack_batch
from ln_lightning.heads import LinearHeads
from ln_lightning.inference import (
    ImagePredictions,
    SplitPredictions,
    predict_images,
    predict_split,
)
from ln_lightning.losses.base import LossReport, NoisyLabelLoss, TrainingContext, teacher_key
from ln_lightning.losses.logistic_normal import LogisticNormalLoss
from ln_lightning.metrics import (
    TEST,
    TRAIN,
    VAL,
    VAL_LOSS,
    BrierScore,
    NegativeLogLikelihood,
    NoiseSplitAccuracy,
    metric_name,
)
from ln_lightning.resume.lightning import (
    attached_trainer,
    hyperparameters_from_cli,
    hyperparameters_from_file,
    module_from_checkpoint,
)


def check_checkpoint_heads(state_dict: dict[str, Tensor], module: NoisyLabelClassifier) -> None:
    """Raise ``ValueError`` when a checkpoint's heads are not those of ``module``'s loss."""
    prefix = "heads.heads."
    saved = {key[len(prefix) :].split(".")[0] for key in state_dict if key.startswith(prefix)}
    built = set(module.heads.heads)
    if saved and not saved <= built:  # (a subset: auxiliary heads dropped for export)
        raise ValueError(
            resume.wrong_loss_message(
                "the checkpoint",
                f"another loss (it has the heads {sorted(saved)})",
                f"{type(module.loss).__name__}, which builds {sorted(built)}",
            )
        )


def check_checkpoint_shapes(state_dict: dict[str, Tensor], module: nn.Module) -> None:
    """Raise ``ValueError`` naming the first weight whose shape differs between a checkpoint
    and ``module`` (another backbone, number of classes or input size), instead of the
    state-dict report of every mismatch."""
    own = module.state_dict()
    for key, value in state_dict.items():
        if key in own and hasattr(value, "shape") and value.shape != own[key].shape:
            raise ValueError(
                f"the checkpoint's weights do not fit this model: {key} is "
                f"{tuple(value.shape)} there and {tuple(own[key].shape)} here (another backbone, "
                "number of classes or input size). Use the run's config.yaml (ln-fit ... "
                "--config <run>/config.yaml), or NoisyLabelClassifier.load_from_checkpoint(path)."
            )


def non_finite_loss_message(
    module: pl.LightningModule, loss: Tensor, batch: Any, batch_idx: int
) -> str:
    """Why training stops on a NaN/inf loss: where, on which examples, and what to try."""
    trainer = attached_trainer(module)
    where = (
        f"epoch {trainer.current_epoch}, global step {trainer.global_step}, batch {batch_idx}"
        if trainer is not None
        else f"batch {batch_idx}"
    )
    inputs, _, _, index = unpack_batch(batch)
    indices = index.tolist() if index is not None else None
    bad_inputs = (
        int((~torch.isfinite(inputs)).flatten(1).any(1).sum()) if inputs.is_floating_point() else 0
    )
    last = resume.newest_checkpoint_path(trainer) if trainer is not None else ""
    return (
        f"the training loss is {loss.item()} at {where}; training stops before this step "
        "updates the weights"
        + (f", and the last checkpoint written is {last}" if last else "")
        + f". Examples of the batch (data-set indices): {indices}. "
        + (
            f"{bad_inputs} of them have NaN/inf inputs: clean the data. "
            if bad_inputs
            else "Their inputs are finite: lower the learning rate, add gradient clipping "
            "(--trainer.gradient_clip_val 1.0) or raise the loss's min_scale. "
        )
        + "Resume from the checkpoint with --ckpt_path last."
    )


def _unpicklable_hparams(init_args: dict[str, Any]) -> list[str]:
    """Arguments to leave out of ``hparams`` when the model is built in Python.

    Under LightningCLI the hyper-parameters saved are the parsed config (plain data, so
    ``load_from_checkpoint`` rebuilds everything). Built in Python, modules and callables would be
    pickled into the checkpoint, which ``torch.load(weights_only=True)`` refuses; pass them again to
    ``load_from_checkpoint`` instead.
    """
    if hyperparameters_from_cli():
        return []
    plain = (str, int, float, bool, type(None), tuple, list, dict)
    return [name for name, value in init_args.items() if not isinstance(value, plain)]


class _Network(nn.Module):
    """``backbone -> heads``, the part of the model a teacher averages (not registered on the
    model: its two parts already are)."""

    def __init__(self, backbone: nn.Module, heads: LinearHeads) -> None:
        super().__init__()
        self.backbone, self.heads = backbone, heads

    def forward(self, inputs: Tensor) -> dict[str, Tensor]:
        return self.heads(self.backbone(inputs))


def ema_teacher(network: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of ``network``'s weights, starting at its current ones.

    ``AveragedModel`` with ``get_ema_multi_avg_fn``: after each :meth:`update_parameters`
    the copy's parameters are ``decay * copy + (1 - decay) * network``. It counts the current
    weights as the first average (``n_averaged = 1``), so the first update already averages,
    as TensorFlow's ``ExponentialMovingAverage`` in SGN's reference code does. The buffers
    (batch-norm statistics) are the copy's own, updated when it runs in training mode. Its
    parameters take no gradient.
    """
    teacher = AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)
    teacher.requires_grad_(False)
    teacher.n_averaged.fill_(1)
    return teacher


class NoisyLabelClassifier(pl.LightningModule):
    """A classifier trained with any :class:`NoisyLabelLoss`; Logistic-Normal by default.

    The model is ``backbone -> features -> heads``; the heads (linear layers on the shared
    features) are whatever ``loss.head_shapes(num_classes)`` asks for, so switching the loss
    switches the heads. Predictions come from ``loss.predict_proba`` (for LN: ``S_C(mu / tau)``,
    the mean mapped back through the target's bijector, over the K real classes, Sec. 3.3).

    Logged metrics (per epoch, synchronised across DDP ranks): ``train/loss``,
    ``train/acc_noisy`` and ``train/acc_clean`` (accuracy against the observed and the true
    training labels), the memorisation curves of Fig. 4 (``train/acc_uncorrupted``,
    ``train/acc_corrupted_vs_noisy``, ``train/acc_corrupted_vs_true``; see
    :class:`~ln_lightning.metrics.NoiseSplitAccuracy`), ``val/loss``, ``val/acc_noisy``
    (accuracy on the noisy validation split, the paper's model-selection metric),
    ``val/acc_clean``, and on the clean test set ``test/acc``, ``test/loss``, ``test/nll``,
    ``test/ece`` (15 bins) and ``test/brier``. With a loss that asks for an EMA teacher
    (``loss.teacher_decay``, SGN) the model keeps one (:func:`ema_teacher`, updated after every
    optimizer step), feeds its outputs to the loss (:meth:`training_outputs`) and logs its
    accuracies beside the network's: ``val/acc_noisy_teacher``, ``val/acc_clean_teacher``,
    ``test/acc_teacher``. Predictions are always the network's.

    Args:
        backbone: A timm model name (created with ``num_classes=0``; ``import zoo`` adds the zoo's
            models) or any ``nn.Module`` mapping inputs to ``(batch, features)``.
        loss: The training loss; ``LogisticNormalLoss()`` when ``None``.
        num_classes: Number of classes ``K`` (the CLI links it from the data module).
        input_shape: Shape of one input, e.g. ``(1, 8, 8)``; sets ``in_chans`` of timm models and
            measures the feature width (the CLI links it from the data module).
        pretrained: Load timm's pretrained weights (needs internet the first time).
        pretrained_file: Load the backbone's pretrained weights from this local file instead
            (a state dict of the same timm architecture; no download). See
            :func:`ln_lightning.backbones.build_backbone`.
        backbone_kwargs: Extra keyword arguments for ``timm.create_model``.
        compile: Compile the backbone with ``torch.compile`` (``nn.Module.compile``: the
            parameters and checkpoints stay those of the plain module). The losses stay eager:
            compiling them did not pay on the CPU (docs/performance.md).
        optimizer: Callable mapping parameters to an optimiser; Adam(lr=1e-3), the paper's MNIST
            setting, by default. From the CLI: ``--model.optimizer SGD --model.optimizer.lr 0.01``.
        lr_scheduler: Optional callable mapping the optimiser to a scheduler (stepped per epoch).

    Example:
        >>> import torch
        >>> from ln_lightning import LogisticNormalLoss
        >>> model = NoisyLabelClassifier(
        ...     "small_cnn", loss=LogisticNormalLoss(), num_classes=10, input_shape=(1, 8, 8)
        ... )
        >>> sorted(model.heads.heads)  # the heads its loss asks for
        ['mean', 'scale']
        >>> probs = model.predict_proba(torch.randn(4, 1, 8, 8))
        >>> probs.shape, bool(torch.allclose(probs.sum(1), torch.ones(4)))
        (torch.Size([4, 10]), True)
    """

    def __init__(
        self,
        backbone: str | nn.Module = "small_cnn",
        loss: NoisyLabelLoss | None = None,
        num_classes: int = 10,
        input_shape: Sequence[int] | None = None,
        pretrained: bool = False,
        pretrained_file: str | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        compile: bool = False,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2; got {num_classes}.")
        objects = {"backbone": backbone, "loss": loss, "optimizer": optimizer}
        self.save_hyperparameters(
            ignore=_unpicklable_hparams({**objects, "lr_scheduler": lr_scheduler})
        )
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.loss = loss if loss is not None else LogisticNormalLoss()
        # Channels of an image (C, H, W), or the width of a vector input (D,).
        in_chans = self.input_shape[0] if self.input_shape else None
        self.backbone_name = backbone if isinstance(backbone, str) else resume.class_path(backbone)
        self.backbone = build_backbone(
            backbone,
            pretrained=pretrained,
            pretrained_file=pretrained_file,
            in_chans=in_chans,
            backbone_kwargs=backbone_kwargs,
        )
        self.loss.setup(num_classes)
        self.heads = LinearHeads(
            feature_dim(self.backbone, self.input_shape), self.loss.head_shapes(num_classes)
        )
        # The EMA teacher a loss may ask for (SGN); before compile, so the copy stays eager.
        decay = self.loss.teacher_decay
        self.teacher: AveragedModel | None = (
            ema_teacher(_Network(self.backbone, self.heads), decay) if decay is not None else None
        )
        if compile:  # after the dry run of feature_dim, which would compile for one shape
            self.backbone.compile()
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler

        def accuracy() -> MulticlassAccuracy:
            # ignore_index: clean labels are -1 where unknown (e.g. most of Clothing1M).
            return MulticlassAccuracy(num_classes=num_classes, average="micro", ignore_index=-1)

        self.train_acc_noisy, self.train_acc_clean = accuracy(), accuracy()
        self.val_acc_noisy, self.val_acc_clean = accuracy(), accuracy()
        if self.teacher is not None:  # the teacher is evaluated beside the network
            self.val_acc_noisy_teacher, self.val_acc_clean_teacher = accuracy(), accuracy()
            self.test_acc_teacher = accuracy()
        self.train_noise_split = NoiseSplitAccuracy()
        self.train_loss_mean = MeanMetric()
        # Training aggregates are saved in checkpoints, so an epoch resumed from a mid-epoch
        # checkpoint reports the same values as one never interrupted.
        for metric in self._epoch_train_metrics().values():
            metric.persistent(True)
        self.test_acc = accuracy()
        self.test_nll = NegativeLogLikelihood()
        self.test_ece = MulticlassCalibrationError(num_classes, n_bins=15, ignore_index=-1)
        self.test_brier = BrierScore()
        self._test_prefix = TEST
        self._split_predictions_cache: tuple[Any, SplitPredictions] | None = None
        self._truth_known: dict[tuple[int, str], bool] = {}  # (data module, split) -> any known
        # The data module's inference settings (classes, transform), from the checkpoint or the
        # run; what predict_images needs.
        self.data_settings: dict[str, Any] | None = None

    # ---------------------------------------------------------------- model
    def forward(self, inputs: Tensor) -> dict[str, Tensor]:
        """Head outputs (what the loss consumes) for a batch of inputs."""
        return self.heads(self.backbone(inputs))

    def predict_proba(self, inputs: Tensor) -> Tensor:
        """Class probabilities of shape ``(B, K)``."""
        return self.loss.predict_proba(self(inputs))

    def training_outputs(self, inputs: Tensor) -> dict[str, Tensor]:
        """Head outputs for the training loss: the network's, plus the EMA teacher's as
        ``teacher.<head>`` (no gradient) when the loss asks for a teacher."""
        outputs = self(inputs)
        if self.teacher is not None:
            with torch.no_grad():
                taught = self.teacher(inputs)
            outputs.update({teacher_key(name): value for name, value in taught.items()})
        return outputs

    def update_teacher(self) -> None:
        """Move the EMA teacher one step towards the current weights (after an optimizer step;
        :meth:`optimizer_step` calls it). Nothing without a teacher."""
        if self.teacher is not None:
            self.teacher.update_parameters(_Network(self.backbone, self.heads))

    def predict_images(self, images: Sequence[Any], batch_size: int = 64) -> ImagePredictions:
        """Label image files (or PIL images) with the classes and the evaluation transform of
        training, e.g. ``NoisyLabelClassifier.load_from_checkpoint(path).predict_images(
        ["a.png", "b.jpg"])``. Returns class names, probabilities, predicted names and their
        confidence (:class:`~ln_lightning.inference.ImagePredictions`).

        The settings come from the checkpoint (every ``ln-fit`` checkpoint of an
        ``ImageFolderDataModule`` run records them) or, right after ``fit``, from its data
        module. ``predict_proba`` on raw pixels skips the transform and gets it wrong.
        """
        settings = self.data_settings
        datamodule = getattr(attached_trainer(self), "datamodule", None)
        if settings is None and callable(getattr(datamodule, "inference_settings", None)):
            settings = datamodule.inference_settings()
        if settings is None:
            raise ValueError(
                "predict_images needs the classes and transform of training: load the model with "
                "NoisyLabelClassifier.load_from_checkpoint(<an ln-fit checkpoint>), or call it "
                "after trainer.fit on an ImageFolderDataModule."
            )
        return predict_images(self, images, settings, batch_size)

    def drop_auxiliary_heads(self) -> None:
        """Keep only what prediction needs (e.g. drop LN's covariance head and SGN's EMA teacher
        for export).

        Training is no longer possible afterwards; ``predict_proba`` and ``predict_step`` work.
        """
        self.heads.keep_only(self.loss.prediction_heads)
        self.teacher = None

    # ---------------------------------------------------------------- steps
    def _loss_context(self, batch_idx: int = 0) -> TrainingContext:
        datamodule = self.trainer.datamodule
        known = getattr(datamodule, "true_transition_matrix", None)
        batches = self.trainer.num_training_batches
        fraction = batch_idx / batches if 0 < batches < float("inf") else 0.0
        return TrainingContext(
            epoch=self.current_epoch,
            training_probabilities=lambda: self.split_predictions().probs,
            true_transition_matrix=known if callable(known) else lambda: None,
            elapsed_epochs=self.current_epoch + fraction,
        )

    def _report(self, report: LossReport | None) -> None:
        """Print, log and save what the loss has to tell (a loss does no I/O itself)."""
        if report is None:
            return
        if report.message:
            rank_zero_info(report.message)
        if report.metrics:
            outputs.log_metrics(self.trainer, report.metrics)
        for name, table in report.tables.items():
            outputs.write_table(self.trainer, name, table)

    def on_fit_start(self) -> None:
        self._report(self.loss.on_fit_start(self._loss_context()))

    def on_train_epoch_start(self) -> None:
        self._report(self.loss.on_train_epoch_start(self._loss_context()))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.loss.on_train_batch_start(self._loss_context(batch_idx))

    def split_predictions(self, split: str = "train", datamodule: Any = None) -> SplitPredictions:
        """The model's predictions on a whole labelled split of the data module (the training
        split by default): one pass, in evaluation mode with the evaluation transform, in a
        fixed order (:mod:`ln_lightning.inference`).

        During fit each pass is cached per training step and split, so the loss's hooks (Forward
        correction's estimate of ``T``) and every analysis callback share one.

        Args:
            split: ``train`` (default), ``val`` or ``test``.
            datamodule: The data module to read; the trainer's by default. Without one (plain
                loaders), the trainer's training loader is read as it is.
        """
        trainer = attached_trainer(self)
        datamodule = datamodule if datamodule is not None else getattr(trainer, "datamodule", None)
        key = (trainer.global_step if trainer is not None else None, id(datamodule), split)
        cached = self._split_predictions_cache
        if cached is not None and key[0] is not None and cached[0] == key:
            return cached[1]
        predictions = predict_split(self, self.split_batches(split, datamodule))
        if key[0] is not None:
            self._split_predictions_cache = (key, predictions)
        return predictions

    def split_batches(self, split: str = "train", datamodule: Any = None) -> Iterable[Any]:
        """The batches of :meth:`split_predictions`'s pass: a loader over the data module's
        split with the evaluation transform, in a fixed order (for a pass of your own, e.g.
        :func:`ln_lightning.inference.predict_batches`)."""
        trainer = attached_trainer(self)
        datamodule = datamodule if datamodule is not None else getattr(trainer, "datamodule", None)
        if callable(getattr(datamodule, "split", None)):
            dataset = datamodule.split(split, eval_transform=True)
            return DataLoader(dataset, batch_size=datamodule.batch_size, shuffle=False)
        if split == "train" and trainer is not None and trainer.train_dataloader is not None:
            return trainer.train_dataloader
        raise ValueError(
            "split_predictions() needs a NoisyLabelDataModule (trainer.fit(model, "
            "datamodule=...) or split_predictions(datamodule=...)) or a fitting trainer."
        )

    def _log_accuracies(
        self,
        stage: str,
        probs: Tensor,
        targets: Tensor,
        clean_targets: Tensor | None,
        suffix: str = "",
    ) -> None:
        """Accuracy against the observed labels and, when known, the clean ones (``suffix``
        ``_teacher``: the EMA teacher's)."""
        log = {"on_step": False, "on_epoch": True, "batch_size": len(targets)}
        if clean_targets is not None and not self._knows_clean_labels(stage):
            clean_targets = None  # no truth at all: no clean metric (it would read 0.0)
        noisy_metric = getattr(self, f"{stage}_acc_noisy{suffix}")
        noisy_metric(probs, targets)
        prog_bar = stage == VAL and not suffix
        self.log(metric_name(stage, f"acc_noisy{suffix}"), noisy_metric, prog_bar=prog_bar, **log)
        if clean_targets is not None:
            clean_metric = getattr(self, f"{stage}_acc_clean{suffix}")
            clean_metric(probs, clean_targets)
            self.log(metric_name(stage, f"acc_clean{suffix}"), clean_metric, **log)

    def _knows_clean_labels(self, split: str) -> bool:
        """Whether the data module knows any true label of ``split`` (asked once per data
        module; ``True`` without one, e.g. plain loaders)."""
        datamodule = getattr(attached_trainer(self), "datamodule", None)
        ask = getattr(datamodule, "knows_clean_labels", None)
        if not callable(ask):
            return True
        key = (id(datamodule), split)
        if key not in self._truth_known:
            self._truth_known[key] = ask(split)
        return self._truth_known[key]

    def _teacher_probs(self, inputs: Tensor) -> Tensor | None:
        """The EMA teacher's class probabilities (``None`` without a teacher)."""
        if self.teacher is None:
            return None
        return self.loss.predict_proba(self.teacher(inputs))

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        inputs, targets, clean_targets, _ = unpack_batch(batch)
        outputs = self.training_outputs(inputs)
        loss = self.loss(outputs, targets)
        finite = bool(torch.isfinite(loss))
        if attached_trainer(self) is not None and self.trainer.world_size > 1:  # every rank stops
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if not finite:
            raise FloatingPointError(non_finite_loss_message(self, loss, batch, batch_idx))
        # A metric (summed over DDP ranks), not a logged tensor: it survives a mid-epoch resume.
        self.train_loss_mean.update(loss.detach(), weight=len(targets))
        self.log(
            metric_name(TRAIN, "loss"), self.train_loss_mean, on_epoch=True, on_step=False,
            prog_bar=True,
        )  # fmt: skip
        with torch.no_grad():
            probs = self.loss.predict_proba(outputs)
            self._log_accuracies("train", probs, targets, clean_targets)
            if clean_targets is not None:
                self.train_noise_split.update(probs, targets, clean_targets)
        return loss

    def on_train_epoch_end(self) -> None:
        # Memorisation curves (Fig. 4): a dict-valued metric, so computed (and synced) here.
        if self.train_noise_split.update_called:
            values = self.train_noise_split.compute()
            # compute() already summed the counts of all ranks; sync_dist only averages equals.
            self.log_dict(
                {metric_name(TRAIN, k): v for k, v in values.items() if not v.isnan()},
                sync_dist=True,
            )
        self.train_noise_split.reset()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        inputs, targets, clean_targets, _ = unpack_batch(batch)
        outputs = self(inputs)
        loss = self.loss(outputs, targets)
        self.log(
            VAL_LOSS, loss, on_step=False, on_epoch=True, batch_size=len(targets), sync_dist=True
        )
        self._log_accuracies("val", self.loss.predict_proba(outputs), targets, clean_targets)
        teacher_probs = self._teacher_probs(inputs)
        if teacher_probs is not None:
            self._log_accuracies("val", teacher_probs, targets, clean_targets, "_teacher")

    @contextlib.contextmanager
    def test_metrics_prefix(self, prefix: str) -> Iterator[None]:
        """Log the test metrics as ``<prefix>/acc`` ... instead of ``test/acc`` ... meanwhile.

        ``ln-fit`` evaluates the checkpoint selected by noisy validation accuracy under
        :data:`~ln_lightning.metrics.SELECTED_TEST` beside the final weights' ``test/*``.
        """
        previous, self._test_prefix = self._test_prefix, prefix
        try:
            yield
        finally:
            self._test_prefix = previous

    def test_step(self, batch: Any, batch_idx: int) -> None:
        inputs, targets, clean_targets, _ = unpack_batch(batch)
        labels = clean_targets if clean_targets is not None else targets
        outputs = self(inputs)
        probs = self.loss.predict_proba(outputs)
        for metric in (self.test_acc, self.test_nll, self.test_ece, self.test_brier):
            metric.update(probs, labels)
        prefix = self._test_prefix
        self.log_dict(
            {
                metric_name(prefix, "acc"): self.test_acc,
                metric_name(prefix, "nll"): self.test_nll,
                metric_name(prefix, "ece"): self.test_ece,
                metric_name(prefix, "brier"): self.test_brier,
            },
            on_epoch=True,
            batch_size=len(labels),
        )
        self.log(
            metric_name(prefix, "loss"), self.loss(outputs, labels), on_epoch=True,
            batch_size=len(labels), sync_dist=True,
        )  # fmt: skip
        teacher_probs = self._teacher_probs(inputs)
        if teacher_probs is not None:
            self.test_acc_teacher(teacher_probs, labels)
            self.log(
                metric_name(prefix, "acc_teacher"), self.test_acc_teacher, on_epoch=True,
                batch_size=len(labels),
            )  # fmt: skip

    def predict_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Tensor]:
        """The prediction of a batch, as a dict of tensors with one row per example.

        ``probs`` (``(B, K)`` class probabilities) always; for the library's batches also
        ``index`` (the example's position in its data set), ``given`` (its label) and
        ``clean`` (its true label, ``-1`` where unknown); ``uncertainty`` when the loss has one
        (LN: the largest standard deviation of the predicted Gaussian).
        :class:`~ln_lightning.callbacks.PredictionWriter` writes them to a file.
        """
        sample = None if isinstance(batch, Tensor) else unpack_batch(batch)
        outputs = self(batch if sample is None else sample.input)
        prediction = {"probs": self.loss.predict_proba(outputs)}
        uncertainty = self.loss.uncertainty(outputs)
        if uncertainty is not None:
            prediction["uncertainty"] = uncertainty
        if sample is not None and sample.index is not None:
            prediction.update(index=sample.index, given=sample.target, clean=sample.clean_target)
        return prediction

    # ---------------------------------------------------------------- checkpoints
    def _epoch_train_metrics(self) -> dict[str, Metric]:
        """The metrics accumulated over a training epoch, by attribute name."""
        names = ("train_loss_mean", "train_acc_noisy", "train_acc_clean", "train_noise_split")
        return {name: getattr(self, name) for name in names}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trainer = attached_trainer(self)
        resume.save_epoch_metrics(checkpoint, self._epoch_train_metrics(), trainer)
        datamodule = trainer.datamodule if trainer is not None else None
        checkpoint[resume.RECORD_KEY] = resume.run_record(self, datamodule)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record = checkpoint.get(resume.RECORD_KEY) or {}
        self.data_settings = (record.get("data") or {}).get("init_args") or None
        source = getattr(attached_trainer(self), "ckpt_path", None)
        resume.check_loaded_record(checkpoint, self, str(source) if source else "the checkpoint")
        check_checkpoint_heads(checkpoint["state_dict"], self)
        check_checkpoint_shapes(checkpoint["state_dict"], self)
        resume.restore_epoch_metrics(
            checkpoint, list(self._epoch_train_metrics()), self.global_rank
        )

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | Path,
        map_location: Any = None,
        hparams_file: str | Path | None = None,
        strict: bool | None = None,
        weights_only: bool | None = None,
        **kwargs: Any,
    ) -> NoisyLabelClassifier:
        """Lightning's ``load_from_checkpoint``, reading the file safely and rebuilding the loss
        from the checkpoint's record.

        The file is read once, with ``weights_only=True`` (plain data only, no code runs)
        unless ``weights_only=False`` is given for a file you trust; an unreadable file raises
        :class:`~ln_lightning.resume.CheckpointError`, one line naming it and what is wrong.
        A model built by ``ln-fit`` saves its whole config, loss included; one built in Python
        cannot pickle its loss into the hyper-parameters, so its loss is rebuilt from the run
        record every checkpoint carries (class path and arguments). Pass ``loss=...`` to
        override.
        """
        checkpoint = resume.read_checkpoint(checkpoint_path, map_location, weights_only)
        if hparams_file is not None:  # replaces the saved ones, as in Lightning
            checkpoint[cls.CHECKPOINT_HYPER_PARAMS_KEY] = hyperparameters_from_file(hparams_file)
        if "loss" not in kwargs:
            loss = resume.loss_from_checkpoint(checkpoint)
            if loss is not None:
                kwargs["loss"] = loss
        return module_from_checkpoint(cls, checkpoint, strict, **kwargs)

    # ---------------------------------------------------------------- optimisation
    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """Lightning's step, then the EMA teacher's update (before any callback sees the step,
        so a checkpoint written at this step holds the updated teacher)."""
        super().optimizer_step(*args, **kwargs)
        self.update_teacher()

    def trained_parameters(self) -> list[nn.Parameter]:
        """The parameters the optimiser updates: all but the EMA teacher's."""
        teacher = {id(p) for p in self.teacher.parameters()} if self.teacher is not None else set()
        return [p for p in self.parameters() if id(p) not in teacher]

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.trained_parameters())
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "monitor": VAL_LOSS},
        }
