"""The seam for training strategies: a method with a network of its own, per-sample state and a
pass over the training set at every epoch plugs into the model as it is (no special case)."""

from __future__ import annotations

import torch

from ln_lightning import CrossEntropy, DigitsDataModule, NoisyLabelClassifier, TrainingStrategy
from ln_lightning.model import LossMethod
from tests.helpers import quick_trainer


class TwoNetworks(TrainingStrategy):
    """A Co-teaching-shaped method: a peer network trained beside the model's, a count of how
    often each training example was seen, and a pass over the training split per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.passes = 0

    def build(self, model) -> None:
        self.peer = model.build_network()
        self.per_sample("seen", 1)

    def training_step(self, model, sample, batch_idx):
        mine, theirs = model.network(sample.input), self.peer(sample.input)
        self.seen[self.index(sample)] += 1
        return self.loss(mine, sample.target) + self.loss(theirs, sample.target), mine

    def parameters_to_optimise(self, model):
        return [*model.network.trained_parameters(), *self.peer.parameters()]

    def on_train_epoch_start(self, model) -> None:
        super().on_train_epoch_start(model)
        self.passes += 1
        pass_ = model.split_predictions()  # the selection pass over the training split
        assert len(pass_.probs) == len(model.trainer.datamodule.split("train"))


def test_a_method_with_its_own_network_and_state_trains_without_a_special_case(tmp_path):
    torch.manual_seed(0)
    assert isinstance(NoisyLabelClassifier(input_shape=(1, 8, 8)).method, LossMethod)  # a loss
    model = NoisyLabelClassifier(loss=CrossEntropy(), strategy=TwoNetworks(), input_shape=(1, 8, 8))
    assert model.method is model.strategy
    trainer = quick_trainer(tmp_path, max_epochs=2, limit_train_batches=None, limit_val_batches=0)
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=256))
    method = model.method
    assert method.passes == 2
    train = trainer.datamodule.split("train")
    assert torch.equal(method.seen[train.indices], torch.full((len(train), 1), 2.0))  # each twice
    assert trainer.global_step == 2 * -(-len(train) // 256)
    trainer.save_checkpoint(tmp_path / "two.ckpt")
    saved = torch.load(tmp_path / "two.ckpt", weights_only=True)["state_dict"]
    assert any(key.startswith("strategy.peer.backbone.") for key in saved)  # its state is saved
    assert "strategy.seen" in saved
