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


def test_mlp_2x2000_is_in_timm_registry():
    model = timm.create_model("mlp_2x2000", num_classes=0, in_chans=2)
    assert model.num_features == 2000
    assert model(torch.randn(5, 2)).shape == (5, 2000)
