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
