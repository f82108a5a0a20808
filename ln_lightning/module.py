"""The LightningModule: thin Lightning hooks over the parts in :mod:`ln_lightning.model`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from typing_extensions import override

from ln_lightning import resume
from ln_lightning.data.contract import check_data_contract
from ln_lightning.data.dataset import unpack_batch
from ln_lightning.deprecation import moved_names
from ln_lightning.inference import ImagePredictions, SplitPredictions
from ln_lightning.lightning_internals import attached_trainer, is_fitting
from ln_lightning.losses.base import NoisyLabelLoss
from ln_lightning.losses.logistic_normal import LogisticNormalLoss
from ln_lightning.metrics import TRAIN, VAL_LOSS
from ln_lightning.model import checkpoints
from ln_lightning.model.method import LossMethod, TrainingMethod, step_schedulers
from ln_lightning.model.network import Network
from ln_lightning.model.passes import SplitPasses, label_images
from ln_lightning.model.stage_metrics import TestMetrics, TrainMetrics, ValMetrics
from ln_lightning.model.step_checks import check_finite_loss
from ln_lightning.strategies.base import TrainingStrategy


class NoisyLabelClassifier(pl.LightningModule):
    """A classifier trained with any :class:`NoisyLabelLoss`; Logistic-Normal by default.

    Thin Lightning hooks over its parts (:mod:`ln_lightning.model`): the network (backbone,
    the heads its loss asks for, an EMA teacher when the loss asks for one, SGN), the method
    that trains it (a loss), the metrics of each stage and the checkpoint's record. Predictions
    come from ``loss.predict_proba`` (for LN: ``S_C(mu / tau)``, Sec. 3.3), always the
    network's: with ``weight_average_decay``, in evaluation mode, its weights' moving average.
    Logged per epoch, synchronised across DDP ranks: ``train/loss``,
    ``train/acc_noisy``, ``train/acc_clean``, the memorisation curves of Fig. 4, ``val/loss``,
    ``val/acc_noisy`` (the paper's model-selection metric), ``val/acc_noisy_after_warmup`` (the
    same, NaN while the method warms up with another loss: what the shipped configs'
    ``ModelCheckpoint`` monitors), ``val/acc_clean``, and ``test/acc``,
    ``test/nll``, ``test/ece``, ``test/brier``, ``test/loss`` (and the teacher's accuracies;
    :mod:`ln_lightning.model.stage_metrics`).

    Args:
        backbone: A timm model name (created with ``num_classes=0``; ``import zoo`` adds the zoo's
            models) or any ``nn.Module`` mapping inputs to ``(batch, features)``.
        loss: The training loss; ``LogisticNormalLoss()`` when ``None``.
        strategy: A training strategy (:mod:`ln_lightning.strategies`: ELR, SOP, Co-teaching)
            that trains the network with this loss when a loss alone is not enough; ``None``:
            the loss trains it. From the CLI: ``--model.strategy ELR`` or
            ``--config zoo/configs/strategies/elr.yaml`` (not Lightning's
            ``--trainer.strategy``, which is how the run is distributed).
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
        weight_average_decay: Evaluate and predict with an exponential moving average of the
            network's weights (and batch-norm statistics), moved after every optimiser step
            with this decay, ramped up from the start of the run (``min(decay, (1 + n) /
            (10 + n))`` after ``n`` steps; :func:`~ln_lightning.model.network.weight_average`).
            In evaluation mode (validation, so checkpoint selection; test; prediction; the
            passes over the training split, so Forward correction's estimate of ``T`` and the
            strategies' selections) the network runs the average; in training mode its own
            weights; exports keep the average. A strategy's peer network keeps its own.
            ``None`` (default): evaluate with the weights as they are. The own-data configs
            set 0.998 (docs/results.md).

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
        strategy: TrainingStrategy | None = None,
        num_classes: int = 10,
        input_shape: Sequence[int] | None = None,
        pretrained: bool = False,
        pretrained_file: str | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        compile: bool = False,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        weight_average_decay: float | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2; got {num_classes}.")
        objects = {"backbone": backbone, "loss": loss, "strategy": strategy,
                   "optimizer": optimizer}  # fmt: skip
        self.save_hyperparameters(
            ignore=checkpoints.unpicklable_hyperparameters(
                {**objects, "lr_scheduler": lr_scheduler}
            )
        )
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.loss = loss if loss is not None else LogisticNormalLoss()
        self.backbone_name = backbone if isinstance(backbone, str) else resume.class_path(backbone)
        options = {"pretrained": pretrained, "pretrained_file": pretrained_file,
                   "backbone_kwargs": backbone_kwargs}  # fmt: skip
        self._network_settings = (backbone, options, compile, weight_average_decay)
        self.network = Network(
            backbone,
            self.loss,
            num_classes,
            self.input_shape,
            options,
            compile,
            weight_average_decay=weight_average_decay,
        )
        self.strategy = strategy
        if strategy is not None:
            strategy.attach(self)
        self.method: TrainingMethod = strategy if strategy is not None else LossMethod(self.loss)
        self.automatic_optimization = not self.method.manual_optimization
        self.optimizer_factory, self.lr_scheduler_factory = optimizer, lr_scheduler
        teacher = self.network.teacher is not None
        self.train_metrics = TrainMetrics(num_classes)
        self.val_metrics = ValMetrics(num_classes, teacher)
        self.test_metrics = TestMetrics(num_classes, teacher)
        self.passes = SplitPasses()
        self._truth_known: dict[tuple[int, str], bool] = {}  # (data module, split) -> any known
        # The data module's inference settings (classes, transform), from the checkpoint; what
        # predict_images needs.
        self.data_settings: dict[str, Any] | None = None

    # ---------------------------------------------------------------- the network
    @property
    def backbone(self) -> nn.Module:
        return self.network.backbone

    @property
    def heads(self) -> nn.Module:
        return self.network.heads

    @property
    def teacher(self) -> nn.Module | None:
        return self.network.teacher

    def build_network(self) -> Network:
        """Another network like the model's (the same backbone, heads and options, its own
        initial weights): what a strategy with a peer network builds."""
        backbone, options, compile, decay = self._network_settings
        return Network(
            backbone,
            self.loss,
            self.num_classes,
            self.input_shape,
            options,
            compile,
            fresh=True,
            weight_average_decay=decay,
        )

    def forward(self, inputs: Tensor) -> dict[str, Tensor]:
        """Head outputs (what the loss consumes) for a batch of inputs."""
        return self.method.outputs(self, inputs)

    def training_outputs(self, inputs: Tensor) -> dict[str, Tensor]:
        """Head outputs for the training loss: the network's, plus the EMA teacher's as
        ``teacher.<head>`` (no gradient) when the loss asks for a teacher."""
        return self.network.training_outputs(inputs)

    def update_teacher(self) -> None:
        """Move the EMA teacher and the evaluating average one step towards the current weights
        (:meth:`optimizer_step` does it after every step); nothing without them."""
        self.network.update_averages()

    def predict_proba(self, inputs: Tensor) -> Tensor:
        """Class probabilities of shape ``(B, K)``."""
        return self.loss.predict_proba(self(inputs))

    def predict_images(self, images: Sequence[Any], batch_size: int = 64) -> ImagePredictions:
        """Label image files (or PIL images) with the classes and the evaluation transform of
        training, e.g. ``NoisyLabelClassifier.load_from_checkpoint(path).predict_images(
        ["a.png", "b.jpg"])``; ``predict_proba`` on raw pixels skips the transform."""
        return label_images(self, images, self.data_settings, batch_size)

    def drop_auxiliary_heads(self) -> None:
        """Keep only what prediction needs (drop LN's covariance head and SGN's EMA teacher,
        for export); training is no longer possible afterwards."""
        self.network.keep_only(self.loss.prediction_heads)

    def split_predictions(self, split: str = "train", datamodule: Any = None) -> SplitPredictions:
        """The predictions on a whole labelled split (the training split by default), in
        evaluation mode with the evaluation transform, cached per training step
        (:class:`~ln_lightning.model.passes.SplitPasses`)."""
        return self.passes.predictions(self, split, datamodule)

    def split_batches(self, split: str = "train", datamodule: Any = None) -> Iterable[Any]:
        """The batches of :meth:`split_predictions`'s pass."""
        return self.passes.batches(self, split, datamodule)

    # ---------------------------------------------------------------- hooks
    @override
    def setup(self, stage: str) -> None:
        datamodule = getattr(attached_trainer(self), "datamodule", None)
        if datamodule is not None:
            check_data_contract(datamodule)
        self.method.setup(self)

    @override
    def on_fit_start(self) -> None:
        self.method.on_fit_start(self)

    @override
    def on_train_epoch_start(self) -> None:
        self.method.on_train_epoch_start(self)

    @override
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.method.on_train_batch_start(self, batch_idx)

    def _clean_targets(self, split: str, clean_targets: Tensor | None) -> Tensor | None:
        """``clean_targets``, or ``None`` when the data module knows no true label of
        ``split`` (asked once per data module)."""
        datamodule = getattr(attached_trainer(self), "datamodule", None)
        if clean_targets is None or datamodule is None:
            return clean_targets
        key = (id(datamodule), split)
        if key not in self._truth_known:
            self._truth_known[key] = datamodule.knows_clean_labels(split)
        return clean_targets if self._truth_known[key] else None

    @override
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        sample = unpack_batch(batch)
        loss, outputs = self.method.training_step(self, sample, batch_idx)
        check_finite_loss(self, loss, batch, batch_idx)
        if not self.automatic_optimization:
            self.method.optimise(self, loss)
        with torch.no_grad():
            probs = self.loss.predict_proba(outputs)
        self.train_metrics.update(
            loss, probs, sample.target, self._clean_targets(TRAIN, sample.clean_target)
        )
        return loss

    @override
    def on_train_epoch_end(self) -> None:
        self.train_metrics.log_epoch_end(self)
        if not self.automatic_optimization:  # Lightning steps the schedulers of automatic ones
            step_schedulers(self, self.trainer.callback_metrics, VAL_LOSS)

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        inputs, targets, clean_targets, _ = unpack_batch(batch)
        outputs = self(inputs)
        self.val_metrics.log_step(self, self.loss(outputs, targets), targets)
        clean_targets = self._clean_targets("val", clean_targets)
        accuracies = self.val_metrics.accuracies
        accuracies.log(self, self.loss.predict_proba(outputs), targets, clean_targets)
        taught = self.network.teacher_outputs(inputs)
        if taught is not None:
            accuracies.log(self, self.loss.predict_proba(taught), targets, clean_targets, True)

    @override
    def on_validation_epoch_end(self) -> None:
        self.val_metrics.log_epoch_end(self, self.method.selectable(self))
        accuracy = self.val_metrics.noisy_accuracy()
        trainer = attached_trainer(self)
        if accuracy is not None and is_fitting(trainer) and not trainer.sanity_checking:
            self.method.on_validation_epoch_end(self, accuracy)

    @contextlib.contextmanager
    def test_metrics_prefix(self, prefix: str) -> Iterator[None]:
        """Log the test metrics as ``<prefix>/acc`` ... instead of ``test/acc`` ... meanwhile
        (``ln-fit`` logs the checkpoint selected by noisy validation accuracy as
        ``test_selected/*``)."""
        previous, self.test_metrics.prefix = self.test_metrics.prefix, prefix
        try:
            yield
        finally:
            self.test_metrics.prefix = previous

    @override
    def test_step(self, batch: Any, batch_idx: int) -> None:
        inputs, targets, clean_targets, _ = unpack_batch(batch)
        labels = clean_targets if clean_targets is not None else targets
        outputs, taught = self(inputs), self.network.teacher_outputs(inputs)
        self.test_metrics.log_step(
            self, self.loss.predict_proba(outputs), labels, self.loss(outputs, labels),
            self.loss.predict_proba(taught) if taught is not None else None,
        )  # fmt: skip

    @override
    def predict_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Tensor]:
        """``probs`` ``(B, K)``; ``index``, ``given`` and ``clean`` (``-1`` where unknown) for
        the library's batches; ``uncertainty`` when the loss has one (what
        :class:`~ln_lightning.callbacks.PredictionWriter` writes)."""
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
    def _epoch_metrics(self) -> dict[str, Any]:
        return self.train_metrics.epoch_metrics(prefix="train_metrics.")

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoints.on_save(self, checkpoint, self._epoch_metrics())

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.data_settings = checkpoints.on_load(self, checkpoint, list(self._epoch_metrics()))

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
        """Lightning's ``load_from_checkpoint``, reading the file once and safely
        (``weights_only=True`` unless ``weights_only=False`` is given for a file you trust; an
        unreadable file raises :class:`~ln_lightning.resume.CheckpointError`, one line), and
        rebuilding the loss from the checkpoint's record (pass ``loss=...`` to override)."""
        return checkpoints.load_model(
            cls, checkpoint_path, map_location, hparams_file, strict, weights_only, **kwargs
        )

    # ---------------------------------------------------------------- optimisation
    @override
    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """Lightning's step, then the method's (the EMA teacher's update)."""
        super().optimizer_step(*args, **kwargs)
        self.method.after_optimizer_step(self)

    def trained_parameters(self) -> list[Any]:
        """What the optimiser updates (the method says: all but the EMA teacher's)."""
        return self.method.parameters_to_optimise(self)

    @override
    def configure_optimizers(self) -> Any:
        """The model's optimiser over :meth:`trained_parameters` (and its scheduler, stepped
        per epoch), then the method's own optimisers (:meth:`TrainingMethod.extra_optimizers`)."""
        optimizer = self.optimizer_factory(self.trained_parameters())
        extra = self.method.extra_optimizers(self)
        if self.lr_scheduler_factory is None:
            return [optimizer, *extra] if extra else optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        if extra:  # stepped by hand at the epoch's end (step_schedulers), on VAL_LOSS
            return [optimizer, *extra], [{"scheduler": scheduler, "interval": "epoch"}]
        schedule = {"scheduler": scheduler, "interval": "epoch", "monitor": VAL_LOSS}
        return {"optimizer": optimizer, "lr_scheduler": schedule}


#: Names that moved to :mod:`ln_lightning.model` (deprecated aliases, for one release).
__getattr__ = moved_names(
    __name__,
    {
        "ema_teacher": "ln_lightning.model.network",
        "check_checkpoint_heads": "ln_lightning.model.checkpoints",
        "check_checkpoint_shapes": "ln_lightning.model.checkpoints",
        "non_finite_loss_message": "ln_lightning.model.step_checks",
    },
)
