"""AlexNet (Krizhevsky, Sutskever and Hinton, NIPS 2012) in PyTorch; public names are imported on first use
(PEP 562), so that ``alexnet --help`` and data preparation workers do not import PyTorch."""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "AlexNet": "alexnet.model", "AlexNetOWT": "alexnet.model", "TwoDeviceAlexNet": "alexnet.model",
    "LocalResponseNorm": "alexnet.lrn",
    "build_model": "alexnet.registry", "list_models": "alexnet.registry", "register_model": "alexnet.registry",
    "load_model": "alexnet.inference", "save_model": "alexnet.modelfile",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'alexnet' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
