"""Decoded images in memory: images read from their files once, not in every epoch.

Small images (scans, thumbnails, exports of a data set) cost more to decode than to train on:
20,000 28x28 PNG files are 16 MB once decoded, and reading them again in every epoch doubled
the time of a run. ``--data.cache`` (:data:`CACHE_MODES`) decodes them once into one ``uint8``
tensor ``(N, C, H, W)``, :class:`CachedImages`, when every image has the same size (``auto``:
and the tensor fits :func:`memory_budget`), and the transforms then run on tensors
(:class:`TensorTransform`, torchvision's v2): the evaluation one on whole batches at once, the
training augmentation per image with the same random crops, flips and colour jitter as timm's
transform on the files.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode, v2

from ln_lightning.data.images import read_image

__all__ = [
    "CACHE_MODES",
    "MEMORY_SHARE",
    "CachedImages",
    "TensorTransform",
    "cache_images",
    "decode_images",
    "memory_budget",
]

#: ``auto``: cache when every image has one size and the decoded tensor fits the budget;
#: ``memory``: cache whenever every image has one size; ``none``: read the files every epoch.
CACHE_MODES = ("auto", "memory", "none")
#: The share of the machine's memory ``auto`` lets a cache take.
MEMORY_SHARE = 0.25
#: Images decoded by one worker process at a time.
DECODE_CHUNK = 1024


def memory_budget(share: float = MEMORY_SHARE) -> int:
    """``share`` of the machine's physical memory, in bytes."""
    return int(share * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


class CachedImages(Dataset):
    """Images decoded once, as one ``uint8`` tensor ``(N, C, H, W)``; item ``i`` is the image
    ``(C, H, W)``, :meth:`batch` a batch of them.

    Example:
        >>> import torch
        >>> images = CachedImages(torch.zeros(5, 1, 28, 28, dtype=torch.uint8))
        >>> len(images), images[0].shape, images.batch(torch.tensor([0, 3])).shape, images.nbytes
        (5, torch.Size([1, 28, 28]), torch.Size([2, 1, 28, 28]), 3920)
    """

    #: Held in memory: the loaders read it in this process (workers would only copy it).
    in_memory = True

    def __init__(self, pixels: Tensor) -> None:
        if pixels.dtype != torch.uint8 or pixels.ndim != 4:
            raise ValueError(
                f"pixels must be uint8 (N, C, H, W); got {pixels.dtype}, {pixels.ndim}-D."
            )
        self.pixels = pixels
        self._views: dict[Any, Tensor] = {}

    def view(self, key: Any, make: Any) -> Tensor:
        """``make(pixels)``, computed once per ``key`` (the evaluation view of a transform)."""
        if key not in self._views:
            self._views[key] = make(self.pixels)
        return self._views[key]

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: int) -> Tensor:
        return self.pixels[index]

    def batch(self, indices: Tensor) -> Tensor:
        """The images of ``indices``, ``(B, C, H, W)``."""
        return self.pixels[indices]

    @property
    def nbytes(self) -> int:
        return self.pixels.numel()


def _decode_paths(paths: Sequence[str], mode: str) -> tuple[np.ndarray | None, str]:
    """The images of ``paths`` as one ``uint8`` array ``(n, H, W, C)``, or ``None`` and why."""
    arrays, size = [], None
    for path in paths:
        array = np.asarray(read_image(path, mode))
        if size is None:
            size = array.shape
        elif array.shape != size:
            return None, f"{path} is {array.shape[1]}x{array.shape[0]}, others {size[1]}x{size[0]}"
        arrays.append(array)
    stacked = np.stack(arrays)
    return (stacked[..., None] if stacked.ndim == 3 else stacked), ""


