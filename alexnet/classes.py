"""Which classes a model predicts, whether they are a dataset's (:func:`check_classes`), chance, ImageNet's classes."""

import functools
import json
from collections.abc import Sequence
from importlib import resources

from alexnet.errors import UserError


@functools.cache
def imagenet_classes() -> dict[str, str]:
    """The 1000 ILSVRC-2012 wnids in sorted order (the standard class index) -> names (``imagenet_classes.json``)."""
    return json.loads(resources.files("alexnet.data").joinpath("imagenet_classes.json").read_text())


def imagenet_class_names() -> list[str]:
    """The names of the 1000 ILSVRC-2012 classes in the standard order (sorted wnids)."""
    return [name for _, name in sorted(imagenet_classes().items())]


def class_lists(dataset) -> tuple[list[str], list[str]]:
    """The dataset's class names and ids (ImageNet's wnids: two classes are named "crane"); else the names twice."""
    classes = list(dataset.classes)
    if classes and isinstance(classes[0], dict):
        return [c["name"] for c in classes], [c["id"] for c in classes]
    names = [str(c) for c in classes]
    return names, names


def check_classes(models: Sequence, dataset, names: Sequence[str]) -> None:
    """Raise a UserError naming ``models[i]`` as ``names[i]`` unless each predicts exactly the dataset's classes,
    in order (a model without class names: as many outputs as the dataset has classes)."""
    data_names, data_ids = class_lists(dataset)
    for model, name in zip(models, names, strict=True):
        model_classes = getattr(model, "class_names", None)
        if model_classes is None:
            outputs = num_outputs(model)
            if outputs != len(data_names):
                raise UserError(f"{name} has {outputs} outputs but the data has {len(data_names)} classes")
        elif len(model_classes) != len(data_names):
            raise UserError(f"{name}: the model knows {len(model_classes)} classes but the data has {len(data_names)}")
        elif list(model_classes) not in (data_names, data_ids):
            i = next(i for i, (a, b) in enumerate(zip(model_classes, data_names)) if a != b)
            raise UserError(f"{name}: the model's classes differ from the data's: class {i} is "
                            f"{model_classes[i]!r} in the model, {data_names[i]!r} in the data")


def num_outputs(model) -> int:
    """The number of classes a model predicts (the size of its last layer's output)."""
    from torch import nn

    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features


def class_count(model) -> int:
    """The number of classes a model predicts: its class names, else its outputs."""
    names = getattr(model, "class_names", None)
    return len(names) if names else num_outputs(model)


def record_classes(record: dict) -> int | None:
    """The number of classes of a model file's dict, without building the network (None if it does not say)."""
    names = record.get("class_names")
    if names:
        return len(names)
    count = (record.get("options") or {}).get("num_classes")
    return int(count) if count is not None else None


def chance_error(classes: int, k: int = 1) -> float:
    """Top-``k`` error in percent of guessing uniformly among ``classes``: 90 for top-1 of 10."""
    return 100.0 * (1 - min(k, classes) / classes)
