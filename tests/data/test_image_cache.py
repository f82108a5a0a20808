"""Decoded images in memory (``--data.cache``): the same examples as from the files, the same
random crops and flips, batches read at once, and exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import timm.data
import torch
from PIL import Image
from scipy.stats import ks_2samp
from timm.data.transforms import RandomResizedCropAndInterpolation
from torch.utils.data import DataLoader, default_collate
from torchvision.transforms import v2

from ln_lightning import DigitsDataModule, NoisyLabelClassifier
from ln_lightning.data import HFImageDataModule, ImageFolderDataModule, image_cache
from ln_lightning.data.dataset import collate_samples
from ln_lightning.data.image_cache import CachedImages, TensorTransform, cache_images
from ln_lightning.data.images import ImageFiles
from ln_lightning.data.synthetic import write_image_files
from ln_lightning.resume import LastCheckpoint
from tests.helpers import quick_trainer


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    write_image_files(root / "photos", per_class=20)
    write_image_files(root / "test", per_class=4, seed=1)
    return root


def module(photos, cache: str, **kwargs) -> ImageFolderDataModule:
    options = {"image_size": 16, "augment": False, "crop_pct": 1.0, "batch_size": 16, **kwargs}
    data = ImageFolderDataModule(
        root=str(photos / "photos"), test_root=str(photos / "test"), cache=cache, **options
    )
    data.setup()
    return data


def inputs(data, split: str) -> torch.Tensor:
    dataset = data.split(split)
    return torch.stack([dataset[i].input for i in range(len(dataset))])


@pytest.mark.parametrize(("size", "crop"), [(16, 1.0), (24, 0.875)])
def test_cached_images_are_the_files_examples_to_the_bit(photos, size, crop, lightning_log):
    """The evaluation view is timm's own resize and crop, applied once: the same examples."""
    files = module(photos, "none", image_size=size, crop_pct=crop)
    cached = module(photos, "memory", image_size=size, crop_pct=crop)
    assert isinstance(cached.split("train").inputs, CachedImages) and cached.cached
    assert isinstance(files.split("train").inputs, ImageFiles) and not files.cached
    for split in ("train", "val", "test"):
        assert torch.equal(inputs(files, split), inputs(cached, split)), split
        loaded = next(
            iter(DataLoader(cached.split(split), batch_size=9, collate_fn=collate_samples))
        )
        assert torch.equal(loaded.input, inputs(files, split)[:9]), split  # read at once
    assert any("training images: decoded once into memory (0.02 MB, uint8" in line
               for line in lightning_log)  # fmt: skip


def test_auto_reads_the_files_when_the_images_differ_in_size_or_do_not_fit(tmp_path):
    paths, _, _ = write_image_files(tmp_path, per_class=3)
    Image.new("L", (20, 16)).save(paths[4])
    files = ImageFiles(tmp_path, [str(p) for p in paths], mode="L")
    pool, why = cache_images(files, "auto")
    assert pool is None and "read from the files in every epoch" in why and "20x16" in why
    with pytest.raises(ValueError, match=r"--data.cache memory needs images of one size"):
        cache_images(files, "memory")
    same = ImageFiles(tmp_path, [str(p) for p in paths if p != paths[4]], mode="L")
    pool, why = cache_images(same, "auto", budget=1000)  # 8 x 256 bytes > 1000
    assert pool is None and "more than the cache's budget" in why
    pool, why = cache_images(same, "memory", budget=1000)  # memory: caches anyway
    assert pool is not None and pool.pixels.shape == (8, 1, 16, 16)
    with pytest.raises(ValueError, match="cache must be one of"):
        ImageFolderDataModule(root=str(tmp_path), cache="disk")


def test_ddp_processes_on_one_machine_share_the_budget(tmp_path, monkeypatch):
    paths, _, _ = write_image_files(tmp_path, per_class=3)  # 9 images of 16x16: 2,304 bytes
    files = ImageFiles(tmp_path, [str(p) for p in paths], mode="L")
    monkeypatch.setattr(image_cache, "memory_budget", lambda: 4000)
    pool, why = cache_images(files, "auto", processes=1)
    assert pool is not None and "0.00 MB, uint8" in why
    pool, why = cache_images(files, "auto", processes=2)  # each may take 2,000 bytes
    assert pool is None and "shared by its 2 processes" in why
    pool, why = cache_images(files, "memory", processes=2)  # each process holds its own copy
    assert pool is not None and "in each of this machine's 2 processes" in why


def test_decoding_in_worker_processes_gives_the_same_pixels(tmp_path, monkeypatch):
    from ln_lightning.data import image_cache

    monkeypatch.setattr(image_cache, "DECODE_CHUNK", 4)
    paths, _, _ = write_image_files(tmp_path, per_class=5)
    files = ImageFiles(tmp_path, [str(p) for p in paths], mode="RGB")
    one, _ = image_cache.decode_images(files, workers=0)
    two, _ = image_cache.decode_images(files, workers=2)
    assert torch.equal(one, two) and one.shape == (15, 3, 16, 16)
    assert torch.equal(one[3], torch.from_numpy(np.asarray(files[3])).permute(2, 0, 1))


