"""AlexNet: the network of Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep
Convolutional Neural Networks" (NIPS 2012), as faithful, fast, tested PyTorch software."""

__version__ = "0.1.0"

from alexnet.lrn import LocalResponseNorm  # noqa: E402
from alexnet.model import AlexNet, AlexNetOWT, TwoDeviceAlexNet  # noqa: E402
from alexnet.modelfile import load_model, save_model  # noqa: E402
from alexnet.registry import build_model, list_models, register_model  # noqa: E402

__all__ = ["AlexNet", "AlexNetOWT", "TwoDeviceAlexNet", "LocalResponseNorm", "build_model",
           "list_models", "register_model", "load_model", "save_model", "__version__"]
