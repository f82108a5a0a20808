"""Data modules on tiny data written in the real on-disk formats (and on real files if present)."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from ln_lightning.data import (
    ArrayDataModule,
    CIFAR10DataModule,
    CIFAR10NDataModule,
    CIFAR100DataModule,
    CIFAR100NDataModule,
    CirclesDataModule,
    ClassBalancedSampler,
    Clothing1MDataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    NoisySample,
    TwoMoonsDataModule,
)
from ln_lightning.data.cifar import read_cifar_n
from ln_lightning.data.synthetic import (
    write_cifar10,
    write_cifar10n,
    write_cifar100,
    write_clothing1m,
    write_mnist,
)
from ln_lightning.noise import noise_from_labels
from tests.helpers import quick_trainer

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar-n"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


# ----------------------------------------------------------------------------- toy sets
@pytest.mark.parametrize("cls", [TwoMoonsDataModule, CirclesDataModule])
def test_toy_sets(cls):
    dm = cls(num_train=500, num_test=200, noise_rate=0.4, seed=3)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch.input.shape == (128, 2) and dm.input_shape == (2,) and dm.num_classes == 2
    assert len(dm.train_set) + len(dm.val_set) == 500 and len(dm.test_set) == 200
    assert 0.1 < dm.noise.realised_rate < 0.3  # symmetric 40% over 2 classes: about 20% flips
    again = cls(num_train=500, num_test=200, noise_rate=0.4, seed=3)
    again.setup()
    assert torch.equal(again.train_set.inputs, dm.train_set.inputs)


# ----------------------------------------------------------------------------- MNIST format
@pytest.mark.parametrize("layout", ["flat-gz", "torchvision-raw"])
def test_mnist_reads_idx_files(tmp_path, layout):
    if layout == "flat-gz":
        write_mnist(tmp_path)
    else:
        write_mnist(tmp_path / "MNIST" / "raw", gz=False)
    dm = MNISTDataModule(data_dir=str(tmp_path), noise_rate=0.5, batch_size=8)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, NoisySample) and batch.input.shape == (8, 1, 28, 28)
    assert len(dm.train_set) + len(dm.val_set) == 60 and len(dm.test_set) == 20
    changed = dm.noise.is_corrupted
    clean = dm.train_set.clean_labels
    assert set(clean[changed].tolist()) <= {7, 2, 5, 6, 3}  # the MNIST map


def test_mnist_missing_files_say_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--data\.download true") as info:
        MNISTDataModule(data_dir=str(tmp_path)).setup()
    assert str(tmp_path) in str(info.value)


def test_truncated_idx_file(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path) as handle:
        data = handle.read()
    with gzip.open(path, "wb") as handle:
        handle.write(data[:-100])
    with pytest.raises(ValueError, match="truncated"):
        MNISTDataModule(data_dir=str(tmp_path)).setup()


@pytest.mark.skipif(
    not DEBIAN_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist not installed"
)
def test_fashion_mnist_from_the_debian_package(tmp_path):
    dm = FashionMNISTDataModule(data_dir=str(tmp_path / "nothing-here"), noise_rate=0.4)
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) == 60_000 and len(dm.test_set) == 10_000
    assert dm.train_set.inputs.shape == (60_000, 1, 28, 28)
    assert torch.bincount(dm.test_set.clean_labels).tolist() == [1000] * 10
    # 40% of the 4 mapped classes (6,000 images each): about 16% of all labels.
    assert abs(dm.noise.realised_rate - 0.16) < 0.01
    assert abs(float(dm.train_set.inputs.mean())) < 0.05  # standardised


# ----------------------------------------------------------------------------- CIFAR format
def test_cifar10_pickle_batches_and_paper_transforms(tmp_path):
    labels = write_cifar10(tmp_path)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), noise_rate=0.4, batch_size=4)
    dm.setup()
    torch.testing.assert_close(dm.train_set.clean_labels, labels)
    batch = next(iter(dm.train_dataloader()))
    assert batch.input.shape == (4, 3, 32, 32) and batch.input.dtype == torch.float32
    raw = dm.test_set.inputs[0]
    assert raw.dtype == torch.uint8  # kept compact in memory, normalised per item
    expected = (raw.float() / 255 - torch.tensor(dm.mean)[:, None, None]) / torch.tensor(dm.std)[
        :, None, None
    ]
    torch.testing.assert_close(dm.test_set[0].input, expected)
    changed = dm.noise.is_corrupted
    assert set(dm.train_set.clean_labels[changed].tolist()) <= {2, 3, 4, 5}


def test_cifar100_fine_and_coarse(tmp_path):
    fine, coarse = write_cifar100(tmp_path)
    dm = CIFAR100DataModule(data_dir=str(tmp_path), noise_rate=0.4)
    dm.setup()
    assert dm.num_classes == 100
    torch.testing.assert_close(dm.train_set.clean_labels, fine)
    noisy = dm.noise.noisy_labels[dm.noise.is_corrupted]
    torch.testing.assert_close(noisy, (fine[dm.noise.is_corrupted] + 1) % 100)
    dm = CIFAR100DataModule(data_dir=str(tmp_path), coarse=True)
    dm.setup()
    assert dm.num_classes == 20
    torch.testing.assert_close(dm.train_set.clean_labels, coarse)


def test_cifar_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--data\.download true"):
        CIFAR10DataModule(data_dir=str(tmp_path)).setup()


def test_cifar10n_synthetic_file(tmp_path):
    worst = write_cifar10n(tmp_path)
    dm = CIFAR10NDataModule(data_dir=str(tmp_path), label_set="worst")
    dm.setup()
    torch.testing.assert_close(dm.noise.noisy_labels, worst)
    assert dm.noise.realised_rate == pytest.approx(34 / 100)
    torch.testing.assert_close(dm.true_transition_matrix(), dm.noise.transition_matrix)

    content = torch.load(tmp_path / "CIFAR-10_human.pt", weights_only=False)
    bad = dict(content, clean_label=np.roll(content["clean_label"], 1))
    torch.save(bad, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="does not belong to these CIFAR labels"):
        CIFAR10NDataModule(data_dir=str(tmp_path), labels_file=str(tmp_path / "wrong.pt")).setup()
    with pytest.raises(FileNotFoundError, match="UCSC-REAL/cifar-10-100n"):
        CIFAR10NDataModule(data_dir=str(tmp_path), labels_file=str(tmp_path / "nope.pt")).setup()
    with pytest.raises(ValueError, match="label_set must be one of"):
        CIFAR10NDataModule(label_set="best")


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_files_that_would_run_code_are_refused(tmp_path):
    """CIFAR's batches are pickles and CIFAR-N's label files ``torch.save`` dicts: both are read
    so that only plain data and numpy arrays come out of them, never code."""
    write_cifar10n(tmp_path)
    marker = tmp_path / "marker"
    content = torch.load(tmp_path / "CIFAR-10_human.pt", weights_only=False)
    torch.save({**content, "extra": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"refused to load .*evil\.pt: it holds posix\.system"):
        CIFAR10NDataModule(data_dir=str(tmp_path), labels_file=str(tmp_path / "evil.pt")).setup()
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    with batch.open("rb") as handle:
        data = pickle.load(handle, encoding="latin1")
    with batch.open("wb") as handle:
        pickle.dump({**data, "extra": _Payload(marker)}, handle)
    with pytest.raises(ValueError, match=r"refused to load .*data_batch_1: it holds posix\.system"):
        CIFAR10DataModule(data_dir=str(tmp_path)).setup()
    assert not marker.exists()


def test_cifar100n_synthetic_file_coarse(tmp_path):
    fine, coarse = write_cifar100(tmp_path)
    noisy_coarse = (coarse + (torch.arange(100) % 2)) % 20
    content = {
        "clean_label": fine.numpy(), "noisy_label": fine.numpy(),
        "clean_coarse_label": coarse.tolist(), "noisy_coarse_label": noisy_coarse.tolist(),
    }  # fmt: skip
    torch.save(content, tmp_path / "CIFAR-100_human.pt")
    dm = CIFAR100NDataModule(data_dir=str(tmp_path), coarse=True)
    dm.setup()
    assert dm.num_classes == 20
    assert dm.noise.realised_rate == pytest.approx(0.5)


@pytest.mark.skipif(
    not SHARED.is_dir(), reason="the CIFAR-N label files are not beside the checkout"
)
@pytest.mark.parametrize(
    ("file", "key", "rate"),
    [
        ("CIFAR-10_human.pt", "aggre_label", 0.0901),
        ("CIFAR-10_human.pt", "worse_label", 0.4021),
        ("CIFAR-100_human.pt", "noisy_label", 0.4020),
    ],
)
def test_real_cifar_n_noise_rates(file, key, rate):

    noisy, clean = read_cifar_n(SHARED / file, key, "clean_label")
    assert len(noisy) == 50_000
    result = noise_from_labels(clean, noisy, 100 if "100" in file else 10)
    assert result.realised_rate == pytest.approx(rate, abs=5e-5)


# ----------------------------------------------------------------------------- Clothing1M
def test_clothing1m_layout_transforms_and_balanced_sampling(tmp_path):
    write_clothing1m(tmp_path)
    dm = Clothing1MDataModule(data_dir=str(tmp_path), per_class=2, batch_size=7)
    dm.setup()
    assert len(dm.train_set) == 42 and len(dm.val_set) == 14 and len(dm.test_set) == 14
    known = dm.train_set.clean_labels >= 0
    assert int(known.sum()) == 14  # only the i == 1 images have a clean label
    assert dm.noise.realised_rate == 0.0  # the known ones are correctly labelled
    loader = dm.train_dataloader()
    batch = next(iter(loader))
    assert batch.input.shape == (7, 3, 224, 224) and batch.input.dtype == torch.float32
    assert len(loader.sampler) == 28
    drawn = dm.train_set.noisy_labels[torch.tensor(list(loader.sampler))]
    assert torch.bincount(drawn, minlength=14).tolist() == [2] * 14  # class-balanced by noisy label
    first = list(loader.sampler)
    loader.sampler.set_epoch(1)
    assert list(loader.sampler) != first  # a new draw each epoch ...
    loader.sampler.set_epoch(0)
    assert list(loader.sampler) == first  # ... reproducible from seed and epoch


def test_balanced_sampler_is_rank_aware():
    labels = torch.arange(30) % 3
    shards = [list(ClassBalancedSampler(labels, 5, seed=1, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 8
    # The two ranks split one draw of 5 per class (15, padded to 16) between them.
    counts = torch.bincount(labels[torch.tensor(shards[0] + shards[1])], minlength=3)
    assert counts.sum() == 16 and (counts >= 5).all()


def test_clothing1m_errors_list_missing_and_truncated_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"noisy_label_kv\.txt") as info:
        Clothing1MDataModule(data_dir=str(tmp_path)).setup()
    assert "cannot be downloaded automatically" in str(info.value)
    write_clothing1m(tmp_path)
    (tmp_path / "annotations" / "clean_test_key_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing clean_test_key_list\.txt"):
        Clothing1MDataModule(data_dir=str(tmp_path)).setup()
    write_clothing1m(tmp_path / "b")
    kv = tmp_path / "b" / "annotations" / "noisy_label_kv.txt"
    kv.write_text(kv.read_text()[:-7])  # cut mid-line
    with pytest.raises(ValueError, match="truncated"):
        Clothing1MDataModule(data_dir=str(tmp_path / "b")).setup()


# ----------------------------------------------------------------------------- your own data
def test_from_arrays_and_from_dataset_get_the_same_noise():
    x, y = torch.randn(200, 5), torch.arange(200) % 4
    kwargs = dict(noise_type="symmetric", noise_rate=0.3, seed=2, batch_size=16)
    a = ArrayDataModule.from_arrays(x, y, x[:20], y[:20], **kwargs)
    b = ArrayDataModule.from_dataset(TensorDataset(x, y), TensorDataset(x[:20], y[:20]), **kwargs)
    for dm in (a, b):
        dm.setup()
        assert dm.num_classes == 4 and dm.input_shape == (5,)
    assert torch.equal(a.noise.noisy_labels, b.noise.noisy_labels)
    batch_a, batch_b = next(iter(a.val_dataloader())), next(iter(b.val_dataloader()))
    torch.testing.assert_close(batch_a.input, batch_b.input)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        ArrayDataModule.from_arrays(x, y, x[:20], y[:20], num_classes=3).setup()
    with pytest.raises(ValueError, match="empty"):
        ArrayDataModule.from_arrays(x, y, x[:0], y[:0], num_classes=4).setup()


def test_noisy_labels_file_is_reused_exactly(tmp_path):
    x, y = torch.randn(300, 3), torch.arange(300) % 3
    path = tmp_path / "labels.csv"
    first = ArrayDataModule.from_arrays(
        x, y, x[:10], y[:10], noise_type="symmetric", noise_rate=0.5, seed=9,
        save_noisy_labels_to=str(path),
    )  # fmt: skip
    first.setup()
    second = ArrayDataModule.from_arrays(x, y, x[:10], y[:10], noisy_labels_file=str(path))
    second.setup()
    assert torch.equal(first.noise.noisy_labels, second.noise.noisy_labels)
    other = ArrayDataModule.from_arrays(x[:50], y[:50], x[:10], y[:10], noisy_labels_file=str(path))
    with pytest.raises(ValueError, match="written for other data"):
        other.setup()


@pytest.mark.parametrize("kind", ["cifar10", pytest.param("clothing1m", marks=pytest.mark.slow)])
def test_a_model_trains_on_the_file_based_modules(tmp_path, kind):

    from ln_lightning import NoisyLabelClassifier

    if kind == "cifar10":
        write_cifar10(tmp_path)
        dm = CIFAR10DataModule(data_dir=str(tmp_path), batch_size=8)
    else:
        write_clothing1m(tmp_path)
        dm = Clothing1MDataModule(data_dir=str(tmp_path), per_class=1, batch_size=7)
    model = NoisyLabelClassifier(num_classes=dm.num_classes, input_shape=dm.input_shape)
    trainer = quick_trainer(
        tmp_path, limit_train_batches=2, limit_test_batches=1, limit_predict_batches=1
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["train/loss"])
    batch = next(iter(dm.train_dataloader()))  # the files decoded to the module's shape
    assert tuple(batch.input.shape[1:]) == dm.input_shape == model.input_shape
    (result,) = trainer.test(model, datamodule=dm, verbose=False)
    predicted = torch.cat([p["probs"] for p in trainer.predict(model, datamodule=dm)]).argmax(1)
    labels = dm.test_set.clean_labels[dm.test_set.indices][: len(predicted)]
    assert result["test/acc"] == pytest.approx(float((predicted == labels).float().mean()))


@pytest.mark.skipif(
    not SHARED.is_dir(), reason="the CIFAR-N label files are not beside the checkout"
)
def test_real_cifar10n_annotator_labels():
    """The three independent annotations (Table 4) come from random_label1/2/3."""
    dm = CIFAR10NDataModule(labels_file=str(SHARED / "CIFAR-10_human.pt"))
    labels = dm.annotator_labels
    assert labels.shape == (50_000, 3) and labels.dtype == torch.long
    _, clean = read_cifar_n(SHARED / "CIFAR-10_human.pt", "random_label1", "clean_label")
    rates = (labels != clean[:, None]).float().mean(0)
    assert ((rates > 0.16) & (rates < 0.19)).all()  # 17-18% noise per annotator
    assert not torch.equal(labels[:, 0], labels[:, 1])  # independent annotators


def test_cifar10n_annotator_labels_from_a_synthetic_file(tmp_path):
    write_cifar10n(tmp_path)
    dm = CIFAR10NDataModule(data_dir=str(tmp_path))
    content = torch.load(tmp_path / "CIFAR-10_human.pt", weights_only=False)
    for column, key in enumerate(("random_label1", "random_label2", "random_label3")):
        assert dm.annotator_labels[:, column].tolist() == list(content[key])


def test_loader_defaults_workers_by_kind_of_data_and_pins_only_for_a_gpu(tmp_path):
    import os

    import lightning.pytorch as pl

    from ln_lightning.data import DigitsDataModule, ImageFolderDataModule
    from ln_lightning.data.synthetic import write_image_files

    digits = DigitsDataModule()
    digits.setup()
    assert digits.loader_workers(digits.train_set) == 0  # tensors in memory
    write_image_files(tmp_path / "images", 4)
    images = ImageFolderDataModule(root=str(tmp_path / "images"), cache="none")
    images.setup()
    expected = max(0, min(8, (os.cpu_count() or 1) - 1))
    assert images.loader_workers(images.train_set) == expected  # files to decode
    cached = ImageFolderDataModule(root=str(tmp_path / "images"))  # cache="auto"
    cached.setup()
    assert cached.loader_workers(cached.train_set) == 0  # decoded once, held in memory
    assert ImageFolderDataModule(root=str(tmp_path / "images"), num_workers=3).num_workers == 3
    digits.trainer = pl.Trainer(accelerator="cpu", logger=False)
    assert not digits.train_dataloader().pin_memory  # pinned only when training on CUDA
