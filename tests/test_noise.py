"""Noise injection: exact maps, rates within binomial error, determinism."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from ln_lightning.noise import (
    ASYMMETRIC_MAPS,
    MNIST_ASYMMETRIC_MAP,
    asymmetric_noise,
    expected_transition_matrix,
    inject_noise,
    load_noisy_labels,
    pairflip_noise,
    save_noisy_labels,
    symmetric_noise,
    transition_noise,
)


def balanced_labels(n: int = 50_000, num_classes: int = 10) -> torch.Tensor:
    return torch.arange(n) % num_classes


def test_asymmetric_map_is_applied_exactly():
    labels = balanced_labels()
    result = asymmetric_noise(labels, 10, 0.4, MNIST_ASYMMETRIC_MAP, seed=1)
    changed = result.is_corrupted
    assert torch.equal(changed, result.noisy_labels != labels)
    for source in range(10):
        mask = (labels == source) & changed
        if source in MNIST_ASYMMETRIC_MAP:
            assert torch.all(result.noisy_labels[mask] == MNIST_ASYMMETRIC_MAP[source])
            rate = float(changed[labels == source].float().mean())
            n = int((labels == source).sum())
            assert abs(rate - 0.4) < 4 * math.sqrt(0.4 * 0.6 / n)
        else:
            assert not mask.any()
    # 5 of the 10 classes are mapped: the overall realised rate is about 0.4 * 5 / 10.
    assert abs(result.realised_rate - 0.2) < 4 * math.sqrt(0.2 * 0.8 / len(labels))
    t = result.transition_matrix
    torch.testing.assert_close(t.sum(1), torch.ones(10))
    assert t[7, 1] == pytest.approx(float(changed[labels == 7].float().mean()), abs=1e-6)
    assert t[0, 0] == 1.0


@pytest.mark.parametrize("rate", [0.2, 0.6])
def test_symmetric_rate_includes_the_true_class(rate):
    labels = balanced_labels()
    result = symmetric_noise(labels, 10, rate, seed=0)
    expected = rate * 9 / 10
    assert abs(result.realised_rate - expected) < 4 * math.sqrt(
        expected * (1 - expected) / len(labels)
    )


def test_same_seed_same_labels_and_different_seed_differs():
    labels = balanced_labels(5_000)
    a = inject_noise(labels, 10, "asymmetric", 0.4, MNIST_ASYMMETRIC_MAP, seed=3)
    b = inject_noise(labels, 10, "asymmetric", 0.4, MNIST_ASYMMETRIC_MAP, seed=3)
    c = inject_noise(labels, 10, "asymmetric", 0.4, MNIST_ASYMMETRIC_MAP, seed=4)
    assert torch.equal(a.noisy_labels, b.noisy_labels)
    assert not torch.equal(a.noisy_labels, c.noisy_labels)


def test_no_noise_is_identity():
    labels = balanced_labels(100)
    result = inject_noise(labels, 10, "none", 0.0)
    assert torch.equal(result.noisy_labels, labels) and result.realised_rate == 0.0


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_invalid_rate(rate):
    with pytest.raises(ValueError, match=r"noise_rate must lie in \[0, 1\)"):
        symmetric_noise(balanced_labels(10), 10, rate)


def test_invalid_inputs():
    with pytest.raises(ValueError, match="noise_type must be one of"):
        inject_noise(balanced_labels(10), 10, "pairflip-typo", 0.2)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
        symmetric_noise(balanced_labels(10), 5, 0.2)
    with pytest.raises(ValueError, match="outside"):
        asymmetric_noise(balanced_labels(10), 10, 0.2, {3: 12})
    with pytest.raises(ValueError, match="class_map"):
        inject_noise(balanced_labels(10), 10, "asymmetric", 0.2)


def within_binomial(observed: float, expected: float, n: int, sigmas: float = 4.0) -> bool:
    return abs(observed - expected) <= sigmas * math.sqrt(max(expected * (1 - expected), 1e-12) / n)


def test_symmetric_other_classes_only_changes_every_resampled_label():
    labels = balanced_labels()
    result = symmetric_noise(labels, 10, 0.4, seed=0, include_true_class=False)
    assert within_binomial(result.realised_rate, 0.4, len(labels))
    off_diagonal = result.transition_matrix - torch.diag(result.transition_matrix.diagonal())
    assert (off_diagonal[0, 1:] > 0.02).all()  # spread over all other classes


def test_pairflip_and_builtin_maps_are_exact():
    labels = torch.arange(100).repeat(500)
    result = pairflip_noise(labels, 100, 0.45, seed=2)
    changed = result.is_corrupted
    assert torch.equal(result.noisy_labels[changed], (labels[changed] + 1) % 100)
    assert within_binomial(result.realised_rate, 0.45, len(labels))
    cifar100 = inject_noise(labels, 100, "asymmetric", 0.45, ASYMMETRIC_MAPS["cifar100"], seed=2)
    assert torch.equal(cifar100.noisy_labels, result.noisy_labels)  # the same noise model
    assert ASYMMETRIC_MAPS["cifar10"] == {2: 0, 3: 5, 5: 3, 4: 7}
    assert ASYMMETRIC_MAPS["fashion_mnist"] == {0: 6, 2: 4, 5: 7, 9: 7}


@pytest.mark.parametrize(
    ("noise_type", "class_map"),
    [
        ("symmetric", None),
        ("symmetric_other", None),
        ("asymmetric", MNIST_ASYMMETRIC_MAP),
        ("pairflip", None),
    ],
)
def test_realised_matrix_matches_the_design(noise_type, class_map):
    labels = balanced_labels()
    result = inject_noise(labels, 10, noise_type, 0.3, class_map, seed=7)
    design = expected_transition_matrix(10, noise_type, 0.3, class_map)
    torch.testing.assert_close(result.transition_matrix, design, atol=0.03, rtol=0)
    expected_rate = float((1 - design.diagonal()).mean())  # balanced classes
    assert within_binomial(result.realised_rate, expected_rate, len(labels))


def test_arbitrary_transition_matrix():
    gen = torch.Generator().manual_seed(0)
    matrix = torch.softmax(2 * torch.randn(10, 10, generator=gen), dim=1)
    labels = balanced_labels()
    result = transition_noise(labels, matrix, seed=1)
    torch.testing.assert_close(result.transition_matrix, matrix, atol=0.03, rtol=0)
    via_dispatch = inject_noise(labels, 10, "transition", 0.0, seed=1, transition_matrix=matrix)
    assert torch.equal(via_dispatch.noisy_labels, result.noisy_labels)
    with pytest.raises(ValueError, match="row-stochastic"):
        transition_noise(labels, 2 * torch.eye(10))
    with pytest.raises(ValueError, match="needs a transition_matrix"):
        inject_noise(labels, 10, "transition", 0.0)


SCRIPT = """
import torch
from ln_lightning.noise import inject_noise, MNIST_ASYMMETRIC_MAP
labels = torch.arange(20_000) % 10
for kind in ("symmetric", "asymmetric", "pairflip"):
    r = inject_noise(labels, 10, kind, 0.4, MNIST_ASYMMETRIC_MAP, seed=11)
    print(kind, int((r.noisy_labels * torch.arange(20_000)).sum()))
