"""The nn.Module wrappers: validated hyper-parameters, declared heads, reductions, probabilities."""

from __future__ import annotations

import importlib

import pytest
import torch
import yaml

from ln_lightning import CrossEntropy, ForwardCorrection, LogisticNormalLoss
from ln_lightning.losses import functional as LF
from tests.helpers import LOSSES


@pytest.mark.parametrize(
    ("covariance", "dummy", "want"),
    [
        ("full", True, {"mean": 10, "scale": 10}),
        ("diagonal", True, {"mean": 10, "scale": 10}),
        ("isotropic", True, {"mean": 10, "scale": 1}),
        ("identity", True, {"mean": 10}),
        ("full", False, {"mean": 9, "scale": 9}),
    ],
)
def test_ln_declares_its_heads(covariance, dummy, want):
    assert LogisticNormalLoss(covariance=covariance, dummy_class=dummy).head_shapes(10) == want


def test_cross_entropy_declares_logits():
    assert CrossEntropy().head_shapes(7) == {"logits": 7}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_scale": 0}, r"min_scale must be a finite number > 0"),
        ({"smoothing": 0}, r"smoothing must lie in the open interval \(0, 1\)"),
        ({"smoothing": 1.5}, r"smoothing must lie in the open interval \(0, 1\)"),
        ({"temperature": -1}, r"temperature must be a finite number > 0"),
        ({"covariance": "lowrank"}, r"covariance must be one of"),
        ({"reduction": "avg"}, r"reduction must be one of"),
    ],
)
def test_ln_rejects_invalid_hyper_parameters_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LogisticNormalLoss(**kwargs)


def test_module_equals_functional_and_reductions():
    outputs = {"mean": torch.randn(5, 10), "scale": torch.randn(5, 10)}
    labels = torch.randint(0, 10, (5,))
    hparams = dict(temperature=0.5, min_scale=0.5, smoothing=0.1)
    per_example = LF.logistic_normal_loss(
        outputs["mean"], outputs["scale"], labels, LF.LogisticNormalParams(**hparams)
    )
    torch.testing.assert_close(LogisticNormalLoss(**hparams)(outputs, labels), per_example.mean())
    torch.testing.assert_close(
        LogisticNormalLoss(**hparams, reduction="sum")(outputs, labels), per_example.sum()
    )
    torch.testing.assert_close(
        LogisticNormalLoss(**hparams, reduction="none")(outputs, labels), per_example
    )
    exact = LogisticNormalLoss(**hparams).negative_log_density(outputs, labels)
    torch.testing.assert_close(
        exact,
        LF.logistic_normal_nll(
            outputs["mean"], outputs["scale"], labels, LF.LogisticNormalParams(**hparams)
        ),
    )


def test_missing_head_names_what_is_needed():
    with pytest.raises(KeyError, match="'scale'"):
        LogisticNormalLoss()({"mean": torch.zeros(2, 3)}, torch.tensor([0, 1]))


def test_predict_proba_uses_the_mean_only():
    loss = LogisticNormalLoss()
    mean = torch.randn(3, 10)
    a = loss.predict_proba({"mean": mean, "scale": torch.randn(3, 10)})
    b = loss.predict_proba({"mean": mean, "scale": 100 * torch.randn(3, 10)})
    torch.testing.assert_close(a, b)
    assert a.shape == (3, 10)
    torch.testing.assert_close(a.sum(-1), torch.ones(3))


def test_labels_out_of_range_through_module():
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        LogisticNormalLoss()(
            {"mean": torch.zeros(2, 10), "scale": torch.zeros(2, 10)}, torch.tensor([0, 10])
        )


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_describes_itself_as_plain_data(name):
    """What checkpoints record: the class path and the arguments that rebuild the loss."""
    loss = LOSSES[name]()
    config = loss.config()
    module, _, cls = config["class_path"].rpartition(".")
    assert getattr(importlib.import_module(module), cls) is type(loss)
    rebuilt = type(loss)(**config["init_args"])
    assert repr(rebuilt) == repr(loss) and rebuilt.init_args() == config["init_args"]
    assert yaml.safe_load(yaml.safe_dump(config)) == config  # plain data, no objects


def test_forward_correction_records_its_given_matrix():
    matrix = [[0.9, 0.1], [0.2, 0.8]]
    loss = ForwardCorrection(transition_matrix=matrix, warmup_epochs=3)
    assert loss.init_args()["transition_matrix"] == matrix
    rebuilt = type(loss)(**loss.init_args()).transition_matrix
    torch.testing.assert_close(rebuilt, torch.tensor(matrix))
