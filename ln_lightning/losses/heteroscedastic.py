"""Heteroscedastic MC-softmax losses: Het, Het-tau and Het-tau-Sigma_full."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ln_lightning.losses import functional as LF
from ln_lightning.losses.base import NoisyLabelLoss
from ln_lightning.registry import register_method

PREDICT_MODES = ("mc", "mean")


class _HeteroscedasticBase(NoisyLabelLoss):
    """Shared machinery: latent logits ``u = mu + d * eps (+ V eps_R)``, MC softmax likelihood."""

    prediction_heads = ("mean", "scale")
    num_factors = 0

    def __init__(
        self,
        temperature: float,
        num_samples: int,
        min_std: float,
        share_samples: bool,
        predict_with: Literal["mc", "mean"],
        eval_samples: int | None,
        reduction: str,
    ) -> None:
        super().__init__(reduction=reduction)
        LF.check_het_hparams(num_samples, temperature)
        if not min_std >= 0:
            raise ValueError(f"min_std must be >= 0; got {min_std!r}.")
        if predict_with not in PREDICT_MODES:
            raise ValueError(f"predict_with must be one of {PREDICT_MODES}; got {predict_with!r}.")
        if eval_samples is not None and eval_samples < 1:
            raise ValueError(f"eval_samples must be >= 1 or None; got {eval_samples!r}.")
        self.temperature = float(temperature)
        self.num_samples = int(num_samples)
        self.min_std = float(min_std)
        self.share_samples = bool(share_samples)
        self.predict_with = predict_with
        self.eval_samples = int(eval_samples or num_samples)
        if self.predict_with == "mean":
            self.prediction_heads = ("mean",)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, num_samples={self.num_samples}, "
            f"num_factors={self.num_factors}, share_samples={self.share_samples}, "
            f"predict_with={self.predict_with!r}"
        )

    def head_shapes(self, num_classes: int) -> dict[str, int]:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2; got {num_classes}.")
        shapes = {"mean": num_classes, "scale": num_classes}
        if self.num_factors:
            shapes["factor"] = num_classes * self.num_factors
        return shapes

    def _latent(self, outputs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor | None]:
        mean = self._require(outputs, "mean")
        std = F.softplus(LF.upcast(self._require(outputs, "scale"))) + self.min_std
        factor = None
        if self.num_factors:
            factor = self._require(outputs, "factor").unflatten(-1, (-1, self.num_factors))
        return mean, std, factor

    def per_example(self, outputs: Mapping[str, Tensor], labels: Tensor) -> Tensor:
        mean, std, factor = self._latent(outputs)
        return LF.heteroscedastic_loss(
            mean,
            std,
            labels,
            num_samples=self.num_samples,
            temperature=self.temperature,
            factor=factor,
            share_samples=self.share_samples,
        )

    def predict_proba(self, outputs: Mapping[str, Tensor]) -> Tensor:
        """MC average of the softmax (``predict_with="mc"``) or softmax of the mean logits.

        The MC estimate uses ``eval_samples`` samples from a generator with a fixed seed, so the
        same inputs always get the same prediction.
        """
        mean = self._require(outputs, "mean")
        if self.predict_with == "mean":
            return torch.softmax(LF.upcast(mean) / self.temperature, dim=-1)
        mean, std, factor = self._latent(outputs)
        generator = torch.Generator(device=mean.device).manual_seed(0)
        return LF.heteroscedastic_probabilities(
            mean,
            std,
            num_samples=self.eval_samples,
            temperature=self.temperature,
            factor=factor,
            generator=generator,
        )


@register_method("het", example={"num_samples": 20})
class Heteroscedastic(_HeteroscedasticBase):
    """Het (Kendall & Gal 2017): diagonal Gaussian on the logits, MC softmax likelihood.

    ``u_s = mu + d * eps_s``, ``d = softplus(scale) + min_std``, loss
    ``-log((1/S) sum_s softmax(u_s)_y)`` by log-mean-exp in float32. Heads: ``mean`` and
    ``scale`` (width ``K`` each). Samples come from torch's global generator, so
    ``seed_everything`` makes a run reproducible.

    Args:
        num_samples: MC samples ``S`` per example during training (memory ``B x S x K``).
        min_std: Floor added to the softplus scale (1e-3 in the paper).
        share_samples: One set of ``eps`` for the whole batch instead of one per example.
        predict_with: ``"mc"`` (average the softmax over ``eval_samples`` samples, the methods'
            own predictive) or ``"mean"`` (softmax of the mean logits).
        eval_samples: Samples for ``predict_with="mc"``; ``num_samples`` if ``None``.
        reduction: ``mean``, ``sum`` or ``none``.

    Example:
        >>> import torch
        >>> loss = Heteroscedastic(num_samples=50)
        >>> loss.head_shapes(num_classes=4)
        {'mean': 4, 'scale': 4}
        >>> outputs = {"mean": torch.randn(8, 4), "scale": torch.zeros(8, 4)}
        >>> loss(outputs, torch.randint(0, 4, (8,))).shape, loss.predict_proba(outputs).shape
        (torch.Size([]), torch.Size([8, 4]))
    """

    def __init__(
        self,
        num_samples: int = 100,
        min_std: float = 1e-3,
        share_samples: bool = False,
        predict_with: Literal["mc", "mean"] = "mc",
        eval_samples: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(
            temperature=1.0,
            num_samples=num_samples,
            min_std=min_std,
            share_samples=share_samples,
            predict_with=predict_with,
            eval_samples=eval_samples,
            reduction=reduction,
        )


@register_method("het_tau", example={"num_samples": 20})
class HeteroscedasticTemperature(_HeteroscedasticBase):
    """Het-tau (Collier et al. 2020): Het with a softmax temperature, ``softmax(u_s / tau)``.

    Args:
        temperature: ``tau`` > 0; paper grid 0.1, 0.5, 1, 10, 20.
        num_samples: See :class:`Heteroscedastic`; the other arguments too.

    Example:
        >>> HeteroscedasticTemperature(temperature=0.5, num_samples=20).head_shapes(num_classes=4)
        {'mean': 4, 'scale': 4}
    """

    def __init__(
        self,
        temperature: float = 1.0,
        num_samples: int = 100,
        min_std: float = 1e-3,
        share_samples: bool = False,
        predict_with: Literal["mc", "mean"] = "mc",
        eval_samples: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(
            temperature=temperature,
            num_samples=num_samples,
            min_std=min_std,
            share_samples=share_samples,
            predict_with=predict_with,
            eval_samples=eval_samples,
            reduction=reduction,
        )


@register_method("het_tau_full", example={"num_samples": 20})
class HeteroscedasticLowRank(_HeteroscedasticBase):
    """Het-tau-Sigma_full (Collier et al. 2021): low-rank plus diagonal logit covariance.

    ``u = mu + V eps_R + d * eps_K`` with ``V`` (``K x R``) from a linear head reshaped.
    Heads: ``mean`` and ``scale`` (width ``K``) and ``factor`` (width ``K * R``). The public
    TF implementation (edward2 ``MCSoftmaxDenseFA``) defaults to 1000 samples; 100 here keeps
    CPU runs fast, raise ``num_samples`` to match it.

    Args:
        temperature: ``tau`` > 0.
        num_factors: Rank ``R`` of ``V``; paper grid 1, 2, 4.
        num_samples: See :class:`Heteroscedastic`; the other arguments too.

    Example:
        >>> HeteroscedasticLowRank(num_factors=2, num_samples=20).head_shapes(num_classes=4)
        {'mean': 4, 'scale': 4, 'factor': 8}
    """

    def __init__(
        self,
        temperature: float = 1.0,
        num_factors: int = 2,
        num_samples: int = 100,
        min_std: float = 1e-3,
        share_samples: bool = False,
        predict_with: Literal["mc", "mean"] = "mc",
        eval_samples: int | None = None,
        reduction: str = "mean",
    ) -> None:
        if int(num_factors) != num_factors or num_factors < 1:
            raise ValueError(f"num_factors must be an integer >= 1; got {num_factors!r}.")
        self.num_factors = int(num_factors)
        super().__init__(
            temperature=temperature,
            num_samples=num_samples,
            min_std=min_std,
            share_samples=share_samples,
            predict_with=predict_with,
            eval_samples=eval_samples,
            reduction=reduction,
        )
