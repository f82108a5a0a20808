"""The average of the weights that evaluates (``weight_average_decay``): an EMA with a ramped
decay, moved after every optimiser step, never trained, run in evaluation mode (validation,
test, prediction, the passes over the training split), saved, restored and kept by exports."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from ln_lightning import DigitsDataModule, NoisyLabelClassifier
from ln_lightning.model.network import weight_average
from tests.helpers import quick_trainer


@pytest.fixture(scope="module")
def datamodule():
    data = DigitsDataModule(batch_size=32)
    data.setup()
    return data


def averaged_model(decay: float = 0.9, **kwargs) -> NoisyLabelClassifier:
    torch.manual_seed(0)
    return NoisyLabelClassifier(input_shape=(1, 8, 8), weight_average_decay=decay, **kwargs)


def live_state(model: NoisyLabelClassifier) -> dict[str, torch.Tensor]:
    """The network's own weights and buffers, by the average's names."""
    state = {f"backbone.{k}": v for k, v in model.backbone.state_dict().items()}
    state.update({f"heads.{k}": v for k, v in model.heads.state_dict().items()})
    return {k: v.detach().clone() for k, v in state.items()}


def average_state(model: NoisyLabelClassifier) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.network.average.module.state_dict().items()}


def test_the_decay_ramps_up_with_the_updates_and_other_tensors_are_copied():
    layer = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        layer[0].weight.fill_(0.0)
    average = weight_average(layer, decay=0.5)
    expected, seen = 0.0, []
    for updates, weight in enumerate([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0], 1):
        with torch.no_grad():
            layer[0].weight.fill_(weight)
            layer[1].num_batches_tracked.fill_(10 * updates)
        average.update_parameters(layer)
        # ``updates`` so far, the start counted: decay min(0.5, (1 + n) / (10 + n))
        decay = min(0.5, (1 + updates) / (10 + updates))
        expected = decay * expected + (1 - decay) * weight
        seen.append(average.module[0].weight.item())
        assert seen[-1] == pytest.approx(expected)
        assert int(average.module[1].num_batches_tracked) == 10 * updates  # an integer: copied
    # by hand: 2/11 of the start (0) and 9/11 of 1; then 3/12 of that and 9/12 of 2
    assert seen[:2] == pytest.approx([9 / 11, 3 / 12 * 9 / 11 + 9 / 12 * 2])
    # the ramp passes 0.5 at n = 8: the 9th update takes half of the weights
    assert seen[8] == pytest.approx(0.5 * seen[7] + 0.5 * 256.0)
    assert not any(p.requires_grad for p in average.parameters())


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 1.5])
def test_a_decay_outside_zero_one_is_refused_with_the_fix(decay):
    with pytest.raises(ValueError, match=r"weight_average_decay must lie in \(0, 1\).*None"):
        averaged_model(decay)


def test_without_a_decay_there_is_no_average():
    assert NoisyLabelClassifier(input_shape=(1, 8, 8)).network.average is None


def test_the_average_starts_at_the_weights_and_is_not_trained():
    model = averaged_model()
    for name, value in average_state(model).items():
        torch.testing.assert_close(value, live_state(model)[name], msg=name)
    trained = {id(p) for p in model.configure_optimizers().param_groups[0]["params"]}
    assert trained == {id(p) for p in [*model.backbone.parameters(), *model.heads.parameters()]}


class RecordSteps(Callback):
    """The network's weights and the average after every training batch."""

    def __init__(self):
        self.live, self.average, self.steps = [], [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.live.append(live_state(pl_module))
        self.average.append(average_state(pl_module))
        self.steps.append(trainer.global_step)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_the_average_moves_after_every_optimizer_step(tmp_path, datamodule, accumulate):
    model, record = averaged_model(0.9), RecordSteps()
    previous, last_step = average_state(model), 0
    quick_trainer(tmp_path, callbacks=[record], limit_train_batches=4,
                  accumulate_grad_batches=accumulate).fit(model, datamodule)  # fmt: skip
    assert record.steps == [(i + 1) // accumulate for i in range(4)]
    for step, live, average in zip(record.steps, record.live, record.average, strict=True):
        if step == last_step:  # no optimiser step since the last record: the average stays
            expected = previous
        else:  # n = step updates before this one: decay min(0.9, (1 + n) / (10 + n))
            decay = min(0.9, (1 + step) / (10 + step))
            expected = {
                name: decay * value + (1 - decay) * live[name] if value.is_floating_point()
                else live[name]
                for name, value in previous.items()
            }  # fmt: skip
        for name, value in average.items():
            torch.testing.assert_close(value, expected[name], msg=name)
        previous, last_step = average, step
    assert int(model.network.average.n_averaged) == 1 + 4 // accumulate


def test_evaluation_mode_runs_the_average_and_training_mode_the_weights(tmp_path, datamodule):
    model = averaged_model(0.5)
    run = quick_trainer(tmp_path, limit_train_batches=4)
    run.fit(model, datamodule)
    inputs = torch.randn(5, 1, 8, 8)
    network = model.network
    with torch.no_grad():
        model.eval()
        averaged = model.loss.predict_proba(network.average(inputs))
        own = model.loss.predict_proba(network.heads(network.backbone(inputs)))
        assert torch.allclose(model.predict_proba(inputs), averaged)
        assert not torch.allclose(averaged, own)
        model.train()  # batch statistics: the same batch through the network's own weights
        own = model.loss.predict_proba(network.heads(network.backbone(inputs)))
        assert torch.allclose(model.predict_proba(inputs), own)
    # the test metrics are the average's: its accuracy on the clean test split
    (results,) = run.test(model, datamodule, verbose=False)
    model.eval()
    test = datamodule.split("test", eval_transform=True)
    with torch.no_grad():
        probs = model.predict_proba(torch.stack([test[i].input for i in range(len(test))]))
        assert torch.allclose(
            probs,
            model.loss.predict_proba(
                network.average(torch.stack([test[i].input for i in range(len(test))]))
            ),
        )
    labels = torch.tensor([int(test[i].target) for i in range(len(test))])
    assert results["test/acc"] == pytest.approx(float((probs.argmax(1) == labels).float().mean()))
    # and so are the passes over the training split (Forward correction's estimate of T)
    split = model.split_predictions("train", datamodule)
    train = datamodule.split("train", eval_transform=True)
    with torch.no_grad():
        first = model.eval().predict_proba(train[0].input[None])
    torch.testing.assert_close(split.probs[0], first[0], rtol=1e-5, atol=1e-6)


def test_the_average_is_saved_restored_and_kept_by_exports(tmp_path, datamodule):
    model = averaged_model(0.9)  # LN: the covariance head is dropped from exports
    run = quick_trainer(tmp_path, enable_checkpointing=True, limit_train_batches=3)
    run.fit(model, datamodule)
    path = tmp_path / "averaged.ckpt"
    run.save_checkpoint(path)
    assert torch.load(path, weights_only=True)["state_dict"]["network.average.n_averaged"] == 4
    restored = NoisyLabelClassifier.load_from_checkpoint(path)
    assert restored.hparams.weight_average_decay == 0.9
    for name, value in average_state(model).items():
        torch.testing.assert_close(average_state(restored)[name], value, msg=name)
    inputs = torch.randn(3, 1, 8, 8)
    before = restored.eval().predict_proba(inputs)
    restored.drop_auxiliary_heads()  # an export: the average's weights become the network's
    assert restored.network.average is None
    assert not any(key.startswith("network.average.") for key in restored.state_dict())
    torch.testing.assert_close(restored.eval().predict_proba(inputs), before)
    assert set(restored.heads.heads) == {"mean"}


def test_a_strategys_peer_keeps_an_average_of_its_own(tmp_path, datamodule):
    from ln_lightning import CoTeaching, CrossEntropy

    model = averaged_model(0.9, loss=CrossEntropy(), strategy=CoTeaching())
    peer = model.strategy.peer
    assert peer.average is not None and peer.average is not model.network.average
    averages = {id(p) for net in (model.network, peer) for p in net.average.parameters()}
    trained = {id(p) for p in model.trained_parameters()}
    assert trained and not trained & averages
    quick_trainer(tmp_path, limit_train_batches=3).fit(model, datamodule)
    assert int(peer.average.n_averaged) == int(model.network.average.n_averaged) == 4
