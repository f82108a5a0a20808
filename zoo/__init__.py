"""The model zoo: backbones registered in timm's registry and experiment configs.

``import zoo`` registers every model below, after which ``timm.create_model("small_cnn")``
works. The ``ln-fit`` CLI imports it for you.
"""

from zoo.lenet import LeNet5, LeNet5Reference
from zoo.mlp import MLP
from zoo.resnet_cifar import CifarResNet
from zoo.small_cnn import SmallCNN
from zoo.wide_resnet import WideResNet

__all__ = ["MLP", "CifarResNet", "LeNet5", "LeNet5Reference", "SmallCNN", "WideResNet"]
