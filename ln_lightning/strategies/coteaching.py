"""Co-teaching (Han et al., NeurIPS 2018): two networks, each trained on the examples its peer
finds easiest (small loss), a share of each batch left out that grows to the forget rate."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ln_lightning.data.dataset import NoisySample
from ln_lightning.losses.base import LossReport
from ln_lightning.registry import register_strategy
from ln_lightning.strategies.base import TrainingStrategy

__all__ = ["CoTeaching", "coteaching_losses", "forget_rate_at"]


def forget_rate_at(epoch: int, forget_rate: float, gradual_epochs: int) -> float:
    """The share of each batch left out in ``epoch`` (0-based): ``forget_rate * min(epoch /
    gradual_epochs, 1)`` (the paper's ``1 - R(T)``); a pure function of the epoch, so a
    resumed run leaves out what the uninterrupted one would.

    Example:
        >>> [forget_rate_at(e, 0.4, 4) for e in (0, 2, 4, 9)]
        [0.0, 0.2, 0.4, 0.4]
    """
    if gradual_epochs <= 0:
        return forget_rate
    return forget_rate * min(epoch / gradual_epochs, 1.0)


def coteaching_losses(first: Tensor, second: Tensor, forget: float) -> tuple[Tensor, Tensor]:
    """Each network's loss on the ``int((1 - forget) * B)`` examples with the smallest loss
    under the *other* network (the exchange of Algorithm 1), as means.

    Args:
        first: ``(B,)`` per-example losses of the first network.
        second: ``(B,)`` per-example losses of the second network.
        forget: The share of the batch left out, in [0, 1).

    Example:
        >>> import torch
        >>> first, second = torch.tensor([0.1, 2.0, 0.5, 3.0]), torch.tensor([1.0, 0.2, 0.3, 4.0])
        >>> [round(float(x), 2) for x in coteaching_losses(first, second, 0.5)]  # keep 2 of 4
        [1.25, 0.65]
    """
    keep = max(1, int((1.0 - forget) * len(first)))
    by_second = second.detach().argsort()[:keep]  # what the second network finds easy
    by_first = first.detach().argsort()[:keep]
    return first[by_second].mean(), second[by_first].mean()


@register_strategy("coteaching", example={"forget_rate": 0.2, "gradual_epochs": 2})
class CoTeaching(TrainingStrategy):
    """Co-teaching: a peer network beside the model's, each updated on the small-loss examples
    of the other; the share left out grows from 0 to ``forget_rate`` over ``gradual_epochs``.

    Memorisation comes late: early on the examples a network fits worst are mostly the
    mislabelled ones. Two networks with different initial weights make different mistakes, so
    each picks the examples for the other. The small-loss criterion is the model's loss (LN's
    negative log-likelihood with ``LogisticNormalLoss``, cross-entropy with ``CrossEntropy``).
    Predictions, metrics and checkpoints' label issues are the model's own network's; the peer
    (``model.strategy.peer``, the same architecture) is in the checkpoint and trained by the
    same optimiser.

    Args:
        forget_rate: The share of each batch left out once the schedule is done, in [0, 1): the
            expected share of wrong labels (the paper sets it to the noise rate).
        gradual_epochs: Epochs over which the share grows linearly from 0 (10 in the paper),
            >= 0.

    Example:
        >>> from ln_lightning import CrossEntropy, NoisyLabelClassifier
        >>> model = NoisyLabelClassifier(
        ...     loss=CrossEntropy(), strategy=CoTeaching(), input_shape=(1, 8, 8)
        ... )
        >>> type(model.strategy.peer).__name__
        'Network'
    """

    def __init__(self, forget_rate: float = 0.2, gradual_epochs: int = 5) -> None:
        super().__init__()
        if not 0.0 <= forget_rate < 1.0:
            raise ValueError(f"forget_rate must lie in [0, 1); got {forget_rate!r}.")
        if gradual_epochs < 0:
            raise ValueError(f"gradual_epochs must be >= 0; got {gradual_epochs!r}.")
        self.forget_rate = float(forget_rate)
        self.gradual_epochs = int(gradual_epochs)

    def build(self, model: Any) -> None:
        self.peer = model.build_network()

    def plan(self, max_epochs: int | None) -> LossReport:
        """What each batch leaves out, and when it reaches ``forget_rate``.

        Example:
            >>> CoTeaching(0.2, 5).plan(20).message[:64]
            'Co-teaching: each network learns from the 80% of each batch with'
        """
        return LossReport(
            message=(
                f"Co-teaching: each network learns from the {1 - self.forget_rate:.0%} of each "
                "batch with the smallest loss under its peer (the share left out grows from 0 "
                f"over the first {self.gradual_epochs} epochs). Set "
                "--model.strategy.forget_rate to the share of wrong labels you expect (forward "
                "correction's log estimates it after its warm-up: 'About N% of the labels are "
                "wrong by this T')."
            )
        )

    def parameters_to_optimise(self, model: Any) -> list[Any]:
        return [*model.network.trained_parameters(), *self.peer.trained_parameters()]

    def training_step(
        self, model: Any, sample: NoisySample, batch_idx: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        outputs = model.network.training_outputs(sample.input)
        peer = self.peer.training_outputs(sample.input)
        forget = forget_rate_at(model.current_epoch, self.forget_rate, self.gradual_epochs)
        first, second = coteaching_losses(
            self.loss.per_example(outputs, sample.target),
            self.loss.per_example(peer, sample.target),
            forget,
        )
        return first + second, outputs

    def after_optimizer_step(self, model: Any) -> None:
        super().after_optimizer_step(model)
        self.peer.update_averages()
