"""Prepared datasets (``alexnet prepare``) and named ones (imagenette, cifar10) for training.

Workers decode and crop (random 227x227 windows and mirrors for training, the centre for
validation); the device subtracts the mean image and adds the PCA colour noise
(paper sections 2 and 4.1).
"""

from __future__ import annotations

from alexnet.errors import UserError
from alexnet.train import distributed, inputs
from alexnet.train.config import TrainConfig


def _prepared_dir(config: TrainConfig):
    from alexnet.data.prepare import ensure_prepared

    try:
        return ensure_prepared(config.data)
    except UserError as err:
        raise UserError(f"--data {config.data}: {err}\nOffline? Train on random images with "
                        "--data synthetic, or on a prepared folder with --data PATH "
                        "(made by `alexnet prepare SOURCE PATH`).") from None


def prepared_classes(config: TrainConfig) -> list[str]:
    from alexnet.data.dataset import PreparedDataset

    return list(PreparedDataset(_prepared_dir(config), "train").classes)


def prepared_data(config: TrainConfig, ctx: distributed.Context, input_size: int) -> inputs.TrainingData:
    raise UserError("training on prepared data needs the loader of the data layer "
                    "(alexnet.data.loader), which this build does not have yet; use --data synthetic")
