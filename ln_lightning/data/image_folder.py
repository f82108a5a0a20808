"""Your own images with labels that may be wrong: a folder tree or a labels file."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn

from ln_lightning.data.base import NoisyLabelDataModule
from ln_lightning.data.dataset import NoisyLabelDataset
from ln_lightning.data.image_transforms import (
    GREY_MODES,
    TimmImageTransforms,
    first_image_mode,
    image_data_config,
    image_eval_transform,
)
from ln_lightning.data.images import (
    IMAGE_CHECKS,
    IMAGE_SUFFIXES,
    SKIP_HINT,
    ImageFiles,
    LabelledImages,
    doubtful_classes,
    image_files,
    read_labels_file,
    scan_image_folder,
    unreadable_images,
)
from ln_lightning.data.splits import DataSplits
from ln_lightning.labels import UNKNOWN
from ln_lightning.registry import register_datamodule

__all__ = [
    "GREY_MODES",
    "ImageFolderDataModule",
    "TimmImageTransforms",
    "image_data_config",
    "image_eval_transform",
]


@register_datamodule("image_folder", config="zoo/configs/own/images.yaml")
class ImageFolderDataModule(TimmImageTransforms, NoisyLabelDataModule):
    """Your own labelled images: train a robust model, find the labels that look wrong.

    The training images come from ``root`` (one sub-folder per class, torchvision's
    ``ImageFolder`` layout) or from ``labels_file`` (a CSV or TSV file with the columns
    ``path,label`` and optionally ``clean_label``; labels are class names or integers; paths are
    relative to the file's folder). The given labels are trained on as they are: they are the
    noisy labels, and the true ones are unknown unless the file's ``clean_label`` column gives
    them (then noise metrics and detection scores are reported against them). ``val_fraction``
    of the images is held out as the (equally noisy) validation split.

    A clean test set is optional (``test_root`` or ``test_labels_file``, the same formats).
    ``predict_root`` is a folder of unlabelled images for ``ln-fit predict``.

    Transforms come from timm's data config of the backbone at ``image_size``: its training
    transform (random resized crop, flip, colour jitter) when ``augment``, its evaluation
    transform (resize, centre crop) otherwise; one-channel images keep one channel. Injected
    noise (``noise_type``, ``noise_rate``) works on top of the given labels, for experiments.

    With neither ``root`` nor ``labels_file`` but ``predict_root`` and ``classes`` it only
    predicts (what ``ln-fit predict --ckpt_path ...`` builds from a checkpoint's
    :meth:`inference_settings`): no training images are needed.

    Args:
        root: Folder with one sub-folder of images per class.
        labels_file: CSV/TSV of ``path,label[,clean_label]`` rows (instead of ``root``).
        test_root: A clean test set in the ``root`` layout.
        test_labels_file: A clean test set as a labels file.
        predict_root: A folder of unlabelled images (searched recursively) for ``predict``.
        classes: The class names, in index order; by default the sorted class folders, or the
            sorted labels of the file (integers ``0..K-1`` when every label is an integer).
        image_size: Side of the square images the network sees.
        grayscale: Read images as one channel (``True``) or RGB (``False``); ``None`` decides
            from the first training image.
        augment: Augment training images with timm's training transform.
        crop_pct: Fraction of the resized image the centre crop keeps; the backbone's own by
            default (timm's 0.875 or the pretrained config's); 1.0 keeps it all.
        cache: ``auto``: decode the images once into memory when they all have one size and
            fit a quarter of the machine's memory (the log says which, with the size);
            ``memory``: whenever they have one size; ``none``: read the files in every epoch
            (:mod:`ln_lightning.data.image_cache`).
        skip_unreadable: Leave out images that cannot be read (counted and named) instead of
            stopping with an error.
        check_images: How set-up finds unreadable images (:data:`IMAGE_CHECKS`): ``header``
            (default) opens every file and reads its header, ``decode`` decodes every pixel too
            (also finds files cut short), ``none`` checks nothing (a bad file then stops the run
            when a batch meets it). Done once per run, by global rank 0, on ``num_workers``
            processes.
        **kwargs: See :class:`NoisyLabelDataModule`.

    Example:
        >>> import tempfile
        >>> from ln_lightning.data.synthetic import write_image_files
        >>> root = tempfile.mkdtemp()
        >>> _ = write_image_files(root, per_class=10)  # <root>/<class>/<image>.png
        >>> data = ImageFolderDataModule(root=root, image_size=32, augment=False)
        >>> data.setup()
        >>> data.class_names, data.input_shape, len(data.train_set) + len(data.val_set)
        (['circle', 'square', 'triangle'], (1, 32, 32), 30)
    """

    def __init__(
        self,
        root: str | None = None,
        labels_file: str | None = None,
        test_root: str | None = None,
        test_labels_file: str | None = None,
        predict_root: str | None = None,
        classes: list[str] | None = None,
        image_size: int = 224,
        grayscale: bool | None = None,
        augment: bool = True,
        crop_pct: float | None = None,
        cache: str = "auto",
        skip_unreadable: bool = False,
        check_images: str = "header",
        noise_type: str = "none",
        noise_rate: float = 0.0,
        **kwargs: Any,
    ) -> None:
        self._prediction_only = (
            root is None and labels_file is None and predict_root is not None and bool(classes)
        )
        if (root is None) == (labels_file is None) and not self._prediction_only:
            raise ValueError(
                "give the training images as --data.root (a folder with one sub-folder per "
                "class) or as --data.labels_file (a CSV with path,label columns), one of them "
                "(to predict new images with a trained model, --data.predict_root and "
                "--ckpt_path are enough: the checkpoint holds the classes and the transform)."
            )
        if test_root is not None and test_labels_file is not None:
            raise ValueError("give the test set as test_root or as test_labels_file, not both.")
        self._image_options(image_size, augment, crop_pct, cache)
        if check_images not in IMAGE_CHECKS:
            raise ValueError(f"check_images must be one of {IMAGE_CHECKS}; got {check_images!r}.")
        self.injected = noise_type != "none"  # read by has_real_noise() in the base's checks
        super().__init__(noise_type=noise_type, noise_rate=noise_rate, **kwargs)
        self.root, self.labels_file = root, labels_file
        self.test_root, self.test_labels_file = test_root, test_labels_file
        self.predict_root = predict_root
        self.skip_unreadable, self.check_images = skip_unreadable, check_images
        self.train_images: LabelledImages | None = None
        if not self._prediction_only:
            self.train_images = (
                read_labels_file(labels_file) if labels_file else scan_image_folder(root)
            )
        self.test_images = None
        if test_root is not None or test_labels_file is not None:
            self.test_images = (
                read_labels_file(test_labels_file)
                if test_labels_file
                else scan_image_folder(test_root, option="--data.test_root")
            )
        self.class_names = self._classes(classes)
        self.num_classes = len(self.class_names)
        if self.num_classes < 2:
            raise ValueError(
                f"the training images have {self.num_classes} class ({self.class_names}); a "
                "classifier needs at least two."
            )
        if grayscale is None:
            sample = self.train_images.paths if self.train_images else self._predict_paths()
            grayscale = first_image_mode(sample) in GREY_MODES
        self.grayscale = grayscale
        self.input_shape = (1 if grayscale else 3, image_size, image_size)

    # ------------------------------------------------------------ classes and labels
    def _classes(self, classes: Sequence[str] | None) -> list[str]:
        if self.train_images is None:  # prediction only: the classes the model was trained on
            return [str(c) for c in classes or ()]
        given = self.train_images.labels
        truth = [c for c in (self.train_images.clean_labels or []) if c is not None]
        seen = set(given) | set(truth)  # a class may be given to no image and still be true
        if classes is not None:
            names = [str(c) for c in classes]
        elif self.root is not None:
            names = sorted(set(given))  # the class folders
        elif all(label.lstrip("-").isdigit() for label in seen):
            names = [str(i) for i in range(max(int(label) for label in seen) + 1)]
        else:
            names = sorted(seen)
        where = self.labels_file or self.root
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ValueError(
                f"{where}: the label(s) {unknown[:5]} are not classes {names[:20]}; fix the "
                "labels or list every class with --data.classes."
            )
        empty = [name for name in names if name not in seen]
        if empty:
            raise ValueError(
                f"{where}: the class(es) {empty[:5]} have no training images; drop them from "
                "--data.classes or add images."
            )
        doubts = doubtful_classes(Counter(given)) if classes is None else {}
        if doubts:
            meant = json.dumps([name for name in names if name not in doubts])
            rank_zero_warn(
                f"{where}: {'; '.join(doubts.values())}. A typo in a label makes a class of its "
                "own, which the model then learns and suggests. Fix the labels, or list the "
                f"classes, e.g. --data.classes '{meant}' (a label outside the list is then "
                "refused, named)."
            )
        for what, labels in (("clean_label", truth), ("test", self._test_labels())):
            strangers = sorted(set(labels) - set(names))
            if strangers:
                raise ValueError(
                    f"the {what} label(s) {strangers[:5]} are not classes of the training "
                    f"images {names[:20]}."
                )
        return names

    def _test_labels(self) -> list[str]:
        return [] if self.test_images is None else list(self.test_images.labels)

    def _indices(self, labels: Sequence[str | None]) -> torch.Tensor:
        index = {name: i for i, name in enumerate(self.class_names)}
        return torch.tensor([UNKNOWN if label is None else index[label] for label in labels])

    def has_real_noise(self) -> bool:
        return not self.injected

    # ------------------------------------------------------------ loading
    def _readable(self, images: LabelledImages, what: str) -> LabelledImages:
        """``images`` without the unreadable ones (``skip_unreadable``), or an error naming
        them; checked once per run, by global rank 0 (:meth:`on_rank_zero`)."""
        bad = self.on_rank_zero(
            lambda: unreadable_images(images.paths, self.check_images, self.file_workers())
        )
        if not bad:
            return images
        example, reason = bad[0]
        if not self.skip_unreadable:
            raise ValueError(
                f"{len(bad)} of the {len(images.paths)} {what} images cannot be read, e.g. "
                f"{example} ({reason}). {SKIP_HINT}"
            )
        rank_zero_warn(
            f"{type(self).__name__}: left out {len(bad)} unreadable {what} image(s) "
            f"(--data.skip_unreadable): {', '.join(str(p) for p, _ in bad[:5])}"
            + (" ..." if len(bad) > 5 else "")
        )
        unreadable = {path for path, _ in bad}
        keep = [i for i, path in enumerate(images.paths) if path not in unreadable]
        clean = images.clean_labels
        return LabelledImages(
            [images.paths[i] for i in keep],
            [images.labels[i] for i in keep],
            None if clean is None else [clean[i] for i in keep],
        )

    def _files(self, paths: Sequence[Path]) -> ImageFiles:
        return ImageFiles(Path("/"), [str(p) for p in paths], "L" if self.grayscale else "RGB")

    def prediction_only(self) -> bool:
        return self._prediction_only

    def load_splits(self) -> DataSplits:
        if self.train_images is None:
            raise ValueError(
                f"{type(self).__name__} was built to predict only (no --data.root or "
                "--data.labels_file): give the training images to fit or test."
            )
        train = self._readable(self.train_images, "training")
        given = self._indices(train.labels)
        clean = (
            self._indices(train.clean_labels)
            if train.clean_labels is not None
            else torch.full_like(given, UNKNOWN)
        )
        test_inputs = test_labels = test_ids = None
        if self.test_images is not None:
            test = self._readable(self.test_images, "test")
            test_inputs, test_labels = self._files(test.paths), self._indices(test.labels)
            test_ids = [str(p) for p in test.paths]
        splits = DataSplits(
            train_inputs=self._files(train.paths),
            # Injected noise corrupts the given labels, which are then the truth; otherwise the
            # given labels are the noisy ones and the truth is what clean_label says, if anything.
            train_labels=given if self.injected else clean,
            train_noisy_labels=None if self.injected else given,
            test_inputs=test_inputs,
            test_labels=test_labels,
            class_names=self.class_names,
            train_ids=[str(p) for p in train.paths],
            test_ids=test_ids,
        )
        return self.cache_splits(splits)

    def _predict_paths(self) -> list[Path]:
        folder = Path(self.predict_root).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"the folder of images to predict, {folder}, does not exist.")
        paths = image_files(folder.resolve())
        if not paths:
            raise ValueError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
        return paths

    def unlabelled_predict_set(self) -> NoisyLabelDataset | None:
        if self.predict_root is None:
            return None
        paths = self._predict_paths()
        paths = self._readable(LabelledImages(paths, ["?"] * len(paths)), "prediction").paths
        self._example_ids["predict"] = [str(p) for p in paths]
        unknown = torch.full((len(paths),), UNKNOWN)
        return NoisyLabelDataset(
            self._files(paths), unknown, unknown, torch.arange(len(paths)), self.eval_transform()
        )
