"""Logistic-Normal likelihood (Englesson et al., TMLR 2023) as a loss module."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from torch import Tensor

from ln_lightning.losses import functional as LF
from ln_lightning.losses.base import LossReport, NoisyLabelLoss, TrainingContext
from ln_lightning.registry import register_method


@register_method("ln", example={"min_scale": 0.1})
class LogisticNormalLoss(NoisyLabelLoss):
    """Heteroscedastic Logistic-Normal loss (Eq. 5) with the paper's full covariance (Eq. 9).

    The label is smoothed onto the simplex, mapped to the logit-space target ``tau * C * e_y`` by
    the softmax-centered bijection, and scored under a Gaussian with mean ``mu(x)`` and a
    per-example covariance ``Sigma(x)``. Examples with a large residual (likely mislabeled) are
    attenuated by a larger predicted covariance. Prediction uses the mean only.

    Heads: ``mean`` (width ``D``) and, unless ``covariance="identity"``, ``scale`` (width ``D`` for
    ``diagonal``/``full``, 1 for ``isotropic``), where ``D = K`` with the dummy class.

    Args:
        temperature: ``tau`` > 0 (Eq. 10-11). Paper grid: 0.5, 1.0 (and more in Fig. 5).
        min_scale: ``lambda`` > 0, the smallest standard deviation (Eq. 9). Grid: 0.1, 0.5, 1.0.
        smoothing: Label smoothing ``t`` in (0, 1); 0.01 in the paper (0.1 for Clothing1M).
        dummy_class: Append a dummy category so the logit space is R^K (Sec. 3.2).
        covariance: ``identity``, ``isotropic``, ``diagonal`` or ``full`` (Table 3 ablation).
        anneal_epochs: Start ``lambda`` at the initial residual ``tau C`` and lower it to
            ``min_scale`` along a half cosine over this many epochs (graduated non-convexity;
            :meth:`~ln_lightning.losses.functional.LogisticNormalParams.min_scale_at`). LN then
            learns at cross-entropy's pace instead of starting with every example attenuated
            (docs/losses.md). 0 (default): the paper's loss, Eq. 5 with ``min_scale`` throughout.
        reduction: ``mean``, ``sum`` or ``none``.

    Example:
        >>> import torch
        >>> loss = LogisticNormalLoss(temperature=0.5, min_scale=0.5)
        >>> loss.head_shapes(num_classes=10)
        {'mean': 10, 'scale': 10}
        >>> outputs = {"mean": torch.randn(4, 10), "scale": torch.randn(4, 10)}
        >>> loss(outputs, torch.tensor([0, 3, 9, 1])).shape
        torch.Size([])
    """

    prediction_heads = ("mean",)

    def __init__(
        self,
        temperature: float = 1.0,
        min_scale: float = 1.0,
        smoothing: float = 0.01,
        dummy_class: bool = True,
        covariance: LF.Covariance = "full",
        anneal_epochs: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        self.params = LF.LogisticNormalParams(
            covariance=covariance,
            min_scale=float(min_scale),
            temperature=float(temperature),
            smoothing=float(smoothing),
            dummy_class=bool(dummy_class),
            anneal_epochs=anneal_epochs,
        )
        # What the loss scores with now: ``params`` with lambda of the current training time
        # (on_train_batch_start); ``params`` itself outside training and once annealing is over.
        self.current_params = self.params
        self._dim: int | None = None  # D, from setup(num_classes)

    # The constructor arguments, read from the validated parameters (init_args reads these).
    @property
    def temperature(self) -> float:
        return self.params.temperature

    @property
    def min_scale(self) -> float:
        return self.params.min_scale

    @property
    def smoothing(self) -> float:
        return self.params.smoothing

    @property
    def dummy_class(self) -> bool:
        return self.params.dummy_class

    @property
    def covariance(self) -> str:
        return self.params.covariance

    @property
    def anneal_epochs(self) -> float:
        return self.params.anneal_epochs

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, min_scale={self.min_scale}, "
            f"smoothing={self.smoothing}, dummy_class={self.dummy_class}, "
            f"covariance={self.covariance!r}, anneal_epochs={self.anneal_epochs}"
        )

    # ------------------------------------------------------------------ the lambda schedule
    def setup(self, num_classes: int) -> None:
        self._dim = LF.logit_dim(num_classes, self.dummy_class)

    def _min_scale_at(self, elapsed_epochs: float) -> float:
        if self._dim is None:
            raise RuntimeError(
                "LogisticNormalLoss with anneal_epochs needs the number of classes: call "
                "loss.setup(num_classes) before training (NoisyLabelClassifier does)."
            )
        return self.params.min_scale_at(elapsed_epochs, self._dim)

    def _follow_schedule(self, elapsed_epochs: float) -> float:
        min_scale = self._min_scale_at(elapsed_epochs)
        if min_scale != self.current_params.min_scale:
            self.current_params = replace(self.params, min_scale=min_scale)
        return min_scale

    def on_fit_start(self, context: TrainingContext) -> LossReport | None:
        if not self.anneal_epochs:
            return None
        return LossReport(
            message=f"LogisticNormalLoss: min_scale (lambda) anneals from "
            f"{self._min_scale_at(0.0):.3g} (tau C, "
            f"the residual of every example at initialisation) to {self.min_scale:g} over the "
            f"first {self.anneal_epochs:g} epochs."
        )

    def on_train_epoch_start(self, context: TrainingContext) -> LossReport | None:
        if not self.anneal_epochs:
            return None
        min_scale = self._follow_schedule(context.elapsed_epochs)
        return LossReport(metrics={"ln/min_scale": min_scale})

    def on_train_batch_start(self, context: TrainingContext) -> None:
        if self.anneal_epochs:
            self._follow_schedule(context.elapsed_epochs)

    def head_shapes(self, num_classes: int) -> dict[str, int]:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2; got {num_classes}.")
        dim = LF.logit_dim(num_classes, self.dummy_class)
        shapes = {"mean": dim}
        width = LF.scale_dim(self.covariance, dim)
        if width:
            shapes["scale"] = width
        return shapes

    def _heads(self, outputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        mean = self._require(outputs, "mean")
        scale = None if self.covariance == "identity" else self._require(outputs, "scale")
        return mean, scale

    def per_example(self, outputs: Mapping[str, Tensor], labels: Tensor) -> Tensor:
        return LF.logistic_normal_loss(*self._heads(outputs), labels, self.current_params)

    def negative_log_density(self, outputs: Mapping[str, Tensor], labels: Tensor) -> Tensor:
        """Exact LN negative log-density per example (Eq. 16 with the temperature Jacobian)."""
        return LF.logistic_normal_nll(*self._heads(outputs), labels, self.current_params)

    def residuals(self, outputs: Mapping[str, Tensor], labels: Tensor) -> tuple[Tensor, Tensor]:
        """``(r^T r, r^T Sigma^{-1} r)`` per example (Fig. 6); see ``logistic_normal_residuals``."""
        return LF.logistic_normal_residuals(*self._heads(outputs), labels, self.current_params)

    def uncertainty(self, outputs: Mapping[str, Tensor]) -> Tensor | None:
        """The largest standard deviation of the predicted Gaussian (``lambda + |c|^2`` for
        ``full``; see ``functional.largest_standard_deviation``); ``None`` for ``identity``."""
        scale = outputs.get("scale") if self.covariance != "identity" else None
        return LF.largest_standard_deviation(
            scale, covariance=self.covariance, min_scale=self.current_params.min_scale
        )

    def predict_proba(self, outputs: Mapping[str, Tensor]) -> Tensor:
        """``S_C(mu / tau)`` over the K real classes (Sec. 3.3); the covariance is not used."""
        mean = self._require(outputs, "mean")
        return LF.mean_probabilities(mean, self.dummy_class, self.temperature)
