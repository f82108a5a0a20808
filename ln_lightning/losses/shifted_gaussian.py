"""Shifted Gaussian Noise (SGN; Englesson & Azizpour, ICLR 2024) as a loss module."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from ln_lightning.losses import functional as LF
from ln_lightning.losses.base import LossReport, NoisyLabelLoss, TrainingContext, teacher_key
from ln_lightning.registry import register_method


@register_method("sgn")
class ShiftedGaussianNoise(NoisyLabelLoss):
    """SGN: LN's successor, with loss reweighting and label correction by an EMA teacher.

    Englesson & Azizpour, "Robust Classification via Regression-Based Loss Reweighting and
    Label Correction", ICLR 2024. The smoothed label is mapped to the ``K - 1`` dimensional
    logit space of the isometric log-ratio transform and scored under a Gaussian with scale
    ``I + r r^T`` (as LN's covariance, it attenuates examples with a large residual). The
    Gaussian's mean is shifted from ``mu`` towards the label by ``1 - alpha^e`` of
    ``t - mu_ema``, where ``mu_ema`` is the prediction of an exponential moving average of the
    network's weights on the same batch (in training mode, no gradient) and ``e`` the training
    time in epochs: as the shift grows, a label the averaged network disagrees with costs less.
    See :func:`~ln_lightning.losses.functional.shifted_gaussian_noise_loss`.

    The teacher is the model's, not the loss's: the loss declares :attr:`teacher_decay` and
    :class:`~ln_lightning.NoisyLabelClassifier` keeps the averaged copy, adds its head outputs
    to the training step's outputs (``teacher.mean``) and its own training time through
    :meth:`on_train_batch_start`. Outside training (``loss.eval()``: validation and test loss)
    the loss is the unshifted density of the label. Predictions (``predict_proba``, the
    validation and test metrics, ``predict``, label issues) use the trained network's mean,
    ``softmax(mu @ H)``; the EMA copy is evaluated beside it (``val/acc_noisy_teacher``,
    ``test/acc_teacher``).

    Heads: ``mean`` and ``factor``, both of width ``K - 1``.

    Args:
        alpha: The shift after ``e`` epochs is ``1 - alpha^e`` (0.995: 0.10 after 20 epochs,
            0.39 after 100, 0.78 after 300). In ``(0, 1]``; 1 switches the correction off.
        ema_decay: ``beta`` of the teacher's weight average, updated after every optimizer step
            (0.9999: an average over about 10,000 steps). In ``[0, 1)``.
        smoothing: Label smoothing ``t`` in ``(0, 1)`` over the K classes (0.001).
        reduction: ``mean``, ``sum`` or ``none``.

    Example:
        >>> import torch
        >>> loss = ShiftedGaussianNoise()
        >>> loss.head_shapes(num_classes=10)
        {'mean': 9, 'factor': 9}
        >>> outputs = {"mean": torch.randn(4, 9), "factor": torch.randn(4, 9)}
        >>> outputs["teacher.mean"] = torch.randn(4, 9)
        >>> loss(outputs, torch.tensor([0, 3, 9, 1])).shape
        torch.Size([])
    """

    prediction_heads = ("mean",)

    def __init__(
        self,
        alpha: float = 0.995,
        ema_decay: float = 0.9999,
        smoothing: float = 0.001,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        self.params = LF.ShiftedGaussianParams(
            alpha=alpha, ema_decay=ema_decay, smoothing=smoothing
        )
        # 1 - alpha^e at the current training time (on_train_batch_start).
        self.shift_weight = 0.0

    @property
    def alpha(self) -> float:
        return self.params.alpha

    @property
    def ema_decay(self) -> float:
        return self.params.ema_decay

    @property
    def smoothing(self) -> float:
        return self.params.smoothing

    @property
    def teacher_decay(self) -> float:  # type: ignore[override]
        return self.params.ema_decay

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, ema_decay={self.ema_decay}, smoothing={self.smoothing}"

    # ------------------------------------------------------------------ the shift schedule
    def on_fit_start(self, context: TrainingContext) -> LossReport | None:
        return LossReport(
            message=f"ShiftedGaussianNoise: the mean shifts towards the EMA teacher's correction "
            f"by 1 - {self.alpha:g}^epochs ({self.params.shift_weight(context.elapsed_epochs):.3f}"
            f" now); the teacher averages the weights with decay {self.ema_decay:g}. "
            "Predictions use the trained network; the teacher is evaluated beside it "
            "(val/acc_noisy_teacher, test/acc_teacher)."
        )

    def on_train_epoch_start(self, context: TrainingContext) -> LossReport | None:
        self.shift_weight = self.params.shift_weight(context.elapsed_epochs)
        return LossReport(metrics={"sgn/shift_weight": self.shift_weight})

    def on_train_batch_start(self, context: TrainingContext) -> None:
        self.shift_weight = self.params.shift_weight(context.elapsed_epochs)

    # ------------------------------------------------------------------ the contract
    def head_shapes(self, num_classes: int) -> dict[str, int]:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2; got {num_classes}.")
        return {"mean": num_classes - 1, "factor": num_classes - 1}

    def per_example(self, outputs: Mapping[str, Tensor], labels: Tensor) -> Tensor:
        mean, factor = self._require(outputs, "mean"), self._require(outputs, "factor")
        if not self.training:  # validation and test loss: the label's unshifted density
            return LF.shifted_gaussian_noise_loss(mean, factor, labels, params=self.params)
        teacher_mean = outputs.get(teacher_key("mean"))
        if teacher_mean is None:
            raise KeyError(
                f"ShiftedGaussianNoise in training needs the EMA teacher's mean as "
                f"outputs[{teacher_key('mean')!r}]; NoisyLabelClassifier adds it (its "
                "training_outputs(inputs)). Call loss.eval() for the unshifted density."
            )
        return LF.shifted_gaussian_noise_loss(
            mean, factor, labels, teacher_mean, self.shift_weight, self.params
        )

    def residuals(self, outputs: Mapping[str, Tensor], labels: Tensor) -> tuple[Tensor, Tensor]:
        """``(|t - mu|^2, |S^{-1} (t - mu)|^2)`` per example, without the shift."""
        mean, factor = self._require(outputs, "mean"), self._require(outputs, "factor")
        return LF.shifted_gaussian_residuals(mean, factor, labels, self.params)

    def uncertainty(self, outputs: Mapping[str, Tensor]) -> Tensor | None:
        """The largest standard deviation of the Gaussian, ``1 + |r|^2`` (along ``r``)."""
        factor = outputs.get("factor")
        return LF.largest_standard_deviation(factor, covariance="full", min_scale=1.0)

    def predict_proba(self, outputs: Mapping[str, Tensor]) -> Tensor:
        """``softmax(mu @ H)`` over the K classes; the scale is not used."""
        return LF.ilr_probabilities(self._require(outputs, "mean"))
