"""torch.hub entry points, one per named architecture (``alexnet models``)::

    model = torch.hub.load("<owner>/alexnet", "alexnet", num_classes=10, lrn=False)  # new weights
    model = torch.hub.load("<owner>/alexnet", "alexnet", weights="runs/x/checkpoints/best.pt")
    model = torch.hub.load("path/to/clone", "alexnet_owt", source="local")

``weights``: a model file, training checkpoint or run folder (:func:`alexnet.load_model`: eval
mode, with ``class_names`` and the training set's ``mean``); without it, a network of the
architecture, initialised as the paper's section 5, built with ``options`` (those of
:func:`alexnet.build_model`, checked as ``--model-option`` is).
"""

from alexnet.errors import UserError as _UserError

dependencies = ["torch", "numpy", "PIL", "yaml"]


def _model(arch: str, weights, options: dict):
    from alexnet.inference import load_model
    from alexnet.registry import build_model, checked_options

    if weights in ("DEFAULT", True) or options.get("pretrained"):  # torchvision's spellings
        raise _UserError("no weights are downloaded here: give weights= a model file or run folder (for "
                         "torchvision's published weights: `alexnet convert torchvision W.pth OUT.pt`, "
                         "then alexnet_owt(weights='OUT.pt'))")
    if weights is None:
        return build_model(arch, **checked_options(arch, options, "option"))
    if options:
        raise _UserError(f"options {', '.join(options)}: a model file brings its own; give weights or options")
    model = load_model(weights)
    if model.arch != arch:
        raise _UserError(f"{weights}: holds {model.arch}, not {arch}; load it with the entry point "
                         f"{model.arch.replace('-', '_')!r}")
    return model


def alexnet(weights=None, **options):
    """The paper's network: two towers, LRN, overlapping pooling, 227x227 input (section 3)."""
    return _model("alexnet", weights, options)


def alexnet_onetower(weights=None, **options):
    """Section 3.2's comparison: one tower with half the kernels in conv1..conv4."""
    return _model("alexnet-onetower", weights, options)


def alexnet_owt(weights=None, **options):
    """The 'one weird trick' single-tower net torchvision ships as alexnet (224x224 input); its
    weights: ``alexnet convert torchvision``'s output."""
    return _model("alexnet-owt", weights, options)
