"""The EMA teacher a loss can ask for (SGN): made by the model, updated after every optimizer step,
fed to the loss, evaluated beside the network, saved, restored and left out of exports."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from ln_lightning import (
    DigitsDataModule,
    LogisticNormalLoss,
    NoisyLabelClassifier,
    ShiftedGaussianNoise,
)
from ln_lightning.losses import teacher_key
from tests.helpers import quick_trainer


def trainer(tmp_path, **kwargs) -> pl.Trainer:
    return quick_trainer(tmp_path, **{"limit_train_batches": 4, **kwargs})


@pytest.fixture(scope="module")
def datamodule():
    data = DigitsDataModule(batch_size=32)
    data.setup()
    return data


def sgn_model(decay: float = 0.5) -> NoisyLabelClassifier:
    torch.manual_seed(0)
    return NoisyLabelClassifier(loss=ShiftedGaussianNoise(ema_decay=decay), input_shape=(1, 8, 8))


def network_state(model: NoisyLabelClassifier) -> dict[str, torch.Tensor]:
    params = {f"backbone.{k}": v for k, v in model.backbone.named_parameters()}
    params.update({f"heads.{k}": v for k, v in model.heads.named_parameters()})
    return {k: v.detach().clone() for k, v in params.items()}


def teacher_state(model: NoisyLabelClassifier) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.teacher.module.named_parameters()}


def test_only_a_loss_that_asks_gets_a_teacher_and_it_is_not_trained():
    assert NoisyLabelClassifier(loss=LogisticNormalLoss(), input_shape=(1, 8, 8)).teacher is None
    model = sgn_model()
    assert teacher_state(model).keys() == network_state(model).keys()
    for name, value in teacher_state(model).items():  # starts at the network's weights
        torch.testing.assert_close(value, network_state(model)[name])
    assert not any(p.requires_grad for p in model.teacher.parameters())
    trained = {id(p) for p in model.configure_optimizers().param_groups[0]["params"]}
    assert trained == {id(p) for p in [*model.backbone.parameters(), *model.heads.parameters()]}


class RecordSteps(Callback):
    """The network's and the teacher's weights after every training batch."""

    def __init__(self):
        self.network, self.teacher, self.steps = [], [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.network.append(network_state(pl_module))
        self.teacher.append(teacher_state(pl_module))
        self.steps.append(trainer.global_step)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_the_teacher_is_an_ema_updated_after_every_optimizer_step(tmp_path, datamodule, accumulate):
    model, record = sgn_model(decay=0.5), RecordSteps()
    start = teacher_state(model)
    trainer(tmp_path, callbacks=[record], accumulate_grad_batches=accumulate).fit(model, datamodule)
    assert record.steps == [(i + 1) // accumulate for i in range(4)]
    previous, last_step = start, 0
    for step, network, teacher in zip(record.steps, record.network, record.teacher, strict=True):
        if step == last_step:  # no optimizer step since the last record: the teacher stays
            expected = previous
        else:  # teacher_n = decay teacher_{n-1} + (1 - decay) network_n, seen by callbacks
            expected = {name: 0.5 * previous[name] + 0.5 * network[name] for name in previous}
        for name, value in teacher.items():
            torch.testing.assert_close(value, expected[name])
        previous, last_step = teacher, step
    assert int(model.teacher.n_averaged) == 1 + 4 // accumulate


def test_the_training_step_passes_the_teacher_outputs_and_the_training_time(tmp_path, datamodule):
    model = sgn_model()
    seen = []
    per_example = model.loss.per_example

    def recording(outputs, labels):
        if model.loss.training:
            seen.append((dict(outputs), model.loss.shift_weight))
        return per_example(outputs, labels)

    model.loss.per_example = recording
    trainer(tmp_path, max_epochs=2).fit(model, datamodule)
    outputs, shift_weight = seen[-1]
    assert outputs.keys() == {"mean", "factor", teacher_key("mean"), teacher_key("factor")}
    assert not outputs[teacher_key("mean")].requires_grad and outputs["mean"].requires_grad
    assert not torch.equal(outputs[teacher_key("mean")], outputs["mean"].detach())
    # the last of 2 x 4 steps: e = 1 + 3 / 4
    assert shift_weight == pytest.approx(1 - 0.995**1.75)
    assert len(seen) == 8


def test_validation_and_test_evaluate_the_teacher_beside_the_network(tmp_path, datamodule):
    model = sgn_model()
    run = trainer(tmp_path)
    run.fit(model, datamodule)
    assert {"val/acc_noisy_teacher", "val/acc_clean_teacher"} <= run.callback_metrics.keys()
    (results,) = run.test(model, datamodule, verbose=False)
    assert {"test/acc", "test/acc_teacher"} <= results.keys()
    model.eval()
    inputs = torch.randn(4, 1, 8, 8)
    with torch.no_grad():  # predictions are the network's, not the teacher's
        network = model.predict_proba(inputs)
        teacher = model.loss.predict_proba(model.teacher(inputs))
    assert not torch.allclose(network, teacher)
    assert results["test/acc"] != results["test/acc_teacher"]


def test_the_teacher_is_saved_restored_and_left_out_of_exports(tmp_path, datamodule):
    model = sgn_model(decay=0.9)
    run = trainer(tmp_path, enable_checkpointing=True, limit_train_batches=3)
    run.fit(model, datamodule)
    path = tmp_path / "sgn.ckpt"
    run.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert saved["network.teacher.n_averaged"] == 4
    restored = NoisyLabelClassifier.load_from_checkpoint(path)
    assert isinstance(restored.loss, ShiftedGaussianNoise) and restored.loss.ema_decay == 0.9
    for name, value in teacher_state(model).items():
        torch.testing.assert_close(teacher_state(restored)[name], value)
    assert not torch.equal(
        teacher_state(restored)["heads.heads.mean.weight"],
        network_state(model)["heads.heads.mean.weight"],
    )
    inputs = torch.randn(3, 1, 8, 8)
    before = restored.eval().predict_proba(inputs)
    restored.drop_auxiliary_heads()
    assert restored.teacher is None
    assert not any(key.startswith("network.teacher.") for key in restored.state_dict())
    assert set(restored.heads.heads) == {"mean"}
    torch.testing.assert_close(restored.predict_proba(inputs), before)
