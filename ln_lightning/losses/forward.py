"""Forward loss correction (Patrini et al. 2017) with a built-in estimation phase."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ln_lightning.labels import check_transition_matrix
from ln_lightning.losses import functional as LF
from ln_lightning.losses.base import LossReport, TrainingContext
from ln_lightning.losses.softmax import SoftmaxLoss
from ln_lightning.registry import register_method


@register_method("forward")
class ForwardCorrection(SoftmaxLoss):
    """Forward correction ``-log((T^T p)_y)`` with a known or estimated transition matrix.

    ``T[i, j] = P(noisy label j | true class i)``. Three ways to get ``T``:

    * a matrix: ``transition_matrix=[[...], ...]`` (row-stochastic, ``K x K``);
    * ``transition_matrix="data"``: the true ``T`` of the data's noise
      (``datamodule.true_transition_matrix()``), read when fit starts;
    * ``None`` (default): one command does both stages of the paper's reference. The first
      ``warmup_epochs`` epochs train with plain CE; then ``T`` is estimated from the model's
      predictions on the training data (``functional.estimate_transition_matrix``, the
      97th-percentile variant) and training continues, from the warm-up weights, with the
      corrected loss. The model prints the matrix, logs ``forward/transition_diag_mean`` and
      saves ``transition_matrix.csv`` in the run's directory (the :class:`LossReport` this loss
      returns); the matrix is kept in the checkpoint.

    Predictions are the softmax of the logits, the model of the *clean* class.

    Args:
        transition_matrix: ``K x K`` nested list, ``"data"``, or ``None`` to estimate.
        warmup_epochs: CE epochs before estimating ``T`` (only when estimating), >= 1.
        percentile: Outlier filter of the estimate, in (0, 100]; 100 is the plain arg-max.
        reduction: ``mean``, ``sum`` or ``none``.

    Example:
        >>> import torch
        >>> known = ForwardCorrection(transition_matrix=[[0.8, 0.2], [0.0, 1.0]])
        >>> bool(known.transition_ready)  # a given T needs no estimation phase
        True
        >>> logits = torch.tensor([[4.0, -4.0]])  # sure of class 0
        >>> value = known({"logits": logits}, torch.tensor([1]))
        >>> round(float(value), 2)  # -log((T^T p)_1), about -log(0.2): a flip T expects
        1.61
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

    def on_fit_start(self, context: TrainingContext) -> LossReport | None:
        if self.source != "data":
            return None
        matrix = context.true_transition_matrix()
        if matrix is None:
            raise ValueError(
                "transition_matrix='data' needs a data module that knows its true noise matrix "
                "(true_transition_matrix()); this run's has none. Give the matrix, or None to "
                "estimate it."
            )
        return self._set(torch.as_tensor(matrix, dtype=torch.float32), "the data's true T")

    def on_train_epoch_start(self, context: TrainingContext) -> LossReport | None:
        if bool(self.transition_ready) or context.epoch < self.warmup_epochs:
            return None
        estimate = LF.estimate_transition_matrix(context.training_probabilities(), self.percentile)
        return self._set(estimate, f"estimated after {context.epoch} CE epochs")

    def _set(self, matrix: Tensor, how: str) -> LossReport:
        check_transition_matrix(matrix, self.transition_matrix.shape[0])
        self.transition_matrix.copy_(matrix)
        self.transition_ready.fill_(True)
        rows = "\n".join("  " + " ".join(f"{v:.3f}" for v in row) for row in matrix.tolist())
        return LossReport(
            message=f"ForwardCorrection: transition matrix ({how}):\n{rows}",
            metrics={"forward/transition_diag_mean": float(matrix.diagonal().mean())},
            tables={"transition_matrix": matrix.detach().cpu()},
        )

    def per_example(self, outputs: Mapping[str, Tensor], labels: Tensor) -> Tensor:
        logits = self._require(outputs, "logits")
        if not hasattr(self, "transition_ready"):
            raise RuntimeError("ForwardCorrection.setup(num_classes) must run first.")
        if not bool(self.transition_ready):
            return LF.cross_entropy(logits, labels)  # warm-up phase
        return LF.forward_corrected_cross_entropy(logits, labels, self.transition_matrix)
