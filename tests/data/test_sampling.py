"""Training samplers: order from (seed, epoch), DDP shards, mid-epoch resume."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DistributedSampler

from ln_lightning import DigitsDataModule
from ln_lightning.data import ClassBalancedSampler
from ln_lightning.data.sampling import ResumableSampler
from ln_lightning.resume import TrainingPosition

DATA = list(range(23))


@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_order_is_distributed_samplers_for_the_same_seed_and_epoch(replicas):
    for rank in range(replicas):
        ours = ResumableSampler(DATA, seed=5, num_replicas=replicas, rank=rank)
        theirs = DistributedSampler(DATA, num_replicas=replicas, rank=rank, shuffle=True, seed=5)
        for epoch in (0, 3):
            ours.set_epoch(epoch)
            theirs.set_epoch(epoch)
            assert list(ours) == list(theirs)


def test_ranks_split_every_epoch_between_them():
    shards = [list(ResumableSampler(DATA, seed=1, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 12
    assert set(shards[0]) | set(shards[1]) == set(DATA)


def test_seed_defaults_to_seed_everything(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    assert list(ResumableSampler(DATA)) == list(ResumableSampler(DATA, seed=7))
    assert list(ResumableSampler(DATA)) != list(ResumableSampler(DATA, seed=8))


@pytest.mark.parametrize("sampler_type", ["plain", "balanced"])
def test_resume_skips_the_trained_batches_of_that_epoch_once(sampler_type):
    def make():
        if sampler_type == "balanced":
            return ClassBalancedSampler(torch.arange(23) % 3, per_class=6, seed=2)
        return ResumableSampler(DATA, seed=2)

    reference = make()
    reference.set_epoch(4)
    epoch_four = list(reference)
    reference.set_epoch(5)
    epoch_five = list(reference)

    resumed = make()
    resumed.resume(TrainingPosition(epoch=4, batches=2), batch_size=5)
    assert resumed.epoch == 4  # set before Lightning's set_epoch: its first iterator comes first
    assert list(resumed) == epoch_four[10:]
    assert list(resumed) == epoch_four  # one-shot: a later pass over the epoch is whole
    resumed.resume(TrainingPosition(epoch=4, batches=4, epoch_done=True), batch_size=5)
    assert resumed.epoch == 5 and list(resumed) == epoch_five
    resumed.resume(TrainingPosition(epoch=4, batches=100), batch_size=5)
    assert list(resumed) == []


def test_datamodule_state_resumes_its_next_training_loader():
    data = DigitsDataModule(batch_size=100)
    data.setup()
    assert data.state_dict() == {}  # not fitting: nothing to resume
    reference = list(data.train_dataloader().sampler)
    data.load_state_dict({"train_position": {"epoch": 0, "batches": 3, "epoch_done": False}})
    assert list(data.train_dataloader().sampler) == reference[300:]
    assert list(data.train_dataloader().sampler) == reference  # only the first loader resumes


def test_a_sampler_that_cannot_resume_warns(monkeypatch):
    data = DigitsDataModule()
    data.setup()
    monkeypatch.setattr(data, "train_sampler", lambda dataset: None)
    data.load_state_dict({"train_position": {"epoch": 1, "batches": 3, "epoch_done": False}})
    with pytest.warns(UserWarning, match="cannot skip what was trained"):
        data.train_dataloader()


@pytest.mark.parametrize(("before", "after"), [(2, 1), (1, 2), (2, 3), (3, 2)])
def test_a_run_resumed_on_another_number_of_ranks_trains_each_remaining_example_once(before, after):
    """Rank r takes order[r::W]: after b batches on W ranks the first b*B*W of the epoch's order
    are trained, whatever W the run continues with."""
    dataset, batch, taken = range(1000), 16, 5
    ranks = [ResumableSampler(dataset, seed=3, num_replicas=before, rank=r) for r in range(before)]
    for sampler in ranks:
        sampler.set_epoch(2)
    seen = [i for sampler in ranks for i in list(sampler)[: taken * batch]]
    position = TrainingPosition(epoch=2, batches=taken, world_size=before)
    resumed = []
    for rank in range(after):
        sampler = ResumableSampler(dataset, seed=3, num_replicas=after, rank=rank)
        sampler.resume(position, batch_size=batch)
        resumed.append(list(sampler))
    assert len({len(shard) for shard in resumed}) == 1  # equal shards: no rank waits for another
    rest = [i for shard in resumed for i in shard]
    assert set(seen) | set(rest) == set(dataset)  # every example of the epoch
    assert len(rest) - len(set(rest)) < after  # each remaining one once (DDP pads up to W - 1)
    assert len(set(seen) & set(rest)) < after
