"""Two-dimensional toy sets from scikit-learn: Two Moons and Circles (App. C of the paper)."""

from __future__ import annotations

import torch
from sklearn.datasets import make_circles, make_moons

from ln_lightning.data.base import NoisyLabelDataModule
from ln_lightning.data.splits import DataSplits
from ln_lightning.registry import register_datamodule


class _ToyDataModule(NoisyLabelDataModule):
    """Two classes in the plane; a training pool and a test set drawn from the same generator.

    Args:
        num_train: Size of the training pool (noisy validation split included).
        num_test: Size of the clean test set.
        feature_noise: Standard deviation of the Gaussian jitter of the points (the generator's
            ``noise``; not label noise).
        **kwargs: See :class:`NoisyLabelDataModule`; symmetric label noise by default.
    """

    num_classes = 2
    input_shape = (2,)

    def __init__(
        self,
        num_train: int = 1000,
        num_test: int = 1000,
        feature_noise: float = 0.1,
        noise_type: str = "symmetric",
        noise_rate: float = 0.4,
        **kwargs,
    ) -> None:
        super().__init__(noise_type=noise_type, noise_rate=noise_rate, **kwargs)
        if num_train < 2 or num_test < 1:
            raise ValueError(
                f"num_train must be >= 2 and num_test >= 1; got {num_train}, {num_test}."
            )
        if feature_noise < 0:
            raise ValueError(f"feature_noise must be >= 0; got {feature_noise!r}.")
        self.num_train, self.num_test, self.feature_noise = num_train, num_test, feature_noise

    def _make(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def load_splits(self) -> DataSplits:
        # The points depend on the seed too, so seeds differ in data as well as in label noise.
        train_x, train_y = self._make(self.num_train, 2 * self.seed)
        test_x, test_y = self._make(self.num_test, 2 * self.seed + 1)
        return DataSplits(train_x, train_y, test_x, test_y)


@register_datamodule("two_moons", config="zoo/configs/two_moons/base.yaml")
class TwoMoonsDataModule(_ToyDataModule):
    """scikit-learn's ``make_moons``: two interleaving half circles.

    Example:
        >>> data = TwoMoonsDataModule(num_train=200, num_test=100, noise_rate=0.2)
        >>> data.setup()
        >>> len(data.train_set), len(data.val_set), len(data.test_set), data.input_shape
        (180, 20, 100, (2,))
    """

    def _make(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = make_moons(n, noise=self.feature_noise, random_state=seed)
        return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y).long()


@register_datamodule("circles", config="zoo/configs/circles/base.yaml")
class CirclesDataModule(_ToyDataModule):
    """scikit-learn's ``make_circles``: a small circle inside a larger one.

    Args:
        factor: Radius of the inner circle relative to the outer one, in (0, 1).
        **kwargs: See :class:`TwoMoonsDataModule`.

    Example:
        >>> data = CirclesDataModule(num_train=200, num_test=100, factor=0.5, noise_type="none")
        >>> data.setup()
        >>> data.num_classes, data.noise.realised_rate
        (2, 0.0)
    """

    def __init__(self, factor: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must lie in (0, 1); got {factor!r}.")
        self.factor = factor

    def _make(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = make_circles(n, noise=self.feature_noise, factor=self.factor, random_state=seed)
        return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y).long()
