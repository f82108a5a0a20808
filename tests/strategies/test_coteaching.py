"""Co-teaching against a hand-computed exchange (Algorithm 1 of Han et al. 2018)."""

from __future__ import annotations

import pytest
import torch

from ln_lightning import CoTeaching, CrossEntropy, LogisticNormalLoss, NoisyLabelClassifier
from ln_lightning.data.dataset import NoisySample
from ln_lightning.strategies.coteaching import coteaching_losses, forget_rate_at

SHAPE = (1, 8, 8)


def test_each_network_learns_from_what_the_other_finds_easy():
    first = torch.tensor([0.1, 2.0, 0.5, 3.0], requires_grad=True)
    second = torch.tensor([1.0, 0.2, 0.3, 4.0], requires_grad=True)
    one, two = coteaching_losses(first, second, forget=0.5)  # keep int(0.5 * 4) = 2
    # the second network's two smallest: examples 1, 2 -> the first's (2.0 + 0.5) / 2
    # the first network's two smallest: examples 0, 2 -> the second's (1.0 + 0.3) / 2
    assert float(one) == pytest.approx(1.25) and float(two) == pytest.approx(0.65)
    (one + two).backward()
    assert first.grad.tolist() == [0.0, 0.5, 0.5, 0.0]
    assert second.grad.tolist() == [0.5, 0.0, 0.5, 0.0]
    all_kept = coteaching_losses(first, second, forget=0.0)
    assert float(all_kept[0]) == pytest.approx(float(first.mean()))


def test_the_forget_rate_grows_with_the_epoch_alone():
    assert [forget_rate_at(e, 0.2, 5) for e in range(7)] == pytest.approx(
        [0.0, 0.04, 0.08, 0.12, 0.16, 0.2, 0.2]
    )
    assert forget_rate_at(0, 0.3, 0) == 0.3


@pytest.mark.parametrize("loss", [CrossEntropy, LogisticNormalLoss])
def test_the_peer_is_another_network_and_both_are_trained(loss):
    model = NoisyLabelClassifier(loss=loss(), strategy=CoTeaching(), input_shape=SHAPE)
    peer = model.strategy.peer
    assert sorted(peer.heads.heads) == sorted(model.network.heads.heads)
    mine = dict(model.network.named_parameters())
    assert any(not torch.equal(p, mine[k]) for k, p in peer.named_parameters())  # own init
    optimised = {id(p) for p in model.trained_parameters()}
    assert {id(p) for p in peer.parameters()} <= optimised
    sample = NoisySample(torch.randn(8, *SHAPE), torch.arange(8) % 10, None, torch.arange(8))
    loss_value, outputs = model.strategy.training_step(model, sample, 0)
    loss_value.backward()
    assert all(p.grad is not None for p in peer.parameters())
    assert all(p.grad is not None for p in model.network.parameters())
    assert torch.equal(outputs[model.loss.prediction_heads[0]],
                       model.network(sample.input)[model.loss.prediction_heads[0]])  # fmt: skip


def test_a_module_backbone_gets_a_reinitialised_copy_for_the_peer():
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU())
    model = NoisyLabelClassifier(backbone, CrossEntropy(), CoTeaching(), input_shape=SHAPE)
    assert model.strategy.peer.backbone is not model.network.backbone
    assert not torch.equal(model.strategy.peer.backbone[1].weight, backbone[1].weight)


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="forget_rate must lie in"):
        CoTeaching(forget_rate=1.0)
    with pytest.raises(ValueError, match="gradual_epochs must be >= 0"):
        CoTeaching(gradual_epochs=-1)
