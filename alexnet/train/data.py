"""``--data``: the classes and the batches of the dataset it names, synthetic or prepared (each
builds a :class:`alexnet.train.training_data.TrainingData`)."""

from __future__ import annotations

from torch import nn

from alexnet.train import distributed
from alexnet.train.config import TrainConfig
from alexnet.train.prepared import prepared_classes, prepared_data
from alexnet.train.synthetic import synthetic
from alexnet.train.training_data import TrainingData


def dataset_classes(config: TrainConfig, ctx: distributed.Context) -> list[str]:
    """The class names of ``--data`` (prepared on first use, once per machine); synthetic data has
    ``num_classes`` (a model option, default 10)."""
    if config.data == "synthetic":
        return [f"class{i}" for i in range(config.model_options.get("num_classes", 10))]
    with distributed.local_leader_first(ctx):
        return prepared_classes(config)


def open_data(config: TrainConfig, ctx: distributed.Context, model: nn.Module,
              num_classes: int) -> TrainingData:
    """The training and validation batches named by ``--data``, at the network's input size."""
    size, normalization = model.input_size, model.normalization
    if config.data == "synthetic":
        sizes = {k: v for k, v in (("train_size", config.limit), ("val_size", config.val_limit)) if v}
        return synthetic(num_classes, size, normalization, config.seed, config.batch_size,
                         ctx.rank, ctx.world, ctx.device, **sizes)
    return prepared_data(config, ctx, size, normalization)
