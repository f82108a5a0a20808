"""Forward loss correction (Patrini et al. 2017) with a built-in estimation phase, for
cross-entropy and for the Logistic-Normal likelihood (transition-aware LN)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from ln_lightning.losses import functional as LF
from ln_lightning.losses.logistic_normal import LogisticNormalLoss
from ln_lightning.losses.softmax import SoftmaxLoss
from ln_lightning.losses.transition import WARMUP_FRACTION, TransitionPhase
from ln_lightning.registry import register_method

__all__ = ["WARMUP_FRACTION", "ForwardCorrection", "ForwardLogisticNormalLoss", "TransitionPhase"]


@register_method("forward")
class ForwardCorrection(TransitionPhase, SoftmaxLoss):
    """Forward correction ``-log((T^T p)_y)`` with a known or estimated transition matrix.

    ``T[i, j] = P(noisy label j | true class i)``. Three ways to get ``T``:

    * a matrix: ``transition_matrix=[[...], ...]`` (row-stochastic, ``K x K``);
    * ``transition_matrix="data"``: the true ``T`` of the data's noise
      (``datamodule.true_transition_matrix()``), read when fit starts;
    * ``None`` (default): one command does both stages of the paper's reference. The first
      epochs train with plain CE (``warmup_epochs``, or ``warmup_fraction`` of the run's
      ``max_epochs`` when no count is given); then ``T`` is estimated from the model's
      predictions on the training data (``functional.estimate_transition_matrix``, the
      97th-percentile variant) and training continues, from the warm-up weights, with the
      corrected loss. The model prints the matrix, logs ``forward/transition_diag_mean`` and
      saves ``transition_matrix.csv`` in the run's directory (the :class:`LossReport` this loss
      returns); the matrix is kept in the checkpoint. A warm-up as long as the run (T never
      estimated: the run is plain CE) is said in the log when fit starts.

    Predictions are the softmax of the logits, the model of the *clean* class.

    Args:
        transition_matrix: ``K x K`` nested list, ``"data"``, or ``None`` to estimate.
        warmup_epochs: CE epochs before estimating ``T`` (only when estimating), >= 1;
            ``None``: ``warmup_fraction`` of the run's ``max_epochs``.
        warmup_fraction: The share of ``max_epochs`` trained with CE before estimating ``T``
            when ``warmup_epochs`` is ``None``, in (0, 1); at least one epoch.
        percentile: Outlier filter of the estimate, in (0, 100]; 100 is the plain arg-max.
        warmup_patience: End the warm-up sooner, once the noisy validation accuracy has not
            improved for this many epochs (>= 1): the point where cross-entropy starts to fit
            the wrong labels, after which its predictions (and the ``T`` estimated from them)
            repeat the noise. ``None`` (default): the whole warm-up. Needs a validation split;
            without one the warm-up runs to its end.
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
        warmup_epochs: int | None = None,
        warmup_fraction: float = WARMUP_FRACTION,
        percentile: float = 97.0,
        warmup_patience: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(
            transition_matrix,
            warmup_epochs,
            warmup_fraction,
            percentile,
            warmup_patience,
            reduction=reduction,
        )

    def per_example(self, outputs: Mapping[str, Tensor], labels: Tensor) -> Tensor:
        logits = self._require(outputs, "logits")
        self._require_setup()
        if not bool(self.transition_ready):
            return LF.cross_entropy(logits, labels)  # warm-up phase
        return LF.forward_corrected_cross_entropy(logits, labels, self.transition_matrix)


@register_method("forward_ln", example={"covariance": "isotropic"})
class ForwardLogisticNormalLoss(TransitionPhase, LogisticNormalLoss):
    """Transition-aware LN: LN's likelihood of the noisy label around the forward-corrected mean.

    The network's mean ``mu`` models the *clean* class, as in :class:`ForwardCorrection`; the
    label is scored by LN's Gaussian (Eq. 5, with its predicted covariance) around
    ``mu~ = tau S_C^{-1}(T^T S_C(mu / tau))``, the mean of the noisy label
    (``functional.forward_corrected_mean``). ``T`` is handled as in
    :class:`ForwardCorrection`: given, the data's, or estimated after a warm-up, which here
    trains with plain LN (annealed if ``anneal_epochs`` says so). Predictions, residuals and
    uncertainties read the clean mean.

    Args:
        transition_matrix, warmup_epochs, warmup_fraction, percentile, warmup_patience: As
            :class:`ForwardCorrection`.
        temperature, min_scale, smoothing, dummy_class, covariance, anneal_epochs, reduction:
            As :class:`LogisticNormalLoss`.

    Example:
        >>> import torch
        >>> loss = ForwardLogisticNormalLoss(
        ...     transition_matrix=[[0.6, 0.4], [0.0, 1.0]], covariance="identity")
        >>> mean = torch.tensor([[6.0, -6.0]])  # sure of class 0
        >>> flipped = torch.tensor([1])  # a flip T expects costs less than under plain LN
        >>> float(loss({"mean": mean}, flipped)) < float(LogisticNormalLoss(
        ...     covariance="identity")({"mean": mean}, flipped))
        True
    """

    warmup_name, warmup_short = "plain LN", "LN"

    def __init__(
        self,
        transition_matrix: list[list[float]] | str | None = None,
        warmup_epochs: int | None = None,
        warmup_fraction: float = WARMUP_FRACTION,
        percentile: float = 97.0,
        warmup_patience: int | None = None,
        temperature: float = 1.0,
        min_scale: float = 1.0,
        smoothing: float = 0.01,
        dummy_class: bool = True,
        covariance: LF.Covariance = "isotropic",
        anneal_epochs: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(
            transition_matrix,
            warmup_epochs,
            warmup_fraction,
            percentile,
            warmup_patience,
            temperature=temperature,
            min_scale=min_scale,
            smoothing=smoothing,
            dummy_class=dummy_class,
            covariance=covariance,
            anneal_epochs=anneal_epochs,
            reduction=reduction,
        )

    def per_example(self, outputs: Mapping[str, Tensor], labels: Tensor) -> Tensor:
        mean, scale = self._heads(outputs)
        self._require_setup()
        if bool(self.transition_ready):
            mean = LF.forward_corrected_mean(
                mean, self.transition_matrix, temperature=self.temperature,
                dummy_class=self.dummy_class,
            )  # fmt: skip
        return LF.logistic_normal_loss(mean, scale, labels, self.current_params)
