"""NoisyLabelClassifier: heads follow the loss, training, prediction, export, checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ln_lightning import CrossEntropy, DigitsDataModule, LogisticNormalLoss, NoisyLabelClassifier
from tests.helpers import quick_trainer


@pytest.fixture(scope="module")
def datamodule():
    dm = DigitsDataModule(batch_size=32)
    dm.setup()
    return dm


@pytest.mark.parametrize(
    ("loss", "heads"),
    [
        (LogisticNormalLoss(), {"mean": 10, "scale": 10}),
        (LogisticNormalLoss(covariance="isotropic"), {"mean": 10, "scale": 1}),
        (LogisticNormalLoss(covariance="identity", dummy_class=False), {"mean": 9}),
        (CrossEntropy(), {"logits": 10}),
    ],
)
def test_heads_follow_the_loss(loss, heads):
    model = NoisyLabelClassifier(loss=loss, input_shape=(1, 8, 8))
    widths = {name: layer.out_features for name, layer in model.heads.heads.items()}
    assert widths == heads
    outputs = model(torch.randn(4, 1, 8, 8))
    assert {k: v.shape for k, v in outputs.items()} == {k: (4, w) for k, w in heads.items()}
    probs = model.predict_proba(torch.randn(4, 1, 8, 8))
    assert probs.shape == (4, 10)
    torch.testing.assert_close(probs.sum(-1), torch.ones(4))


class TinyBackbone(nn.Module):
    """A plain nn.Module without timm attributes."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 24), nn.ReLU())

    def forward(self, x):
        return self.net(x)


def test_any_module_backbone_with_input_shape():
    model = NoisyLabelClassifier(backbone=TinyBackbone(), input_shape=(1, 8, 8))
    assert model.heads.heads["mean"].in_features == 24
    with pytest.raises(ValueError, match="input_shape"):
        NoisyLabelClassifier(backbone=TinyBackbone())


def test_backbone_errors_are_clear():
    with pytest.raises(ValueError, match="not a timm model"):
        NoisyLabelClassifier(backbone="no_such_net", input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match=r"\(batch, features\)"):
        NoisyLabelClassifier(backbone=nn.Conv2d(1, 4, 3), input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="num_classes"):
        NoisyLabelClassifier(num_classes=1, input_shape=(1, 8, 8))


def test_timm_backbones_by_name():
    model = NoisyLabelClassifier(backbone="resnet18", input_shape=(1, 8, 8))
    assert model.backbone.conv1.in_channels == 1  # in_chans from input_shape
    assert model.heads.heads["mean"].in_features == 512


def test_training_logs_noise_aware_metrics_and_learns(tmp_path, datamodule):
    torch.manual_seed(0)
    model = NoisyLabelClassifier(input_shape=(1, 8, 8))
    batch = next(iter(datamodule.train_dataloader()))
    before = model.loss(model(batch.input), batch.target).item()
    t = quick_trainer(tmp_path, max_epochs=3, limit_train_batches=None)
    t.fit(model, datamodule=datamodule)
    model.eval()
    after = model.loss(model(batch.input), batch.target).item()
    assert after < before
    for key in (
        "train/loss",
        "train/acc_noisy",
        "train/acc_clean",
        "val/acc_noisy",
        "val/acc_clean",
    ):
        assert key in t.callback_metrics, key
    assert float(t.callback_metrics["val/acc_clean"]) > 0.3  # far above chance after 3 epochs
    # The memorisation split recombines into the overall accuracies of the same epoch.
    metrics = {k: float(v) for k, v in t.callback_metrics.items()}
    train = datamodule.train_set
    given, true = train.noisy_labels[train.indices], train.clean_labels[train.indices]
    share = float((given != true).float().mean())
    assert 0.1 < share < 0.3
    for overall, part in (("acc_noisy", "acc_corrupted_vs_noisy"), ("acc_clean", "vs_true")):
        part = "acc_corrupted_" + part.removeprefix("acc_corrupted_")
        expected = (1 - share) * metrics["train/acc_uncorrupted"] + share * metrics[f"train/{part}"]
        assert metrics[f"train/{overall}"] == pytest.approx(expected, abs=1e-5)
    (result,) = t.test(model, datamodule=datamodule, verbose=False)
    # The test report equals its definitions on the same predictions.
    probs = torch.cat([batch["probs"] for batch in t.predict(model, datamodule=datamodule)])
    labels = datamodule.test_set.clean_labels[datamodule.test_set.indices]
    accuracy = float((probs.argmax(1) == labels).float().mean())
    assert result["test/acc"] == pytest.approx(accuracy) and accuracy > 0.3  # it learned
    picked = probs.gather(1, labels[:, None]).squeeze(1)
    assert result["test/nll"] == pytest.approx(float(-picked.log().mean()), rel=1e-4)
    brier = (probs - torch.nn.functional.one_hot(labels, 10)).square().sum(1).mean()
    assert result["test/brier"] == pytest.approx(float(brier), rel=1e-4)
    confidence, predicted = probs.max(1)
    bins = torch.clamp((confidence * 15).ceil().long() - 1, 0, 14)
    ece = sum(
        (bins == b).float().mean() * ((predicted == labels)[bins == b].float().mean()
        - confidence[bins == b].mean()).abs()
        for b in range(15) if (bins == b).any()
    )  # fmt: skip
    assert result["test/ece"] == pytest.approx(float(ece), abs=1e-4)


