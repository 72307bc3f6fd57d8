"""The networks of the paper, one file per family, all reachable through one registry.

To add a network, write a builder ``build(num_classes, input_shape) -> nn.Module`` in a new file
of this package, decorate it with ``@register_model("name", input_shape=(C, H, W))`` and import
the file below; the test suite then builds and checks it automatically.
"""

from earlyprune.models import cifar_resnet, imagenet_resnet, lenet, small_cnn, vgg
from earlyprune.models.base import MODELS, ModelEntry, create_model, list_models, register_model
from earlyprune.models.init import BIAS_INITS, BN_GAMMAS, INITS, initialize

__all__ = [
    "BIAS_INITS",
    "BN_GAMMAS",
    "INITS",
    "MODELS",
    "ModelEntry",
    "cifar_resnet",
    "create_model",
    "imagenet_resnet",
    "initialize",
    "lenet",
    "list_models",
    "register_model",
    "small_cnn",
    "vgg",
]
