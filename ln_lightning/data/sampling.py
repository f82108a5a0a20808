"""Training samplers whose order depends only on (seed, epoch), so a run can resume mid-epoch."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DistributedSampler

from ln_lightning.resume import TrainingPosition


def global_seed() -> int:
    """The seed of ``seed_everything`` (``PL_GLOBAL_SEED``), else 0, as Lightning's samplers use.

    ``PL_GLOBAL_SEED`` is the environment variable Lightning's ``seed_everything`` documents
    setting (checked against Lightning 2.6).
    """
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


class ResumableSampler(DistributedSampler):
    """Shuffled training order drawn from ``seed + epoch``, sharded over DDP ranks, resumable.

    A ``DistributedSampler`` (so Lightning keeps it under DDP and calls ``set_epoch``) whose
    world size and rank come from ``torch.distributed`` when it is initialised. The order of an
    epoch does not depend on any global random state, so a run restarted from a checkpoint sees
    the same order; :meth:`resume` makes the next iteration skip the examples a checkpointed run
    already trained on. Subclasses change the order of an epoch by overriding :meth:`epoch_order`.

    Args:
        dataset: The data set being sampled (only its length is used).
        seed: Seed of the order; ``None`` takes ``seed_everything``'s seed.
        num_replicas: DDP world size (from ``torch.distributed`` when initialised, else 1).
        rank: This process's rank (likewise, else 0).

    Example:
        >>> sampler = ResumableSampler(range(6), seed=0, num_replicas=1, rank=0)
        >>> sampler.set_epoch(1)
        >>> order = list(sampler)
        >>> from ln_lightning.resume import TrainingPosition
        >>> sampler.resume(TrainingPosition(epoch=1, batches=2), batch_size=2)
        >>> list(sampler) == order[4:]  # two batches were trained: the epoch continues after them
        True
    """

    def __init__(
        self,
        dataset: Any,
        seed: int | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        num_replicas = num_replicas or (dist.get_world_size() if distributed else 1)
        rank = rank if rank is not None else (dist.get_rank() if distributed else 0)
        seed = global_seed() if seed is None else seed
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self._skip = 0

    def epoch_order(self) -> Tensor:
        """Indices of the whole epoch, every rank's shard included (at least ``total_size``)."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(len(self.dataset), generator=generator)

    def resume(self, position: TrainingPosition, batch_size: int) -> None:
        """Continue from ``position``: set its epoch and skip the batches already trained on.

        Takes effect on the next iteration only. The epoch is set here because Lightning creates
        the first iterator of a resumed run before it calls ``set_epoch``.
        """
        if position.epoch_done:
            self.set_epoch(position.epoch + 1)
            self._skip = 0
        else:
            self.set_epoch(position.epoch)
            ranks = position.world_size or self.num_replicas
            # Rank r took order[r::ranks]: together the first batches * batch_size * ranks.
            self._skip = min(position.batches * batch_size * ranks, self.total_size)

    def __iter__(self) -> Iterator[int]:
        order = self.epoch_order()
        if len(order) < self.total_size:  # pad so every rank gets num_samples indices
            order = order.repeat(math.ceil(self.total_size / len(order)))
        order = order[: self.total_size]
        skip, self._skip = self._skip, 0
        rest = order[skip:]  # what the epoch has left, on any number of ranks
        remaining = math.ceil(len(rest) / self.num_replicas) * self.num_replicas
        if len(rest) < remaining:  # pad from the start of the order, as a whole epoch is
            rest = torch.cat([rest, order[: remaining - len(rest)]])
        return iter(rest[self.rank :: self.num_replicas].tolist())