def test_predict_returns_probabilities_labels_and_uncertainty(tmp_path, datamodule):
    model = NoisyLabelClassifier(input_shape=(1, 8, 8))
    predictions = quick_trainer(tmp_path).predict(model, datamodule=datamodule)
    batches = {key: torch.cat([p[key] for p in predictions]) for key in predictions[0]}
    assert set(batches) == {"probs", "uncertainty", "index", "given", "clean"}
    probs, test = batches["probs"], datamodule.test_set
    assert probs.shape == (len(test), 10)
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(probs)))
    assert torch.equal(batches["index"], test.indices)  # the test set, in order
    assert torch.equal(batches["given"], test.noisy_labels[test.indices])
    assert (batches["uncertainty"] >= model.loss.min_scale).all()
    # Unlabelled inputs (a bare tensor batch): probabilities (and uncertainty) only.
    bare = model.predict_step(torch.randn(3, 1, 8, 8), 0)
    assert set(bare) == {"probs", "uncertainty"} and bare["probs"].shape == (3, 10)


def test_drop_auxiliary_heads_keeps_predictions():
    model = NoisyLabelClassifier(input_shape=(1, 8, 8)).eval()
    x = torch.randn(5, 1, 8, 8)
    before = model.predict_proba(x)
    model.drop_auxiliary_heads()
    assert set(model.heads.heads) == {"mean"}
    torch.testing.assert_close(model.predict_proba(x), before)


def test_checkpoint_roundtrip(tmp_path, datamodule):
    model = NoisyLabelClassifier(loss=LogisticNormalLoss(temperature=0.5), input_shape=(1, 8, 8))
    t = quick_trainer(tmp_path)
    t.fit(model, datamodule=datamodule)
    path = tmp_path / "model.ckpt"
    t.save_checkpoint(path)
    restored = NoisyLabelClassifier.load_from_checkpoint(
        path, loss=LogisticNormalLoss(temperature=0.5)
    )
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(restored.eval().predict_proba(x), model.eval().predict_proba(x))


def test_bf16_mixed_training_on_cpu(tmp_path, datamodule):
    model = NoisyLabelClassifier(input_shape=(1, 8, 8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    t = quick_trainer(tmp_path, precision="bf16-mixed", limit_train_batches=2)
    t.fit(model, datamodule=datamodule)
    assert t.global_step == 2 and torch.isfinite(t.callback_metrics["train/loss"])
    # mixed precision: the weights stay float32 and both steps changed them
    assert all(p.dtype == torch.float32 for p in model.parameters())
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert "network.heads.heads.mean.weight" in changed
    assert any(k.startswith("network.backbone.") for k in changed)


def test_plain_two_tuple_batches_work(tmp_path):
    x, y = torch.randn(40, 1, 8, 8), torch.randint(0, 10, (40,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    model = NoisyLabelClassifier(input_shape=(1, 8, 8))
    t = quick_trainer(tmp_path)
    t.fit(model, train_dataloaders=loader, val_dataloaders=loader)
    assert "train/acc_noisy" in t.callback_metrics and "train/acc_clean" not in t.callback_metrics


@pytest.mark.parametrize("loss", [LogisticNormalLoss(), CrossEntropy()], ids=["LN", "CE"])
def test_bf16_autocast_loss_and_gradients_stay_close_to_float32(loss):
    """Under CPU bf16 autocast the network runs in bf16, the loss in float32 (finite, close)."""
    torch.manual_seed(0)
    model = NoisyLabelClassifier(loss=loss, input_shape=(1, 8, 8))
    inputs, labels = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))

    def loss_and_grads(autocast: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            outputs = model(inputs)
            value = model.loss(outputs, labels)
        value.backward()
        return value.detach(), [p.grad.clone() for p in model.parameters()]

    reference, reference_grads = loss_and_grads(False)
    value, grads = loss_and_grads(True)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert value.item() == pytest.approx(reference.item(), rel=0.03)
    flat = torch.cat([g.flatten() for g in grads])
    flat_reference = torch.cat([g.flatten() for g in reference_grads])
    assert torch.isfinite(flat).all()
    cosine = torch.nn.functional.cosine_similarity(flat, flat_reference, dim=0)
    assert cosine > 0.99  # bf16 has 8 bits of mantissa: same direction, small relative error


@pytest.mark.slow  # torch.compile: 20 s
def test_compiled_backbone_gives_the_same_losses_and_gradients():
    """--model.compile true: torch.compile of the backbone (inductor, on the CPU here)."""
    torch.manual_seed(0)
    plain = NoisyLabelClassifier(input_shape=(1, 8, 8))
    compiled = NoisyLabelClassifier(input_shape=(1, 8, 8), compile=True)
    compiled.load_state_dict(plain.state_dict())  # the same keys: checkpoints carry over
    inputs, labels = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    for model in (plain, compiled):
        model.loss(model(inputs), labels).backward()
    torch.testing.assert_close(
        compiled.loss(compiled(inputs), labels), plain.loss(plain(inputs), labels)
    )
    for (name, a), b in zip(plain.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_batch_labels_are_checked_on_the_cpu_before_transfer():
    from ln_lightning.data import NoisySample
    from ln_lightning.labels import check_labels

    data = DigitsDataModule()
    bad = NoisySample(torch.zeros(2, 1, 8, 8), torch.tensor([1, 12]), torch.tensor([1, -1]),
                      torch.tensor([0, 1]))  # fmt: skip
    with pytest.raises(ValueError, match=r"the batch's labels must lie in \[0, 10\); got .*12"):
        data.on_before_batch_transfer(bad, 0)
    good = bad._replace(target=torch.tensor([1, 2]))
    assert data.on_before_batch_transfer(good, 0) is good
    # The losses read label values back only from the CPU (on a GPU that would sync the device).
    on_meta = torch.tensor([0, 12]).to("meta")
    assert check_labels(on_meta, 3).device.type == "meta"
    with pytest.raises(ValueError, match="must lie in"):
        check_labels(torch.tensor([0, 12]), 3)
