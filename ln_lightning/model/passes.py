"""Passes of the model over a whole split, cached per training step, and over new images."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from torch.utils.data import DataLoader

from ln_lightning.data.dataset import collate_samples
from ln_lightning.inference import ImagePredictions, SplitPredictions, predict_images, predict_split
from ln_lightning.lightning_internals import attached_trainer

__all__ = ["SplitPasses", "label_images"]


class SplitPasses:
    """The model's predictions on a whole labelled split, one pass per training step and split:
    during fit the loss's hooks (Forward correction's estimate of ``T``) and every analysis
    callback share it.

    Example:
        >>> from ln_lightning import DigitsDataModule, NoisyLabelClassifier
        >>> model, data = NoisyLabelClassifier(input_shape=(1, 8, 8)), DigitsDataModule()
        >>> predictions = SplitPasses().predictions(model, "test", data)
        >>> predictions.probs.shape
        torch.Size([360, 10])
    """

    def __init__(self) -> None:
        self._cached: tuple[Any, SplitPredictions] | None = None

    @staticmethod
    def _datamodule(model: Any, datamodule: Any) -> Any:
        if datamodule is not None:
            return datamodule
        return getattr(attached_trainer(model), "datamodule", None)

    def predictions(self, model: Any, split: str, datamodule: Any = None) -> SplitPredictions:
        """One pass in evaluation mode with the evaluation transform, in a fixed order
        (:mod:`ln_lightning.inference`), cached while the training step stays the same."""
        trainer = attached_trainer(model)
        datamodule = self._datamodule(model, datamodule)
        key = (trainer.global_step if trainer is not None else None, id(datamodule), split)
        if self._cached is not None and key[0] is not None and self._cached[0] == key:
            return self._cached[1]
        predictions = predict_split(model, self.batches(model, split, datamodule))
        if key[0] is not None:
            self._cached = (key, predictions)
        return predictions

    def batches(self, model: Any, split: str, datamodule: Any = None) -> Iterable[Any]:
        """A loader over the data module's split with the evaluation transform, in a fixed
        order; without a data module, the training loader of a fitting trainer as it is."""
        trainer = attached_trainer(model)
        datamodule = self._datamodule(model, datamodule)
        if datamodule is not None:
            dataset = datamodule.split(split, eval_transform=True)
            return DataLoader(
                dataset, batch_size=datamodule.batch_size, shuffle=False, collate_fn=collate_samples
            )
        if split == "train" and trainer is not None and trainer.train_dataloader is not None:
            return trainer.train_dataloader
        raise ValueError(
            "split_predictions() needs a NoisyLabelDataModule (trainer.fit(model, "
            "datamodule=...) or split_predictions(datamodule=...)) or a fitting trainer."
        )


def label_images(
    model: Any, images: Sequence[Any], settings: dict[str, Any] | None, batch_size: int
) -> ImagePredictions:
    """``model.predict_images``: the settings come from the checkpoint or, right after fit,
    from the data module (its classes and evaluation transform)."""
    datamodule = getattr(attached_trainer(model), "datamodule", None)
    if settings is None and datamodule is not None:
        settings = datamodule.inference_settings()
    if settings is None:
        raise ValueError(
            "predict_images needs the classes and transform of training: load the model with "
            "NoisyLabelClassifier.load_from_checkpoint(<an ln-fit checkpoint>), or call it "
            "after trainer.fit on an ImageFolderDataModule."
        )
    return predict_images(model, images, settings, batch_size)
