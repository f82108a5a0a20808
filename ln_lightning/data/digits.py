"""scikit-learn's bundled handwritten digits (8x8, 10 classes): the embedded default data set."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from ln_lightning.data.base import NoisyLabelDataModule
from ln_lightning.data.splits import DataSplits
from ln_lightning.noise import MNIST_ASYMMETRIC_MAP
from ln_lightning.registry import register_datamodule


@register_datamodule("digits", config="cli.yaml")
class DigitsDataModule(NoisyLabelDataModule):
    """1,797 8x8 grey-scale digits shipped with scikit-learn; no download.

    A fixed stratified split (``test_fraction`` of the data, always the same examples) is the
    clean test set; the rest is the training pool that receives the noise. Inputs are scaled to
    [0, 1] and standardised with the training pool's mean and standard deviation. Asymmetric
    noise uses the paper's MNIST map (7->1, 2->7, 5<->6, 3->8).

    Args:
        test_fraction: Fraction of the data in the clean test split.
        **kwargs: See :class:`NoisyLabelDataModule`.

    Example:
        >>> data = DigitsDataModule(noise_type="asymmetric", noise_rate=0.4, seed=0)
        >>> data.setup()
        >>> len(data.train_set), len(data.val_set), len(data.test_set), data.input_shape
        (1293, 144, 360, (1, 8, 8))
        >>> round(data.noise.realised_rate, 3)
        0.209
    """

    num_classes = 10
    input_shape = (1, 8, 8)
    default_class_map = MNIST_ASYMMETRIC_MAP
    class_names = tuple(str(digit) for digit in range(10))

    def __init__(self, test_fraction: float = 0.2, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1); got {test_fraction!r}.")
        self.test_fraction = test_fraction

    def load_splits(self) -> DataSplits:
        digits = load_digits()
        images = digits.images.astype("float32") / 16.0
        train_x, test_x, train_y, test_y = train_test_split(
            images,
            digits.target,
            test_size=self.test_fraction,
            stratify=digits.target,
            random_state=0,
        )
        train_x, test_x = torch.from_numpy(train_x), torch.from_numpy(test_x)
        mean, std = train_x.mean(), train_x.std()
        train_x = ((train_x - mean) / std).unsqueeze(1)
        test_x = ((test_x - mean) / std).unsqueeze(1)
        return DataSplits(
            train_x, torch.from_numpy(train_y).long(), test_x, torch.from_numpy(test_y).long()
        )
