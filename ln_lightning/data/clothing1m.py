"""Clothing1M (Xiao et al. 2015) from a local copy in the official layout."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor
from torchvision.transforms import v2

from ln_lightning.data.base import NoisyLabelDataModule, Transform
from ln_lightning.data.dataset import NoisyLabelDataset
from ln_lightning.data.images import ImageFiles
from ln_lightning.data.sampling import ResumableSampler
from ln_lightning.data.splits import DataSplits
from ln_lightning.registry import register_datamodule

ANNOTATIONS = (
    "noisy_label_kv.txt",
    "noisy_train_key_list.txt",
    "clean_label_kv.txt",
    "clean_val_key_list.txt",
    "clean_test_key_list.txt",
    "category_names_eng.txt",
)
#: Per-channel mean and standard deviation of Clothing1M images (as used by DivideMix et al.).
CLOTHING1M_MEAN = (0.6959, 0.6537, 0.6371)
CLOTHING1M_STD = (0.3113, 0.3192, 0.3214)


def read_key_values(path: Path) -> dict[str, int]:
    """``key -> label`` from a ``*_label_kv.txt`` file (``images/x/yy/z.jpg 3`` per line)."""
    table = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(
                f"{path}:{number}: expected 'KEY LABEL', got {line!r} (truncated file?)."
            )
        table[parts[0]] = int(parts[1])
    return table


def read_category_names(path: Path) -> list[str] | None:
    """The class names, one per line (``category_names_eng.txt``), if the file is there."""
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return names or None


def read_keys(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class ClassBalancedSampler(ResumableSampler):
    """Draw ``per_class`` examples of every class each epoch (by the noisy labels), shuffled.

    Classes with fewer examples are sampled with replacement. The draw depends only on
    ``seed`` and the epoch (``set_epoch``, which Lightning calls), DDP ranks take disjoint
    slices of the same draw, and a resumed run continues mid-epoch, as every
    :class:`~ln_lightning.data.sampling.ResumableSampler`.

    Args:
        labels: Label of each example of the dataset being sampled, ``(N,)``.
        per_class: Examples per class and epoch.
        seed: Seed of the draw.
        num_replicas: DDP world size (from ``torch.distributed`` when initialised, else 1).
        rank: This process's rank (likewise, else 0).

    Example:
        >>> import torch
        >>> labels = torch.tensor([0] * 10 + [1] * 2)
        >>> sampler = ClassBalancedSampler(labels, per_class=2, seed=0, num_replicas=1, rank=0)
        >>> drawn = labels[list(sampler)]
        >>> len(drawn), int((drawn == 0).sum()), int((drawn == 1).sum())  # two of each class
        (4, 2, 2)
    """

    def __init__(
        self,
        labels: Tensor,
        per_class: int,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        super().__init__(labels, seed=seed, num_replicas=num_replicas, rank=rank)
        if per_class < 1:
            raise ValueError(f"per_class must be >= 1; got {per_class}.")
        self.labels = torch.as_tensor(labels).long()
        self.per_class = per_class
        self.classes = torch.unique(self.labels).tolist()
        total = per_class * len(self.classes)
        self.num_samples = math.ceil(total / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def epoch_order(self) -> Tensor:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        chosen = []
        for label in self.classes:
            members = torch.nonzero(self.labels == label).flatten()
            if len(members) >= self.per_class:
                pick = torch.randperm(len(members), generator=generator)[: self.per_class]
            else:
                pick = torch.randint(len(members), (self.per_class,), generator=generator)
            chosen.append(members[pick])
        return torch.cat(chosen)[
            torch.randperm(self.per_class * len(self.classes), generator=generator)
        ]


@register_datamodule("clothing1m", config="zoo/configs/clothing1m/base.yaml")
class Clothing1MDataModule(NoisyLabelDataModule):
    """Clothing1M: 1M noisy web images of 14 clothing classes, with clean val and test sets.

    Point ``data_dir`` at a local copy in the official layout: the annotation files
    (``noisy_label_kv.txt``, ``noisy_train_key_list.txt``, ``clean_label_kv.txt``,
    ``clean_val_key_list.txt``, ``clean_test_key_list.txt``, ``category_names_eng.txt``, in
    ``data_dir`` or ``data_dir/annotations``) and the images under the keys' paths
    (``data_dir/images/...``). The data set cannot be downloaded automatically; request it from
    its authors.

    Training uses the noisy labels of ``noisy_train_key_list.txt`` (clean labels where
    ``clean_label_kv.txt`` has them, else -1), sampled class-balanced each epoch
    (``per_class`` per class, 18,976 as in the reference); validation and test are the clean
    sets. ImageNet-style transforms (resize 256, random 224 crop and flip for training, centre
    crop otherwise) with the data set's mean and standard deviation.

    Args:
        data_dir: Root of the local copy.
        per_class: Training examples drawn per class and epoch.
        **kwargs: See :class:`NoisyLabelDataModule` (noise arguments are ignored).

    Example:
        >>> import tempfile
        >>> from ln_lightning.data.synthetic import write_clothing1m
        >>> root = tempfile.mkdtemp()
        >>> write_clothing1m(root, per_class=3)  # Clothing1M's files and annotation lists
        >>> data = Clothing1MDataModule(data_dir=root, per_class=1, batch_size=7)
        >>> data.setup()
        >>> len(data.train_set), len(data.val_set), len(data.test_set), data.input_shape
        (42, 14, 14, (3, 224, 224))
    """

    num_classes = 14
    input_shape = (3, 224, 224)

    def __init__(
        self,
        data_dir: str = "data/clothing1m",
        per_class: int = 18_976,
        batch_size: int = 32,
        **kwargs,
    ) -> None:
        kwargs.setdefault("noise_type", "none")
        super().__init__(batch_size=batch_size, **kwargs)
        if per_class < 1:
            raise ValueError(f"per_class must be >= 1; got {per_class}.")
        self.data_dir = data_dir
        self.per_class = per_class

    def has_real_noise(self) -> bool:
        return True

    def _annotation_dir(self) -> Path:
        root = Path(self.data_dir).expanduser()
        for candidate in (root, root / "annotations"):
            if all((candidate / name).is_file() for name in ANNOTATIONS):
                return candidate
        for candidate in (root, root / "annotations"):
            if any((candidate / name).is_file() for name in ANNOTATIONS):
                missing = [name for name in ANNOTATIONS if not (candidate / name).is_file()]
                break
        else:
            missing = list(ANNOTATIONS)
        raise FileNotFoundError(
            f"Clothing1M layout incomplete in {root}: missing {', '.join(missing)}. Clothing1M "
            "cannot be downloaded automatically: request it from its authors "
            "(https://github.com/Cysu/noisy_label) and point --data.data_dir at the folder with "
            "the annotation files and images/."
        )

    def load_splits(self) -> DataSplits:
        annotations = self._annotation_dir()
        root = Path(self.data_dir).expanduser()
        noisy_kv = read_key_values(annotations / "noisy_label_kv.txt")
        clean_kv = read_key_values(annotations / "clean_label_kv.txt")
        train_keys = read_keys(annotations / "noisy_train_key_list.txt")
        missing_labels = [k for k in train_keys if k not in noisy_kv]
        if missing_labels:
            raise ValueError(
                f"{len(missing_labels)} training keys have no noisy label in noisy_label_kv.txt "
                f"(first: {missing_labels[0]}); the annotation files are inconsistent or truncated."
            )
        splits = {}
        for split in ("val", "test"):
            keys = read_keys(annotations / f"clean_{split}_key_list.txt")
            unlabeled = [k for k in keys if k not in clean_kv]
            if unlabeled:
                raise ValueError(
                    f"{len(unlabeled)} {split} keys have no label in clean_label_kv.txt "
                    f"(first: {unlabeled[0]})."
                )
            splits[split] = (ImageFiles(root, keys), torch.tensor([clean_kv[k] for k in keys]))
        first_image = root / train_keys[0]
        if not first_image.is_file():
            raise FileNotFoundError(
                f"Clothing1M image {first_image} not found: the images must lie under "
                f"{root} at the paths of the key lists (e.g. images/0/00/....jpg)."
            )
        return DataSplits(
            train_inputs=ImageFiles(root, train_keys),
            train_labels=torch.tensor([clean_kv.get(k, -1) for k in train_keys]),
            train_noisy_labels=torch.tensor([noisy_kv[k] for k in train_keys]),
            test_inputs=splits["test"][0],
            test_labels=splits["test"][1],
            val_inputs=splits["val"][0],
            val_labels=splits["val"][1],
            class_names=read_category_names(annotations / "category_names_eng.txt"),
            train_ids=train_keys,
            test_ids=splits["test"][0].keys,
            val_ids=splits["val"][0].keys,
        )

    def train_transform(self) -> Transform | None:
        return v2.Compose(
            [
                v2.PILToTensor(),
                v2.Resize(256, antialias=True),
                v2.RandomCrop(224),
                v2.RandomHorizontalFlip(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(CLOTHING1M_MEAN, CLOTHING1M_STD),
            ]
        )

    def eval_transform(self) -> Transform | None:
        return v2.Compose(
            [
                v2.PILToTensor(),
                v2.Resize(256, antialias=True),
                v2.CenterCrop(224),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(CLOTHING1M_MEAN, CLOTHING1M_STD),
            ]
        )

    def train_sampler(self, dataset: NoisyLabelDataset) -> ClassBalancedSampler:
        labels = dataset.noisy_labels[dataset.indices]
        return ClassBalancedSampler(labels, self.per_class, seed=self.seed)