"""


def test_same_seed_same_labels_in_two_processes():
    outputs = [
        subprocess.run(
            [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    ]
    assert outputs[0] == outputs[1] and outputs[0].count("\n") == 3


def test_noisy_labels_file_roundtrip(tmp_path):
    labels = balanced_labels(1000)
    result = inject_noise(labels, 10, "symmetric", 0.5, seed=3)
    path = tmp_path / "noisy.csv"
    save_noisy_labels(path, labels, result.noisy_labels)
    assert path.read_text().splitlines()[0] == "index,clean_label,noisy_label"
    clean, noisy = load_noisy_labels(path)
    assert torch.equal(clean, labels) and torch.equal(noisy, result.noisy_labels)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="header"):
        load_noisy_labels(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_noisy_labels(tmp_path / "missing.csv")


# ------------------------------------------------------------------ NoiseSpec, the one value
from ln_lightning.noise import NoiseSpec  # noqa: E402


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"noise_type": "pairflip-typo"}, "noise_type must be one of"),
        ({"noise_type": "symmetric", "noise_rate": 1.0}, r"noise_rate must lie in \[0, 1\)"),
        ({"noise_type": "asymmetric", "noise_rate": 0.2}, "needs a class_map"),
        ({"noise_type": "transition"}, "needs a transition_matrix"),
        ({"noise_type": "transition", "transition_matrix": [[0.5, 0.6], [0, 1]]}, "stochastic"),
        ({"noise_type": "transition", "transition_matrix": [0.5, 0.5]}, "K x K"),
    ],
)
def test_noise_spec_refuses_bad_values_when_made(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NoiseSpec(**kwargs)


def test_noise_spec_is_plain_comparable_data():
    matrix = torch.tensor([[0.8, 0.2], [0.1, 0.9]])
    spec = NoiseSpec("transition", transition_matrix=matrix, seed=4)
    assert isinstance(spec.transition_matrix, tuple)
    assert spec.transition_matrix[1] == pytest.approx((0.1, 0.9))
    assert spec == NoiseSpec("transition", transition_matrix=matrix.tolist(), seed=4)
    assert NoiseSpec("asymmetric", 0.3, {"1": "0"}).class_map == {1: 0}  # YAML keys as strings
    with pytest.raises(AttributeError):
        spec.seed = 5  # frozen


def test_noise_spec_checks_what_needs_the_number_of_classes_when_given():
    spec = NoiseSpec("asymmetric", 0.3, {7: 1})
    with pytest.raises(ValueError, match=r"class_map entry 7->1 is outside \[0, 5\)"):
        spec.draw(torch.arange(5), num_classes=5)
    square = NoiseSpec("transition", transition_matrix=torch.eye(3))
    with pytest.raises(ValueError, match="must be 4 x 4 for 4 classes"):
        square.expected_matrix(4)


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        (NoiseSpec(), "no injected noise"),
        (NoiseSpec("symmetric", 0.0), "no injected noise"),
        (NoiseSpec("pairflip", 0.2), "pairflip noise at rate 0.2"),
        (NoiseSpec("transition", transition_matrix=torch.eye(2)), "from the given transition"),
    ],
)
def test_noise_spec_describes_itself(spec, text):
    assert text in spec.describe()
    assert spec.injects == (text != "no injected noise")


def test_the_generators_are_the_spec():
    labels = balanced_labels(3000)
    spec = NoiseSpec("asymmetric", 0.4, MNIST_ASYMMETRIC_MAP, seed=5)
    by_spec = spec.draw(labels, 10)
    by_name = inject_noise(labels, 10, "asymmetric", 0.4, MNIST_ASYMMETRIC_MAP, seed=5)
    assert torch.equal(by_spec.noisy_labels, by_name.noisy_labels)
    design = expected_transition_matrix(10, "asymmetric", 0.4, MNIST_ASYMMETRIC_MAP)
    torch.testing.assert_close(spec.expected_matrix(10), design)


def test_the_data_module_holds_one_spec():
    from ln_lightning.data import DigitsDataModule

    dm = DigitsDataModule(noise_type="symmetric", noise_rate=0.3, seed=2)
    assert dm.noise_spec == NoiseSpec("symmetric", 0.3, seed=2)
    asym = DigitsDataModule(noise_type="asymmetric", noise_rate=0.3)
    assert asym.noise_spec.class_map == MNIST_ASYMMETRIC_MAP  # the data set's own map
    dm.setup()
    pool = dm.split("train").clean_labels  # the whole training pool's true labels
    assert torch.equal(dm.noise.noisy_labels, dm.noise_spec.draw(pool, 10).noisy_labels)
