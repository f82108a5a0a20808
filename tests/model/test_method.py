"""The seam for training strategies: a method with a network of its own, per-sample state, its
own parameters and a pass over the training set at every epoch plugs into the model as it is."""

from __future__ import annotations

import torch
from torch import nn

from ln_lightning import CrossEntropy, DigitsDataModule, NoisyLabelClassifier
from ln_lightning.model import LossMethod, Network
from tests.helpers import quick_trainer


class TwoNetworks(nn.Module):
    """A Co-teaching-shaped method: a peer network trained beside the model's, a count of how
    often each training example was seen, and a pass over the training split per epoch."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.__dict__["loss"] = loss  # the model's own loss (registered there, not twice)
        self.passes = 0

    def setup(self, model) -> None:
        self.peer = Network("small_cnn", self.loss, model.num_classes, model.input_shape)
        pool = model.trainer.datamodule.split("train")
        self.register_buffer("seen", torch.zeros(len(pool.noisy_labels)))

    def outputs(self, model, inputs):
        return model.network(inputs)

    def training_step(self, model, sample, batch_idx):
        mine, theirs = model.network(sample.input), self.peer(sample.input)
        self.seen[sample.index] += 1
        return self.loss(mine, sample.target) + self.loss(theirs, sample.target), mine

    def parameters_to_optimise(self, model):
        return [*model.network.trained_parameters(), *self.peer.parameters()]

    def on_fit_start(self, model) -> None: ...

    def on_train_epoch_start(self, model) -> None:
        self.passes += 1
        pass_ = model.split_predictions()  # the selection pass over the training split
        assert len(pass_.probs) == len(model.trainer.datamodule.split("train"))

    def on_train_batch_start(self, model, batch_idx) -> None: ...

    def after_optimizer_step(self, model) -> None: ...


def test_a_method_with_its_own_network_and_state_trains_without_a_special_case(tmp_path):
    torch.manual_seed(0)
    model = NoisyLabelClassifier(loss=CrossEntropy(), input_shape=(1, 8, 8))
    assert isinstance(model.method, LossMethod)  # a loss: the simple case
    model.method = TwoNetworks(model.loss)
    trainer = quick_trainer(tmp_path, max_epochs=2, limit_train_batches=None, limit_val_batches=0)
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=256))
    method = model.method
    assert method.passes == 2
    train = trainer.datamodule.split("train")
    assert torch.equal(method.seen[train.indices], torch.full((len(train),), 2.0))  # each twice
    assert trainer.global_step == 2 * -(-len(train) // 256)
    trainer.save_checkpoint(tmp_path / "two.ckpt")
    saved = torch.load(tmp_path / "two.ckpt", weights_only=True)["state_dict"]
    assert any(key.startswith("method.peer.backbone.") for key in saved)  # its state is saved
    assert "method.seen" in saved
