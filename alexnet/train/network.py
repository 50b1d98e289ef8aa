"""The network a run trains: built from the registry (with ``--model-parallel`` its two towers on
two devices, section 3.2), on its device with the speed options, wrapped for DDP and compile."""

from __future__ import annotations

import torch
from torch import nn

from alexnet import speed
from alexnet.registry import build_model
from alexnet.train import distributed
from alexnet.train.backends import channels_last
from alexnet.train.config import TrainConfig


def build_network(config: TrainConfig, num_classes: int, ctx: distributed.Context) -> nn.Module:
    """The network to train, from the registry; with ``--model-parallel`` its two towers on this
    process's two devices (section 3.2)."""
    options = {**config.model_options, "num_classes": num_classes}
    return build_model(config.arch, devices=distributed.model_parallel_devices(ctx), **options) \
        if config.model_parallel else build_model(config.arch, **options)


def prepare_model(model: nn.Module, config: TrainConfig, ctx: distributed.Context) -> nn.Module:
    if not config.model_parallel:
        model = model.to(ctx.device)
    # Same function, faster (docs/speed.md): in-place ReLUs, channels-last on request, and on the
    # CPU conv1's weight gradient as a stride-1 convolution (oneDNN's strided one is 4-5x slower).
    model = speed.apply_speed_options(model, channels_last=channels_last(config, ctx.device),
                                conv1_stride1_grad=ctx.device.type == "cpu" and not config.model_parallel)
    if ctx.distributed:
        ids = [ctx.device.index] if ctx.device.type == "cuda" and not config.model_parallel else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if config.compile:
        model = torch.compile(model)
    return model