def decode_images(source: Any, workers: int = 0) -> tuple[Tensor | None, str]:
    """Every image of ``source`` (a dataset of PIL images; image files are decoded by
    ``workers`` forked processes on Linux) as one ``uint8`` tensor ``(N, C, H, W)``, or
    ``None`` and why not (the images differ in size).

    Example:
        >>> import tempfile
        >>> from ln_lightning.data.images import ImageFiles
        >>> from ln_lightning.data.synthetic import write_image_files
        >>> root = tempfile.mkdtemp()
        >>> paths, _, _ = write_image_files(root, per_class=2)
        >>> pixels, _ = decode_images(ImageFiles(root, [str(p) for p in paths], mode="L"))
        >>> pixels.shape, pixels.dtype
        (torch.Size([6, 1, 16, 16]), torch.uint8)
    """
    paths = getattr(source, "keys", None)
    if paths is not None and hasattr(source, "path"):  # files: decode them in processes
        names = [str(source.path(i)) for i in range(len(source))]
        chunks = [names[i : i + DECODE_CHUNK] for i in range(0, len(names), DECODE_CHUNK)]
        if workers >= 2 and len(chunks) >= 2 and sys.platform == "linux":
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=context) as pool:
                parts = pool.map(_decode_paths, chunks, [source.mode] * len(chunks))
                return _assemble(parts, len(names))
        return _assemble((_decode_paths(chunk, source.mode) for chunk in chunks), len(names))
    images = [np.asarray(source[i]) for i in range(len(source))]
    sizes = {image.shape for image in images}
    if len(sizes) > 1:
        return None, f"the images have {len(sizes)} sizes"
    stacked = np.stack(images)
    del images
    return _assemble([(stacked[..., None] if stacked.ndim == 3 else stacked, "")], len(stacked))


def _assemble(
    parts: Iterable[tuple[np.ndarray | None, str]], count: int
) -> tuple[Tensor | None, str]:
    """Decoded chunks ``(n, H, W, C)`` of ``count`` images, in order, copied one by one into
    one ``(N, C, H, W)`` tensor as they come: the memory of the cache and of one chunk, not of
    every chunk twice."""
    pixels, start = None, 0
    for array, why in parts:
        if array is None:
            return None, why
        chunk = torch.from_numpy(array).permute(0, 3, 1, 2)
        if pixels is None:
            pixels = torch.empty((count, *chunk.shape[1:]), dtype=torch.uint8)
        elif chunk.shape[1:] != pixels.shape[1:]:
            return None, "the images differ in size"
        pixels[start : start + len(chunk)] = chunk
        start += len(chunk)
    if pixels is None:
        return None, "there are no images"
    return pixels, ""


def megabytes(size: int) -> str:
    """``15.7 MB`` (``0.02 MB`` below a tenth)."""
    return f"{size / 1e6:,.1f} MB" if size >= 1e5 else f"{size / 1e6:.2f} MB"


def _first_size(source: Any) -> tuple[int, ...]:
    array = np.asarray(source[0])
    return (*array.shape[:2], 1 if array.ndim == 2 else array.shape[2])


def cache_images(
    source: Any, mode: str, workers: int = 0, budget: int | None = None, processes: int = 1
) -> tuple[CachedImages | None, str]:
    """``source`` decoded into memory as :class:`CachedImages` when ``mode`` says so, with a
    sentence for the log; ``None`` (stream from the files) with the reason otherwise.

    Args:
        source: The images (paths or a data set of images).
        mode: One of :data:`CACHE_MODES`.
        workers: Processes that decode the files.
        budget: Bytes the cache may take (``auto``); :func:`memory_budget` by default, shared
            by the ``processes`` on this machine that each hold a copy (DDP's ranks).
        processes: Training processes on this machine.

    Raises:
        ValueError: ``mode="memory"`` and the images differ in size.
    """
    if mode not in CACHE_MODES:
        raise ValueError(f"cache must be one of {CACHE_MODES}; got {mode!r}.")
    if mode == "none" or len(source) == 0:
        return None, "read from the files in every epoch (--data.cache none)"
    height, width, channels = _first_size(source)
    size = len(source) * height * width * channels
    budget = memory_budget() // processes if budget is None else budget
    if mode == "auto" and size > budget:
        shared = f" shared by its {processes} processes" if processes > 1 else ""
        return None, (
            f"read from the files in every epoch: decoded they would take {megabytes(size)}, "
            f"more than the cache's budget ({MEMORY_SHARE:.0%} of this machine's memory"
            f"{shared}, {megabytes(budget)}); --data.cache memory caches them anyway"
        )
    pixels, why = decode_images(source, workers)
    if pixels is None:
        if mode == "memory":
            raise ValueError(
                f"--data.cache memory needs images of one size, and {why}: resize them, or use "
                "--data.cache auto (it reads such images from their files)."
            )
        return None, f"read from the files in every epoch: {why}"
    each = " in each of this machine's {processes} processes" if processes > 1 else ""
    return CachedImages(pixels), (
        f"decoded once into memory ({megabytes(pixels.numel())}{each.format(processes=processes)}"
        ", uint8; --data.cache none reads the files in every epoch instead)"
    )