def test_the_training_augmentation_draws_as_timm_does():
    """Crops (area and aspect) and flips of the tensor augmentation follow the distribution of
    timm's transform on PIL images (two-sample Kolmogorov-Smirnov tests, 4,000 draws)."""
    torch.manual_seed(0)
    image = torch.zeros(1, 40, 60, dtype=torch.uint8)
    picture = Image.fromarray(image[0].numpy())
    ours = v2.RandomResizedCrop(28, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
    timm_crop = RandomResizedCropAndInterpolation(28)
    mine, theirs = [], []
    for _ in range(4000):
        params = ours.make_params([image])
        mine.append((params["height"] * params["width"], params["width"] / params["height"]))
        _, _, height, width = timm_crop.get_params(picture, timm_crop.scale, timm_crop.ratio)
        theirs.append((height * width, width / height))
    mine, theirs = np.array(mine), np.array(theirs)
    for column in (0, 1):  # crop area, aspect ratio
        assert ks_2samp(mine[:, column], theirs[:, column]).pvalue > 0.01
    config = {"input_size": (1, 28, 28), "mean": (0.5,), "std": (0.5,), "crop_pct": 1.0,
              "interpolation": "bicubic"}  # fmt: skip
    augment = TensorTransform(config, training=True)
    assert not augment.batched
    theirs = timm.data.create_transform(**config, is_training=True).transforms
    steps = augment.steps.transforms

    def the(kind, transforms):
        return next(t for t in transforms if type(t).__name__ == kind)

    assert the("RandomHorizontalFlip", steps).p == the("RandomHorizontalFlip", theirs).p == 0.5
    for factor in ("brightness", "contrast", "saturation"):
        assert tuple(getattr(the("ColorJitter", steps), factor)) == tuple(
            getattr(the("ColorJitter", theirs), factor)
        )
    crop, their_crop = (
        the("RandomResizedCrop", steps),
        the("RandomResizedCropAndInterpolation", theirs),
    )
    assert tuple(crop.scale) == tuple(their_crop.scale)
    assert tuple(crop.size) == tuple(their_crop.size)


def test_batches_are_read_at_once_and_equal_the_examples_one_by_one(photos):
    for data in (module(photos, "memory"), DigitsDataModule(noise_type="symmetric")):
        data.setup()
        dataset = data.split("train")
        batch = next(iter(DataLoader(dataset, batch_size=7, shuffle=False)))
        one_by_one = default_collate([dataset[i] for i in range(7)])
        for got, expected in zip(batch, one_by_one, strict=True):
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_a_hugging_face_data_set_is_cached_too(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"img": datasets.Image(), "label": datasets.ClassLabel(names=["dark", "light"])}
    )
    rows = {"img": [Image.new("L", (12, 12), 30 + 100 * (i % 2) + i) for i in range(24)],
            "label": [i % 2 for i in range(24)]}  # fmt: skip
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(tmp_path / "hf")
    built = {
        cache: HFImageDataModule(
            str(tmp_path / "hf"),
            image_size=12,
            test_split=None,
            augment=False,
            crop_pct=1.0,
            cache=cache,
        )
        for cache in ("none", "auto")
    }
    for data in built.values():
        data.setup()
    assert built["auto"].cached and not built["none"].cached
    torch.testing.assert_close(inputs(built["none"], "train"), inputs(built["auto"], "train"))


def test_a_run_on_cached_images_resumes_exactly(photos, tmp_path):
    """Two epochs at once, or one and then one more from last.ckpt: the same weights."""

    def run(epochs: int, folder, ckpt_path=None) -> NoisyLabelClassifier:
        torch.manual_seed(0)
        data = module(photos, "memory")
        model = NoisyLabelClassifier(backbone="small_cnn", num_classes=3, input_shape=(1, 16, 16))
        trainer = quick_trainer(
            folder, max_epochs=epochs, limit_train_batches=None, limit_val_batches=0,
            enable_checkpointing=True, callbacks=[LastCheckpoint(dirpath=str(folder))],
        )  # fmt: skip
        trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
        return model

    whole = run(2, tmp_path / "whole")
    run(1, tmp_path / "cut")
    resumed = run(2, tmp_path / "cut", ckpt_path=str(tmp_path / "cut" / "last.ckpt"))
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_evaluation_at_the_cached_size_keeps_no_second_copy():
    config = {"input_size": (1, 28, 28), "interpolation": "bicubic", "mean": (0.5,),
              "std": (0.5,), "crop_pct": 1.0}  # fmt: skip
    images = CachedImages(torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8))
    evaluate = TensorTransform(config, training=False)
    batch = evaluate.batch_from(images, torch.tensor([1, 3]))
    assert torch.equal(batch, evaluate.normalise(images.pixels[[1, 3]]))
    assert images.view(evaluate.key, None) is images.pixels  # the cache itself, not a copy
    resized = TensorTransform({**config, "input_size": (1, 24, 24)}, training=False)
    assert resized.batch_from(images, torch.tensor([0])).shape == (1, 1, 24, 24)
    assert images.view(resized.key, None).shape == (5, 1, 24, 24)  # a view of its own
