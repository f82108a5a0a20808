"""DivideMix (Li et al., ICLR 2020): two networks; each divides the training set with a two-
component Gaussian mixture on its per-example losses, and its peer trains semi-supervised
(MixMatch) on that division: the likely clean examples with refined labels, the rest unlabelled
with co-guessed labels."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ln_lightning.data.dataset import NoisySample
from ln_lightning.data.sampling import global_seed
from ln_lightning.lightning_internals import attached_trainer
from ln_lightning.losses.base import LossReport
from ln_lightning.losses.softmax import CrossEntropy
from ln_lightning.model.method import epoch_budget, report
from ln_lightning.registry import register_strategy
from ln_lightning.strategies.base import TrainingStrategy

__all__ = [
    "DivideMix",
    "clean_probability",
    "mixmatch_loss",
    "negative_entropy",
    "refined_targets",
    "sharpen",
]


def sharpen(probs: Tensor, temperature: float) -> Tensor:
    """``p^(1/T)`` normalised per row (MixMatch's temperature sharpening).

    Example:
        >>> import torch
        >>> sharpen(torch.tensor([[0.6, 0.4]]), 0.5).tolist()  # (0.36, 0.16) / 0.52
        [[0.6923076510429382, 0.3076923191547394]]
    """
    sharpened = probs.float() ** (1.0 / temperature)
    return sharpened / sharpened.sum(1, keepdim=True)


def refined_targets(probs: Tensor, labels: Tensor, clean: Tensor, temperature: float) -> Tensor:
    """Label co-refinement: ``sharpen(w y + (1 - w) p)`` with ``w`` the peer's clean
    probability of each example, ``y`` its one-hot label, ``p`` the network's prediction.

    Example:
        >>> import torch
        >>> refined_targets(torch.tensor([[0.5, 0.5]]), torch.tensor([0]), torch.tensor([0.5]), 1.0)
        tensor([[0.7500, 0.2500]])
    """
    target = F.one_hot(labels.long(), probs.shape[1]).float()
    weight = clean.float().unsqueeze(1)
    return sharpen(weight * target + (1.0 - weight) * probs.float(), temperature)


def mixmatch_loss(
    logits: Tensor, targets: Tensor, labelled: int, unlabelled_weight: float
) -> tuple[Tensor, dict[str, float]]:
    """The loss on a mixed batch (its first ``labelled`` rows mixed from labelled examples):
    soft cross-entropy on those, ``unlabelled_weight`` times the mean squared error of the
    probabilities on the others, and the uniform-prior penalty ``sum(pi log(pi / mean p))``.

    Example:
        >>> import torch
        >>> logits, targets = torch.zeros(2, 2), torch.tensor([[1.0, 0.0], [0.5, 0.5]])
        >>> loss, parts = mixmatch_loss(logits, targets, labelled=1, unlabelled_weight=1.0)
        >>> round(float(loss), 4), round(parts["labelled"], 4)  # log 2: uniform on a one-hot
        (0.6931, 0.6931)
    """
    logits = logits.float()
    log_probs = F.log_softmax(logits, dim=1)
    probs = log_probs.exp()
    zero = logits.new_zeros(())
    x_loss = -(targets[:labelled] * log_probs[:labelled]).sum(1).mean() if labelled else zero
    rest = probs[labelled:]
    u_loss = ((rest - targets[labelled:]) ** 2).mean() if len(rest) else zero
    prior = torch.full_like(probs[0], 1.0 / probs.shape[1])
    penalty = (prior * torch.log(prior / probs.mean(0))).sum()
    loss = x_loss + unlabelled_weight * u_loss + penalty
    return loss, {"labelled": float(x_loss.detach()), "unlabelled": float(u_loss.detach())}


def negative_entropy(logits: Tensor) -> Tensor:
    """The mean over the batch of ``sum_k p_k log p_k``, the reference's confidence penalty
    (lowest, ``-log K``, at uniform predictions): added to the warm-up's cross-entropy under
    asymmetric noise, it keeps the warm-up from fitting a confusable pair's flipped labels
    with confidence before the first division.

    Example:
        >>> import math, torch
        >>> round(float(negative_entropy(torch.zeros(3, 4))), 4) == round(-math.log(4), 4)
        True
    """
    log_probs = F.log_softmax(logits.float(), dim=1)
    return (log_probs.exp() * log_probs).sum(1).mean()


def clean_probability(losses: Tensor, seed: int = 0) -> Tensor:
    """Each example's probability of belonging to the low-loss component of a two-component
    Gaussian mixture fitted to the min-max normalised losses (the reference's settings:
    ``max_iter=10, tol=1e-2, reg_covar=5e-4``), seeded so every call on the same losses
    divides alike.

    Example:
        >>> import torch
        >>> losses = torch.cat([torch.full((50,), 0.1), torch.full((50,), 2.0)])
        >>> probability = clean_probability(losses + 0.01 * torch.arange(100) % 0.05)
        >>> bool(probability[:50].min() > 0.9), bool(probability[50:].max() < 0.1)
        (True, True)
    """
    from sklearn.mixture import GaussianMixture

    values = losses.double()
    span = values.max() - values.min()
    values = (values - values.min()) / (span if span > 0 else 1.0)
    mixture = GaussianMixture(
        n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=seed
    )
    column = values.reshape(-1, 1).numpy()
    mixture.fit(column)
    posterior = mixture.predict_proba(column)[:, mixture.means_.argmin()]
    return torch.as_tensor(posterior, dtype=torch.float32)


@contextlib.contextmanager
def _evaluating(*networks: nn.Module) -> Iterator[None]:
    """The networks in evaluation mode, without gradients, and back as they were."""
    modes = [network.training for network in networks]
    try:
        for network in networks:
            network.eval()
        with torch.no_grad():
            yield
    finally:
        for network, mode in zip(networks, modes, strict=True):
            network.train(mode)


@register_strategy("dividemix", example={"warmup_epochs": 1})
class DivideMix(TrainingStrategy):
    """DivideMix: co-divide with a Gaussian mixture on the losses, then MixMatch per network.

    Two networks (the model's and a peer) train with cross-entropy for ``warmup_epochs``. From
    then on, at the start of every epoch each network's per-example loss on the training split
    (one pass, evaluation mode) is fitted with a two-component Gaussian mixture; the posterior of
    the low-loss component is the example's clean probability ``w``. Each network then trains on
    its **peer's** division (co-divide: examples with ``w > clean_threshold`` labelled, the rest
    unlabelled) with MixMatch: labelled targets refined to ``sharpen(w y + (1 - w) p)``,
    unlabelled ones co-guessed from both networks' sharpened mean prediction, inputs and targets
    mixed with ``lambda ~ Beta(alpha, alpha)``, soft cross-entropy on the labelled rows,
    ``unlabelled_weight`` (ramped up linearly over ``rampup_epochs``) times the squared error on
    the others, and a uniform-prior penalty.

    The division is per-sample state (``model.strategy.clean``, ``N x 2``: the model's
    network's and the peer's), computed on rank 0 and broadcast (every DDP rank divides alike),
    and kept in checkpoints with the epoch it was made for, so a run resumed mid-epoch trains on
    the division the uninterrupted run had. The mixing draws come from a generator seeded by
    the run's seed, the epoch and the batch (a resumed run draws the same). Predictions are the
    mean of both networks' probabilities (the reference's test-time ensemble). DivideMix needs
    ``CrossEntropy`` as the loss.

    This version reads one view of each image per batch (the reference averages the
    predictions on two augmentations) and splits each batch into labelled and unlabelled rows
    (the reference draws them from two loaders).

    Args:
        warmup_epochs: Epochs of plain cross-entropy before the first division, >= 1 (10 of
            300 on CIFAR-10 in the paper).
        clean_threshold: ``w`` above which an example is labelled, in (0, 1) (0.5).
        alpha: The Beta distribution's parameter of the mixing weight, > 0 (4).
        sharpen_temperature: MixMatch's sharpening temperature, in (0, 1] (0.5).
        unlabelled_weight: ``lambda_u`` >= 0 (0: the reference's value for asymmetric and 20%
            symmetric noise, measured best in this project under 40-60% symmetric noise too;
            the reference uses 25 at 50% symmetric noise and above, 300 epochs).
        rampup_epochs: Epochs over which the unlabelled weight grows from 0 after the warm-up,
            >= 0 (16).
        warmup_confidence_penalty: The weight of the confidence penalty
            (:func:`negative_entropy`) added to each network's warm-up cross-entropy, >= 0 (1:
            the reference's value under asymmetric noise; it uses 0 under symmetric noise,
            where 1 measured at least as well here).

    Example:
        >>> from ln_lightning import CrossEntropy, NoisyLabelClassifier
        >>> model = NoisyLabelClassifier(
        ...     loss=CrossEntropy(), strategy=DivideMix(), input_shape=(1, 8, 8)
        ... )
        >>> type(model.strategy.peer).__name__, model.strategy.clean.shape
        ('Network', torch.Size([0, 2]))
    """

    def __init__(
        self,
        warmup_epochs: int = 5,
        clean_threshold: float = 0.5,
        alpha: float = 4.0,
        sharpen_temperature: float = 0.5,
        unlabelled_weight: float = 0.0,
        rampup_epochs: int = 16,
        warmup_confidence_penalty: float = 1.0,
    ) -> None:
        super().__init__()
        if warmup_epochs < 1:
            raise ValueError(f"warmup_epochs must be >= 1; got {warmup_epochs!r}.")
        if not 0.0 < clean_threshold < 1.0:
            raise ValueError(f"clean_threshold must lie in (0, 1); got {clean_threshold!r}.")
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0; got {alpha!r}.")
        if not 0.0 < sharpen_temperature <= 1.0:
            raise ValueError(
                f"sharpen_temperature must lie in (0, 1]; got {sharpen_temperature!r}."
            )
        if unlabelled_weight < 0 or rampup_epochs < 0:
            raise ValueError(
                "unlabelled_weight and rampup_epochs must be >= 0; got "
                f"{unlabelled_weight!r} and {rampup_epochs!r}."
            )
        if not warmup_confidence_penalty >= 0:
            raise ValueError(
                "warmup_confidence_penalty must be >= 0 (1 is the reference's under asymmetric "
                f"noise, 0 turns it off); got {warmup_confidence_penalty!r}."
            )
        self.warmup_epochs = int(warmup_epochs)
        self.clean_threshold = float(clean_threshold)
        self.alpha = float(alpha)
        self.sharpen_temperature = float(sharpen_temperature)
        self.unlabelled_weight = float(unlabelled_weight)
        self.rampup_epochs = int(rampup_epochs)
        self.warmup_confidence_penalty = float(warmup_confidence_penalty)

    def build(self, model: Any) -> None:
        if type(model.loss) is not CrossEntropy:
            raise ValueError(
                f"DivideMix trains with MixMatch's soft cross-entropy, so its loss must be "
                f"CrossEntropy; got {type(model.loss).__name__}. Add --model.loss "
                "ln_lightning.CrossEntropy (zoo/configs/strategies/dividemix.yaml does)."
            )
        self.peer = model.build_network()
        self.per_sample("clean", 2)
        #: The epoch the division in ``clean`` was made for (-1: none yet).
        self.register_buffer("divided_epoch", torch.tensor(-1))

    def parameters_to_optimise(self, model: Any) -> list[Any]:
        return [*model.network.trained_parameters(), *self.peer.trained_parameters()]

    def outputs(self, model: Any, inputs: Tensor) -> dict[str, Tensor]:
        """The mean of both networks' probabilities, as logits (``log`` of the mean)."""
        mean = (
            F.softmax(model.network(inputs)["logits"].float(), 1)
            + F.softmax(self.peer(inputs)["logits"].float(), 1)
        ) / 2
        return {"logits": torch.log(mean.clamp_min(1e-12))}

    # ------------------------------------------------------------------ the phase
    def plan(self, max_epochs: int | None) -> LossReport:
        """The warm-up, then a division every epoch; said plainly when the warm-up is the run.

        Example:
            >>> DivideMix(warmup_epochs=5).plan(20).message[:63]
            'DivideMix: cross-entropy on both networks for the first 5 of 20'
        """
        if max_epochs is not None and self.warmup_epochs >= max_epochs:
            return LossReport(
                message=(
                    f"DivideMix: the warm-up ({self.warmup_epochs} epochs) is not shorter than "
                    f"the run ({max_epochs} epochs), so the training set is never divided and "
                    "this run is cross-entropy on two networks. Lower "
                    "--model.strategy.warmup_epochs."
                )
            )
        budget = f" of {max_epochs}" if max_epochs is not None else ""
        return LossReport(
            message=(
                f"DivideMix: cross-entropy on both networks for the first {self.warmup_epochs}"
                f"{budget} epochs; then at every epoch's start a Gaussian mixture on each "
                "network's losses divides the training set, and each network trains with "
                "MixMatch on its peer's division."
            )
        )

    def in_warmup(self, epoch: int) -> bool:
        """Whether ``epoch`` trains with plain cross-entropy (a pure function of the epoch)."""
        return epoch < self.warmup_epochs

    def selectable(self, model: Any) -> bool:
        """Not the warm-up's epochs (cross-entropy, not DivideMix), unless the warm-up is the
        whole run."""
        max_epochs = epoch_budget(attached_trainer(model))
        ends = max_epochs is None or self.warmup_epochs < max_epochs
        warming_up = ends and self.in_warmup(model.current_epoch)
        return not warming_up and super().selectable(model)

    def unlabelled_weight_at(self, elapsed_epochs: float) -> float:
        """``unlabelled_weight`` ramped linearly from the end of the warm-up.

        Example:
            >>> strategy = DivideMix(warmup_epochs=2, rampup_epochs=4, unlabelled_weight=25)
            >>> strategy.unlabelled_weight_at(4.0)
            12.5
        """
        if self.rampup_epochs == 0:
            return self.unlabelled_weight
        ramp = (elapsed_epochs - self.warmup_epochs) / self.rampup_epochs
        return self.unlabelled_weight * min(max(ramp, 0.0), 1.0)

    # ------------------------------------------------------------------ co-divide
    def on_train_epoch_start(self, model: Any) -> None:
        super().on_train_epoch_start(model)
        epoch = model.current_epoch
        if self.in_warmup(epoch) or int(self.divided_epoch) == epoch:
            return  # warming up, or resumed mid-epoch with this epoch's division
        division = self.divide(model)
        self.clean.copy_(division.to(self.clean.device))
        self.divided_epoch.fill_(epoch)
        training = division.sum(1) > 0
        shares = (division[training] > self.clean_threshold).float().mean(0).tolist()
        report(model, LossReport(metrics={
            "dividemix/labelled_share": shares[0], "dividemix/labelled_share_peer": shares[1],
        }))  # fmt: skip

    def divide(self, model: Any) -> Tensor:
        """Both networks' clean probabilities ``(N, 2)`` over the training pool (0 outside the
        training split): the losses from a pass sharded over the ranks, the mixtures fitted on
        rank 0 and broadcast to every rank."""
        trainer = attached_trainer(model)
        with _evaluating(model.network, self.peer):
            index, losses = self.training_pass(
                model, lambda sample: self._losses(model, sample), width=2
            )
        division = None
        if trainer is None or trainer.global_rank == 0:
            seed = global_seed() + model.current_epoch
            division = torch.zeros(self.clean.shape, dtype=torch.float32)
            for column in range(2):
                division[index, column] = clean_probability(losses[:, column], seed)
        if trainer is not None and trainer.world_size > 1:
            division = trainer.strategy.broadcast(division, src=0)
        return division

    def _losses(self, model: Any, sample: NoisySample) -> Tensor:
        """Both networks' cross-entropy on a batch, ``(B, 2)``."""
        networks = (model.network, self.peer)
        pair = [
            F.cross_entropy(net(sample.input)["logits"].float(), sample.target, reduction="none")
            for net in networks
        ]
        return torch.stack(pair, 1)

    # ------------------------------------------------------------------ the step
    def training_step(
        self, model: Any, sample: NoisySample, batch_idx: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        index = self.index(sample)
        epoch = model.current_epoch
        if self.in_warmup(epoch):
            outputs = model.network.training_outputs(sample.input)
            peer = self.peer.training_outputs(sample.input)
            loss = self.loss(outputs, sample.target) + self.loss(peer, sample.target)
            if self.warmup_confidence_penalty:
                penalty = negative_entropy(outputs["logits"]) + negative_entropy(peer["logits"])
                loss = loss + self.warmup_confidence_penalty * penalty
            return loss, outputs
        with _evaluating(model.network, self.peer):
            mine = F.softmax(model.network(sample.input)["logits"].float(), 1)
            theirs = F.softmax(self.peer(sample.input)["logits"].float(), 1)
        guessed = sharpen((mine + theirs) / 2, self.sharpen_temperature)  # co-guessing
        draws = np.random.default_rng([global_seed(), epoch, batch_idx])  # the same on resume
        trainer = attached_trainer(model)
        batches = trainer.num_training_batches if trainer is not None else 0
        elapsed = epoch + (batch_idx / batches if 0 < batches < float("inf") else 0.0)
        weight = self.unlabelled_weight_at(elapsed)
        loss = sample.input.new_zeros((), dtype=torch.float32)
        # each network on its peer's division: the model's network on the peer's (column 1)
        for column, network, own in ((1, model.network, mine), (0, self.peer, theirs)):
            clean = self.clean[index, column]
            labelled = clean > self.clean_threshold
            refined = refined_targets(
                own[labelled], sample.target[labelled], clean[labelled], self.sharpen_temperature
            )
            inputs = torch.cat([sample.input[labelled], sample.input[~labelled]])
            targets = torch.cat([refined, guessed[~labelled]])
            mix = float(draws.beta(self.alpha, self.alpha))
            mix = max(mix, 1.0 - mix)
            order = torch.as_tensor(draws.permutation(len(inputs)), device=inputs.device)
            mixed_inputs = mix * inputs + (1 - mix) * inputs[order]
            mixed_targets = mix * targets + (1 - mix) * targets[order]
            logits = network(mixed_inputs)["logits"]
            part, _ = mixmatch_loss(logits, mixed_targets, int(labelled.sum()), weight)
            loss = loss + part
        return loss, {"logits": torch.log(mine.clamp_min(1e-12))}

    def after_optimizer_step(self, model: Any) -> None:
        super().after_optimizer_step(model)
        self.peer.update_averages()
