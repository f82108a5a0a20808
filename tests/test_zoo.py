"""Zoo models are registered in timm and follow its conventions."""

from __future__ import annotations

import pytest
import timm
import torch

import zoo  # noqa: F401


def test_small_cnn_is_in_timm_registry():
    assert "small_cnn" in timm.list_models("small_cnn")
    classifier = timm.create_model("small_cnn", num_classes=10)
    assert classifier(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    features = timm.create_model("small_cnn", num_classes=0, in_chans=3)
    assert features(torch.randn(2, 3, 28, 28)).shape == (2, features.num_features)
    features.reset_classifier(5)
    assert features(torch.randn(2, 3, 8, 8)).shape == (2, 5)


def test_small_cnn_has_no_pretrained_weights():
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("small_cnn", pretrained=True)


def test_lenet5_is_in_timm_registry():
    model = timm.create_model("lenet5", num_classes=0)
    assert model.num_features == 84
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 84)
    assert timm.create_model("lenet5", num_classes=10, img_size=32)(
        torch.randn(2, 1, 32, 32)
    ).shape == (2, 10)
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("lenet5", pretrained=True)


def test_lenet5_ref_is_the_reference_codes_variant():
    """SAME padding, a third 5x5 convolution of 120 channels, dense 5880 -> 84."""
    model = timm.create_model("lenet5_ref", num_classes=0)
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.padding) for c in convolutions] == [
        (6, (5, 5), (2, 2)), (16, (5, 5), (2, 2)), (120, (5, 5), (2, 2))
    ]  # fmt: skip
    dense = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(d.in_features, d.out_features) for d in dense] == [(5880, 84)]
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 84)
    assert timm.create_model("lenet5_ref", num_classes=10)(torch.randn(2, 1, 28, 28)).shape == (
        2, 10
    )  # fmt: skip
    with pytest.raises(ValueError, match="multiple of 4"):
        timm.create_model("lenet5_ref", img_size=30)
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("lenet5_ref", pretrained=True)


def test_mlp_2x2000_is_in_timm_registry():
    model = timm.create_model("mlp_2x2000", num_classes=0, in_chans=2)
    assert model.num_features == 2000
    assert model(torch.randn(5, 2)).shape == (5, 2000)


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "features", "millions"),
    # Published sizes: WRN-28-2 1.47M, WRN-28-10 36.5M (Zagoruyko & Komodakis 2016, CIFAR-10
    # head); the CIFAR ResNet-18 11.17M.
    [("wrn28_2", 128, 1.47), ("wrn28_10", 640, 36.48), ("resnet18_cifar", 512, 11.17)],
)
def test_cifar_backbones_match_their_published_size(name, features, millions):
    model = timm.create_model(name, num_classes=10)
    assert parameters(model) / 1e6 == pytest.approx(millions, abs=0.01)
    assert model.num_features == features
    extractor = timm.create_model(name, num_classes=0)
    assert extractor(torch.randn(2, 3, 32, 32)).shape == (2, features)
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model(name, pretrained=True)


@pytest.mark.parametrize("name", ["wrn28_2", "resnet18_cifar"])
def test_cifar_backbones_train(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10, in_chans=1)
    inputs, labels = torch.randn(4, 1, 16, 16), torch.arange(4)
    loss = torch.nn.functional.cross_entropy(model(inputs), labels)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # The first layer sees the input: its gradient is not zero.
    first = next(model.parameters())
    assert first.grad.abs().sum() > 0


def test_wide_resnet_structure_and_errors():
    from zoo import WideResNet

    model = WideResNet(depth=16, widen_factor=1, num_classes=3)
    assert [len(group) for group in model.groups] == [2, 2, 2]
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    with pytest.raises(ValueError, match="6n \\+ 4"):
        WideResNet(depth=27)
    with pytest.raises(ValueError, match="widen_factor"):
        WideResNet(widen_factor=0)


def test_zoo_models_plug_into_the_classifier():
    from ln_lightning import NoisyLabelClassifier

    model = NoisyLabelClassifier(backbone="wrn28_2", num_classes=10, input_shape=(3, 32, 32))
    outputs = model(torch.randn(2, 3, 32, 32))
    assert outputs["mean"].shape == (2, 10)
