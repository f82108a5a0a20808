"""Forward loss correction (Patrini et al. 2017) with a built-in estimation phase."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from ln_lightning.losses import functional as LF
from ln_lightning.losses.softmax import SoftmaxLoss
from ln_lightning.noise import check_transition_matrix


class ForwardCorrection(SoftmaxLoss):
    """Forward correction ``-log((T^T p)_y)`` with a known or estimated transition matrix.

    ``T[i, j] = P(noisy label j | true class i)``. Three ways to get ``T``:

    * a matrix: ``transition_matrix=[[...], ...]`` (row-stochastic, ``K x K``);
    * ``transition_matrix="data"``: the true ``T`` of the noise the data module injected
      (``datamodule.transition_matrix``), read when fit starts;
    * ``None`` (default): one command does both stages of the paper's reference. The first
      ``warmup_epochs`` epochs train with plain CE; then ``T`` is estimated from the model's
      predictions on the training data (``functional.estimate_transition_matrix``, the
      97th-percentile variant) and training continues, from the warm-up weights, with the
      corrected loss. The estimate is printed, logged (``forward/transition_diag_mean``), saved
      as ``transition_matrix.csv`` in the run's log directory, and kept in the checkpoint.

    Predictions are the softmax of the logits, the model of the *clean* class.

    Args:
        transition_matrix: ``K x K`` nested list, ``"data"``, or ``None`` to estimate.
        warmup_epochs: CE epochs before estimating ``T`` (only when estimating), >= 1.
        percentile: Outlier filter of the estimate, in (0, 100]; 100 is the plain arg-max.
        reduction: ``mean``, ``sum`` or ``none``.
    """

    def __init__(
        self,
        transition_matrix: list[list[float]] | str | None = None,
        warmup_epochs: int = 10,
        percentile: float = 97.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        if isinstance(transition_matrix, str) and transition_matrix != "data":
            raise ValueError(
                "transition_matrix must be a K x K list, 'data' or None; "
                f"got {transition_matrix!r}."
            )
        if warmup_epochs < 1:
            raise ValueError(f"warmup_epochs must be >= 1; got {warmup_epochs!r}.")
        if not 0.0 < percentile <= 100.0:
            raise ValueError(f"percentile must lie in (0, 100]; got {percentile!r}.")
        self.source = transition_matrix
        self.warmup_epochs = int(warmup_epochs)
        self.percentile = float(percentile)
        if isinstance(transition_matrix, list):
            self.setup(len(transition_matrix))

    def extra_repr(self) -> str:
        source = "given" if isinstance(self.source, list) else self.source or "estimated"
        return f"transition_matrix={source}, warmup_epochs={self.warmup_epochs}"

    def init_args(self) -> dict:
        return {
            "transition_matrix": self.source,
            "warmup_epochs": self.warmup_epochs,
            "percentile": self.percentile,
            "reduction": self.reduction,
        }

    def setup(self, num_classes: int) -> None:
        if isinstance(self.source, list):
            matrix = torch.as_tensor(self.source, dtype=torch.float32)
            check_transition_matrix(matrix, num_classes)
            ready = True
        else:
            matrix, ready = torch.eye(num_classes), False
        self.register_buffer("transition_matrix", matrix)
        self.register_buffer("transition_ready", torch.tensor(ready))

    def on_fit_start(self, module: pl.LightningModule) -> None:
        if self.source != "data":
            return
        datamodule = module.trainer.datamodule
        matrix = getattr(datamodule, "transition_matrix", None)
        if matrix is None:
            raise ValueError(
                "transition_matrix='data' needs a data module with a `transition_matrix` "
                f"attribute; {type(datamodule).__name__} has none."
            )
        self._set(torch.as_tensor(matrix, dtype=torch.float32), module, "data module's true T")

    def on_train_epoch_start(self, module: pl.LightningModule) -> None:
        if bool(self.transition_ready) or module.current_epoch < self.warmup_epochs:
            return
        probs = predict_training_probabilities(module)
        estimate = LF.estimate_transition_matrix(probs, self.percentile)
        self._set(estimate, module, f"estimated after {module.current_epoch} CE epochs")

    def _set(self, matrix: Tensor, module: pl.LightningModule, how: str) -> None:
        check_transition_matrix(matrix, self.transition_matrix.shape[0])
        self.transition_matrix.copy_(matrix)
        self.transition_ready.fill_(True)
        rows = "\n".join("  " + " ".join(f"{v:.3f}" for v in row) for row in matrix.tolist())
        rank_zero_info(f"ForwardCorrection: transition matrix ({how}):\n{rows}")
        for logger in module.loggers:  # self.log is not allowed in on_fit_start
            logger.log_metrics(
                {"forward/transition_diag_mean": float(matrix.diagonal().mean())},
                step=module.global_step,
            )
        log_dir = module.trainer.log_dir if module.trainer is not None else None
        if log_dir and module.trainer.is_global_zero:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            lines = [",".join(f"{v:.6g}" for v in row) for row in matrix.tolist()]
            (Path(log_dir) / "transition_matrix.csv").write_text("\n".join(lines) + "\n")

    def per_example(self, outputs: Mapping[str, Tensor], labels: Tensor) -> Tensor:
        logits = self._require(outputs, "logits")
        if not hasattr(self, "transition_ready"):
            raise RuntimeError("ForwardCorrection.setup(num_classes) must run first.")
        if not bool(self.transition_ready):
            return LF.cross_entropy(logits, labels)  # warm-up phase
        return LF.forward_corrected_cross_entropy(logits, labels, self.transition_matrix)


@torch.no_grad()
def predict_training_probabilities(module: pl.LightningModule) -> Tensor:
    """The model's class probabilities on the whole training set (gathered over DDP ranks)."""
    from ln_lightning.module import unpack_batch

    loader = module.trainer.train_dataloader
    if loader is None:
        raise RuntimeError("no training dataloader to estimate the transition matrix from.")
    was_training = module.training
    module.eval()
    chunks = []
    try:
        for batch in loader:
            inputs = unpack_batch(batch)[0].to(module.device)
            chunks.append(module.predict_proba(inputs))
    finally:
        module.train(was_training)
    probs = torch.cat(chunks)
    if module.trainer.world_size > 1:
        probs = module.all_gather(probs).flatten(0, 1)
    return probs
