"""The embedded digits data module: splits, noise only where it belongs, batch layout."""

from __future__ import annotations

import pytest
import torch

from ln_lightning import DigitsDataModule, NoisySample


@pytest.fixture(scope="module")
def digits():
    dm = DigitsDataModule(noise_type="asymmetric", noise_rate=0.4, seed=0)
    dm.setup("fit")
    return dm


def test_splits_are_disjoint_and_sized(digits):
    train, val, test = digits.train_set, digits.val_set, digits.test_set
    assert len(train) + len(val) == 1437 and len(test) == 360
    assert len(val) == round(0.1 * 1437)
    assert not set(train.indices.tolist()) & set(val.indices.tolist())


def test_noise_in_train_and_val_only(digits):
    noise = digits.noise
    assert 0.15 < noise.realised_rate < 0.25  # 40% on 5 of 10 classes
    for split in (digits.train_set, digits.val_set):
        idx = split.indices
        assert torch.equal(split.noisy_labels[idx], noise.noisy_labels[idx])
        assert (split.noisy_labels[idx] != split.clean_labels[idx]).any()
    test = digits.test_set
    assert torch.equal(test.noisy_labels, test.clean_labels)


def test_batches_carry_input_noisy_clean_and_index(digits):
    batch = next(iter(digits.train_dataloader()))
    assert isinstance(batch, NoisySample)
    assert batch.input.shape == (128, 1, 8, 8) and batch.input.dtype == torch.float32
    pool = digits.train_set
    torch.testing.assert_close(batch.target, pool.noisy_labels[batch.index])
    torch.testing.assert_close(batch.clean_target, pool.clean_labels[batch.index])
    torch.testing.assert_close(batch.input, pool.inputs[batch.index])


def test_seed_fixes_noise_and_split_but_not_the_test_set():
    a, b, c = (DigitsDataModule(seed=s) for s in (1, 1, 2))
    for dm in (a, b, c):
        dm.setup()
    assert torch.equal(a.noise.noisy_labels, b.noise.noisy_labels)
    assert torch.equal(a.val_set.indices, b.val_set.indices)
    assert not torch.equal(a.noise.noisy_labels, c.noise.noisy_labels)
    assert torch.equal(a.test_set.inputs, c.test_set.inputs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"noise_rate": 1.0}, "noise_rate"),
        ({"noise_type": "gaussian"}, "noise_type"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"batch_size": 0}, "batch_size"),
        ({"test_fraction": 1.0}, "test_fraction"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DigitsDataModule(**kwargs)


def test_loaders_before_setup_explain():
    with pytest.raises(RuntimeError, match="setup"):
        DigitsDataModule().train_dataloader()