def _interpolation(name: str) -> InterpolationMode:
    return {"bilinear": InterpolationMode.BILINEAR, "nearest": InterpolationMode.NEAREST}.get(
        name, InterpolationMode.BICUBIC
    )


class TensorTransform:
    """timm's transform of a data config (``timm.data.create_transform``) for images decoded in
    memory.

    For evaluation: timm's own resize to ``size / crop_pct`` and centre crop (on PIL images, as
    from the files), applied once per cache to every image (:meth:`batch_from` then only
    normalises the batch it reads), so the examples are the files' to the bit. For training:
    timm's random resized crop (scale 0.08-1, ratio 3/4-4/3), horizontal flip and colour
    jitter 0.4, per image on ``uint8`` tensors with torchvision's v2 (the same distribution of
    crops, flips and jitter as timm's transform of the files, not the same draws). Both then
    scale to [0, 1] and normalise as timm does. PIL images and tensors are accepted one by one.

    Example:
        >>> import torch
        >>> config = {"input_size": (1, 28, 28), "interpolation": "bicubic", "mean": (0.5,),
        ...           "std": (0.5,), "crop_pct": 1.0}
        >>> evaluate = TensorTransform(config, training=False)
        >>> images = CachedImages(torch.full((4, 1, 28, 28), 255, dtype=torch.uint8))
        >>> batch = evaluate.batch_from(images, torch.tensor([0, 2]))
        >>> batch.shape, batch.max().item()
        (torch.Size([2, 1, 28, 28]), 1.0)
        >>> TensorTransform(config, training=True)(images[0]).shape
        torch.Size([1, 28, 28])
    """

    def __init__(self, config: dict[str, Any], training: bool) -> None:
        size = tuple(config["input_size"][1:])
        interpolation = _interpolation(config.get("interpolation", "bicubic"))
        self.training = training
        #: Whether :meth:`batch_from` may read a whole batch (evaluation: nothing is drawn).
        self.batched = not training
        self.mean = torch.tensor(config["mean"]).view(-1, 1, 1)
        self.std = torch.tensor(config["std"]).view(-1, 1, 1)
        if training:
            self.steps = v2.Compose([
                v2.ToImage(),
                v2.RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                                     interpolation=interpolation, antialias=True),
                v2.RandomHorizontalFlip(0.5),
                v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4),
            ])  # fmt: skip
        else:  # timm's evaluation geometry, on PIL images as timm applies it
            scale = int(size[0] / config.get("crop_pct", 1.0))
            self.identity = scale == size[0]
            self.steps = timm_eval_geometry(scale, size, interpolation)
        self.key = (training, size, scale if not training else None, str(interpolation))

    def normalise(self, images: Tensor) -> Tensor:
        """``uint8`` images scaled to [0, 1] and normalised, as timm's ``ToTensor`` and
        ``Normalize`` compute it."""
        return images.float().div(255).sub(self.mean).div(self.std)

    def _geometry(self, image: Tensor | Image.Image) -> Tensor:
        if self.training:
            return self.steps(image)
        if isinstance(image, Tensor):
            if self.identity and image.shape[-2:] == self.steps.transforms[1].size:
                return image
            image = Image.fromarray(image.permute(1, 2, 0).squeeze(-1).numpy())
        return v2.functional.pil_to_tensor(self.steps(image))

    def __call__(self, image: Tensor | Image.Image) -> Tensor:
        return self.normalise(self._geometry(image))

    def batch_from(self, source: CachedImages, indices: Tensor) -> Tensor:
        """The evaluation transform of the images ``indices`` of ``source``, read at once (a
        training transform draws per image: one draw for a batch would crop every image
        alike)."""
        if not self.batched:
            raise ValueError("a training transform draws per image; call it on each.")

        def evaluation(pixels: Tensor) -> Tensor:
            if self.identity and pixels.shape[-2:] == self.steps.transforms[1].size:
                return pixels  # nothing to resize or crop: no second copy of the cache
            return torch.stack([self._geometry(image) for image in pixels])

        return self.normalise(source.view(self.key, evaluation)[indices])

    def __repr__(self) -> str:
        return f"TensorTransform(training={self.training}, {self.steps})"


def timm_eval_geometry(scale: int, size: tuple[int, ...], interpolation: InterpolationMode) -> Any:
    """timm's evaluation resize and centre crop (``transforms_imagenet_eval``) on PIL images."""
    from torchvision import transforms

    return transforms.Compose(
        [transforms.Resize(scale, interpolation=interpolation), transforms.CenterCrop(size)]
    )
