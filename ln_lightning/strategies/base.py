"""The contract of a training strategy, and what every strategy shares: per-sample state that
is checkpointed, resumes and stays the same on every DDP rank; the loss's own hooks kept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ln_lightning.data.dataset import NoisySample, unpack_batch
from ln_lightning.lightning_internals import attached_trainer, is_fitting
from ln_lightning.losses.base import LossReport, NoisyLabelLoss, as_config, constructor_arguments
from ln_lightning.model.method import LossMethod, OptimisesTheNetwork, epoch_budget, report

__all__ = ["TrainingStrategy", "gather_rows", "training_pool_size"]


def training_pool_size(model: Any) -> int:
    """How many examples the training pool of the model's data module holds (the range of
    ``sample.index``; the validation split, cut from the pool, is inside it).

    Raises:
        ValueError: Without a data module of the library's contract (``split("train")``).
    """
    datamodule = getattr(attached_trainer(model), "datamodule", None)
    if datamodule is None or not hasattr(datamodule, "split"):
        raise ValueError(
            f"{type(model.method).__name__} keeps state per training example, so it needs a "
            "data module (trainer.fit(model, datamodule=...), any NoisyLabelDataModule) that "
            "says how many examples there are and gives each batch's sample index."
        )
    return len(datamodule.split("train").noisy_labels)


def gather_rows(model: Any, *tensors: Tensor) -> tuple[Tensor, ...]:
    """The rows of ``tensors`` from every DDP rank, concatenated (the tensors themselves in one
    process), so every rank applies the same update to per-sample state (a rank-local update
    would go stale on the other ranks). Every rank's batch has the same size (the samplers pad).

    Example:
        >>> import torch
        >>> from ln_lightning import NoisyLabelClassifier
        >>> index, = gather_rows(NoisyLabelClassifier(input_shape=(1, 8, 8)), torch.arange(3))
        >>> index.tolist()  # no trainer, one process: as it is
        [0, 1, 2]
    """
    trainer = attached_trainer(model)
    if trainer is None or trainer.world_size == 1:
        return tensors
    return tuple(model.all_gather(t).reshape(-1, *t.shape[1:]) for t in tensors)


def _require_index(strategy: TrainingStrategy, sample: NoisySample) -> Tensor:
    if sample.index is None:
        raise ValueError(
            f"{type(strategy).__name__} keeps state per training example and needs each batch's "
            "sample index: train on a NoisyLabelDataModule (batches of NoisySample), not on "
            "plain (inputs, labels) batches."
        )
    return sample.index


class TrainingStrategy(OptimisesTheNetwork, nn.Module):
    """Base class of the training strategies: what trains the network when a loss is not enough.

    A strategy is an ``nn.Module`` attached to the model (``model.strategy``), so everything it
    keeps is in the model's ``state_dict`` and checkpoints, moves with the model to its device,
    and is restored bit for bit on ``--ckpt_path last``:

    * **networks of its own** (a peer, :meth:`build`: ``self.peer = model.build_network()``);
    * **per-sample state** (EMA targets, per-example parameters), declared with
      :meth:`per_sample` in :meth:`build` and sized to the training pool when training starts
      (:meth:`setup`), to a checkpoint's rows when one is loaded; updated from the rows of every
      DDP rank (:func:`gather_rows`) so it never goes stale on another rank;
    * **its own optimisers** (:meth:`extra_optimizers`, with ``manual_optimization = True``):
      the model then optimises by hand through Lightning's ``manual_backward`` (so ``bf16-mixed``,
      ``16-mixed`` and DDP work as in the automatic step); Lightning counts every optimiser's step
      in ``trainer.global_step``. ``gradient_clip_val`` and ``accumulate_grad_batches`` are
      Lightning's automatic-step options, refused by Lightning under manual optimisation;
    * **a pass over the training split** (:meth:`training_pass`): un-augmented, sharded over
      the DDP ranks and gathered; what it decides is decided on rank 0 and broadcast;
    * **its phase** (warm-up, selection, a rate that grows) as a pure function of the epoch,
      so a resumed run is in the right phase without state of its own.

    The model's loss (``model.loss``) keeps its own hooks (LN's annealing, Forward correction's
    estimate of ``T``): the base class calls them as the plain loss training would.

    A strategy implements :meth:`training_step`; the other members have defaults.

    Example:
        >>> import torch
        >>> from ln_lightning import CrossEntropy, NoisyLabelClassifier
        >>> class Plain(TrainingStrategy):
        ...     def training_step(self, model, sample, batch_idx):
        ...         outputs = model.network.training_outputs(sample.input)
        ...         return self.loss(outputs, sample.target), outputs
        >>> model = NoisyLabelClassifier(
        ...     loss=CrossEntropy(), strategy=Plain(), input_shape=(1, 8, 8)
        ... )
        >>> model.method is model.strategy, model.automatic_optimization
        (True, True)
        >>> sample = NoisySample(torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]), None, None)
        >>> loss, outputs = model.strategy.training_step(model, sample, batch_idx=0)
        >>> loss.shape, sorted(outputs)
        (torch.Size([]), ['logits'])
    """

    #: ``True``: the model optimises by hand and :meth:`optimise` takes each step.
    manual_optimization: bool = False

    def __init__(self) -> None:
        super().__init__()
        self._per_sample: dict[str, tuple[bool, float]] = {}  # name -> (parameter?, init std)
        self._loss_method: LossMethod | None = None

    # ------------------------------------------------------------------ set-up
    @property
    def loss(self) -> NoisyLabelLoss:
        """The model's loss (after :meth:`attach`)."""
        if self._loss_method is None:
            raise RuntimeError(f"{type(self).__name__} is not attached to a model yet.")
        return self._loss_method.loss

    def attach(self, model: Any) -> None:
        """Called once by the model's ``__init__``, after its network is built."""
        self._loss_method = LossMethod(model.loss)
        self.build(model)

    def build(self, model: Any) -> None:
        """Networks and per-sample state of its own (:meth:`per_sample`); ``model.num_classes``
        is known here, the data is not."""

    def per_sample(self, name: str, width: int, parameter: bool = False, std: float = 0.0) -> None:
        """Declare per-sample state ``name`` of ``width`` columns: a buffer (``parameter``
        false) or an ``nn.Parameter``, zeros or ``N(0, std^2)`` when sized."""
        value = torch.zeros(0, width)
        if parameter:
            self.register_parameter(name, nn.Parameter(value))
        else:
            self.register_buffer(name, value)
        self._per_sample[name] = (parameter, std)

    def _resize(self, name: str, rows: int) -> None:
        parameter, std = self._per_sample[name]
        current = getattr(self, name)
        value = torch.zeros(rows, current.shape[1], dtype=current.dtype, device=current.device)
        if std > 0:
            value.normal_(0.0, std)
        if parameter:
            setattr(self, name, nn.Parameter(value))
        else:
            setattr(self, name, value)

    def setup(self, model: Any) -> None:
        """Before a fit: per-sample state sized to the training pool (kept as it is when it has
        that size already; other stages size it from the checkpoint they load, if any)."""
        if not self._per_sample or not is_fitting(attached_trainer(model)):
            return
        rows = training_pool_size(model)
        for name in self._per_sample:
            if getattr(self, name).shape[0] != rows:
                self._resize(name, rows)

    def on_load_checkpoint(self, model: Any, checkpoint: dict[str, Any]) -> None:
        """Per-sample state sized to the checkpoint's rows before its values are loaded (a
        model built without data, ``load_from_checkpoint``).

        Raises:
            ValueError: The state was sized for another number of training examples.
        """
        prefix = next(name for name, module in model.named_modules() if module is self)
        for name in self._per_sample:
            saved = checkpoint["state_dict"].get(f"{prefix}.{name}")
            if saved is None:
                continue
            rows = getattr(self, name).shape[0]
            if rows == 0:
                self._resize(name, saved.shape[0])
            elif rows != saved.shape[0]:
                raise ValueError(
                    f"the checkpoint's {type(self).__name__} state is for {saved.shape[0]} "
                    f"training examples and this run's training pool has {rows}: resume on the "
                    "data it was trained on, or start a new run."
                )

    def training_pass(
        self,
        model: Any,
        compute: Callable[[NoisySample], Tensor],
        width: int,
        datamodule: Any = None,
    ) -> tuple[Tensor, Tensor]:
        """``compute`` (a batch -> ``(B, width)`` values, called without gradients) over the
        whole training split, un-augmented (the evaluation transform, a fixed order): the
        examples' indices and their values, on every rank. Under DDP each rank computes every
        ``world_size``-th batch (its shard) with rank 0's buffers (batch-norm statistics), and
        the shards are gathered; decide from the result on rank 0 and broadcast
        (``trainer.strategy.broadcast``). ``datamodule``: the trainer's when ``None``.

        Example:
            >>> import torch
            >>> from ln_lightning import CrossEntropy, DigitsDataModule, NoisyLabelClassifier
            >>> from ln_lightning.strategies import ELR
            >>> model = NoisyLabelClassifier(loss=CrossEntropy(), strategy=ELR(),
            ...                              input_shape=(1, 8, 8))
            >>> data = DigitsDataModule()
            >>> index, values = model.strategy.training_pass(
            ...     model, lambda sample: sample.target.float().unsqueeze(1), 1, data)
            >>> len(index) == len(data.split("train")), values.shape
            (True, torch.Size([1293, 1]))
        """
        trainer = attached_trainer(model)
        world = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        if world > 1:  # every shard with the same batch-norm statistics: rank 0's
            for buffer in model.buffers():
                if buffer.dtype.is_floating_point and buffer.dim() > 0:
                    buffer.copy_(trainer.strategy.broadcast(buffer, src=0))
        values, indices = [torch.zeros(0, width)], [torch.zeros(0, dtype=torch.long)]
        with torch.no_grad():
            for position, batch in enumerate(model.split_batches("train", datamodule)):
                if position % world != rank:
                    continue
                sample = unpack_batch(batch)
                moved = sample._replace(
                    input=sample.input.to(model.device), target=sample.target.to(model.device)
                )
                values.append(compute(moved).float().cpu())
                indices.append(self.index(sample).cpu())
        value, index = torch.cat(values), torch.cat(indices)
        if world == 1:
            return index, value
        counts = model.all_gather(torch.tensor([len(index)], device=model.device)).flatten()
        most = int(counts.max())
        padded_index = torch.zeros(most, dtype=torch.long)
        padded_value = torch.zeros(most, width)
        padded_index[: len(index)], padded_value[: len(value)] = index, value
        gathered_index = model.all_gather(padded_index.to(model.device)).cpu()
        gathered_value = model.all_gather(padded_value.to(model.device)).cpu()
        keep = [slice(0, int(n)) for n in counts.tolist()]
        return (
            torch.cat([part[rows] for part, rows in zip(gathered_index, keep, strict=True)]),
            torch.cat([part[rows] for part, rows in zip(gathered_value, keep, strict=True)]),
        )

    # ------------------------------------------------------------------ the step
    def outputs(self, model: Any, inputs: Tensor) -> dict[str, Tensor]:
        """The head outputs that prediction reads: the model's network's."""
        return model.network(inputs)

    def training_step(
        self, model: Any, sample: NoisySample, batch_idx: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The step's loss, and the network's outputs on the batch (for the metrics)."""
        raise NotImplementedError

    def index(self, sample: NoisySample) -> Tensor:
        """The batch's sample indices (a clear error for plain batches, which have none)."""
        return _require_index(self, sample)

    # ------------------------------------------------------------------ the loss's hooks
    def on_fit_start(self, model: Any) -> None:
        """The loss's own start, then the strategy's :meth:`plan`, printed once."""
        self._loss_method.on_fit_start(model)
        report(model, self.plan(epoch_budget(attached_trainer(model))))

    def plan(self, max_epochs: int | None) -> LossReport | None:
        """What the run will do, phase by phase, for a run of ``max_epochs`` (printed when fit
        starts; say it when a phase never comes); ``None``: nothing to say."""
        return None

    def selectable(self, model: Any) -> bool:
        """The loss's answer (a strategy with a warm-up of its own adds it)."""
        return self._loss_method.selectable(model)

    def on_train_epoch_start(self, model: Any) -> None:
        self._loss_method.on_train_epoch_start(model)

    def on_train_batch_start(self, model: Any, batch_idx: int) -> None:
        self._loss_method.on_train_batch_start(model, batch_idx)

    def on_validation_epoch_end(self, model: Any, noisy_accuracy: float) -> None:
        self._loss_method.on_validation_epoch_end(model, noisy_accuracy)

    def after_optimizer_step(self, model: Any) -> None:
        self._loss_method.after_optimizer_step(model)

    # ------------------------------------------------------------------ as data
    def init_args(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this strategy."""
        return constructor_arguments(self)

    def config(self) -> dict[str, Any]:
        """``{"class_path": ..., "init_args": ...}``, as in an ``ln-fit`` config."""
        return as_config(self, self.init_args())
